"""CPU cost per command of the eager path (issue 10): thread CPU time, not wall time, so a
shared, noisy machine still gives comparable figures. Best of ``--reps`` (default 5).

Rows, each in µs per command (per round trip for (d)):

- (a) recording 1000 fills / 1000 copies / 1000 dispatch + barrier pairs into a ONE_SHOT cb;
- (b) ``end()`` of each;
- (c) ``queue_execute`` of each (compile + encode + submit; the wait is not counted);
- (d) the one-fill round trip (record + end + queue_execute + wait);
- then recording and ``end()`` alone, ``gc.collect()`` first (the phase table charges the
  collection of the previous command buffer to whichever phase triggers it), for fills,
  copies and fills through a BufferView.

    python3 benchmarks/profile_cpu.py [--reps 5] [--profile fills|copies|dispatches|trip]
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

    def __init__(self) -> None:
        self.device = hal.create_device()
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


def best(sample: Callable[[], float], reps: int, inner: int = 1) -> float:
    """The best of ``reps`` rounds, each the mean of ``inner`` samples."""
    return min(sum(sample() for _ in range(inner)) / inner for _ in range(reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", choices=("fills", "copies", "dispatches", "trip"))
    args = parser.parse_args()
    bench = Bench()
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


if __name__ == "__main__":
    main()
