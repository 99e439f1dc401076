"""CPU cost per command of the eager path (issue 10): thread CPU time, not wall time, so a
shared, noisy machine still gives comparable figures. Best of ``--reps`` (default 5).

Rows, each in µs per command (per round trip for (d)):

- (a) recording 1000 fills / 1000 copies / 1000 dispatch + barrier pairs into a ONE_SHOT cb;
- (b) ``end()`` of each;
- (c) ``queue_execute`` of each (compile + encode + submit; the wait is not counted);
- (d) the one-fill round trip (record + end + queue_execute + wait);
- then recording and ``end()`` alone, ``gc.collect()`` first (the phase table charges the
  collection of the previous command buffer to whichever phase triggers it), for fills,
  copies and fills through a BufferView;
- then the small programs of the eager path, each phase on its own: ``end()`` and the first
  ``prepare()`` (compile) of a one-fill and a one-copy command buffer (µs per program), and
  recording, ``end()`` and first ``prepare()`` of N = 10 and N = 1000 dispatch + barrier
  programs (µs per pair); ``prepare()`` of a 100-dispatch command buffer with binding-table
  slots for a new table each time vs the same table (µs per dispatch).

``--implementation null`` runs it on the null backend (no GPU: hal's Python alone);
``HAL_DISABLE_FEATURES=immediates`` pretends the adapter lacks immediates (Dawn's case).

    python3 benchmarks/profile_cpu.py [--reps 5] [--implementation null]
        [--profile fills|copies|dispatches|trip]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hal  # noqa: E402

N = 1000
TIMEOUT = 60.0


class Bench:
    """The cases, on one device."""

    def __init__(self, implementation: str | None = None) -> None:
        self.device = hal.create_device(implementation=implementation)
        self.buffer = self.device.allocate_buffer(1 << 20)
        self.target = self.device.allocate_buffer(1 << 20)
        self.noop = self.device.create_executable(hal.shader_path("noop.wgsl"))
        self.views = [hal.BufferRef(self.buffer, 256 * i, 256) for i in range(8)]
        self.typed = hal.BufferView(self.buffer, (1 << 18,), "uint32")
        self.semaphore = self.device.create_semaphore()
        self.value = 0

    def record(self, kind: str) -> Any:
        cb = self.device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        buffer, target = self.buffer, self.target
        if kind == "fills":
            for i in range(N):
                cb.fill_buffer(buffer, 256 * i, 256, 0x12345678)
        elif kind == "view fills":
            typed = self.typed
            for i in range(N):
                cb.fill_buffer(typed, 256 * i, 256, 0x12345678)
        elif kind == "copies":
            for i in range(N):
                cb.copy_buffer(buffer, 256 * i, target, (1 << 19) + 256 * i, 256)
        else:
            views, noop = self.views, self.noop
            for i in range(N):
                cb.dispatch(noop, "touch", (1, 1, 1), bindings=[views[i % 8]])
                cb.execution_barrier()
        return cb

    def phases(self, kind: str) -> tuple[float, float, float]:
        """CPU seconds of recording, end() and queue_execute of one cb."""
        t0 = time.thread_time()
        cb = self.record(kind)
        t1 = time.thread_time()
        cb.end()
        t2 = time.thread_time()
        self.value += 1
        self.device.queue_execute(cb, signal=[(self.semaphore, self.value)])
        t3 = time.thread_time()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        return t1 - t0, t2 - t1, t3 - t2

    def alone(self, kind: str) -> tuple[float, float]:
        """CPU seconds of recording and of end() of one cb, each after a collection."""
        gc.collect()
        t0 = time.thread_time()
        cb = self.record(kind)
        t1 = time.thread_time()
        gc.collect()
        t2 = time.thread_time()
        cb.end()
        t3 = time.thread_time()
        return t1 - t0, t3 - t2

    def trip(self) -> float:
        """CPU seconds of one one-fill round trip."""
        t0 = time.thread_time()
        cb = self.device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.fill_buffer(self.buffer, 0, 4, 0)
        cb.end()
        self.value += 1
        self.device.queue_execute(cb, signal=[(self.semaphore, self.value)])
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        return time.thread_time() - t0


class Eager:
    """The small programs of the eager path, phase by phase (CPU seconds)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        device = bench.device
        self.slotted = device.create_command_buffer(
            hal.CommandBufferMode.DEFAULT, binding_capacity=1
        )
        self.slotted.begin()
        for i in range(100):
            binding = hal.SlotRef(0, 256 * (i % 8), 256)
            self.slotted.dispatch(bench.noop, "touch", (1, 1, 1), bindings=[binding])
            self.slotted.execution_barrier()
        self.slotted.end()
        self.tables = [[device.allocate_buffer(4096)] for _ in range(32)]
        self.turn = 0

    def single(self, copy: bool) -> tuple[float, float]:
        """end() and the first prepare() of a one-fill (one-copy) command buffer."""
        bench = self.bench
        cb = bench.device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        if copy:
            cb.copy_buffer(bench.buffer, 0, bench.target, 256, 256)
        else:
            cb.fill_buffer(bench.buffer, 0, 4, 0x01020304)
        t0 = time.thread_time()
        cb.end()
        t1 = time.thread_time()
        cb.prepare(None)
        return t1 - t0, time.thread_time() - t1

    def dispatches(self, n: int) -> tuple[float, float, float]:
        """Recording, end() and the first prepare() of n dispatch + barrier pairs."""
        bench = self.bench
        views, noop = bench.views, bench.noop
        cb = bench.device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        t0 = time.thread_time()
        for i in range(n):
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[views[i % 8]])
            cb.execution_barrier()
        t1 = time.thread_time()
        cb.end()
        t2 = time.thread_time()
        cb.prepare(None)
        return t1 - t0, t2 - t1, time.thread_time() - t2

    def table(self, new: bool) -> float:
        """prepare() of the slotted command buffer for a new (or the same) table."""
        self.turn += 1
        table = self.tables[self.turn % 32 if new else 0]
        t0 = time.thread_time()
        self.slotted.prepare(table)
        return time.thread_time() - t0


