"""Eager speed (issue 10): one-shot command buffers and small queue operations, side by side.

Every row runs the same work through hal and its anchors in ONE process, repetitions
interleaved in a fresh random order per round so machine load hits every system alike:

- ``hal`` — this checkout;
- ``iree-vulkan`` / ``iree-cuda`` — IREE's own HAL through its Python bindings
  (``pip install iree-base-runtime``, the ``bench`` extra); skipped with a message when
  ``iree.runtime`` is absent or the driver has no device;
- ``wgpu`` — the same work written by hand in raw wgpu-py on hal's own wgpu device (waits are
  ``wgpuDevicePoll(wait=True)`` on the submission index, the fastest wait wgpu-native has);
- ``torch`` — torch eager on CUDA, where importable with a GPU.

Rows: round trips (one-fill command buffer; ``queue_copy`` 256 B), one-shot 1000 disjoint
256 B fills and copies, one-shot tiny dispatch chains (N = 1, 10, 1000 or 2000), replay of a
reusable command buffer at N = 10000 and its floor (the same compiled plan's raw native calls),
replay with a new binding table each submission (32 buffers cycled) vs the same table, and
with a fresh buffer each submission (a row of its own), bounded vs unbounded wait,
a chain of 1000 dependent submissions, and ``end()`` time per command at 1k/10k/100k mixed
commands. Medians; JSON + Markdown (+ a PNG plot when matplotlib is importable).

    python3 benchmarks/eager.py --json benchmarks/results/eager.json     # ~1-3 min
    python3 benchmarks/eager.py --quick                                   # CI-sized
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hal  # noqa: E402

TIMEOUT = 60.0
_KEEP: list[Any] = []
Sample = Callable[[], float]
"""One timed repetition: returns seconds (per command / per item where the row says so)."""


# -- anchors -----------------------------------------------------------------------------------


class Raw:
    """Hand-written wgpu-py on hal's own wgpu device (raw submission index + blocking poll)."""

    def __init__(self, device: hal.Device) -> None:
        import wgpu
        from wgpu.backends.wgpu_native._ffi import ffi, lib

        self.wgpu, self.ffi, self.lib = wgpu, ffi, lib
        self.device = device.backend.device  # type: ignore[attr-defined]
        usage = wgpu.BufferUsage
        self.buffer, self.target = (
            self.device.create_buffer(
                size=1 << 20, usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
            )
            for _ in range(2)
        )
        source = Path(hal.shader_path("noop.wgsl")).read_text()
        module = self.device.create_shader_module(code=source)
        self.pipeline = self.device.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": "touch"}
        )
        self.groups = [
            self.device.create_bind_group(
                layout=self.pipeline.get_bind_group_layout(0),
                entries=[
                    {
                        "binding": 0,
                        "resource": {"buffer": self.buffer, "offset": 256 * i, "size": 256},
                    }
                ],
            )
            for i in range(8)
        ]

    def submit_wait(self, command_buffer: Any) -> None:
        ffi, lib = self.ffi, self.lib
        handles = ffi.new("WGPUCommandBuffer[]", [command_buffer._internal])
        index = lib.wgpuQueueSubmitForIndex(self.device.queue._internal, 1, handles)
        lib.wgpuDevicePoll(self.device._internal, True, ffi.new("WGPUSubmissionIndex*", index))

    def clear_round_trip(self) -> float:
        start = time.perf_counter()
        encoder = self.device.create_command_encoder()
        encoder.clear_buffer(self.buffer, 0, 4)
        self.submit_wait(encoder.finish())
        return time.perf_counter() - start

    def copy_round_trip(self) -> float:
        start = time.perf_counter()
        encoder = self.device.create_command_encoder()
        encoder.copy_buffer_to_buffer(self.buffer, 0, self.target, 4096, 256)
        self.submit_wait(encoder.finish())
        return time.perf_counter() - start

    def copies(self, n: int) -> float:
        start = time.perf_counter()
        encoder = self.device.create_command_encoder()
        for i in range(n):
            encoder.copy_buffer_to_buffer(
                self.buffer, 256 * i, self.target, (1 << 19) + 256 * i, 256
            )
        self.submit_wait(encoder.finish())
        return (time.perf_counter() - start) / n

    def clears(self, n: int) -> float:
        start = time.perf_counter()
        encoder = self.device.create_command_encoder()
        for i in range(n):
            encoder.clear_buffer(self.buffer, 256 * i, 256)
        self.submit_wait(encoder.finish())
        return (time.perf_counter() - start) / n

    def dispatches(self, n: int, submit_only: bool = False) -> float:
        start = time.perf_counter()
        encoder = self.device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        compute.set_pipeline(self.pipeline)
        for i in range(n):
            compute.set_bind_group(0, self.groups[i % 8])
            compute.dispatch_workgroups(1, 1, 1)
        compute.end()
        command_buffer = encoder.finish()
        if submit_only:
            self.device.queue.submit([command_buffer])
            elapsed = time.perf_counter() - start
            self.device._poll(True)
            return elapsed / n
        self.submit_wait(command_buffer)
        return (time.perf_counter() - start) / n


