"""Where eager.py's 1000 copies on wgpu-native lose time on the H200: split timings as the
process gains what eager.py loads (torch, IREE vulkan/cuda, the raw anchor)."""
import sys, statistics, time
sys.path.insert(0, "benchmarks")
import eager, hal
impl = sys.argv[1]
device = hal.create_device(implementation=impl)
h = eager.Hal(device)
sem = device.create_semaphore(); v = [0]
def split(kind):
    t0 = time.perf_counter()
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT); cb.begin()
    if kind == "copy":
        for i in range(1000): cb.copy_buffer(h.buffer, 256 * i, h.target, (1 << 19) + 256 * i, 256)
    else:
        for i in range(1000): cb.fill_buffer(h.buffer, 256 * i, 256, 0x12345678)
    t1 = time.perf_counter(); cb.end(); t2 = time.perf_counter()
    v[0] += 1; device.queue_execute(cb, signal=[(sem, v[0])]); t3 = time.perf_counter()
    sem.wait(v[0], timeout=60); t4 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)
def report(tag):
    for kind in ("copy", "fill"):
        rows = [split(kind) for _ in range(23)][3:]
        m = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
        print(f"{tag:<28} {kind} record {m[0]:.0f} end {m[1]:.0f} execute {m[2]:.0f} wait {m[3]:.0f} total {m[4]:.0f}", flush=True)
report("alone")
try:
    t = eager.Torch(); t.dispatches(10); report("torch loaded")
except Exception as e:
    print("torch", e)
irees = {d: i for d in ("vulkan", "cuda") if (i := eager.open_iree(d, [])) is not None}
report("iree opened")
for d, i in irees.items():
    i.copies(1000)
report("iree ran once")
def alt(kind):
    for i in irees.values(): i.copies(1000)
    return split(kind)
for kind in ("copy", "fill"):
    rows = [alt(kind) for _ in range(13)][3:]
    m = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
    print(f"{'right after iree each':<28} {kind} record {m[0]:.0f} end {m[1]:.0f} execute {m[2]:.0f} wait {m[3]:.0f} total {m[4]:.0f}", flush=True)
if impl == "wgpu-native":
    raw = eager.Raw(device)
    raw.copies(1000)
    report("raw ran once")
    def alt2(kind):
        raw.copies(1000); return split(kind)
    for kind in ("copy", "fill"):
        rows = [alt2(kind) for _ in range(13)][3:]
        m = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
        print(f"{'right after raw each':<28} {kind} record {m[0]:.0f} end {m[1]:.0f} execute {m[2]:.0f} wait {m[3]:.0f} total {m[4]:.0f}", flush=True)
import os; os._exit(0)
