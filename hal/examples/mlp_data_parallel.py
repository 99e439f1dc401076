"""Data-parallel training of the MLP example over MPI: each rank computes the gradients of
its shard of the batch, an ALL_REDUCE AVERAGE inside the command buffer combines them, and
every rank applies the same SGD step, so after k steps every rank's weights equal
single-process training on the whole batch.

One reusable command buffer is one training step: the forward pass of :mod:`hal.examples.mlp`
(``record_mlp``), the backward pass (the example's matmul on transposed operands, plus small
kernels below), one collective over all gradients (packed in one buffer) and the update::

    mpiexec -n 2 python -m hal example mlp_data_parallel --size 64x32x64x10

Needs mpi4py (the ``mpi`` extra); without ``mpiexec`` it runs as a world of one rank.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.enums import CollectiveKind, CollectiveReduction, CommandBufferMode
from hal.errors import InvalidArgumentError
from hal.examples import matmul as matmul_example
from hal.examples import mlp
from hal.examples import softmax as softmax_example
from hal.examples.common import ExampleResult, compare, grid, time_execute

if TYPE_CHECKING:
    from hal.core.refs import BufferRef
    from hal.runtime.buffer import Buffer
    from hal.runtime.channel import Channel
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = [
    "DEFAULT_SIZE",
    "LEARNING_RATE",
    "data",
    "record_step",
    "reference_training",
    "run",
    "train",
]

DEFAULT_SIZE = (64, 32, 64, 10)
"""(global batch, inputs, hidden, outputs) without ``--size``."""

LEARNING_RATE = 0.1
RTOL = 1e-3
ATOL = 1e-4

_ALIGN = 256  # packed sections start at storage-offset-aligned bytes
_GROUP = 64

_KERNELS = """
// Backward-pass helpers for the data-parallel MLP: one invocation per element (64 per
// workgroup, 2-D grid of workgroups), row-major f32 matrices of `rows` x `cols`.
struct Params {
  rows: u32,
  cols: u32,
  scale: f32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;

fn index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
  return gid.y * groups.x * 64u + gid.x;
}

// b = transpose(a): a is rows x cols, b is cols x rows.
@compute @workgroup_size(64, 1, 1)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
  let i = index(gid, groups);
  if (i >= params.rows * params.cols) { return; }
  let r = i / params.cols;
  let c = i % params.cols;
  b[c * params.rows + r] = a[i];
}

// Softmax + cross-entropy gradient: b = (probs - onehot(labels)) * scale.
@compute @workgroup_size(64, 1, 1)
fn xent_grad(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
  let i = index(gid, groups);
  if (i >= params.rows * params.cols) { return; }
  let r = i / params.cols;
  let c = i % params.cols;
  let hot = select(0.0, 1.0, labels[r] == c);
  b[i] = (a[i] - hot) * params.scale;
}

// ReLU backward in place: b = 0 where the activation a is not positive.
@compute @workgroup_size(64, 1, 1)
fn relu_grad(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
  let i = index(gid, groups);
  if (i >= params.rows * params.cols) { return; }
  if (a[i] <= 0.0) { b[i] = 0.0; }
}

// Column sums (bias gradients): b[c] = sum over r of a[r, c].
@compute @workgroup_size(64, 1, 1)
fn col_sum(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>) {
  let c = index(gid, groups);
  if (c >= params.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < params.rows; r++) { s += a[r * params.cols + c]; }
  b[c] = s;
}

// SGD: b -= scale * a over `rows` elements.
@compute @workgroup_size(64, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) groups: vec3<u32>) {
  let i = index(gid, groups);
  if (i >= params.rows) { return; }
  b[i] = b[i] - params.scale * a[i];
}
"""


@dataclass(frozen=True, slots=True)
class Packed:
    """Byte offsets of w1, b1, w2, b2 (or their gradients) in one buffer, and its size."""

    offsets: tuple[int, int, int, int]
    lengths: tuple[int, int, int, int]
    size: int

    @classmethod
    def of(cls, size: tuple[int, int, int, int]) -> Packed:
        """The layout for ``size = (batch, inputs, hidden, outputs)``."""
        _, n_in, n_hidden, n_out = size
        lengths = (4 * n_in * n_hidden, 4 * n_hidden, 4 * n_hidden * n_out, 4 * n_out)
        offsets, at = [], 0
        for length in lengths:
            offsets.append(at)
            at += -(-length // _ALIGN) * _ALIGN
        return cls((offsets[0], offsets[1], offsets[2], offsets[3]), lengths, at)

    def refs(self, buffer: Buffer) -> list[BufferRef]:
        """BufferRefs of the four sections of ``buffer``."""
        from hal.core.refs import BufferRef

        return [BufferRef(buffer, o, n) for o, n in zip(self.offsets, self.lengths, strict=True)]

    def pack(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The four float32 arrays laid out as bytes (padding zero)."""
        out = np.zeros(self.size, np.uint8)
        for offset, array in zip(self.offsets, arrays, strict=True):
            raw = np.ascontiguousarray(array, np.float32).view(np.uint8).reshape(-1)
            out[offset : offset + raw.size] = raw
        return out

    def unpack(self, raw: np.ndarray, size: tuple[int, int, int, int]) -> list[np.ndarray]:
        """The four float32 arrays (w1, b1, w2, b2) of packed bytes ``raw``."""
        _, n_in, n_hidden, n_out = size
        shapes = [(n_in, n_hidden), (n_hidden,), (n_hidden, n_out), (n_out,)]
        return [
            raw[o : o + n].view(np.float32).reshape(s)
            for o, n, s in zip(self.offsets, self.lengths, shapes, strict=True)
        ]