class Iree:
    """IREE's HAL through iree.runtime on one driver."""

    def __init__(self, driver: str) -> None:
        import iree.runtime as rt

        self.rt = rt
        self.device = rt.get_driver(driver).create_default_device()
        self.buffer, self.target = (
            self.device.allocator.allocate_buffer(
                memory_type=rt.MemoryType.DEVICE_LOCAL,
                allowed_usage=rt.BufferUsage.DEFAULT,
                allocation_size=1 << 20,
            )
            for _ in range(2)
        )
        self.semaphore = self.device.create_semaphore(0)
        self.value = 0
        self.pattern = np.uint32(0)

    def _run(self, cb: Any) -> None:
        self.value += 1
        self.device.queue_execute(cb, [], [(self.semaphore, self.value)])
        self.semaphore.wait(self.value)

    def fill_round_trip(self) -> float:
        start = time.perf_counter()
        cb = self.rt.HalCommandBuffer(self.device)
        cb.fill(self.buffer, self.pattern, 0, 4)
        cb.end()
        self._run(cb)
        return time.perf_counter() - start

    def copy_round_trip(self) -> float:
        start = time.perf_counter()
        self.value += 1
        self.device.queue_copy(self.buffer, self.target, [], [(self.semaphore, self.value)])
        self.semaphore.wait(self.value)
        return time.perf_counter() - start

    def fills(self, n: int) -> float:
        start = time.perf_counter()
        cb = self.rt.HalCommandBuffer(self.device)
        pattern = np.uint32(0x12345678)
        for i in range(n):
            cb.fill(self.buffer, pattern, 256 * i, 256)
        cb.end()
        self._run(cb)
        return (time.perf_counter() - start) / n

    def copies(self, n: int) -> float:
        start = time.perf_counter()
        cb = self.rt.HalCommandBuffer(self.device)
        for i in range(n):
            cb.copy(self.buffer, self.target, 256 * i, (1 << 19) + 256 * i, 256)
        cb.end()
        self._run(cb)
        return (time.perf_counter() - start) / n


def open_iree(driver: str, notes: list[str]) -> Iree | None:
    try:
        return Iree(driver)
    except ImportError:
        notes.append("IREE skipped: iree.runtime is not installed (pip install '.[bench]')")
    except Exception as error:  # no device for this driver
        notes.append(f"IREE {driver} skipped: {' '.join(str(error).split())[:120]}")
    return None


class Torch:
    """torch eager on CUDA: a one-element in-place add per 'dispatch'."""

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
        self.torch = torch
        self.x = torch.zeros(64, dtype=torch.int32, device="cuda")

    def dispatches(self, n: int) -> float:
        torch = self.torch
        start = time.perf_counter()
        for _ in range(n):
            self.x.add_(1)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n


