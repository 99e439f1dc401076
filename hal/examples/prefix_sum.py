"""Parallel inclusive prefix sum of any length, f32 / i32 / u32 (``shaders/prefix_sum.wgsl``):
reduce-then-scan over large tiles (tile totals, a recursive scan of the totals, then each tile
scanned with its offset), vec4 loads and subgroup scans where the adapter has them, about 3n
memory traffic — one command buffer."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from hal.core.builtins import shader_source
from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples.common import WAIT_S, ExampleResult, compare, grid, time_execute

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = [
    "BLOCK",
    "DEFAULT_SIZE",
    "DTYPES",
    "ITEMS",
    "PrefixSum",
    "kernel_source",
    "load",
    "prefix_sum",
    "reference",
    "run",
]

ITEMS = 4
"""Default vec4 values one invocation scans per tile (tile = 256 x 4 x ITEMS elements)."""

BLOCK = 256 * 4 * ITEMS
"""Elements one workgroup scans with the default ``items`` (a tile)."""

DTYPES = {"f32": np.float32, "i32": np.int32, "u32": np.uint32}
"""Element types the kernels scan, by WGSL name, with their numpy dtypes."""

DEFAULT_SIZE = (1_000_000,)
"""(length,) of ``python -m hal example prefix_sum`` without ``--size``."""

RTOL = 1e-5
ATOL = 1e-5

_VEC4 = """alias V = vec4<T>;
const WIDTH: u32 = 4u;
fn scan_in(v: V) -> V {
  let y = v.x + v.y;
  let z = y + v.z;
  return V(v.x, y, z, z + v.w);
}
fn last(v: V) -> T { return v.w; }
fn hsum(v: V) -> T { return (v.x + v.y) + (v.z + v.w); }
fn mask_tail(v: V, keep: u32) -> V {
  return select(V(T(0)), v, vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(keep));
}
"""

_SCALAR = """alias V = T;
const WIDTH: u32 = 1u;
fn scan_in(v: V) -> V { return v; }
fn last(v: V) -> T { return v; }
fn hsum(v: V) -> T { return v; }
fn mask_tail(v: V, keep: u32) -> V { return v; }
"""


def kernel_source(dtype: str, vec4: bool, subgroups: bool, items: int = ITEMS) -> str:
    """The WGSL module of ``prefix_sum.wgsl`` for elements ``dtype`` ("f32", "i32", "u32"),
    vec4 or scalar loads, the subgroup or workgroup-memory scan, ``items`` vec4s (or
    ``4 * items`` scalars) per invocation. Raises InvalidArgumentError for another dtype or
    ``items`` outside 1..16."""
    if dtype not in DTYPES:
        raise InvalidArgumentError(f"PrefixSum: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not isinstance(items, int) or not 1 <= items <= 16:
        raise InvalidArgumentError(f"PrefixSum: items {items!r} must be an int in 1..16")
    return "\n".join(
        [
            "enable subgroups;" if subgroups else "",
            f"alias T = {dtype};",
            f"const ITEMS: u32 = {items if vec4 else 4 * items}u;",
            _VEC4 if vec4 else _SCALAR,
            shader_source("scan_subgroup.wgsl" if subgroups else "scan_workgroup.wgsl"),
            shader_source("prefix_sum.wgsl"),
        ]
    )


def load(device: Device, dtype: str = "f32", vec4: bool = True, items: int = ITEMS) -> Executable:
    """The compiled scan executable of ``device`` for ``dtype`` (see :func:`kernel_source`;
    subgroup scans where the device has ``subgroup``), cached per device.

    Raises InvalidArgumentError for a bad ``dtype`` or ``items``."""
    subgroups = "subgroup" in device.features
    variant = f"{dtype}{'x4' if vec4 else ''}*{items}{'+subgroups' if subgroups else ''}"
    return device.create_executable(
        kernel_source(dtype, vec4, subgroups, items), label=f"prefix_sum[{variant}]"
    )


def level_sizes(n: int, block: int = BLOCK) -> list[int]:
    """Element counts of each scan level: ``n``, then its tile totals, and so on until a
    level fits in one tile of ``block`` elements (``[n]`` alone for ``n <= block``)."""
    sizes = [n]
    while sizes[-1] > block:
        sizes.append(-(-sizes[-1] // block))
    return sizes


class PrefixSum:
    """An in-place inclusive scan of ``n`` values of ``dtype`` ("f32", "i32" or "u32";
    integers wrap like numpy's ``cumsum(x, dtype=x.dtype)``), with the scratch buffers for
    its tile totals. ``items``: vec4s per invocation (a tile is ``1024 * items`` elements).
    Record it with :meth:`record`; :meth:`release` frees the scratch.

    Raises InvalidArgumentError for ``n < 1``, a bad ``dtype`` or ``items``, or a length
    beyond the adapter's limits."""

    def __init__(self, device: Device, n: int, dtype: str = "f32", *, items: int = ITEMS) -> None:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"PrefixSum: length {n!r} must be a positive int")
        self.device = device
        self.n = n
        self.dtype = dtype
        self.block = 1024 * items if isinstance(items, int) else 0
        # vec4 loads need whole vec4s: a user buffer of a length that is no multiple of 4
        # gets the scalar variant; the scratch levels are padded and always use vec4.
        self._scalar = load(device, dtype, False, items) if n % 4 else None
        self.executable = load(device, dtype, True, items)
        self.levels = level_sizes(n, self.block)
        limit = device.caps.max_workgroups
        self._grids = [grid(-(-size // self.block), limit) for size in self.levels]
        # sums[i] holds the tile totals of level i (= the data of level i + 1), padded to
        # whole vec4s; the one-tile top level binds a 16-byte sink it never reads.
        self._sums: list[Buffer] = [
            device.allocate_buffer(16 * -(-s // 4)) for s in self.levels[1:]
        ]
        self._sums.append(device.allocate_buffer(16))

    @property
    def dispatches(self) -> int:
        """Dispatches one scan records: ``2 * levels - 1``."""
        return 2 * len(self.levels) - 1

    def record(self, cb: CommandBuffer, data: Buffer | BufferRef) -> None:
        """Record the scan of the first ``n`` values of ``data``, in place, with a barrier
        between each two dispatches (and none after the last).

        Raises whatever ``cb.dispatch`` raises (e.g. FailedPreconditionError once released)."""
        level_data: list[Buffer | BufferRef] = [data, *self._sums[:-1]]
        top = len(self.levels) - 1
        steps = [("reduce_tiles", i, self._sums[i]) for i in range(top)]
        steps += [("scan_tiles", i, self._sums[i]) for i in range(top, -1, -1)]
        for index, (entry, i, sums) in enumerate(steps):
            if index:
                cb.execution_barrier()
            kernel = self._scalar if i == 0 and self._scalar is not None else self.executable
            cb.dispatch(
                kernel,
                entry,
                self._grids[i],
                constants=[self.levels[i]],
                bindings=[level_data[i], sums],
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
    """Inclusive prefix sum: in float64 for floats, wrapping in the input dtype for
    int32/uint32."""
    if x.dtype in (np.int32, np.uint32):
        return np.cumsum(x, dtype=x.dtype)
    return np.cumsum(x.astype(np.float64))


def _dtype_of(x: np.ndarray) -> str:
    kind = np.asarray(x).dtype
    if kind.kind == "f":
        return "f32"
    for name, np_type in DTYPES.items():
        if kind == np_type:
            return name
    raise InvalidArgumentError(
        f"prefix_sum: x has dtype {kind}; the kernel scans float32 (any floating dtype is "
        f"converted), int32 and uint32 only (cast it, e.g. x.astype(np.int32))"
    )


def prefix_sum(device: Device, x: np.ndarray, timeout: float = WAIT_S) -> np.ndarray:
    """Inclusive prefix sum of a 1-D array on the GPU: floating point in float32, int32 and
    uint32 exactly (wrapping like ``np.cumsum(x, dtype=x.dtype)``).

    Raises InvalidArgumentError for an empty or non-1-D array or another dtype (int64, bool,
    ...: no silent rounding or narrowing), DeadlineExceededError when the GPU takes longer
    than ``timeout`` seconds."""
    dtype = _dtype_of(x)
    xs = np.ascontiguousarray(x, dtype=DTYPES[dtype])
    if xs.ndim != 1 or xs.size == 0:
        raise InvalidArgumentError(f"prefix_sum: shape {xs.shape} is not a non-empty 1-D array")
    with ExitStack() as stack:
        data = stack.enter_context(device.buffer_from_numpy(xs))
        scan = stack.enter_context(PrefixSum(device, xs.size, dtype))
        with device.record() as cb:
            scan.record(cb, data)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return data.to_numpy(xs.dtype, xs.shape)


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
