import time, statistics, sys
import hal
dev = hal.create_device(implementation=sys.argv[1] if len(sys.argv) > 1 else None)
buf = dev.allocate_buffer(1 << 20); tgt = dev.allocate_buffer(1 << 20)
sem = dev.create_semaphore(); v = 0
def one(kind):
    global v
    t0 = time.perf_counter()
    cb = dev.create_command_buffer(hal.CommandBufferMode.ONE_SHOT); cb.begin()
    if kind == "fill":
        for i in range(1000): cb.fill_buffer(buf, 256 * i, 256, 0x12345678)
    else:
        for i in range(1000): cb.copy_buffer(buf, 256 * i, tgt, (1 << 19) + 256 * i, 256)
    t1 = time.perf_counter(); cb.end(); t2 = time.perf_counter()
    v += 1; dev.queue_execute(cb, signal=[(sem, v)]); t3 = time.perf_counter()
    sem.wait(v, timeout=60); t4 = time.perf_counter()
    return (t1-t0, t2-t1, t3-t2, t4-t3, t4-t0)
for kind in ("fill", "copy"):
    rows = [one(kind) for _ in range(15)][3:]
    meds = [statistics.median(r[i] for r in rows) * 1e6 for i in range(5)]
    print(kind, "record %.0f end %.0f execute %.0f wait %.0f total %.0f us" % tuple(meds))
