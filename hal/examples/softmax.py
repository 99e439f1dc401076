"""Row-wise, numerically stable softmax (``shaders/softmax.wgsl``): one workgroup per row,
one read of the row (online max and sum), subgroup or workgroup-memory reductions, vec4
elements where the row length is a multiple of 4."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples.common import WAIT_S, ExampleResult, compare, grid, time_execute
from hal.examples.rowwise import RowKernel

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device

__all__ = ["DEFAULT_SIZE", "load", "record_softmax", "reference", "run", "softmax"]

DEFAULT_SIZE = (1024, 1000)
"""(rows, cols) of ``python -m hal example softmax`` without ``--size``."""

RTOL = 1e-4
ATOL = 1e-7


def load(device: Device) -> RowKernel:
    """The softmax kernel of ``device`` (its variants compile on first use, cached)."""
    return RowKernel(device, "softmax")


def record_softmax(
    cb: CommandBuffer,
    executable: RowKernel,
    x: Buffer | BufferRef,
    out: Buffer | BufferRef,
    rows: int,
    cols: int,
) -> None:
    """Record ``out[r, :] = softmax(x[r, :])`` for a row-major f32 ``[rows, cols]`` matrix.

    Raises InvalidArgumentError for non-positive sizes or more rows than a workgroup grid
    holds, plus whatever ``cb.dispatch`` raises."""
    if rows <= 0 or cols <= 0:
        raise InvalidArgumentError(f"record_softmax: rows={rows} cols={cols} must be positive")
    groups = grid(rows, executable.device.caps.max_workgroups)
    variant = executable.executable(vec4=cols % 4 == 0)
    cb.dispatch(variant, "softmax", groups, constants=[rows, cols], bindings=[x, out])


def reference(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a 2-D array in float64 (max-subtracted)."""
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax(device: Device, x: np.ndarray, timeout: float = WAIT_S) -> np.ndarray:
    """Row-wise softmax of a 2-D array on the GPU (converted to float32).

    Raises InvalidArgumentError for an array that is not 2-D or is empty,
    DeadlineExceededError when the GPU takes longer than ``timeout`` seconds."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.ndim != 2 or x32.size == 0:
        raise InvalidArgumentError(f"softmax: shape {x32.shape} is not a non-empty 2-D matrix")
    rows, cols = x32.shape
    with ExitStack() as buffers:
        x_buf = buffers.enter_context(device.buffer_from_numpy(x32))
        out_buf = buffers.enter_context(device.allocate_buffer(x32.nbytes))
        with device.record() as cb:
            record_softmax(cb, load(device), x_buf, out_buf, rows, cols)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return out_buf.to_numpy(np.float32, (rows, cols))


def run(
    device: Device, size: tuple[int, int] = DEFAULT_SIZE, repeats: int = 5, seed: int = 0
) -> ExampleResult:
    """Softmax of random ``size = (rows, cols)`` logits with large offsets (so a naive
    ``exp`` would overflow), checked against numpy, timed.

    Raises InvalidArgumentError for bad sizes, DeadlineExceededError on a GPU hang."""
    rows, cols = size
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 4.0, (rows, cols)) + rng.uniform(-500.0, 500.0, (rows, 1))
    x = x.astype(np.float32)
    kernel = load(device)
    with ExitStack() as buffers:
        x_buf = buffers.enter_context(device.buffer_from_numpy(x))
        out_buf = buffers.enter_context(device.allocate_buffer(x.nbytes))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_softmax(cb, kernel, x_buf, out_buf, rows, cols)
        timing = time_execute(device, cb, repeats)
        got = out_buf.to_numpy(np.float32, (rows, cols))
    ok, error = compare(got, reference(x), RTOL, ATOL)
    gbps = 2.0 * x.nbytes / timing.median_s / 1e9
    return ExampleResult(
        "softmax", ok, error, timing, f"[{rows}x{cols}] f32 rows, {gbps:.2f} GB/s in+out"
    )
