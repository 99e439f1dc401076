import sys, time, statistics, hal
kind, what = sys.argv[1], sys.argv[2]
d = hal.create_device(implementation="null", backend="null") if kind == "null" else hal.create_device()
noop = d.create_executable(hal.shader_path("noop.wgsl"))
buf = d.allocate_buffer(4096); s = d.create_semaphore(); v = [0]
M = hal.CommandBufferMode.ONE_SHOT
pc = time.perf_counter
def rt_dispatch():
    t = pc()
    cb = d.create_command_buffer(M); cb.begin()
    cb.dispatch(noop, "touch", (1,1,1), bindings=[buf]); cb.execution_barrier(); cb.end()
    v[0] += 1; d.queue_execute(cb, signal=[(s, v[0])]); s.wait(v[0], timeout=10)
    return pc() - t
def rt_fill():
    t = pc()
    cb = d.create_command_buffer(M); cb.begin()
    cb.fill_buffer(buf, 0, 4096, 7); cb.end()
    v[0] += 1; d.queue_execute(cb, signal=[(s, v[0])]); s.wait(v[0], timeout=10)
    return pc() - t
def rt_qfill():
    t = pc()
    v[0] += 1; d.queue_fill(buf, 0, 4096, 7, signal=[(s, v[0])]); s.wait(v[0], timeout=10)
    return pc() - t
f = {"dispatch": rt_dispatch, "fill": rt_fill, "qfill": rt_qfill}[what]
n = 300 if kind == "null" else 150
for _ in range(n): f()
print(min(statistics.median([f() for _ in range(n)]) for _ in range(5)) * 1e6)
