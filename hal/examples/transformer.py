"""A pre-norm transformer block forward pass (GPT-2 style), seven dispatches recorded once into
one reusable command buffer::

    h  = layernorm1(x)
    qkv = h @ w_qkv + b_qkv                       (matmul, fused bias)
    a  = causal multi-head attention(qkv)         (hal.examples.attention)
    x1 = x + a @ w_o + b_o                        (matmul, fused bias + residual)
    h  = layernorm2(x1)
    u  = gelu(h @ w_1 + b_1)                      (matmul, fused bias + GELU)
    y  = x1 + u @ w_2 + b_2                       (matmul, fused bias + residual)

GPT-2-small shapes by default (batch 8, sequence 1024, width 768, 12 heads, MLP 4x); on a
CPU adapter the default is :data:`SMALL_SIZE`, so the example finishes in seconds."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hal.enums import CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples import attention as attention_example
from hal.examples import gelu as gelu_example
from hal.examples import layernorm as layernorm_example
from hal.examples import matmul as matmul_example
from hal.examples.common import WAIT_S, ExampleResult, compare, time_execute

if TYPE_CHECKING:
    from hal.runtime.buffer import Buffer
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device

__all__ = [
    "DEFAULT_SIZE",
    "SMALL_SIZE",
    "WEIGHT_NAMES",
    "BlockKernels",
    "flops",
    "forward",
    "load",
    "random_weights",
    "record_block",
    "reference",
    "run",
]

DEFAULT_SIZE = (8, 1024, 768, 12)
"""(batch, sequence, width, heads): GPT-2 small."""

SMALL_SIZE = (2, 40, 64, 4)
"""The default on a CPU adapter (a sequence that is not a multiple of the tiles)."""

WEIGHT_NAMES = (
    "ln1_g",
    "ln1_b",
    "w_qkv",
    "b_qkv",
    "w_o",
    "b_o",
    "ln2_g",
    "ln2_b",
    "w_1",
    "b_1",
    "w_2",
    "b_2",
)
"""The block's parameters, in the order :func:`random_weights` returns them."""

RTOL = 1e-3
ATOL = 1e-3


@dataclass(frozen=True, slots=True)
class BlockKernels:
    """The kernels the block uses."""

    matmul: matmul_example.MatmulKernel
    layernorm: layernorm_example.RowKernel
    attention: attention_example.AttentionKernel


def load(device: Device, head_dim: int = 64) -> BlockKernels:
    """Compile (or fetch from the device's cache) the block's kernels for ``head_dim``."""
    return BlockKernels(
        matmul_example.load(device),
        layernorm_example.load(device),
        attention_example.load(device, head_dim),
    )


