"""GELU, elementwise (``shaders/gelu.wgsl``, the tanh approximation of GPT-2): vec4 loads and
stores where the element count is a multiple of 4."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples.common import WAIT_S, ExampleResult, compare, grid, time_execute
from hal.examples.rowwise import ROW_GROUP, RowKernel

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device

__all__ = ["DEFAULT_SIZE", "gelu", "load", "record_gelu", "reference", "run"]

DEFAULT_SIZE = (1_000_000,)
"""(count,) of ``python -m hal example gelu`` without ``--size``."""

RTOL = 1e-5
ATOL = 1e-6


def load(device: Device) -> RowKernel:
    """The GELU kernel of ``device`` (its variants compile on first use, cached)."""
    return RowKernel(device, "gelu")


def record_gelu(
    cb: CommandBuffer,
    kernel: RowKernel,
    x: Buffer | BufferRef,
    out: Buffer | BufferRef,
    count: int,
) -> None:
    """Record ``out[i] = gelu(x[i])`` for ``count`` f32 values (different ranges).

    Raises InvalidArgumentError for a non-positive count or one beyond a workgroup grid,
    plus whatever ``cb.dispatch`` raises."""
    if count <= 0:
        raise InvalidArgumentError(f"record_gelu: count={count} must be positive")
    vec4 = count % 4 == 0
    items = count // 4 if vec4 else count
    groups = grid(-(-items // ROW_GROUP), kernel.device.caps.max_workgroups)
    cb.dispatch(kernel.executable(vec4), "gelu", groups, constants=[count], bindings=[x, out])


def reference(x: np.ndarray) -> np.ndarray:
    """tanh-GELU in float64."""
    x64 = x.astype(np.float64)
    return 0.5 * x64 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64**3)))


def gelu(device: Device, x: np.ndarray, timeout: float = WAIT_S) -> np.ndarray:
    """tanh-GELU of an array on the GPU (float32, any shape).

    Raises InvalidArgumentError for an empty array, DeadlineExceededError when the GPU takes
    longer than ``timeout`` seconds."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if x32.size == 0:
        raise InvalidArgumentError("gelu: the array is empty")
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(x32))
        out = stack.enter_context(device.allocate_buffer(x32.nbytes))
        with device.record() as cb:
            record_gelu(cb, load(device), src, out, x32.size)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return out.to_numpy(np.float32, x32.shape)


def run(
    device: Device, size: tuple[int] = DEFAULT_SIZE, repeats: int = 5, seed: int = 0
) -> ExampleResult:
    """GELU of ``size[0]`` random values, checked against numpy, timed.

    Raises InvalidArgumentError for bad sizes, DeadlineExceededError on a GPU hang."""
    (n,) = size
    x = np.random.default_rng(seed).normal(0.0, 3.0, n).astype(np.float32)
    kernel = load(device)
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(x))
        out = stack.enter_context(device.allocate_buffer(x.nbytes))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_gelu(cb, kernel, src, out, n)
        timing = time_execute(device, cb, repeats)
        got = out.to_numpy(np.float32, (n,))
    ok, error = compare(got, reference(x), RTOL, ATOL)
    gbps = 2.0 * x.nbytes / timing.median_s / 1e9
    return ExampleResult("gelu", ok, error, timing, f"{n} f32, {gbps:.2f} GB/s in+out")
