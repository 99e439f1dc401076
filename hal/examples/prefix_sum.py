"""Parallel inclusive prefix sum of any length (``shaders/prefix_sum.wgsl``): block scans,
a recursive scan of the block totals, then offsets added back down — one command buffer."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from hal.core.builtins import shader_path
from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples.common import WAIT_S, ExampleResult, compare, grid, time_execute

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = ["BLOCK", "DEFAULT_SIZE", "PrefixSum", "load", "prefix_sum", "reference", "run"]

BLOCK = 1024
"""Elements one workgroup scans (256 invocations x 4)."""

DEFAULT_SIZE = (1_000_000,)
"""(length,) of ``python -m hal example prefix_sum`` without ``--size``."""

RTOL = 1e-5
ATOL = 1e-5


def load(device: Device) -> Executable:
    """The compiled ``prefix_sum.wgsl`` executable of ``device`` (cached per device)."""
    return device.create_executable(shader_path("prefix_sum.wgsl"), label="prefix_sum")


def level_sizes(n: int) -> list[int]:
    """Element counts of each scan level: ``n``, then its block totals, and so on until a
    level fits in one block (``[n]`` alone for ``n <= BLOCK``)."""
    sizes = [n]
    while sizes[-1] > BLOCK:
        sizes.append(-(-sizes[-1] // BLOCK))
    return sizes


class PrefixSum:
    """An in-place inclusive scan of ``n`` f32 values, with the scratch buffers for its
    block totals. Record it with :meth:`record`; :meth:`release` frees the scratch.

    Raises InvalidArgumentError for ``n < 1`` or a length beyond the adapter's limits."""

    def __init__(self, device: Device, n: int) -> None:
        if n < 1:
            raise InvalidArgumentError(f"PrefixSum: length {n} must be positive")
        self.device = device
        self.n = n
        self.executable = load(device)
        self.levels = level_sizes(n)
        limit = device.caps.max_workgroups
        self._grids = [grid(-(-size // BLOCK), limit) for size in self.levels]
        # sums[i] holds the block totals of level i (= the data of level i + 1); the last
        # level's single total goes to a 4-byte sink.
        self._sums: list[Buffer] = [device.allocate_buffer(4 * s) for s in self.levels[1:]]
        self._sums.append(device.allocate_buffer(4))

    @property
    def dispatches(self) -> int:
        """Dispatches one scan records: ``2 * levels - 1``."""
        return 2 * len(self.levels) - 1

    def record(self, cb: CommandBuffer, data: Buffer | BufferRef) -> None:
        """Record the scan of the first ``n`` f32 values of ``data``, in place, with a
        barrier between each two dispatches (and none after the last).

        Raises whatever ``cb.dispatch`` raises (e.g. FailedPreconditionError once released)."""
        level_data: list[Buffer | BufferRef] = [data, *self._sums[:-1]]
        for i, size in enumerate(self.levels):
            if i:
                cb.execution_barrier()
            cb.dispatch(
                self.executable,
                "scan_blocks",
                self._grids[i],
                constants=[size],
                bindings=[level_data[i], self._sums[i]],
            )
        for i in range(len(self.levels) - 2, -1, -1):
            cb.execution_barrier()
            cb.dispatch(
                self.executable,
                "add_offsets",
                self._grids[i],
                constants=[self.levels[i]],
                bindings=[level_data[i], self._sums[i]],
            )

    def release(self) -> None:
        """Free the scratch buffers (command buffers that use them can't be submitted after)."""
        for buffer in self._sums:
            buffer.release()

    def __enter__(self) -> PrefixSum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def reference(x: np.ndarray) -> np.ndarray:
    """Inclusive prefix sum in float64."""
    return np.cumsum(x.astype(np.float64))


def prefix_sum(device: Device, x: np.ndarray, timeout: float = WAIT_S) -> np.ndarray:
    """Inclusive prefix sum of a 1-D floating-point array on the GPU (in float32).

    Raises InvalidArgumentError for an empty or non-1-D array or one that is not floating
    point (the kernel scans float32: an integer scan would silently round), and
    DeadlineExceededError when the GPU takes longer than ``timeout`` seconds."""
    kind = np.asarray(x).dtype
    if kind.kind != "f":
        raise InvalidArgumentError(
            f"prefix_sum: x has dtype {kind}; the kernel scans float32 only (pass "
            f"x.astype(np.float32) to scan it as floats)"
        )
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.ndim != 1 or x32.size == 0:
        raise InvalidArgumentError(f"prefix_sum: shape {x32.shape} is not a non-empty 1-D array")
    with ExitStack() as stack:
        data = stack.enter_context(device.buffer_from_numpy(x32))
        scan = stack.enter_context(PrefixSum(device, x32.size))
        with device.record() as cb:
            scan.record(cb, data)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return data.to_numpy(np.float32, x32.shape)


def run(
    device: Device, size: tuple[int] = DEFAULT_SIZE, repeats: int = 5, seed: int = 0
) -> ExampleResult:
    """Scan ``size[0]`` random values in [0, 1), check against numpy's cumsum, time it.

    Every timed run rescans the same input: the command buffer first copies it from a
    pristine buffer, so the timing includes that copy. Raises InvalidArgumentError for bad
    sizes, DeadlineExceededError on a GPU hang."""
    (n,) = size
    rng = np.random.default_rng(seed)
    x = rng.random(n, dtype=np.float32)
    with ExitStack() as stack:
        source = stack.enter_context(device.buffer_from_numpy(x))
        data = stack.enter_context(device.allocate_buffer(x.nbytes))
        scan = stack.enter_context(PrefixSum(device, n))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            cb.copy_buffer(source, 0, data, 0, x.nbytes)
            cb.execution_barrier()
            scan.record(cb, data)
        timing = time_execute(device, cb, repeats)
        got = data.to_numpy(np.float32, (n,))
    ok, error = compare(got, reference(x), RTOL, ATOL)
    rate = n / timing.median_s / 1e6
    return ExampleResult(
        "prefix_sum",
        ok,
        error,
        timing,
        f"{n} f32, {len(scan.levels)} levels / {scan.dispatches} dispatches, "
        f"{rate:.1f} M elements/s",
    )