def eager_rows(bench: Bench, reps: int) -> None:
    """Print the small-program rows (best of ``reps`` rounds of many samples)."""
    eager = Eager(bench)

    def phases(sample: Callable[[], tuple[float, ...]], inner: int) -> list[float]:
        rounds = [[sample() for _ in range(inner)] for _ in range(reps)]
        return [min(sum(s[i] for s in r) / inner for r in rounds) for i in range(len(rounds[0][0]))]

    for name, copy in (("one fill", False), ("one copy", True)):
        end, prepare = phases(lambda copy=copy: eager.single(copy), 200)
        print(f"{name:<24} end {end * 1e6:6.2f}  prepare {prepare * 1e6:6.2f}  (µs per program)")
    for n, inner in ((10, 100), (1000, 3)):
        record, end, prepare = (x * 1e6 / n for x in phases(lambda n=n: eager.dispatches(n), inner))
        print(f"N = {n:<5} pairs  record {record:5.2f} end {end:5.2f} prepare {prepare:5.2f}")
    for _ in range(64):
        eager.table(True)
    new = min(sum(eager.table(True) for _ in range(50)) / 50 for _ in range(reps)) * 1e4
    same = min(sum(eager.table(False) for _ in range(50)) / 50 for _ in range(reps)) * 1e4
    print(f"binding table, N = 100: prepare new {new:5.2f} same {same:5.2f} (µs per dispatch)")


def best(sample: Callable[[], float], reps: int, inner: int = 1) -> float:
    """The best of ``reps`` rounds, each the mean of ``inner`` samples."""
    return min(sum(sample() for _ in range(inner)) / inner for _ in range(reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", choices=("fills", "copies", "dispatches", "trip"))
    parser.add_argument("--implementation", help="a WebGPU implementation (null: no GPU)")
    args = parser.parse_args()
    bench = Bench(args.implementation)
    for kind in ("fills", "copies", "dispatches"):  # warm-up: pipelines, caches
        bench.phases(kind)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(5 if args.profile != "trip" else 500):
            bench.trip() if args.profile == "trip" else bench.phases(args.profile)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    print("case        record   end  execute   (CPU µs per command, best of", args.reps, ")")
    for kind in ("fills", "copies", "dispatches"):
        samples = [bench.phases(kind) for _ in range(args.reps)]
        cols = [min(s[i] for s in samples) * 1e6 / N for i in range(3)]
        print(f"{kind:<10} {cols[0]:7.2f} {cols[1]:5.2f} {cols[2]:8.2f}")
    for _ in range(20):
        bench.trip()
    print(f"one-fill round trip: {best(bench.trip, args.reps, 100) * 1e6:.1f} µs CPU")
    print("alone (gc.collect() first)   record   end")
    for kind in ("fills", "copies", "view fills"):
        pairs = [bench.alone(kind) for _ in range(args.reps)]
        record, end = (min(p[i] for p in pairs) * 1e6 / N for i in (0, 1))
        print(f"{kind:<28} {record:6.2f} {end:5.2f}")
    eager_rows(bench, args.reps)


if __name__ == "__main__":
    main()
