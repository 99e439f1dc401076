"""Real workloads (issue 16): hal's kernels and the transformer block against torch on the same
GPU (f32 with TF32 off, and f16) or numpy on a CPU adapter, with the roofline beside them.

Rows: matmul f32 / f16 (4096^3; ``--sweep`` first times every tile shape of
:data:`SWEEP` and uses the fastest), softmax and layer norm (8192 x 8192 f32), GELU (2^26 f32),
prefix sum (2^28 f32 and i32), hal's builtin transfer kernels (1 GiB copy, unaligned copy,
pattern fill), the GPT-2-small transformer block. Every hal figure is the wall time of
``--replays`` submissions of one reusable command buffer (one wait at the end) after a warm-up,
divided by the replays; torch's the CUDA-event time of as many calls. ``--repeats N`` times
every figure N times, hal and torch round robin, and keeps the median and every sample.
Each result is checked against numpy (a sample of rows where the full check would be slow).
JSON + Markdown (+ a PNG when matplotlib is importable).

    python3 benchmarks/workloads.py --json out.json --md out.md --plot out.png [--sweep]
    python3 benchmarks/workloads.py --repeats 5      # medians and spreads of 5 rounds
    python3 benchmarks/workloads.py --quick          # CPU-sized shapes (lavapipe)
    python3 benchmarks/workloads.py --implementation dawn --sweep --only matmul \
        --f16-kernels subgroup-matrix                # f16 on tensor cores (Dawn)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

import hal
from hal.enums import CommandBufferMode
from hal.examples import gelu, layernorm, matmul, prefix_sum, softmax, transformer
from hal.examples.matmul_subgroup_matrix import SubgroupMatrixConfig
from hal.examples.matmul_wgsl import MatmulConfig

PEAK_TFLOPS = {"h200": 67.0, "h100": 67.0}
PEAK_GBPS = {"h200": 4800.0, "h100": 3350.0}

SWEEP = [
    MatmulConfig(128, 128, 8, 8, 8),
    MatmulConfig(128, 128, 16, 8, 8),
    MatmulConfig(128, 64, 16, 8, 4),
    MatmulConfig(64, 128, 16, 4, 8),
    MatmulConfig(64, 64, 16, 4, 4),
    MatmulConfig(128, 256, 8, 8, 16),
    MatmulConfig(64, 64, 8, 8, 8),
]
"""Tile shapes ``--sweep`` times for f32 (and f16)."""

SWEEP_F16 = [
    *SWEEP,
    MatmulConfig(128, 256, 16, 8, 16),
    MatmulConfig(256, 128, 8, 16, 8),
    MatmulConfig(256, 128, 16, 16, 8),
    MatmulConfig(256, 256, 8, 16, 16),
    MatmulConfig(128, 128, 32, 8, 8),
    MatmulConfig(128, 256, 16, 16, 16),
    MatmulConfig(128, 256, 16, 8, 16, pairs=True),
    MatmulConfig(128, 128, 16, 8, 8, pairs=True),
    MatmulConfig(256, 128, 16, 16, 8, pairs=True),
    MatmulConfig(128, 128, 32, 8, 8, pairs=True),
    MatmulConfig(64, 256, 16, 8, 16, pairs=True),
    MatmulConfig(64, 128, 32, 4, 8, pairs=True),
    MatmulConfig(128, 256, 32, 8, 16, pairs=True),
]
"""f16 halves the staging and accumulator footprint: larger tiles fit, so f16 sweeps more;
``pairs`` shapes use the packed k-pair kernel (f16 accumulation)."""

SWEEP_SUBGROUP_MATRIX = [
    SubgroupMatrixConfig(bm=bm, bn=bn, bk=bk, accumulate=acc, pad=pad)
    for acc in ("f16", "f32")
    for bm, bn, bk, pad in (
        (64, 64, 32, 8),
        (32, 32, 32, 8),
        (64, 32, 32, 8),
        (32, 64, 32, 8),
        (64, 64, 16, 8),
        (64, 64, 64, 8),
        (128, 64, 32, 8),
        (64, 128, 32, 8),
        (64, 64, 32, 0),
    )
]
"""Subgroup-matrix (tensor core) f16 shapes ``--sweep`` times where the device has
``chromium-experimental-subgroup-matrix`` (Dawn), with f16 and f32 accumulation."""

TRANSFER_PATTERN = 0x01020304
TRANSFERS_PER_SUBMIT = 8
"""Transfers one timed submission holds: a 1 GiB fill takes about 0.23 ms on the H200, the
order of one submission's fixed cost, which one transfer per submission would measure."""

