"""Where a one-shot round trip's time goes (issue 10): phases of record / end / queue_execute
/ wait for one tiny dispatch and for one 4-byte fill, medians over many repetitions, then a
cProfile of the same loop. hal only (no anchors in the process).

    python3 benchmarks/profile_round_trip.py [--profile]
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hal  # noqa: E402


def main() -> None:
    device = hal.create_device()
    buffer = device.allocate_buffer(1 << 20)
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    view = hal.BufferRef(buffer, 0, 256)
    semaphore = device.create_semaphore()
    value = 0

    def once(kind: str) -> tuple[float, ...]:
        nonlocal value
        t0 = time.perf_counter()
        cb = device.create_command_buffer()
        cb.begin()
        if kind == "dispatch":
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[view])
        else:
            cb.fill_buffer(buffer, 0, 4, 0)
        t1 = time.perf_counter()
        cb.end()
        t2 = time.perf_counter()
        value += 1
        device.queue_execute(cb, signal=[(semaphore, value)])
        t3 = time.perf_counter()
        semaphore.wait(value, timeout=30)
        t4 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0

    for kind in ("dispatch", "fill"):
        for _ in range(50):
            once(kind)
        samples = [once(kind) for _ in range(500)]
        names = ("record", "end", "queue_execute", "wait", "total")
        medians = {n: statistics.median(s[i] for s in samples) * 1e6 for i, n in enumerate(names)}
        print(kind, " ".join(f"{n} {v:.1f}" for n, v in medians.items()), "µs")
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(500):
            once("dispatch")
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
