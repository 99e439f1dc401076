"""Round-trip fixed cost (session 22): best of 5 medians of one round trip, in µs.

``python roundtrip_ab_s22.py KIND WHAT``: KIND null (GPU-free backend) or anything else (the
default implementation: HAL_IMPLEMENTATION selects Dawn); WHAT dispatch (one dispatch and a
barrier in a ONE_SHOT command buffer), fill (one fill_buffer) or qfill (queue_fill); each
with one signal and a Semaphore.wait.
"""

from __future__ import annotations

import statistics
import sys
import time

import hal

kind, what = sys.argv[1], sys.argv[2]
if kind == "null":
    d = hal.create_device(implementation="null", backend="null")
else:
    d = hal.create_device()
noop = d.create_executable(hal.shader_path("noop.wgsl"))
buf = d.allocate_buffer(4096)
s = d.create_semaphore()
v = [0]
ONE_SHOT = hal.CommandBufferMode.ONE_SHOT
pc = time.perf_counter


def rt_dispatch() -> float:
    t = pc()
    cb = d.create_command_buffer(ONE_SHOT)
    cb.begin()
    cb.dispatch(noop, "touch", (1, 1, 1), bindings=[buf])
    cb.execution_barrier()
    cb.end()
    v[0] += 1
    d.queue_execute(cb, signal=[(s, v[0])])
    s.wait(v[0], timeout=10)
    return pc() - t


def rt_fill() -> float:
    t = pc()
    cb = d.create_command_buffer(ONE_SHOT)
    cb.begin()
    cb.fill_buffer(buf, 0, 4096, 7)
    cb.end()
    v[0] += 1
    d.queue_execute(cb, signal=[(s, v[0])])
    s.wait(v[0], timeout=10)
    return pc() - t


def rt_qfill() -> float:
    t = pc()
    v[0] += 1
    d.queue_fill(buf, 0, 4096, 7, signal=[(s, v[0])])
    s.wait(v[0], timeout=10)
    return pc() - t


f = {"dispatch": rt_dispatch, "fill": rt_fill, "qfill": rt_qfill}[what]
n = 300 if kind == "null" else 150
for _ in range(n):
    f()
print(min(statistics.median([f() for _ in range(n)]) for _ in range(5)) * 1e6)
