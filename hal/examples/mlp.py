"""A two-layer perceptron forward pass, five dispatches chained through ONE command buffer:
``probs = softmax(relu(x @ w1 + b1) @ w2 + b2)`` (matmul, bias + ReLU, matmul, bias,
softmax; a barrier between each two)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hal.core.builtins import shader_path
from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples import matmul as matmul_example
from hal.examples import softmax as softmax_example
from hal.examples.common import WAIT_S, ExampleResult, compare, grid, time_execute
from hal.examples.rowwise import RowKernel

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = [
    "DEFAULT_SIZE",
    "MLPKernels",
    "forward",
    "load",
    "random_weights",
    "record_bias",
    "record_mlp",
    "reference",
    "run",
]

DEFAULT_SIZE = (256, 784, 512, 10)
"""(batch, inputs, hidden, outputs) of ``python -m hal example mlp`` without ``--size``."""

RTOL = 1e-4
ATOL = 1e-6

_BIAS_GROUP = 256


@dataclass(frozen=True, slots=True)
class MLPKernels:
    """The three executables the forward pass uses."""

    matmul: matmul_example.MatmulKernel
    bias_relu: Executable
    softmax: RowKernel


def load(device: Device) -> MLPKernels:
    """Compile (or fetch from the device's cache) the kernels of the forward pass."""
    return MLPKernels(
        matmul_example.load(device),
        device.create_executable(shader_path("bias_relu.wgsl"), label="bias_relu"),
        softmax_example.load(device),
    )


def record_bias(
    cb: CommandBuffer,
    executable: Executable,
    bias: Buffer | BufferRef,
    x: Buffer | BufferRef,
    rows: int,
    cols: int,
    relu: bool,
) -> None:
    """Record ``x[r, c] = act(x[r, c] + bias[c])`` in place (act: ReLU when ``relu``).

    Raises InvalidArgumentError for non-positive sizes, plus whatever ``cb.dispatch`` raises."""
    if rows <= 0 or cols <= 0:
        raise InvalidArgumentError(f"record_bias: rows={rows} cols={cols} must be positive")
    groups = grid(-(-rows * cols // _BIAS_GROUP), executable.device.caps.max_workgroups)
    cb.dispatch(
        executable, "bias_relu", groups, constants=[rows, cols, int(relu)], bindings=[bias, x]
    )


def record_mlp(
    cb: CommandBuffer,
    kernels: MLPKernels,
    x: Buffer | BufferRef,
    w1: Buffer | BufferRef,
    b1: Buffer | BufferRef,
    w2: Buffer | BufferRef,
    b2: Buffer | BufferRef,
    hidden: Buffer | BufferRef,
    logits: Buffer | BufferRef,
    probs: Buffer | BufferRef,
    size: tuple[int, int, int, int],
) -> None:
    """Record the forward pass for ``size = (batch, inputs, hidden, outputs)``: ``hidden``
    (``batch x hidden`` f32) and ``logits`` (``batch x outputs``) are scratch, ``probs``
    receives the result. Five dispatches with a barrier between each two.

    Raises InvalidArgumentError for bad sizes, plus whatever ``cb.dispatch`` raises."""
    batch, n_in, n_hidden, n_out = size
    matmul_example.record_matmul(cb, kernels.matmul, x, w1, hidden, batch, n_in, n_hidden)
    cb.execution_barrier()
    record_bias(cb, kernels.bias_relu, b1, hidden, batch, n_hidden, relu=True)
    cb.execution_barrier()
    matmul_example.record_matmul(cb, kernels.matmul, hidden, w2, logits, batch, n_hidden, n_out)
    cb.execution_barrier()
    record_bias(cb, kernels.bias_relu, b2, logits, batch, n_out, relu=False)
    cb.execution_barrier()
    softmax_example.record_softmax(cb, kernels.softmax, logits, probs, batch, n_out)


def random_weights(
    size: tuple[int, int, int, int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, w1, b1, w2, b2)`` as float32 with He-style scaling, for ``size``."""
    batch, n_in, n_hidden, n_out = size
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (batch, n_in))
    w1 = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_hidden))
    b1 = rng.normal(0.0, 0.1, n_hidden)
    w2 = rng.normal(0.0, np.sqrt(2.0 / n_hidden), (n_hidden, n_out))
    b2 = rng.normal(0.0, 0.1, n_out)
    return tuple(a.astype(np.float32) for a in (x, w1, b1, w2, b2))  # type: ignore[return-value]


def reference(
    x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray
) -> np.ndarray:
    """The forward pass in float64 numpy."""
    f = [a.astype(np.float64) for a in (x, w1, b1, w2, b2)]
    hidden = np.maximum(f[0] @ f[1] + f[2], 0.0)
    return softmax_example.reference(hidden @ f[3] + f[4])


def _shapes(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> tuple[int, int, int, int]:
    return (x.shape[0], x.shape[1], w1.shape[1], w2.shape[1])


def _check_shapes(
    x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray
) -> None:
    ok = (
        x.ndim == 2
        and w1.ndim == 2
        and w2.ndim == 2
        and x.shape[1] == w1.shape[0]
        and b1.shape == (w1.shape[1],)
        and w2.shape[0] == w1.shape[1]
        and b2.shape == (w2.shape[1],)
        and min(*x.shape, *w1.shape, *w2.shape) > 0
    )
    if not ok:
        raise InvalidArgumentError(
            f"mlp: shapes x{x.shape} w1{w1.shape} b1{b1.shape} w2{w2.shape} b2{b2.shape} "
            "don't chain (x: [B, I], w1: [I, H], b1: [H], w2: [H, O], b2: [O])"
        )


def forward(
    device: Device,
    x: np.ndarray,
    w1: np.ndarray,
    b1: np.ndarray,
    w2: np.ndarray,
    b2: np.ndarray,
    timeout: float = WAIT_S,
) -> np.ndarray:
    """``softmax(relu(x @ w1 + b1) @ w2 + b2)`` on the GPU (float32), one command buffer.

    Raises InvalidArgumentError for shapes that don't chain, DeadlineExceededError when the
    GPU takes longer than ``timeout`` seconds."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, w1, b1, w2, b2)]
    _check_shapes(*arrays)
    size = _shapes(arrays[0], arrays[1], arrays[3])
    with ExitStack() as stack:
        cb = _record(device, stack, arrays, size, CommandBufferMode.ONE_SHOT)
        done = device.create_semaphore()
        device.queue_execute(cb[0], signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return cb[1].to_numpy(np.float32, (size[0], size[3]))


def _record(
    device: Device,
    stack: ExitStack,
    arrays: list[np.ndarray],
    size: tuple[int, int, int, int],
    mode: CommandBufferMode,
) -> tuple[CommandBuffer, Buffer]:
    batch, _, n_hidden, n_out = size
    x, w1, b1, w2, b2 = (stack.enter_context(device.buffer_from_numpy(a)) for a in arrays)
    hidden = stack.enter_context(device.allocate_buffer(4 * batch * n_hidden))
    logits = stack.enter_context(device.allocate_buffer(4 * batch * n_out))
    probs = stack.enter_context(device.allocate_buffer(4 * batch * n_out))
    with device.record(mode=mode) as cb:
        record_mlp(cb, load(device), x, w1, b1, w2, b2, hidden, logits, probs, size)
    return cb, probs


def run(
    device: Device,
    size: tuple[int, int, int, int] = DEFAULT_SIZE,
    repeats: int = 5,
    seed: int = 0,
) -> ExampleResult:
    """Run the forward pass for ``size = (batch, inputs, hidden, outputs)`` on random
    weights, check against numpy, time the whole command buffer.

    Raises InvalidArgumentError for bad sizes, DeadlineExceededError on a GPU hang."""
    arrays = list(random_weights(size, seed))
    with ExitStack() as stack:
        cb, probs = _record(device, stack, arrays, size, CommandBufferMode.DEFAULT)
        timing = time_execute(device, cb, repeats)
        got = probs.to_numpy(np.float32, (size[0], size[3]))
        dispatches = cb.stats.dispatches if cb.stats is not None else 5
        passes = cb.stats.compute_passes if cb.stats is not None else 0
    ok, error = compare(got, reference(*arrays), RTOL, ATOL)
    batch, n_in, n_hidden, n_out = size
    flops = 2.0 * batch * (n_in * n_hidden + n_hidden * n_out)
    return ExampleResult(
        "mlp",
        ok,
        error,
        timing,
        f"batch {batch}, {n_in}->{n_hidden}->{n_out}, {dispatches} dispatches in "
        f"{passes} compute pass(es), one command buffer, "
        f"{flops / timing.median_s / 1e9:.2f} GFLOP/s",
    )