def _check(size: tuple[int, int, int, int]) -> None:
    _, _, width, heads = size
    if min(size) <= 0 or width % heads or (width // heads) % 4:
        raise InvalidArgumentError(
            f"transformer: size {size} must be positive with width divisible by heads into "
            "a head size that is a multiple of 4"
        )


def random_weights(size: tuple[int, int, int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """The input ``x`` and the parameters (:data:`WEIGHT_NAMES`), float32, GPT-2-like scales."""
    batch, seq, width, _ = size
    rng = np.random.default_rng(seed)
    w = {"x": rng.normal(0.0, 1.0, (batch * seq, width))}
    shapes = {
        "w_qkv": (width, 3 * width),
        "w_o": (width, width),
        "w_1": (width, 4 * width),
        "w_2": (4 * width, width),
    }
    for name in WEIGHT_NAMES:
        if name in shapes:
            w[name] = rng.normal(0.0, 0.02 * np.sqrt(768 / width), shapes[name])
        elif name.endswith("_g"):
            w[name] = rng.normal(1.0, 0.1, width)
        else:
            cols = {"b_qkv": 3 * width, "b_1": 4 * width}.get(name, width)
            w[name] = rng.normal(0.0, 0.02, cols)
    return {k: v.astype(np.float32) for k, v in w.items()}


def record_block(
    cb: CommandBuffer,
    kernels: BlockKernels,
    buffers: dict[str, Buffer],
    size: tuple[int, int, int, int],
) -> None:
    """Record the block: ``buffers`` holds ``x``, the weights and the scratch ``h`` ([B*T, C]),
    ``qkv`` ([B*T, 3C]), ``a``, ``x1`` ([B*T, C]), ``u`` ([B*T, 4C]) and the result ``y``.

    Raises InvalidArgumentError for a bad size, plus whatever ``cb.dispatch`` raises."""
    _check(size)
    batch, seq, c, heads = size
    rows = batch * seq
    b = buffers
    mm = kernels.matmul
    layernorm_example.record_layernorm(
        cb, kernels.layernorm, b["x"], b["ln1_g"], b["ln1_b"], b["h"], rows, c
    )
    cb.execution_barrier()
    matmul_example.record_matmul(
        cb, mm, b["h"], b["w_qkv"], b["qkv"], rows, c, 3 * c, bias=b["b_qkv"]
    )
    cb.execution_barrier()
    attention_example.record_attention(cb, kernels.attention, b["qkv"], b["a"], batch, seq, heads)
    cb.execution_barrier()
    matmul_example.record_matmul(
        cb, mm, b["a"], b["w_o"], b["x1"], rows, c, c, bias=b["b_o"], residual=b["x"]
    )
    cb.execution_barrier()
    layernorm_example.record_layernorm(
        cb, kernels.layernorm, b["x1"], b["ln2_g"], b["ln2_b"], b["h"], rows, c
    )
    cb.execution_barrier()
    matmul_example.record_matmul(
        cb, mm, b["h"], b["w_1"], b["u"], rows, c, 4 * c, bias=b["b_1"], gelu=True
    )
    cb.execution_barrier()
    matmul_example.record_matmul(
        cb, mm, b["u"], b["w_2"], b["y"], rows, 4 * c, c, bias=b["b_2"], residual=b["x1"]
    )


def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    result: np.ndarray = layernorm_example.reference(x, g, b)
    return result


def reference(weights: dict[str, np.ndarray], size: tuple[int, int, int, int]) -> np.ndarray:
    """The block in float64 numpy."""
    batch, seq, _, heads = size
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    x = w["x"]
    qkv = _layernorm(x, w["ln1_g"], w["ln1_b"]) @ w["w_qkv"] + w["b_qkv"]
    x1 = x + attention_example.reference(qkv, batch, seq, heads) @ w["w_o"] + w["b_o"]
    u = gelu_example.reference(_layernorm(x1, w["ln2_g"], w["ln2_b"]) @ w["w_1"] + w["b_1"])
    y: np.ndarray = x1 + u @ w["w_2"] + w["b_2"]
    return y


def flops(size: tuple[int, int, int, int]) -> float:
    """Multiply-add FLOPs of the block (2 per multiply-add; causal attention counts half)."""
    batch, seq, c, _ = size
    rows = batch * seq
    return 2.0 * rows * 12 * c * c + 2.0 * batch * seq * seq * c


def _allocate(
    device: Device,
    stack: ExitStack,
    weights: dict[str, np.ndarray],
    size: tuple[int, int, int, int],
) -> dict[str, Buffer]:
    batch, seq, c, _ = size
    rows = batch * seq
    bufs = {k: stack.enter_context(device.buffer_from_numpy(v)) for k, v in weights.items()}
    for name, cols in (("h", c), ("qkv", 3 * c), ("a", c), ("x1", c), ("u", 4 * c), ("y", c)):
        bufs[name] = stack.enter_context(device.allocate_buffer(4 * rows * cols))
    return bufs


def forward(
    device: Device,
    weights: dict[str, np.ndarray],
    size: tuple[int, int, int, int],
    timeout: float = WAIT_S,
) -> np.ndarray:
    """The block on the GPU for ``weights`` (as :func:`random_weights` makes them), returning
    ``y`` ([batch * seq, width] float32).

    Raises InvalidArgumentError for a bad size, DeadlineExceededError when the GPU takes
    longer than ``timeout`` seconds."""
    _check(size)
    with ExitStack() as stack:
        bufs = _allocate(device, stack, weights, size)
        with device.record() as cb:
            record_block(cb, load(device, size[2] // size[3]), bufs, size)
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=timeout)
        return bufs["y"].to_numpy(np.float32, (size[0] * size[1], size[2]))


def run(
    device: Device,
    size: tuple[int, int, int, int] = DEFAULT_SIZE,
    repeats: int = 5,
    seed: int = 0,
) -> ExampleResult:
    """Run the block on random weights (:data:`SMALL_SIZE` instead of the default on a CPU
    adapter), check it against numpy, time the replayed command buffer.

    Raises InvalidArgumentError for a bad size, DeadlineExceededError on a GPU hang."""
    if size == DEFAULT_SIZE and device.info.adapter_type == "cpu":
        size = SMALL_SIZE
    _check(size)
    weights = random_weights(size, seed)
    with ExitStack() as stack:
        bufs = _allocate(device, stack, weights, size)
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_block(cb, load(device, size[2] // size[3]), bufs, size)
        timing = time_execute(device, cb, repeats)
        got = bufs["y"].to_numpy(np.float32, (size[0] * size[1], size[2]))
    ok, error = compare(got, reference(weights, size), RTOL, ATOL)
    batch, seq, c, heads = size
    return ExampleResult(
        "transformer",
        ok,
        error,
        timing,
        f"batch {batch}, seq {seq}, width {c}, {heads} heads: 7 dispatches in one command "
        f"buffer, {flops(size) / timing.median_s / 1e12:.3f} TFLOP/s",
    )