Row = dict[str, Any]


def replay_seconds(device: hal.Device, cb: Any, replays: int) -> float:
    """Seconds per run of ``cb``: 2 warm-up runs, then ``replays`` submissions, one wait."""
    sem = device.create_semaphore()
    for v in (1, 2):
        device.queue_execute(cb, signal=[(sem, v)])
    sem.wait(2, timeout=300)
    start = time.perf_counter()
    for v in range(3, 3 + replays):
        device.queue_execute(cb, signal=[(sem, v)])
    sem.wait(2 + replays, timeout=600)
    return (time.perf_counter() - start) / replays


def warm_up(device: hal.Device, seconds: float = 1.0) -> None:
    """Keep the GPU busy with 256 MiB fills for ``seconds`` before anything is timed: an
    idle H200 runs at 345 MHz and takes a while to clock up, so otherwise the first row of a
    process (the aligned copy of ``--only transfers``) read at under half its speed."""
    with device.allocate_buffer(256 << 20) as buffer:
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            for i in range(8):
                if i:
                    cb.execution_barrier()
                cb.fill_buffer(buffer, 0, None, i, 4)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            device.queue_execute(cb)
            device.wait_idle(60)


def torch_seconds(fn: Callable[[], Any], replays: int) -> float | None:
    """CUDA-event seconds per call of ``fn`` (None without torch + CUDA)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        fn()
    end.record()
    torch.cuda.synchronize()
    return float(start.elapsed_time(end)) / 1e3 / replays


def numpy_seconds(fn: Callable[[], Any], replays: int) -> float:
    """Wall seconds per call of ``fn`` on the CPU (numpy)."""
    fn()
    start = time.perf_counter()
    for _ in range(replays):
        fn()
    return (time.perf_counter() - start) / replays


def interleaved(
    timers: dict[str, Callable[[], float | None] | None], repeats: int
) -> dict[str, list[float]]:
    """Seconds of every timer, ``repeats`` times, round robin (hal then torch, then hal
    again...), so a GPU clock that drifts during the run shifts all of them alike; a timer
    that is None or returns None gets no samples."""
    samples: dict[str, list[float]] = {who: [] for who, fn in timers.items() if fn is not None}
    for _ in range(max(1, repeats)):
        for who in samples:
            secs = timers[who]()  # type: ignore[misc]
            if secs is not None:
                samples[who].append(secs)
    return {who: got for who, got in samples.items() if got}


def put(row: Row, samples: dict[str, list[float]]) -> Row:
    """Record each timer's median as ``<who>_s`` and, for more than one repetition, every
    sample as ``<who>_s_reps`` (the spread); returns ``row``."""
    for who, got in samples.items():
        row[f"{who}_s"] = float(np.median(got))
        if len(got) > 1:
            row[f"{who}_s_reps"] = got
    return row


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _hal_run(
    device: hal.Device,
    arrays: list[np.ndarray],
    out_sizes: list[int],
    record: Callable[..., None],
    replays: int,
) -> tuple[Callable[[], float], list[hal.Buffer], ExitStack]:
    """Upload ``arrays``, allocate outputs, record one reusable command buffer: (a timer of
    ``replays`` replays of it, the outputs, the stack that owns the buffers)."""
    stack = ExitStack()
    ins = [stack.enter_context(device.buffer_from_numpy(a)) for a in arrays]
    outs = [stack.enter_context(device.allocate_buffer(max(4, -(-n // 4) * 4))) for n in out_sizes]
    with device.record(mode=CommandBufferMode.DEFAULT) as cb:
        record(cb, *ins, *outs)
    return lambda: replay_seconds(device, cb, replays), outs, stack


def _label(c: MatmulConfig | SubgroupMatrixConfig) -> str:
    if isinstance(c, SubgroupMatrixConfig):
        return (
            f"subgroup-matrix tile {c.bm}x{c.bn}x{c.bk} matrix {c.sm}x{c.sn}x{c.sk} "
            f"pad {c.pad} acc {c.accumulate}"
        )
    return f"tile {c.bm}x{c.bn}x{c.bk} reg {c.tm}x{c.tn}" + (" pairs" if c.pairs else "")


def bench_matmul(
    device: hal.Device,
    n: int,
    dtype: str,
    replays: int,
    sweep: bool,
    f16_kernels: str = "all",
    repeats: int = 1,
) -> list[Row]:
    """f32 or f16 (f16 accumulation) matmul of n^3 with :func:`matmul.load`'s kernel; with
    ``sweep`` one row per tile shape (for f16 on a device with subgroup matrices also every
    :data:`SWEEP_SUBGROUP_MATRIX` shape; ``f16_kernels="subgroup-matrix"``: only those)."""
    np_t = np.float16 if dtype == "f16" else np.float32
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (n, n)).astype(np_t)
    b = rng.uniform(-1, 1, (n, n)).astype(np_t)
    configs: list[MatmulConfig | SubgroupMatrixConfig | None] = [None]
    if sweep:
        configs = list(SWEEP_F16 if dtype == "f16" else SWEEP)
        if dtype == "f16" and matmul.SUBGROUP_MATRIX_FEATURE in device.features:
            configs = [*(configs if f16_kernels == "all" else []), *SWEEP_SUBGROUP_MATRIX]
    rows = []
    best: tuple[float, Any] | None = None
    for cfg in configs:
        acc = cfg.accumulate if isinstance(cfg, SubgroupMatrixConfig) else None
        try:
            kernel = matmul.load(device, dtype, acc, config=cfg)
        except hal.HalError as error:
            rows.append({"name": f"matmul {dtype} {cfg}", "error": str(error)[:200]})
            continue
        timer, outs, stack = _hal_run(
            device,
            [a, b],
            [n * n * a.itemsize],
            lambda cb, x, y, z, k=kernel: matmul.record_matmul(cb, k, x, y, z, n, n, n),
            replays,
        )
        with stack:
            samples = interleaved({"hal": timer}, repeats)
            got = outs[0].to_numpy(np_t, (n, n))
        secs = float(np.median(samples["hal"]))
        sample = slice(0, n, max(1, n // 64))
        want = a[sample].astype(np.float64) @ b.astype(np.float64)
        err = float(np.max(np.abs(got[sample].astype(np.float64) - want)))
        tflops = 2.0 * n**3 / secs / 1e12
        row: Row = {
            "name": f"matmul {dtype} {n}^3 {_label(kernel.config)}",
            "kind": f"matmul_{dtype}",
            "hal_tflops": tflops,
            "max_abs_error": err,
        }
        rows.append(put(row, samples))
        if best is None or secs < best[0]:
            best = (secs, rows[-1])
    if best is not None:
        best[1]["best"] = True
    return rows


def bench_torch_matmul(torch: Any, n: int, replays: int, repeats: int = 1) -> list[Row]:
    """torch's f32 (TF32 off) and f16 matmul of n^3, median of ``repeats``."""
    rows = []
    for dtype, tt in (("f32", torch.float32), ("f16", torch.float16)):
        a = torch.rand((n, n), device="cuda", dtype=tt)
        b = torch.rand((n, n), device="cuda", dtype=tt)
        product = _torch_timer(torch, lambda a=a, b=b: a @ b, replays)  # type: ignore[misc]
        samples = interleaved({"torch": product}, repeats)
        row = put({"name": f"torch matmul {dtype} {n}^3", "kind": f"matmul_{dtype}"}, samples)
        secs = row.get("torch_s")
        row["torch_tflops"] = 2.0 * n**3 / secs / 1e12 if secs else None
        rows.append(row)
    return rows


