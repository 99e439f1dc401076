"""Layer normalisation of each row (``shaders/layernorm.wgsl``): one workgroup per row, one
read for the shifted sums, subgroup or workgroup-memory reductions, vec4 elements where the
row length is a multiple of 4."""

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

__all__ = ["DEFAULT_SIZE", "EPS", "layernorm", "load", "record_layernorm", "reference", "run"]

DEFAULT_SIZE = (1024, 1000)
"""(rows, cols) of ``python -m hal example layernorm`` without ``--size``."""

EPS = 1e-5
"""The variance epsilon (torch.nn.LayerNorm's default)."""

RTOL = 1e-4
ATOL = 1e-4


def load(device: Device) -> RowKernel:
    """The layer-norm kernel of ``device`` (its variants compile on first use, cached)."""
    return RowKernel(device, "layernorm")


def record_layernorm(
    cb: CommandBuffer,
    kernel: RowKernel,
    x: Buffer | BufferRef,
    gamma: Buffer | BufferRef,
    beta: Buffer | BufferRef,
    out: Buffer | BufferRef,
    rows: int,
    cols: int,
    eps: float = EPS,
) -> None:
    """Record ``out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta`` for a
    row-major f32 ``[rows, cols]`` matrix (``gamma``, ``beta``: ``[cols]``).

    Raises InvalidArgumentError for non-positive sizes, a negative ``eps`` or more rows than
    a workgroup grid holds, plus whatever ``cb.dispatch`` raises."""
    if rows <= 0 or cols <= 0 or not eps >= 0.0:
        raise InvalidArgumentError(
            f"record_layernorm: rows={rows} cols={cols} must be positive, eps={eps} >= 0"
        )
    groups = grid(rows, kernel.device.caps.max_workgroups)
    cb.dispatch(
        kernel.executable(vec4=cols % 4 == 0),
        "layernorm",
        groups,
        constants=np.array([rows, cols], np.uint32).tobytes() + np.float32(eps).tobytes(),
        bindings=[x, gamma, beta, out],
    )


def reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Row-wise layer norm in float64."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = x64.var(axis=1, keepdims=True)
    return (x64 - mean) / np.sqrt(var + eps) * gamma.astype(np.float64) + beta.astype(np.float64)


def layernorm(
    device: Device,
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float = EPS,
    timeout: float = WAIT_S,
) -> np.ndarray:
    """Row-wise layer norm of a 2-D array on the GPU (float32).

    Raises InvalidArgumentError for shapes that don't match (x: [R, C], gamma and beta: [C]),
    DeadlineExceededError when the GPU takes longer than ``timeout`` seconds."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, gamma, beta)]
    x32, g32, b32 = arrays
    if x32.ndim != 2 or x32.size == 0 or g32.shape != (x32.shape[1],) or b32.shape != g32.shape:
        raise InvalidArgumentError(
            f"layernorm: shapes x{x32.shape} gamma{g32.shape} beta{b32.shape} (x: [R, C], "
            "gamma, beta: [C])"
        )
    rows, cols = x32.shape
    with ExitStack() as stack:
        bufs = [stack.enter_context(device.buffer_from_numpy(a)) for a in arrays]
        out = stack.enter_context(device.allocate_buffer(x32.nbytes))
        with device.record() as cb:
            record_layernorm(cb, load(device), bufs[0], bufs[1], bufs[2], out, rows, cols, eps)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return out.to_numpy(np.float32, (rows, cols))


def run(
    device: Device, size: tuple[int, int] = DEFAULT_SIZE, repeats: int = 5, seed: int = 0
) -> ExampleResult:
    """Layer norm of random ``size = (rows, cols)`` rows with large means, checked against
    numpy, timed.

    Raises InvalidArgumentError for bad sizes, DeadlineExceededError on a GPU hang."""
    rows, cols = size
    rng = np.random.default_rng(seed)
    x = (rng.normal(0.0, 2.0, (rows, cols)) + rng.uniform(-100, 100, (rows, 1))).astype(np.float32)
    gamma = rng.normal(1.0, 0.2, cols).astype(np.float32)
    beta = rng.normal(0.0, 0.2, cols).astype(np.float32)
    kernel = load(device)
    with ExitStack() as stack:
        bufs = [stack.enter_context(device.buffer_from_numpy(a)) for a in (x, gamma, beta)]
        out = stack.enter_context(device.allocate_buffer(x.nbytes))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_layernorm(cb, kernel, bufs[0], bufs[1], bufs[2], out, rows, cols)
        timing = time_execute(device, cb, repeats)
        got = out.to_numpy(np.float32, (rows, cols))
    ok, error = compare(got, reference(x, gamma, beta), RTOL, ATOL)
    gbps = 2.0 * x.nbytes / timing.median_s / 1e9
    return ExampleResult(
        "layernorm", ok, error, timing, f"[{rows}x{cols}] f32 rows, {gbps:.2f} GB/s in+out"
    )