# -- hal work ----------------------------------------------------------------------------------


class Hal:
    """The same work through hal."""

    def __init__(self, device: hal.Device) -> None:
        self.device = device
        self.buffer, self.target = device.allocate_buffer(1 << 20), device.allocate_buffer(1 << 20)
        self.semaphore = device.create_semaphore()
        self.value = 0
        self.noop = device.create_executable(hal.shader_path("noop.wgsl"))
        self.views = [hal.BufferRef(self.buffer, 256 * i, 256) for i in range(8)]

    def next(self) -> int:
        self.value += 1
        return self.value

    def fill_round_trip(self, bounded: bool = True) -> float:
        start = time.perf_counter()
        with self.device.record() as cb:
            cb.fill_buffer(self.buffer, 0, 4, 0)
        value = self.next()
        self.device.queue_execute(cb, signal=[(self.semaphore, value)])
        self.semaphore.wait(value, timeout=TIMEOUT if bounded else None)
        return time.perf_counter() - start

    def copy_round_trip(self) -> float:
        start = time.perf_counter()
        value = self.next()
        self.device.queue_copy(
            self.buffer, 0, self.target, 4096, 256, signal=[(self.semaphore, value)]
        )
        self.semaphore.wait(value, timeout=TIMEOUT)
        return time.perf_counter() - start

    def _run(self, cb: hal.CommandBuffer) -> None:
        value = self.next()
        self.device.queue_execute(cb, signal=[(self.semaphore, value)])
        self.semaphore.wait(value, timeout=TIMEOUT)

    def fills(self, n: int) -> float:
        start = time.perf_counter()
        with self.device.record() as cb:
            for i in range(n):
                cb.fill_buffer(self.buffer, 256 * i, 256, 0x12345678)
        self._run(cb)
        return (time.perf_counter() - start) / n

    def copies(self, n: int) -> float:
        start = time.perf_counter()
        with self.device.record() as cb:
            for i in range(n):
                cb.copy_buffer(self.buffer, 256 * i, self.target, (1 << 19) + 256 * i, 256)
        self._run(cb)
        return (time.perf_counter() - start) / n

    def record_dispatches(self, n: int, mode: hal.CommandBufferMode, table: bool = False) -> Any:
        cb = self.device.create_command_buffer(mode, binding_capacity=1 if table else 0)
        cb.begin()
        for i in range(n):
            binding = hal.SlotRef(0, 256 * (i % 8), 256) if table else self.views[i % 8]
            cb.dispatch(self.noop, "touch", (1, 1, 1), bindings=[binding])
            cb.execution_barrier()
        cb.end()
        return cb

    def dispatches(self, n: int, submit_only: bool = False) -> float:
        start = time.perf_counter()
        cb = self.record_dispatches(n, hal.CommandBufferMode.ONE_SHOT)
        value = self.next()
        self.device.queue_execute(cb, signal=[(self.semaphore, value)])
        submitted = time.perf_counter() - start
        self.semaphore.wait(value, timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
        return (submitted if submit_only else elapsed) / n

    def replay(self, cb: Any, n: int, table: list[Any] | None = None) -> float:
        start = time.perf_counter()
        value = self.next()
        self.device.queue_execute(cb, signal=[(self.semaphore, value)], binding_table=table)
        submitted = time.perf_counter() - start
        self.semaphore.wait(value, timeout=TIMEOUT)
        return submitted / n

    def replay_fresh(self, cb: Any, n: int) -> float:
        """:meth:`replay` with a binding table of one new 4096-byte buffer, allocated before
        the timing and released after the wait: what a user passing new buffers sees (its
        bind groups created, the buffer's first-use zeroing in the same submission)."""
        buffer = self.device.allocate_buffer(4096)
        try:
            return self.replay(cb, n, [buffer])
        finally:
            buffer.release()

    def replay_floor(self, cb: Any, n: int) -> float:
        """The same compiled plan's raw calls alone: encode + submit, no hal queue."""
        program = cb.prepare(None)
        backend = self.device.backend
        start = time.perf_counter()
        backend.submit([program.encode()])
        submitted = time.perf_counter() - start
        self.device.wait_idle(TIMEOUT)
        return submitted / n

    def chain(self, n: int) -> float:
        """n dependent submissions, enqueued up front: link i waits for link i-1's signal."""
        cb = self.record_dispatches(1, hal.CommandBufferMode.DEFAULT)
        semaphore = self.device.create_semaphore()
        start = time.perf_counter()
        for i in range(n):
            self.device.queue_execute(cb, wait=[(semaphore, i)], signal=[(semaphore, i + 1)])
        semaphore.wait(n, timeout=TIMEOUT)
        return (time.perf_counter() - start) / n


def raw_chain(raw: Raw, n: int) -> float:
    """n dependent submissions by hand: each submitted after the previous finished."""
    start = time.perf_counter()
    for _ in range(n):
        encoder = raw.device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        compute.set_pipeline(raw.pipeline)
        compute.set_bind_group(0, raw.groups[0])
        compute.dispatch_workgroups(1, 1, 1)
        compute.end()
        raw.submit_wait(encoder.finish())
    return (time.perf_counter() - start) / n


def end_per_command(device: hal.Device, n: int, executable: Any, buffer: hal.Buffer) -> float:
    """end() of n mixed commands (dispatch, copy, fill, barrier, repeated), per command."""
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    views = [hal.BufferRef(buffer, 4096 * i, 4096) for i in range(64)]
    for i in range(n // 4):
        cb.dispatch(executable, "touch", (1, 1, 1), bindings=[views[i % 64]])
        cb.copy_buffer(buffer, 4096 * (i % 64), buffer, (1 << 19) + 4096 * (i % 32), 256)
        cb.fill_buffer(buffer, 4096 * (i % 64) + 512, 256, i & 0xFF, 1)
        cb.execution_barrier()
    start = time.perf_counter()
    cb.end()
    return (time.perf_counter() - start) / n


def end_in_subprocess(size: int, timeout: float) -> float | None:
    """``end_per_command`` at ``size`` in a fresh process (a crash or a hang costs one row)."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import hal, eager; "
        "d = hal.create_device(implementation=None); print(eager.end_per_command(d, "
        f"{size}, d.create_executable(hal.shader_path('noop.wgsl')), d.allocate_buffer(1 << 20)))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return float(done.stdout.strip().splitlines()[-1])


# -- the run -----------------------------------------------------------------------------------


def interleaved(
    cases: dict[str, Sample], reps: int, warmup: int, seed: int, burst: int
) -> dict[str, list[float]]:
    """Run every case ``warmup + reps`` rounds, each round in a fresh random order. In a
    round a case runs ``burst`` times back to back (the first discarded) and the round's
    sample is their median: switching between runtimes (Vulkan and CUDA contexts on one
    GPU) costs the first call after a switch tens of µs, which no system pays in steady use."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + reps):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            case = cases[name]
            case()
            value = statistics.median(case() for _ in range(burst))
            if round_index >= warmup:
                samples[name].append(value)
    return samples


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = hal.create_device(implementation=args.implementation)
    notes: list[str] = []
    h = Hal(device)
    # The hand-written anchor uses wgpu-native's raw calls (hal's own wgpu device).
    raw = Raw(device) if device.info.implementation == "wgpu-native" else None
    if raw is None:
        notes.append(f"raw wgpu-py skipped: it needs wgpu-native, not {device.info.implementation}")
    irees = {d: i for d in ("vulkan", "cuda") if (i := open_iree(d, notes)) is not None}
    try:
        torch: Torch | None = Torch()
    except Exception as error:
        torch = None
        notes.append(f"torch skipped: {' '.join(str(error).split())[:100]}")
    reps, warmup = args.reps, 3
    rows: dict[str, dict[str, list[float]]] = {}

    def row(name: str, cases: dict[str, Sample], count: int = reps, burst: int = 0) -> None:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        burst = burst or (5 if count == reps else 2)  # fewer for the long rows
        rows[name] = interleaved(cases, count, warmup, hash(name) & 0xFFFF, burst)

    row(
        "round trip: one-shot cb, one 4-byte fill (µs)",
        {
            "hal": h.fill_round_trip,
            **({"wgpu": raw.clear_round_trip} if raw else {}),
            **{f"iree-{d}": i.fill_round_trip for d, i in irees.items()},
        },
    )
    row(
        "round trip: queue_copy 256 B (µs)",
        {
            "hal": h.copy_round_trip,
            **({"wgpu": raw.copy_round_trip} if raw else {}),
            **{f"iree-{d}": i.copy_round_trip for d, i in irees.items()},
        },
    )
    n = 1000
    row(
        "one-shot: 1000 disjoint 256 B fills, record+submit+wait (µs/cmd)",
        {
            "hal": lambda: h.fills(n),
            **({"wgpu (clear_buffer, zeros)": lambda: raw.clears(n)} if raw else {}),
            **{f"iree-{d}": (lambda i=i: i.fills(n)) for d, i in irees.items()},
        },
        max(5, reps // 3),
    )
    row(
        "one-shot: 1000 disjoint 256 B copies (µs/cmd)",
        {
            "hal": lambda: h.copies(n),
            **({"wgpu": lambda: raw.copies(n)} if raw else {}),
            **{f"iree-{d}": (lambda i=i: i.copies(n)) for d, i in irees.items()},
        },
        max(5, reps // 3),
    )
    for count in args.dispatch_sizes:
        row(
            f"one-shot tiny dispatch + barrier, N = {count}, total (µs/dispatch)",
            {
                "hal": lambda c=count: h.dispatches(c),
                **({"wgpu": lambda c=count: raw.dispatches(c)} if raw else {}),
                **({"torch": (lambda c=count: torch.dispatches(c))} if torch else {}),
            },
            max(5, reps // 3) if count >= 1000 else reps,
        )
        row(
            f"one-shot tiny dispatch + barrier, N = {count}, submit side (µs/dispatch)",
            {
                "hal": lambda c=count: h.dispatches(c, submit_only=True),
                **({"wgpu": lambda c=count: raw.dispatches(c, submit_only=True)} if raw else {}),
            },
            max(5, reps // 3) if count >= 1000 else reps,
        )
    replay_n = args.replay_size
    reusable = h.record_dispatches(replay_n, hal.CommandBufferMode.DEFAULT)
    row(
        f"replay of a reusable cb, N = {replay_n}, submit side (µs/dispatch)",
        {
            "hal": lambda: h.replay(reusable, replay_n),
            "floor (same plan, raw calls)": lambda: h.replay_floor(reusable, replay_n),
        },
        max(5, reps // 3),
    )
    with_slots = h.record_dispatches(100, hal.CommandBufferMode.DEFAULT, table=True)
    tables = [[device.allocate_buffer(4096)] for _ in range(32)]
    cycle = iter(range(1 << 30))
    row(
        "replay with a binding table, N = 100, submit side (µs/dispatch)",
        {
            "hal, same table": lambda: h.replay(with_slots, 100, tables[0]),
            "hal, new table each time": lambda: h.replay(with_slots, 100, tables[next(cycle) % 32]),
        },
    )
    # A row of its own: a released buffer's teardown lands in later submissions (wgpu-native
    # destroys it at a later poll), which must not be charged to the row above.
    row(
        "replay with a fresh buffer each submission, N = 100, submit side (µs/dispatch)",
        {
            "hal, same table": lambda: h.replay(with_slots, 100, tables[0]),
            "hal, fresh buffer each time": lambda: h.replay_fresh(with_slots, 100),
        },
    )
    row(
        "round trip of a one-fill cb: bounded vs unbounded wait (µs)",
        {
            "hal, timeout=60": lambda: h.fill_round_trip(bounded=True),
            "hal, timeout=None": lambda: h.fill_round_trip(bounded=False),
        },
    )
    row(
        "chain of 1000 dependent submissions (µs/link)",
        {"hal": lambda: h.chain(1000), **({"wgpu": lambda: raw_chain(raw, 1000)} if raw else {})},
        max(3, reps // 10),
        1,
    )
    end_rows: dict[str, float] = {}
    for size in args.end_sizes:
        print(f"  end() at {size} commands ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        value = end_in_subprocess(size, args.end_budget * 10)
        if value is None:
            notes.append(f"end() at {size} commands failed or ran past {args.end_budget * 10} s")
            break
        end_rows[str(size)] = value
        if time.perf_counter() - start > args.end_budget:
            notes.append(f"end() sizes above {size} skipped: {size} took over {args.end_budget} s")
            break
    device.wait_idle(TIMEOUT)
    # Teardown of the anchors' runtimes (IREE's Vulkan device beside wgpu's, torch) crashed
    # the process on the H200 when run() returned: keep them until the exit, which skips it.
    _KEEP.extend((device, h, raw, irees, torch))
    return {
        "rows": rows,
        "end_per_command_s": end_rows,
        "notes": notes,
        "adapter": str(device.info),
        "python": platform.python_version(),
        # The device machine's copy of the tree may carry an older HEAD: HAL_BENCH_COMMIT
        # names the commit that was copied.
        "commit": os.environ.get("HAL_BENCH_COMMIT") or _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "hal", "shaders")),
        "args": vars(args),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def markdown(result: dict[str, Any]) -> str:
    """The rows as Markdown tables: medians in µs and each system's ratio to hal."""
    lines = [
        f"Adapter: {result['adapter']}; commit {result['commit']}"
        f"{' (dirty)' if result['dirty'] else ''}",
        "",
    ]
    for name, samples in result["rows"].items():
        medians = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
        base = medians.get("hal") or next(iter(medians.values()))
        lines.append(f"| {name} | median | hal ÷ this |")
        lines.append("| --- | ---: | ---: |")
        for system, value in medians.items():
            lines.append(f"| {system} | {value:.2f} | {base / value:.2f}× |")
        lines.append("")
    if result["end_per_command_s"]:
        lines.append("| end() of n mixed commands | µs/command |")
        lines.append("| --- | ---: |")
        for size, value in result["end_per_command_s"].items():
            lines.append(f"| {size} | {value * 1e6:.2f} |")
        lines.append("")
    lines.extend(f"- {note}" for note in result["notes"])
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed", file=sys.stderr)
        return
    rows = result["rows"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.6 * len(rows)))
    for ax, (name, samples) in zip(axes, rows.items(), strict=True):
        systems = list(samples)
        ax.barh(systems, [statistics.median(samples[s]) * 1e6 for s in systems])
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repetitions")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/eager.json")
    parser.add_argument("--end-budget", type=float, default=30.0)
    parser.add_argument(
        "--implementation",
        default=None,
        help="hal's WebGPU implementation (default: HAL_IMPLEMENTATION)",
    )
    args = parser.parse_args()
    cpu = "cpu" in str(hal.create_device(implementation=args.implementation).info).lower()
    args.dispatch_sizes = [1, 10, 2000 if cpu else 1000]
    args.replay_size = 10000
    args.end_sizes = [1000, 10000, 100000]
    if args.quick:
        args.reps, args.dispatch_sizes, args.replay_size = 5, [1, 10, 200], 1000
        args.end_sizes = [1000, 10000]
    result = run(args)
    text = markdown(result)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    args.json.with_suffix(".md").write_text(text + "\n")
    plot(result, args.json.with_suffix(".png"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # see _KEEP


if __name__ == "__main__":
    main()
