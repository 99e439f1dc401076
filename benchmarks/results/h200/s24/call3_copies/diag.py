"""Where eager.py's 1000 copies lose time on the H200: split timings (µs per 1000 commands)
as the process gains what eager.py loads (torch, IREE vulkan/cuda, the raw anchor).
Usage: diag.py wgpu-native|dawn (from the repository root)."""

import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, "benchmarks")
import eager

import hal

impl = sys.argv[1]
device = hal.create_device(implementation=impl)
h = eager.Hal(device)
sem = device.create_semaphore()
value = [0]


def split(kind: str) -> tuple[float, ...]:
    """One command buffer of 1000 copies or fills: the seconds of each phase."""
    t0 = time.perf_counter()
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for i in range(1000):
        if kind == "copy":
            cb.copy_buffer(h.buffer, 256 * i, h.target, (1 << 19) + 256 * i, 256)
        else:
            cb.fill_buffer(h.buffer, 256 * i, 256, 0x12345678)
    t1 = time.perf_counter()
    cb.end()
    t2 = time.perf_counter()
    value[0] += 1
    device.queue_execute(cb, signal=[(sem, value[0])])
    t3 = time.perf_counter()
    sem.wait(value[0], timeout=60)
    t4 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)


def report(tag: str, sample: Callable[[str], tuple[float, ...]] = split, n: int = 23) -> None:
    """Print the medians of ``n - 3`` samples (3 warm-up) per kind."""
    for kind in ("copy", "fill"):
        rows = [sample(kind) for _ in range(n)][3:]
        m = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
        print(
            f"{tag:<28} {kind} record {m[0]:.0f} end {m[1]:.0f} execute {m[2]:.0f} "
            f"wait {m[3]:.0f} total {m[4]:.0f}",
            flush=True,
        )


report("alone")
try:
    eager.Torch().dispatches(10)
    report("torch loaded")
except Exception as error:
    print("torch", error)
irees = [i for d in ("vulkan", "cuda") if (i := eager.open_iree(d, [])) is not None]
report("iree opened")
for iree in irees:
    iree.copies(1000)
report("iree ran once")


def after_iree(kind: str) -> tuple[float, ...]:
    for iree in irees:
        iree.copies(1000)
    return split(kind)


report("right after iree each", after_iree, 13)
if impl == "wgpu-native":
    raw = eager.Raw(device)
    raw.copies(1000)
    report("raw ran once")

    def after_raw(kind: str) -> tuple[float, ...]:
        raw.copies(1000)
        return split(kind)

    report("right after raw each", after_raw, 13)
os._exit(0)
