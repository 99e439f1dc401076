"""Session 22 diagnostic: one-dispatch round trips on Dawn, best-of batches, modes interleaved.

Modes: ``hal_unb`` (queue_execute + Semaphore.wait()), ``hal_b`` (the same with a timeout),
``nowake`` (hal_unb with the completion thread never woken: Completion.add patched to skip
its notify, a diagnostic of what the tracker's wake-up costs, not a usable mode), ``raw``
(the same compiled calls submitted through wgpudawn's queue.submit +
on_submitted_work_done_sync, as benchmarks/queue_latency.py's raw rows) and ``backend``
(hal's Dawn backend submit + wait alone). B round trips per batch, R batches per mode.

    PYTHONPATH=. python3 benchmarks/results/h200/s22_dawn/roundtrip_batches_s22.py
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import hal
import hal.runtime.completion as completion_module
from benchmarks.queue_latency import raw_wait
from hal.core.builtins import shader_path

_wake = [True]
_add = completion_module.Completion.add


def _add_maybe_quietly(self: Any, work: Any, *args: Any) -> bool:
    if _wake[0]:
        return bool(_add(self, work, *args))
    self._in_flight.append(work)  # diagnostic: tracked, the tracker not woken
    return True


completion_module.Completion.add = _add_maybe_quietly  # type: ignore[method-assign]


def main() -> None:
    """Print best / first-quartile / median per mode and the ratios to ``raw``."""
    device = hal.create_device(implementation=os.environ.get("IMPL", "dawn"))
    wgpu_device = device.backend.device
    noop = device.create_executable(shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)
    tiny = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    tiny.begin()
    tiny.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])
    tiny.end()
    semaphore = device.create_semaphore()
    device.queue_execute(tiny, signal=[(semaphore, 1)])
    semaphore.wait(1, timeout=60)
    program = tiny.prepare(None)
    value = [1]
    backend: Any = device.backend

    def hal_unb() -> None:
        value[0] += 1
        device.queue_execute(tiny, signal=[(semaphore, value[0])])
        semaphore.wait(value[0])

    def hal_b() -> None:
        value[0] += 1
        device.queue_execute(tiny, signal=[(semaphore, value[0])])
        semaphore.wait(value[0], timeout=60)

    def nowake() -> None:
        _wake[0] = False
        try:
            hal_unb()
        finally:
            _wake[0] = True

    def raw() -> None:
        wgpu_device.queue.submit([program.encode()])
        raw_wait(wgpu_device)

    def backend_only() -> None:
        backend.wait(backend.submit([program.encode()]))

    modes = {"nowake": nowake, "hal_unb": hal_unb, "hal_b": hal_b, "raw": raw}
    modes["backend"] = backend_only
    batch, rounds = int(os.environ.get("B", 40)), int(os.environ.get("R", 30))
    for run in modes.values():
        for _ in range(20):
            run()
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, run in modes.items():
            start = time.perf_counter()
            for _ in range(batch):
                run()
            times[name].append((time.perf_counter() - start) / batch)
    raw_sorted = sorted(times["raw"])
    for name, samples in times.items():
        samples.sort()
        q = len(samples) // 4
        print(
            f"{name:8s} best {samples[0] * 1e6:6.1f} q25 {samples[q] * 1e6:6.1f} "
            f"med {statistics.median(samples) * 1e6:6.1f}  "
            f"best/raw {samples[0] / raw_sorted[0]:.2f} q25/raw {samples[q] / raw_sorted[q]:.2f}"
        )
    device.close()


if __name__ == "__main__":
    main()
