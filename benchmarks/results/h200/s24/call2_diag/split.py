"""1000 fills and 1000 copies of 256 B, one-shot, split per phase (µs per 1000 commands):
record, end(), queue_execute, wait. Usage: split.py [implementation]."""

import statistics
import sys
import time

import hal

dev = hal.create_device(implementation=sys.argv[1] if len(sys.argv) > 1 else None)
buf, tgt = dev.allocate_buffer(1 << 20), dev.allocate_buffer(1 << 20)
sem = dev.create_semaphore()
value = [0]


def one(kind: str) -> tuple[float, ...]:
    """One command buffer of ``kind`` ("fill" or "copy"): the seconds of each phase."""
    t0 = time.perf_counter()
    cb = dev.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for i in range(1000):
        if kind == "fill":
            cb.fill_buffer(buf, 256 * i, 256, 0x12345678)
        else:
            cb.copy_buffer(buf, 256 * i, tgt, (1 << 19) + 256 * i, 256)
    t1 = time.perf_counter()
    cb.end()
    t2 = time.perf_counter()
    value[0] += 1
    dev.queue_execute(cb, signal=[(sem, value[0])])
    t3 = time.perf_counter()
    sem.wait(value[0], timeout=60)
    t4 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)


for kind in ("fill", "copy"):
    rows = [one(kind) for _ in range(15)][3:]
    m = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
    print(
        f"{kind} record {m[0]:.0f} end {m[1]:.0f} execute {m[2]:.0f} wait {m[3]:.0f} "
        f"total {m[4]:.0f} us"
    )