def _torch_timer(torch: Any, fn: Callable[[], Any], replays: int) -> Callable[[], float | None]:
    """A timer of ``replays`` calls of ``fn`` on torch's GPU (CUDA events)."""
    return lambda: torch_seconds(fn, replays)


def bench_rows(
    device: hal.Device, torch: Any, shape: tuple[int, int], replays: int, repeats: int = 1
) -> list[Row]:
    """Softmax and layer norm of ``shape`` f32; bandwidth counts one read and one write.
    With torch, each hal figure is timed round robin with torch's (:func:`interleaved`)."""
    r, c = shape
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, shape).astype(np.float32)
    g = rng.normal(1, 0.1, c).astype(np.float32)
    bt = rng.normal(0, 0.1, c).astype(np.float32)
    tx = tg = tb = None
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        tg, tb = torch.from_numpy(g).cuda(), torch.from_numpy(bt).cuda()
    sm = softmax.load(device)
    ln = layernorm.load(device)
    cases: list[tuple[str, list[np.ndarray], Callable[..., None], Any, Any, Callable[[], Any]]] = [
        (
            "softmax",
            [x],
            lambda cb, i, o: softmax.record_softmax(cb, sm, i, o, r, c),
            lambda: softmax.reference(x[:64]),
            lambda: torch.softmax(tx, dim=1),
            lambda: softmax.reference(x),
        ),
        (
            "layernorm",
            [x, g, bt],
            lambda cb, i, gg, bb, o: layernorm.record_layernorm(cb, ln, i, gg, bb, o, r, c),
            lambda: layernorm.reference(x[:64], g, bt),
            lambda: torch.nn.functional.layer_norm(tx, (c,), tg, tb, 1e-5),
            lambda: layernorm.reference(x, g, bt),
        ),
    ]
    rows: list[Row] = []
    for kind, arrays, record, want, torch_fn, numpy_fn in cases:
        timer, outs, stack = _hal_run(device, arrays, [x.nbytes], record, replays)
        with stack:
            theirs = _torch_timer(torch, torch_fn, replays) if torch is not None else None
            samples = interleaved({"hal": timer, "torch": theirs}, repeats)
            got = outs[0].to_numpy(np.float32, shape)
        row: Row = {"name": f"{kind} {r}x{c} f32", "kind": kind, "bytes": 2 * x.nbytes}
        row["max_abs_error"] = float(np.max(np.abs(got[:64] - want())))
        if torch is None:
            row["numpy_s"] = numpy_seconds(numpy_fn, 1)
        rows.append(put(row, samples))
    return rows


