"""Real workloads (issue 16): hal's kernels and the transformer block against torch on the same
GPU (f32 with TF32 off, and f16) or numpy on a CPU adapter, with the roofline beside them.

Rows: matmul f32 / f16 (4096^3; ``--sweep`` first times every tile shape of
:data:`SWEEP` and uses the fastest), softmax and layer norm (8192 x 8192 f32), GELU (2^26 f32),
prefix sum (2^28 f32 and i32), hal's builtin transfer kernels (1 GiB copy, unaligned copy,
pattern fill), the GPT-2-small transformer block. Every hal figure is the wall time of
``--replays`` submissions of one reusable command buffer (one wait at the end) after a warm-up,
divided by the replays; torch's the CUDA-event time of as many calls. Each result is checked
against numpy (a sample of rows where the full check would be slow). JSON + Markdown (+ a PNG
when matplotlib is importable).

    python3 benchmarks/workloads.py --json out.json --md out.md --plot out.png [--sweep]
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
) -> tuple[float, list[hal.Buffer], ExitStack]:
    stack = ExitStack()
    ins = [stack.enter_context(device.buffer_from_numpy(a)) for a in arrays]
    outs = [stack.enter_context(device.allocate_buffer(max(4, -(-n // 4) * 4))) for n in out_sizes]
    with device.record(mode=CommandBufferMode.DEFAULT) as cb:
        record(cb, *ins, *outs)
    return replay_seconds(device, cb, replays), outs, stack


def _label(c: MatmulConfig | SubgroupMatrixConfig) -> str:
    if isinstance(c, SubgroupMatrixConfig):
        return (
            f"subgroup-matrix tile {c.bm}x{c.bn}x{c.bk} matrix {c.sm}x{c.sn}x{c.sk} "
            f"pad {c.pad} acc {c.accumulate}"
        )
    return f"tile {c.bm}x{c.bn}x{c.bk} reg {c.tm}x{c.tn}" + (" pairs" if c.pairs else "")


def bench_matmul(
    device: hal.Device, n: int, dtype: str, replays: int, sweep: bool, f16_kernels: str = "all"
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
        secs, outs, stack = _hal_run(
            device,
            [a, b],
            [n * n * a.itemsize],
            lambda cb, x, y, z, k=kernel: matmul.record_matmul(cb, k, x, y, z, n, n, n),
            replays,
        )
        with stack:
            got = outs[0].to_numpy(np_t, (n, n))
        sample = slice(0, n, max(1, n // 64))
        want = a[sample].astype(np.float64) @ b.astype(np.float64)
        err = float(np.max(np.abs(got[sample].astype(np.float64) - want)))
        tflops = 2.0 * n**3 / secs / 1e12
        rows.append(
            {
                "name": f"matmul {dtype} {n}^3 {_label(kernel.config)}",
                "kind": f"matmul_{dtype}",
                "hal_s": secs,
                "hal_tflops": tflops,
                "max_abs_error": err,
            }
        )
        if best is None or secs < best[0]:
            best = (secs, rows[-1])
    if best is not None:
        best[1]["best"] = True
    return rows


def bench_torch_matmul(torch: Any, n: int, replays: int) -> list[Row]:
    rows = []
    for dtype, tt in (("f32", torch.float32), ("f16", torch.float16)):
        a = torch.rand((n, n), device="cuda", dtype=tt)
        b = torch.rand((n, n), device="cuda", dtype=tt)
        secs = torch_seconds(lambda a=a, b=b: a @ b, replays)
        rows.append(
            {
                "name": f"torch matmul {dtype} {n}^3",
                "kind": f"matmul_{dtype}",
                "torch_s": secs,
                "torch_tflops": 2.0 * n**3 / secs / 1e12 if secs else None,
            }
        )
    return rows


def bench_rows(device: hal.Device, torch: Any, shape: tuple[int, int], replays: int) -> list[Row]:
    """Softmax and layer norm of ``shape`` f32; bandwidth counts one read and one write."""
    r, c = shape
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, shape).astype(np.float32)
    g = rng.normal(1, 0.1, c).astype(np.float32)
    bt = rng.normal(0, 0.1, c).astype(np.float32)
    rows: list[Row] = []
    sm = softmax.load(device)
    secs, outs, stack = _hal_run(
        device,
        [x],
        [x.nbytes],
        lambda cb, i, o: softmax.record_softmax(cb, sm, i, o, r, c),
        replays,
    )
    with stack:
        got = outs[0].to_numpy(np.float32, shape)
    err = float(np.max(np.abs(got[:64] - softmax.reference(x[:64]))))
    rows.append(
        {
            "name": f"softmax {r}x{c} f32",
            "kind": "softmax",
            "hal_s": secs,
            "bytes": 2 * x.nbytes,
            "max_abs_error": err,
        }
    )
    ln = layernorm.load(device)
    secs, outs, stack = _hal_run(
        device,
        [x, g, bt],
        [x.nbytes],
        lambda cb, i, gg, bb, o: layernorm.record_layernorm(cb, ln, i, gg, bb, o, r, c),
        replays,
    )
    with stack:
        got = outs[0].to_numpy(np.float32, shape)
    err = float(np.max(np.abs(got[:64] - layernorm.reference(x[:64], g, bt))))
    rows.append(
        {
            "name": f"layernorm {r}x{c} f32",
            "kind": "layernorm",
            "hal_s": secs,
            "bytes": 2 * x.nbytes,
            "max_abs_error": err,
        }
    )
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        tg, tb = torch.from_numpy(g).cuda(), torch.from_numpy(bt).cuda()
        rows[0]["torch_s"] = torch_seconds(lambda: torch.softmax(tx, dim=1), replays)
        rows[1]["torch_s"] = torch_seconds(
            lambda: torch.nn.functional.layer_norm(tx, (c,), tg, tb, 1e-5), replays
        )
    else:
        rows[0]["numpy_s"] = numpy_seconds(lambda: softmax.reference(x), 1)
        rows[1]["numpy_s"] = numpy_seconds(lambda: layernorm.reference(x, g, bt), 1)
    return rows


def bench_gelu(device: hal.Device, torch: Any, n: int, replays: int) -> Row:
    x = np.random.default_rng(2).normal(0, 3, n).astype(np.float32)
    k = gelu.load(device)
    secs, outs, stack = _hal_run(
        device, [x], [x.nbytes], lambda cb, i, o: gelu.record_gelu(cb, k, i, o, n), replays
    )
    with stack:
        got = outs[0].to_numpy(np.float32, (n,))
    row: Row = {
        "name": f"gelu {n} f32",
        "kind": "gelu",
        "hal_s": secs,
        "bytes": 2 * x.nbytes,
        "max_abs_error": float(np.max(np.abs(got[:65536] - gelu.reference(x[:65536])))),
    }
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        row["torch_s"] = torch_seconds(
            lambda: torch.nn.functional.gelu(tx, approximate="tanh"), replays
        )
    else:
        row["numpy_s"] = numpy_seconds(lambda: gelu.reference(x), 1)
    return row


def bench_prefix_sum(
    device: hal.Device, torch: Any, n: int, replays: int, dtype: str = "f32"
) -> Row:
    """Inclusive scan of ``n`` values of ``dtype``; bandwidth counts one read and one write
    (as for torch.cumsum), whatever the kernels move (about 3n)."""
    rng = np.random.default_rng(3)
    if dtype == "f32":
        x = rng.random(n, dtype=np.float32)
    else:
        x = rng.integers(0, 1 << 20, n, dtype=np.int64).astype(prefix_sum.DTYPES[dtype])
    with ExitStack() as stack:
        data = stack.enter_context(device.buffer_from_numpy(x))
        scan = stack.enter_context(prefix_sum.PrefixSum(device, n, dtype))
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            scan.record(cb, data)  # rescans its own output: the timing needs no input copy
        secs = replay_seconds(device, cb, replays)
        levels = scan.levels
    row: Row = {
        "name": f"prefix sum {n} {dtype} (levels {levels})",
        "kind": "prefix_sum" if dtype == "f32" else f"prefix_sum_{dtype}",
        "hal_s": secs,
        "bytes": 2 * x.nbytes,
    }
    # the full length, once, from the pristine input (integers must match exactly)
    got = prefix_sum.prefix_sum(device, x)
    row["max_abs_error"] = float(
        np.max(np.abs(got.astype(np.float64) - prefix_sum.reference(x).astype(np.float64)))
    )
    if torch is not None:
        tx = torch.from_numpy(x.view(np.int32) if dtype == "u32" else x).cuda()
        row["torch_s"] = torch_seconds(lambda: torch.cumsum(tx, 0, dtype=tx.dtype), replays)
    else:
        row["numpy_s"] = numpy_seconds(lambda: prefix_sum.reference(x), 1)
    return row


def bench_transfers(device: hal.Device, torch: Any, size: int, replays: int) -> list[Row]:
    """hal's builtin transfer kernels at ``size`` bytes through the public API: an aligned
    copy, a copy from byte 1 to byte 3 (the funnel-shift kernel), a 4-byte pattern fill;
    :data:`TRANSFERS_PER_SUBMIT` of them per submission with a barrier between each two (as
    benchmarks/run_all.py's bandwidth table), seconds per transfer. GB/s = bytes copied or
    filled per second (a copy moves twice that). Each result is checked byte for byte."""
    rows: list[Row] = []
    words = np.arange(size // 4 + 64, dtype=np.uint32) * np.uint32(2654435761)
    source = words.view(np.uint8)
    cases = [
        ("copy aligned", lambda cb, s, d: cb.copy_buffer(s, 0, d, 0, size), 0, 0, size),
        ("copy unaligned 1 -> 3", lambda cb, s, d: cb.copy_buffer(s, 1, d, 3, size - 4), 1, 3),
        ("fill 0x01020304", lambda cb, s, d: cb.fill_buffer(d, 0, size, TRANSFER_PATTERN, 4)),
    ]
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(source))
        dst = stack.enter_context(device.allocate_buffer(source.nbytes))
        for name, record, *where in cases:
            with device.record(mode=CommandBufferMode.DEFAULT) as cb:
                for i in range(TRANSFERS_PER_SUBMIT):
                    if i:
                        cb.execution_barrier()
                    record(cb, src, dst)
            secs = replay_seconds(device, cb, replays) / TRANSFERS_PER_SUBMIT
            got = dst.to_numpy(np.uint8, (source.nbytes,))
            if name.startswith("copy"):
                s0, d0 = where[0], where[1]
                length = size if s0 == 0 else size - 4
                ok = bool(np.array_equal(got[d0 : d0 + length], source[s0 : s0 + length]))
            else:
                want = np.frombuffer(TRANSFER_PATTERN.to_bytes(4, "little") * (size // 4), np.uint8)
                ok = bool(np.array_equal(got[:size], want))
            rows.append(
                {
                    "name": f"builtin {name} {size >> 20} MiB",
                    "kind": "transfer_"
                    + name.split()[0]
                    + ("_unaligned" if "1 ->" in name else ""),
                    "hal_s": secs,
                    "bytes": size,
                    "bytes_exact": ok,
                }
            )
    if torch is not None:
        a = torch.from_numpy(words[: size // 4].view(np.int32)).cuda()
        b = torch.empty_like(a)
        rows[0]["torch_s"] = torch_seconds(lambda: b.copy_(a), replays)
        ua = torch.from_numpy(source[: size - 3]).cuda()
        ub = torch.empty(size, dtype=torch.uint8, device="cuda")
        rows[1]["torch_s"] = torch_seconds(lambda: ub[3 : size - 1].copy_(ua[1:]), replays)
        rows[2]["torch_s"] = torch_seconds(lambda: b.fill_(TRANSFER_PATTERN), replays)
    return rows


def bench_transformer(
    device: hal.Device, torch: Any, size: tuple[int, int, int, int], replays: int
) -> Row:
    weights = transformer.random_weights(size)
    with ExitStack() as stack:
        bufs = transformer._allocate(device, stack, weights, size)
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            transformer.record_block(cb, transformer.load(device, size[2] // size[3]), bufs, size)
        secs = replay_seconds(device, cb, replays)
        got = bufs["y"].to_numpy(np.float32, (size[0] * size[1], size[2]))
    row: Row = {
        "name": f"transformer block {size}",
        "kind": "transformer",
        "hal_s": secs,
        "hal_tflops": transformer.flops(size) / secs / 1e12,
    }
    if torch is not None:
        t_w = {k: torch.from_numpy(v).cuda() for k, v in weights.items()}
        ref = _torch_block(torch, t_w, size)
        row["max_abs_error"] = float((torch.from_numpy(got).cuda() - ref()).abs().max())
        row["torch_s"] = torch_seconds(ref, replays)
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
            return f"{secs * 1e3:.3f} ms, {row[f'{who}_tflops']:.2f} TFLOP/s"
        return f"{secs * 1e3:.3f} ms" + (f", {rate:.0f} GB/s" if rate else "")

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


def main() -> None:
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
        "--implementation", default=None, help="WebGPU implementation (wgpu-native, dawn)"
    )
    parser.add_argument(
        "--f16-kernels",
        choices=("all", "subgroup-matrix"),
        default="all",
        help="which f16 kernels --sweep times where the device has subgroup matrices",
    )
    args = parser.parse_args()
    device = hal.create_device(implementation=args.implementation)
    torch = _torch()
    name = str(device.info)
    gpu = next((g for g in PEAK_TFLOPS if g in name.lower()), None)
    quick = args.quick or device.info.adapter_type == "cpu"
    replays = args.replays or (3 if quick else 20)
    only = set(filter(None, args.only.split(","))) or {
        "matmul",
        "rows",
        "gelu",
        "prefix",
        "transfers",
        "block",
    }
    print(
        f"device {name}; torch {'yes' if torch else 'no'}; features {sorted(device.features)}",
        flush=True,
    )
    rows: list[Row] = []
    if not quick:
        warm_up(device)
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        (
            "matmul",
            lambda: bench_matmul(device, 256 if quick else 4096, "f32", replays, args.sweep),
        ),
        (
            "matmul",
            lambda: (
                bench_matmul(
                    device, 256 if quick else 4096, "f16", replays, args.sweep, args.f16_kernels
                )
                if "shader-f16" in device.features
                else []
            ),
        ),
        ("matmul", lambda: bench_torch_matmul(torch, 4096, replays) if torch else []),
        (
            "rows",
            lambda: bench_rows(device, torch, (256, 1024) if quick else (8192, 8192), replays),
        ),
        ("gelu", lambda: [bench_gelu(device, torch, 1 << (18 if quick else 26), replays)]),
        ("prefix", lambda: [bench_prefix_sum(device, torch, 1 << (18 if quick else 28), replays)]),
        (
            "prefix",
            lambda: [bench_prefix_sum(device, torch, 1 << (18 if quick else 28), replays, "i32")],
        ),
        ("transfers", lambda: bench_transfers(device, torch, 1 << (24 if quick else 30), replays)),
        (
            "block",
            lambda: [
                bench_transformer(
                    device,
                    torch,
                    transformer.SMALL_SIZE if quick else transformer.DEFAULT_SIZE,
                    max(3, replays // 4),
                )
            ],
        ),
    ]
    for group, step in steps:
        if group not in only:
            continue
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
        Path(args.json).write_text(json.dumps({"device": name, "rows": rows}, indent=1))
    if args.md:
        Path(args.md).write_text(text)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