def data(size: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(x, labels, w1, b1, w2, b2)``: the whole batch, labels from a random teacher, and
    the initial weights (as the MLP example makes them)."""
    x, w1, b1, w2, b2 = mlp.random_weights(size, seed)
    rng = np.random.default_rng(seed + 1)
    teacher = rng.normal(size=(size[1], size[3]))
    labels = np.argmax(x.astype(np.float64) @ teacher, axis=1).astype(np.uint32)
    return x, labels, w1, b1, w2, b2


def reference_training(
    x: np.ndarray, labels: np.ndarray, weights: list[np.ndarray], steps: int, lr: float
) -> list[np.ndarray]:
    """``steps`` of full-batch SGD on mean cross-entropy in float64 numpy: the weights."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in weights)
    xs = x.astype(np.float64)
    onehot = np.eye(w2.shape[1])[labels]
    for _ in range(steps):
        hidden = np.maximum(xs @ w1 + b1, 0.0)
        probs = softmax_example.reference(hidden @ w2 + b2)
        dlogits = (probs - onehot) / len(xs)
        dhidden = (dlogits @ w2.T) * (hidden > 0)
        grads = (xs.T @ dhidden, dhidden.sum(0), hidden.T @ dlogits, dlogits.sum(0))
        w1, b1, w2, b2 = (w - lr * g for w, g in zip((w1, b1, w2, b2), grads, strict=True))
    return [w1, b1, w2, b2]


def _dispatch(
    cb: CommandBuffer,
    kernels: Executable,
    entry: str,
    elements: int,
    constants: list[Any],
    bindings: list[Any],
) -> None:
    groups = grid(-(-elements // _GROUP), kernels.device.caps.max_workgroups)
    cb.dispatch(kernels, entry, groups, constants=constants, bindings=bindings)


def record_step(
    cb: CommandBuffer,
    channel: Channel,
    buffers: dict[str, Any],
    size: tuple[int, int, int, int],
    shard: int,
    lr: float = LEARNING_RATE,
) -> None:
    """Record one training step on ``shard`` rows: forward, backward, ALL_REDUCE AVERAGE of
    the packed gradients over ``channel``, SGD. ``buffers`` holds ``x``, ``labels``,
    ``params``, ``grads`` and scratch (see :func:`train`)."""
    _, n_in, n_hidden, n_out = size
    local = (shard, n_in, n_hidden, n_out)
    b = buffers
    device = cb.device
    kernels = device.create_executable(_KERNELS, label="mlp_backward")
    w1, b1, w2, b2 = b["layout"].refs(b["params"])
    g_w1, g_b1, g_w2, g_b2 = b["layout"].refs(b["grads"])
    mm = mlp.load(device)
    mlp.record_mlp(cb, mm, b["x"], w1, b1, w2, b2, b["hidden"], b["logits"], b["probs"], local)
    cb.execution_barrier()
    _dispatch(
        cb,
        kernels,
        "xent_grad",
        shard * n_out,
        [shard, n_out, 1.0 / shard],
        [b["probs"], b["dlogits"], b["labels"]],
    )
    _dispatch(
        cb,
        kernels,
        "transpose",
        shard * n_hidden,
        [shard, n_hidden, 0.0],
        [b["hidden"], b["hidden_t"]],
    )
    _dispatch(cb, kernels, "transpose", n_hidden * n_out, [n_hidden, n_out, 0.0], [w2, b["w2_t"]])
    _dispatch(cb, kernels, "transpose", shard * n_in, [shard, n_in, 0.0], [b["x"], b["x_t"]])
    cb.execution_barrier()
    record = matmul_example.record_matmul
    record(cb, mm.matmul, b["hidden_t"], b["dlogits"], g_w2, n_hidden, shard, n_out)
    _dispatch(cb, kernels, "col_sum", n_out, [shard, n_out, 0.0], [b["dlogits"], g_b2])
    record(cb, mm.matmul, b["dlogits"], b["w2_t"], b["dhidden"], shard, n_out, n_hidden)
    cb.execution_barrier()
    _dispatch(
        cb,
        kernels,
        "relu_grad",
        shard * n_hidden,
        [shard, n_hidden, 0.0],
        [b["hidden"], b["dhidden"]],
    )
    cb.execution_barrier()
    record(cb, mm.matmul, b["x_t"], b["dhidden"], g_w1, n_in, shard, n_hidden)
    _dispatch(cb, kernels, "col_sum", n_hidden, [shard, n_hidden, 0.0], [b["dhidden"], g_b1])
    cb.execution_barrier()
    words = b["layout"].size // 4
    cb.collective(
        channel,
        CollectiveKind.ALL_REDUCE,
        b["grads"],
        b["grads"],
        words,
        element_type=np.float32,
        reduction=CollectiveReduction.AVERAGE,
    )
    cb.execution_barrier()
    _dispatch(cb, kernels, "sgd", words, [words, 0, lr], [b["grads"], b["params"]])


def _buffers(
    device: Device,
    stack: ExitStack,
    arrays: tuple[np.ndarray, ...],
    size: tuple[int, ...],
    rank: int,
    count: int,
) -> dict[str, Any]:
    batch, n_in, n_hidden, n_out = size
    shard = batch // count
    x, labels, w1, b1, w2, b2 = arrays
    rows = slice(rank * shard, (rank + 1) * shard)
    layout = Packed.of((batch, n_in, n_hidden, n_out))
    made: dict[str, Any] = {"layout": layout}
    made["x"] = device.buffer_from_numpy(x[rows])
    made["labels"] = device.buffer_from_numpy(labels[rows])
    made["params"] = device.buffer_from_numpy(layout.pack([w1, b1, w2, b2]))
    made["grads"] = device.allocate_buffer(layout.size)
    for name, floats in (
        ("hidden", shard * n_hidden),
        ("logits", shard * n_out),
        ("probs", shard * n_out),
        ("dlogits", shard * n_out),
        ("hidden_t", shard * n_hidden),
        ("w2_t", n_hidden * n_out),
        ("x_t", shard * n_in),
        ("dhidden", shard * n_hidden),
    ):
        made[name] = device.allocate_buffer(4 * floats)
    for value in made.values():
        if hasattr(value, "release"):
            stack.enter_context(value)
    return made


def train(
    device: Device,
    channel: Channel,
    size: tuple[int, int, int, int] = DEFAULT_SIZE,
    steps: int = 5,
    seed: int = 0,
) -> tuple[list[np.ndarray], Any]:
    """Train ``steps`` steps on this rank's shard of :func:`data`; the final weights (every
    rank's are equal) and the per-step timing. Raises InvalidArgumentError when the batch
    does not split evenly over the channel's ranks."""
    batch = size[0]
    if steps < 2:
        raise InvalidArgumentError(f"mlp_data_parallel: steps {steps} must be at least 2")
    if batch % channel.count or batch < channel.count:
        raise InvalidArgumentError(
            f"mlp_data_parallel: batch {batch} does not split evenly over {channel.count} ranks"
        )
    arrays = data(size, seed)
    with ExitStack() as stack:
        b = _buffers(device, stack, arrays, size, channel.rank, channel.count)
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            record_step(cb, channel, b, size, batch // channel.count)
        # time_execute runs it repeats + 1 times: that many training steps.
        timing = time_execute(device, cb, steps - 1)
        weights = b["layout"].unpack(b["params"].to_numpy(), size)
    return [w.copy() for w in weights], timing


def run(
    device: Device,
    size: tuple[int, int, int, int] = DEFAULT_SIZE,
    repeats: int = 5,
    seed: int = 0,
) -> ExampleResult:
    """Train ``repeats + 1`` steps over the world channel and compare the weights with
    full-batch numpy training. Raises UnavailableError without mpi4py, InvalidArgumentError
    for a batch that does not split over the ranks."""
    steps = repeats + 1
    with device.create_channel() as channel:
        weights, timing = train(device, channel, size, steps, seed)
        rank, count = channel.rank, channel.count
    x, labels, *initial = data(size, seed)
    want = reference_training(x, labels, initial, steps, LEARNING_RATE)
    results = [compare(g, w, RTOL, ATOL) for g, w in zip(weights, want, strict=True)]
    batch, n_in, n_hidden, n_out = size
    return ExampleResult(
        "mlp_data_parallel",
        all(ok for ok, _ in results),
        max(error for _, error in results),
        timing,
        f"rank {rank} of {count}, global batch {batch} ({batch // count} per rank), "
        f"{n_in}->{n_hidden}->{n_out}, {steps} SGD steps with an ALL_REDUCE AVERAGE of the "
        "gradients in the command buffer; weights vs single-process full-batch training",
    )