def bench_gelu(device: hal.Device, torch: Any, n: int, replays: int, repeats: int = 1) -> Row:
    """GELU (tanh form) of ``n`` f32; bandwidth counts one read and one write."""
    x = np.random.default_rng(2).normal(0, 3, n).astype(np.float32)
    k = gelu.load(device)
    timer, outs, stack = _hal_run(
        device, [x], [x.nbytes], lambda cb, i, o: gelu.record_gelu(cb, k, i, o, n), replays
    )
    theirs = None
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        theirs = _torch_timer(
            torch, lambda: torch.nn.functional.gelu(tx, approximate="tanh"), replays
        )
    with stack:
        samples = interleaved({"hal": timer, "torch": theirs}, repeats)
        got = outs[0].to_numpy(np.float32, (n,))
    row: Row = {
        "name": f"gelu {n} f32",
        "kind": "gelu",
        "bytes": 2 * x.nbytes,
        "max_abs_error": float(np.max(np.abs(got[:65536] - gelu.reference(x[:65536])))),
    }
    if torch is None:
        row["numpy_s"] = numpy_seconds(lambda: gelu.reference(x), 1)
    return put(row, samples)


def bench_prefix_sum(
    device: hal.Device, torch: Any, n: int, replays: int, dtype: str = "f32", repeats: int = 1
) -> Row:
    """Inclusive scan of ``n`` values of ``dtype``; bandwidth counts one read and one write
    (as for torch.cumsum), whatever the kernels move (about 3n)."""
    rng = np.random.default_rng(3)
    if dtype == "f32":
        x = rng.random(n, dtype=np.float32)
    else:
        x = rng.integers(0, 1 << 20, n, dtype=np.int64).astype(prefix_sum.DTYPES[dtype])
    theirs = None
    if torch is not None:
        tx = torch.from_numpy(x.view(np.int32) if dtype == "u32" else x).cuda()
        theirs = _torch_timer(torch, lambda: torch.cumsum(tx, 0, dtype=tx.dtype), replays)
    with ExitStack() as stack:
        data = stack.enter_context(device.buffer_from_numpy(x))
        scan = stack.enter_context(prefix_sum.PrefixSum(device, n, dtype))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            scan.record(cb, data)  # rescans its own output: the timing needs no input copy
        samples = interleaved({"hal": lambda: replay_seconds(device, cb, replays),
                               "torch": theirs}, repeats)  # fmt: skip
        levels = scan.levels
    row: Row = {
        "name": f"prefix sum {n} {dtype} (levels {levels})",
        "kind": "prefix_sum" if dtype == "f32" else f"prefix_sum_{dtype}",
        "bytes": 2 * x.nbytes,
    }
    # the full length, once, from the pristine input (integers must match exactly)
    got = prefix_sum.prefix_sum(device, x)
    row["max_abs_error"] = float(
        np.max(np.abs(got.astype(np.float64) - prefix_sum.reference(x).astype(np.float64)))
    )
    if torch is None:
        row["numpy_s"] = numpy_seconds(lambda: prefix_sum.reference(x), 1)
    return put(row, samples)


