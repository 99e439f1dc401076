"""Session 23 diagnostic: hal's one-fill round trip on the null backend, by phase (µs).

python3 prof_fill.py [p]   # p: also a cProfile of 20000 round trips
"""

import cProfile
import pstats
import statistics
import sys
import time

import hal

d = hal.create_device(implementation="null", backend="null")
buf = d.allocate_buffer(4096)
sem = d.create_semaphore()
v = [0]


def rt() -> None:
    """One round trip: record, end, queue_execute, wait."""
    with d.record() as cb:
        cb.fill_buffer(buf, 0, 4, 0)
    v[0] += 1
    d.queue_execute(cb, signal=[(sem, v[0])])
    sem.wait(v[0], timeout=60)


def median_us(x: list[float]) -> float:
    """The median of ``x`` in µs."""
    return statistics.median(x) * 1e6


def pieces(n: int = 3000) -> None:
    """Print the median of each phase over ``n`` round trips."""
    phases: list[list[float]] = [[], [], [], []]
    for _ in range(n):
        t0 = time.perf_counter()
        cb = d.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.fill_buffer(buf, 0, 4, 0)
        t1 = time.perf_counter()
        cb.end()
        t2 = time.perf_counter()
        v[0] += 1
        d.queue_execute(cb, signal=[(sem, v[0])])
        t3 = time.perf_counter()
        sem.wait(v[0], timeout=60)
        t4 = time.perf_counter()
        for phase, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phase.append(seconds)
    record, end, execute, wait = (median_us(p) for p in phases)
    print(f"record {record:.2f} end {end:.2f} execute {execute:.2f} wait {wait:.2f}")


for _ in range(3000):
    rt()
pieces()
pieces()
if len(sys.argv) > 1:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(20000):
        rt()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(40)
