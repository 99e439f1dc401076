"""Tiled matrix multiply (``shaders/matmul.wgsl``): 64x64 output tiles per workgroup, a and b
staged through workgroup memory, 4x4 outputs per invocation in registers."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from hal.core.builtins import shader_path
from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples.common import WAIT_S, ExampleResult, compare, time_execute

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = ["DEFAULT_SIZE", "TILE", "load", "matmul", "record_matmul", "reference", "run"]

TILE = 64
"""Edge of the square tile of the output one workgroup computes."""

DEFAULT_SIZE = (256, 256, 256)
"""(M, K, N) of ``python -m hal example matmul`` without ``--size``."""

RTOL = 1e-4
ATOL_PER_K = 1e-6


def load(device: Device) -> Executable:
    """The compiled ``matmul.wgsl`` executable of ``device`` (cached per device)."""
    return device.create_executable(shader_path("matmul.wgsl"), label="matmul")


def record_matmul(
    cb: CommandBuffer,
    executable: Executable,
    a: Buffer | BufferRef,
    b: Buffer | BufferRef,
    c: Buffer | BufferRef,
    m: int,
    k: int,
    n: int,
) -> None:
    """Record ``c[m, n] = a[m, k] @ b[k, n]`` (row-major f32) into ``cb``.

    Raises InvalidArgumentError when a dimension is not positive or the grid of tiles
    exceeds the adapter's workgroup limit, plus whatever ``cb.dispatch`` raises."""
    if min(m, k, n) <= 0:
        raise InvalidArgumentError(f"record_matmul: sizes m={m} k={k} n={n} must be positive")
    groups = (-(-n // TILE), -(-m // TILE), 1)
    limit = executable.device.caps.max_workgroups
    if max(groups) > limit:
        raise InvalidArgumentError(
            f"record_matmul: {groups[0]} x {groups[1]} tiles exceed the adapter's "
            f"{limit} workgroups per dimension"
        )
    cb.dispatch(executable, "matmul", groups, constants=[m, k, n], bindings=[a, b, c])


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float64 (the numpy result the GPU is checked against)."""
    return a.astype(np.float64) @ b.astype(np.float64)


def matmul(device: Device, a: np.ndarray, b: np.ndarray, timeout: float = WAIT_S) -> np.ndarray:
    """``a @ b`` of two 2-D arrays on the GPU (converted to float32).

    Raises InvalidArgumentError for shapes that don't multiply, DeadlineExceededError when
    the GPU takes longer than ``timeout`` seconds."""
    a32 = np.ascontiguousarray(a, dtype=np.float32)
    b32 = np.ascontiguousarray(b, dtype=np.float32)
    if a32.ndim != 2 or b32.ndim != 2 or a32.shape[1] != b32.shape[0]:
        raise InvalidArgumentError(f"matmul: shapes {a32.shape} and {b32.shape} don't multiply")
    m, k = a32.shape
    n = b32.shape[1]
    with ExitStack() as buffers:
        a_buf = buffers.enter_context(device.buffer_from_numpy(a32))
        b_buf = buffers.enter_context(device.buffer_from_numpy(b32))
        c_buf = buffers.enter_context(device.allocate_buffer(m * n * 4))
        with device.record() as cb:
            record_matmul(cb, load(device), a_buf, b_buf, c_buf, m, k, n)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return c_buf.to_numpy(np.float32, (m, n))


def run(
    device: Device, size: tuple[int, int, int] = DEFAULT_SIZE, repeats: int = 5, seed: int = 0
) -> ExampleResult:
    """Multiply random ``size = (M, K, N)`` matrices, check against numpy, time it.

    Raises InvalidArgumentError for bad sizes, DeadlineExceededError on a GPU hang."""
    m, k, n = size
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (m, k)).astype(np.float32)
    b = rng.uniform(-1.0, 1.0, (k, n)).astype(np.float32)
    executable = load(device)
    with ExitStack() as buffers:
        a_buf = buffers.enter_context(device.buffer_from_numpy(a))
        b_buf = buffers.enter_context(device.buffer_from_numpy(b))
        c_buf = buffers.enter_context(device.allocate_buffer(m * n * 4))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_matmul(cb, executable, a_buf, b_buf, c_buf, m, k, n)
        timing = time_execute(device, cb, repeats)
        got = c_buf.to_numpy(np.float32, (m, n))
    ok, error = compare(got, reference(a, b), RTOL, ATOL_PER_K * k)
    gflops = 2.0 * m * k * n / timing.median_s / 1e9
    return ExampleResult(
        "matmul", ok, error, timing, f"[{m}x{k}] @ [{k}x{n}] f32, {gflops:.2f} GFLOP/s"
    )