def _transfer_cases(size: int) -> list[tuple[str, Callable[..., None], int, int, int]]:
    """(name, record(cb, source, target), source offset, target offset, length; -1 offsets
    for the fill) of :func:`bench_transfers`."""
    return [
        ("copy aligned", lambda cb, s, d: cb.copy_buffer(s, 0, d, 0, size), 0, 0, size),
        (
            "copy unaligned 1 -> 3",
            lambda cb, s, d: cb.copy_buffer(s, 1, d, 3, size - 4),
            1,
            3,
            size - 4,
        ),
        (
            "fill 0x01020304",
            lambda cb, s, d: cb.fill_buffer(d, 0, size, TRANSFER_PATTERN, 4),
            -1,
            -1,
            size,
        ),
    ]


def _transfer_torch(torch: Any, words: np.ndarray, size: int, replays: int) -> list[Any]:
    """Timers of torch's counterparts of :func:`_transfer_cases` (None without torch)."""
    if torch is None:
        return [None, None, None]
    source = words.view(np.uint8)
    a = torch.from_numpy(words[: size // 4].view(np.int32)).cuda()
    b = torch.empty_like(a)
    ua = torch.from_numpy(source[: size - 3]).cuda()
    ub = torch.empty(size, dtype=torch.uint8, device="cuda")
    return [
        _torch_timer(torch, lambda: b.copy_(a), replays),
        _torch_timer(torch, lambda: ub[3 : size - 1].copy_(ua[1:]), replays),
        _torch_timer(torch, lambda: b.fill_(TRANSFER_PATTERN), replays),
    ]


def _clear(device: hal.Device, buffer: hal.Buffer) -> None:
    """Fill ``buffer`` with 0xA5 bytes and wait (so a copy that writes nothing fails the
    byte check instead of passing on an earlier case's result)."""
    with device.record(mode=CommandBufferMode.DEFAULT) as cb:
        cb.fill_buffer(buffer, 0, None, 0xA5, 1)
    device.queue_execute(cb)
    device.wait_idle(60)


def _transfer_exact(
    target: hal.Buffer, source: np.ndarray, size: int, s0: int, d0: int, length: int
) -> bool:
    """Whether ``target`` holds what :func:`_transfer_cases`' case (s0, d0, length) wrote."""
    got = target.to_numpy(np.uint8, (source.nbytes,))
    if s0 < 0:
        want = np.frombuffer(TRANSFER_PATTERN.to_bytes(4, "little") * (size // 4), np.uint8)
        return bool(np.array_equal(got[:size], want))
    return bool(np.array_equal(got[d0 : d0 + length], source[s0 : s0 + length]))


def bench_transfers(
    device: hal.Device, torch: Any, size: int, replays: int, repeats: int = 1
) -> list[Row]:
    """hal's builtin transfer kernels at ``size`` bytes through the public API: an aligned
    copy, a copy from byte 1 to byte 3 (the funnel-shift kernel), a 4-byte pattern fill;
    :data:`TRANSFERS_PER_SUBMIT` of them per submission with a barrier between each two (as
    benchmarks/run_all.py's bandwidth table), seconds per transfer. GB/s = bytes copied or
    filled per second (a copy moves twice that). ``repeats`` rounds, each timing every case
    and then its torch counterpart; each result is checked byte for byte after its first
    timing, on a target cleared before it."""
    words = np.arange(size // 4 + 64, dtype=np.uint32) * np.uint32(2654435761)
    source = words.view(np.uint8)
    cases = _transfer_cases(size)
    theirs = _transfer_torch(torch, words, size, replays)
    samples: list[dict[str, list[float]]] = [{} for _ in cases]
    exact: list[bool] = []
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(source))
        dst = stack.enter_context(device.allocate_buffer(source.nbytes))
        cbs = []
        for _name, record, *_ in cases:
            with device.record(mode=CommandBufferMode.DEFAULT) as cb:
                for i in range(TRANSFERS_PER_SUBMIT):
                    if i:
                        cb.execution_barrier()
                    record(cb, src, dst)
            cbs.append(cb)
        for rep in range(max(1, repeats)):
            for k, (_name, _record, s0, d0, length) in enumerate(cases):
                if rep == 0:
                    _clear(device, dst)

                def hal_timer(cb: Any = cbs[k]) -> float:
                    return replay_seconds(device, cb, replays) / TRANSFERS_PER_SUBMIT

                for who, secs in interleaved({"hal": hal_timer, "torch": theirs[k]}, 1).items():
                    samples[k].setdefault(who, []).extend(secs)
                if rep == 0:
                    exact.append(_transfer_exact(dst, source, size, s0, d0, length))
    rows: list[Row] = []
    for (name, _record, s0, _d0, _length), got, ok in zip(cases, samples, exact, strict=True):
        kind = "transfer_" + name.split()[0] + ("_unaligned" if s0 == 1 else "")
        row: Row = {"name": f"builtin {name} {size >> 20} MiB", "kind": kind, "bytes": size}
        row["bytes_exact"] = ok
        rows.append(put(row, got))
    return rows


def bench_transformer(
    device: hal.Device,
    torch: Any,
    size: tuple[int, int, int, int],
    replays: int,
    repeats: int = 1,
) -> Row:
    """The transformer block at ``size`` (batch, seq, d, heads) against torch eager f32
    (or numpy on a CPU adapter)."""
    weights = transformer.random_weights(size)
    ref = None
    if torch is not None:
        t_w = {k: torch.from_numpy(v).cuda() for k, v in weights.items()}
        ref = _torch_block(torch, t_w, size)
    with ExitStack() as stack:
        bufs = transformer._allocate(device, stack, weights, size)
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            transformer.record_block(cb, transformer.load(device, size[2] // size[3]), bufs, size)
        theirs = _torch_timer(torch, ref, replays) if ref is not None else None
        samples = interleaved({"hal": lambda: replay_seconds(device, cb, replays),
                               "torch": theirs}, repeats)  # fmt: skip
        got = bufs["y"].to_numpy(np.float32, (size[0] * size[1], size[2]))
    row: Row = {"name": f"transformer block {size}", "kind": "transformer"}
    put(row, samples)
    row["hal_tflops"] = transformer.flops(size) / row["hal_s"] / 1e12
    if ref is not None:
        row["max_abs_error"] = float((torch.from_numpy(got).cuda() - ref()).abs().max())
    else:
        row["max_abs_error"] = float(np.max(np.abs(got - transformer.reference(weights, size))))
        row["numpy_s"] = numpy_seconds(lambda: transformer.reference(weights, size), 1)
    return row


def _torch_block(
    torch: Any, w: dict[str, Any], size: tuple[int, int, int, int]
) -> Callable[[], Any]:
    f = torch.nn.functional
    batch, seq, c, heads = size

    def block() -> Any:
        x = w["x"]
        h = f.layer_norm(x, (c,), w["ln1_g"], w["ln1_b"])
        qkv = (
            (h @ w["w_qkv"] + w["b_qkv"])
            .view(batch, seq, 3, heads, c // heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = f.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        x1 = x + a.permute(0, 2, 1, 3).reshape(batch * seq, c) @ w["w_o"] + w["b_o"]
        u = f.gelu(
            f.layer_norm(x1, (c,), w["ln2_g"], w["ln2_b"]) @ w["w_1"] + w["b_1"], approximate="tanh"
        )
        return x1 + u @ w["w_2"] + w["b_2"]

    return block


def _finish(rows: list[Row], gpu: str | None) -> None:
    for row in rows:
        for who in ("hal", "torch", "numpy"):
            secs = row.get(f"{who}_s")
            if secs and "bytes" in row:
                row[f"{who}_gbps"] = row["bytes"] / secs / 1e9
        if row.get("hal_s") and row.get("torch_s"):
            row["hal_vs_torch"] = row["torch_s"] / row["hal_s"]
        if gpu:
            if "bytes" in row:
                row["roofline_gbps"] = PEAK_GBPS[gpu]
            elif row.get("kind", "").startswith("matmul") or row.get("kind") == "transformer":
                row["roofline_tflops"] = PEAK_TFLOPS[gpu]


def spread(row: Row, who: str) -> str:
    """ " (lo-hi, n N)": the range of ``who``'s repetitions in the row's unit (GB/s,
    TFLOP/s, else ms), or "" for a single one."""
    reps = row.get(f"{who}_s_reps")
    if not reps:
        return ""
    secs = row[f"{who}_s"]
    if "bytes" in row:
        lo, hi, unit = row["bytes"] / max(reps) / 1e9, row["bytes"] / min(reps) / 1e9, ""
    elif row.get(f"{who}_tflops"):
        scale = row[f"{who}_tflops"] * secs
        lo, hi, unit = scale / max(reps), scale / min(reps), ""
    else:
        lo, hi, unit = min(reps) * 1e3, max(reps) * 1e3, " ms"
    digits = 0 if hi >= 100 else 2
    return f" ({lo:.{digits}f}-{hi:.{digits}f}{unit}, n {len(reps)})"


def markdown(rows: list[Row], device: str) -> str:
    """The rows as a Markdown table."""
    lines = [
        f"Device: {device}",
        "",
        "| workload | hal | torch | numpy | hal / torch speed | roofline | max abs error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fig(row: Row, who: str) -> str:
        secs = row.get(f"{who}_s")
        if not secs:
            return "-"
        rate = row.get(f"{who}_gbps")
        if rate is None and f"{who}_tflops" in row and row[f"{who}_tflops"]:
            return f"{secs * 1e3:.3f} ms, {row[f'{who}_tflops']:.2f} TFLOP/s" + spread(row, who)
        return f"{secs * 1e3:.3f} ms" + (f", {rate:.0f} GB/s" if rate else "") + spread(row, who)

    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | error: {row['error']} | | | | | |")
            continue
        roof = row.get("roofline_gbps") or row.get("roofline_tflops")
        unit = " GB/s" if "roofline_gbps" in row else " TFLOP/s"
        ratio = f"{row['hal_vs_torch']:.2f}" if "hal_vs_torch" in row else "-"
        err = f"{row['max_abs_error']:.3g}" if "max_abs_error" in row else "-"
        if "bytes_exact" in row:
            err = "bytes exact" if row["bytes_exact"] else "**bytes differ**"
        mark = " (best)" if row.get("best") else ""
        lines.append(
            f"| {row['name']}{mark} | {fig(row, 'hal')} | {fig(row, 'torch')} | "
            f"{fig(row, 'numpy')} | "
            f"{ratio} | {f'{roof:g}{unit}' if roof else '-'} | {err} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: str) -> None:
    """A bar chart of hal / torch speed (skipped with a note without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot")
        return
    named = [(r["name"], r["hal_vs_torch"]) for r in rows if "hal_vs_torch" in r]
    if not named:
        print("no torch figures: no plot")
        return
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(named) + 1.5))
    ax.barh([n for n, _ in named], [v for _, v in named])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("hal speed / torch speed (same GPU)")
    fig.tight_layout()
    fig.savefig(path)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--plot")
    parser.add_argument("--quick", action="store_true", help="CPU-sized shapes")
    parser.add_argument("--sweep", action="store_true", help="time every tile shape of SWEEP")
    parser.add_argument(
        "--only", default="", help="comma-separated: matmul,rows,gelu,prefix,transfers,block"
    )
    parser.add_argument("--replays", type=int, default=0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed repetitions of every figure (hal and torch round robin); rows hold the "
        "median and every sample",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=None,
        help="seconds of GPU work before each group of rows (default 1 before the first, "
        "0.3 before the others; 0: none; never on a CPU adapter)",
    )
    parser.add_argument(
        "--implementation", default=None, help="WebGPU implementation (wgpu-native, dawn)"
    )
    parser.add_argument(
        "--f16-kernels",
        choices=("all", "subgroup-matrix"),
        default="all",
        help="which f16 kernels --sweep times where the device has subgroup matrices",
    )
    return parser.parse_args()


def _steps(
    device: hal.Device, torch: Any, args: argparse.Namespace, quick: bool, replays: int
) -> list[tuple[str, Callable[[], list[Row]]]]:
    """(group, run) of every row group, in order."""
    n = 256 if quick else 4096
    reps = args.repeats
    big = 1 << (18 if quick else 26)
    scan = 1 << (18 if quick else 28)
    block = transformer.SMALL_SIZE if quick else transformer.DEFAULT_SIZE
    f16 = "shader-f16" in device.features
    return [
        ("matmul", lambda: bench_matmul(device, n, "f32", replays, args.sweep, repeats=reps)),
        (
            "matmul",
            lambda: (
                bench_matmul(device, n, "f16", replays, args.sweep, args.f16_kernels, reps)
                if f16
                else []
            ),
        ),
        ("matmul", lambda: bench_torch_matmul(torch, 4096, replays, reps) if torch else []),
        (
            "rows",
            lambda: bench_rows(
                device, torch, (256, 1024) if quick else (8192, 8192), replays, reps
            ),
        ),
        ("gelu", lambda: [bench_gelu(device, torch, big, replays, reps)]),
        ("prefix", lambda: [bench_prefix_sum(device, torch, scan, replays, "f32", reps)]),
        ("prefix", lambda: [bench_prefix_sum(device, torch, scan, replays, "i32", reps)]),
        (
            "transfers",
            lambda: bench_transfers(device, torch, 1 << (24 if quick else 30), replays, reps),
        ),
        (
            "block",
            lambda: [bench_transformer(device, torch, block, max(3, replays // 4), reps)],
        ),
    ]


def main() -> None:
    """Run the selected row groups and write ``--json`` / ``--md`` / ``--plot``."""
    args = _parse()
    device = hal.create_device(implementation=args.implementation)
    torch = _torch()
    name = str(device.info)
    gpu = next((g for g in PEAK_TFLOPS if g in name.lower()), None)
    quick = args.quick or device.info.adapter_type == "cpu"
    replays = args.replays or (3 if quick else 20)
    groups = {"matmul", "rows", "gelu", "prefix", "transfers", "block"}
    only = set(filter(None, args.only.split(","))) or groups
    print(
        f"device {name}; torch {'yes' if torch else 'no'}; features {sorted(device.features)}",
        flush=True,
    )
    rows: list[Row] = []
    first = True
    for group, step in _steps(device, torch, args, quick, replays):
        if group not in only:
            continue
        # An idle H200 runs at 345 MHz and the CPU-side set-up of a row group (random
        # inputs, uploads) leaves it idle for a second or more: keep it clocked up.
        seconds = args.warm_up if args.warm_up is not None else (1.0 if first else 0.3)
        if not quick and seconds > 0:
            warm_up(device, seconds)
        first = False
        try:
            new = step()
        except Exception as error:
            new = [{"name": group, "error": f"{type(error).__name__}: {str(error)[:300]}"}]
        for row in new:
            print(json.dumps(row), flush=True)
        rows.extend(new)
    _finish(rows, gpu)
    text = markdown(rows, name)
    print(text)
    if args.json:
        meta = {"device": name, "repeats": args.repeats, "replays": replays}
        Path(args.json).write_text(json.dumps({**meta, "rows": rows}, indent=1))
    if args.md:
        Path(args.md).write_text(text)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
