"""The fixed cost of one submission (issue 10, session 20): thread CPU time and wall time of
each phase of a one-fill round trip, a ``queue_copy``, ``queue_fill`` and ``queue_update``
round trip and a one-dispatch round trip, beside raw wgpu-py doing the same (GPU
implementations only). Medians over many repetitions; ``--profile CASE`` prints a cProfile.

    python3 benchmarks/profile_fixed.py [--implementation null|wgpu-native|dawn] [--reps N]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hal  # noqa: E402

TIMEOUT = 30.0
Clock = Callable[[], float]


class Phases:
    """Marks phases of one repetition on both clocks."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def mark(self) -> None:
        self.marks.append((time.thread_time(), time.perf_counter()))

    def spans(self) -> list[tuple[float, float]]:
        return [
            (b[0] - a[0], b[1] - a[1]) for a, b in zip(self.marks, self.marks[1:], strict=False)
        ]


class HalCases:
    """The cases through hal; each returns its phase marks."""

    def __init__(self, device: hal.Device) -> None:
        self.device = device
        self.buffer = device.allocate_buffer(1 << 20)
        self.target = device.allocate_buffer(1 << 20)
        self.noop = device.create_executable(hal.shader_path("noop.wgsl"))
        self.view = hal.BufferRef(self.buffer, 0, 256)
        self.semaphore = device.create_semaphore()
        self.value = 0
        self.data = bytes(16)

    def _signal(self) -> list[tuple[hal.Semaphore, int]]:
        self.value += 1
        return [(self.semaphore, self.value)]

    def cb(self, p: Phases, dispatch: bool) -> None:
        p.mark()
        cb = self.device.create_command_buffer()
        cb.begin()
        if dispatch:
            cb.dispatch(self.noop, "touch", (1, 1, 1), bindings=[self.view])
        else:
            cb.fill_buffer(self.buffer, 0, 4, 0)
        p.mark()
        cb.end()
        p.mark()
        self.device.queue_execute(cb, signal=self._signal())
        p.mark()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        p.mark()

    def fill_cb(self, p: Phases) -> None:
        self.cb(p, False)

    def dispatch_cb(self, p: Phases) -> None:
        self.cb(p, True)

    def queue_copy(self, p: Phases) -> None:
        p.mark()
        self.device.queue_copy(self.buffer, 0, self.target, 4096, 256, signal=self._signal())
        p.mark()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        p.mark()

    def queue_fill(self, p: Phases) -> None:
        p.mark()
        self.device.queue_fill(self.buffer, 0, 4, 0, signal=self._signal())
        p.mark()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        p.mark()

    def queue_update(self, p: Phases) -> None:
        p.mark()
        self.device.queue_update(self.data, 0, self.buffer, 0, 16, signal=self._signal())
        p.mark()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        p.mark()


class RawCases:
    """The same through wgpu-py by hand on hal's own wgpu device (submit + blocking wait)."""

    def __init__(self, device: hal.Device) -> None:
        backend: Any = device.backend
        self.device = backend.device
        self.dawn = backend.implementation == "dawn"
        import wgpu

        usage = wgpu.BufferUsage
        flags = usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
        self.buffer = self.device.create_buffer(size=1 << 20, usage=flags)
        self.target = self.device.create_buffer(size=1 << 20, usage=flags)
        module = self.device.create_shader_module(
            code=Path(hal.shader_path("noop.wgsl")).read_text()
        )
        self.pipeline = self.device.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": "touch"}
        )
        self.group = self.device.create_bind_group(
            layout=self.pipeline.get_bind_group_layout(0),
            entries=[{"binding": 0, "resource": {"buffer": self.buffer, "offset": 0, "size": 256}}],
        )
        self.data = bytes(16)
        if not self.dawn:
            from wgpu.backends.wgpu_native._ffi import ffi, lib

            self.ffi, self.lib = ffi, lib

    def _wait(self) -> None:
        if self.dawn:
            self.device.queue.on_submitted_work_done_sync()
            return
        ffi, lib = self.ffi, self.lib
        lib.wgpuDevicePoll(self.device._internal, True, ffi.NULL)

    def _submit_wait(self, p: Phases, encoder: Any) -> None:
        self.device.queue.submit([encoder.finish()])
        p.mark()
        self._wait()
        p.mark()

    def fill_cb(self, p: Phases) -> None:
        p.mark()
        encoder = self.device.create_command_encoder()
        encoder.clear_buffer(self.buffer, 0, 4)
        p.mark()
        p.mark()
        self._submit_wait(p, encoder)

    def dispatch_cb(self, p: Phases) -> None:
        p.mark()
        encoder = self.device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        compute.set_pipeline(self.pipeline)
        compute.set_bind_group(0, self.group)
        compute.dispatch_workgroups(1, 1, 1)
        compute.end()
        p.mark()
        p.mark()
        self._submit_wait(p, encoder)

    def queue_copy(self, p: Phases) -> None:
        p.mark()
        encoder = self.device.create_command_encoder()
        encoder.copy_buffer_to_buffer(self.buffer, 0, self.target, 4096, 256)
        self._submit_wait(p, encoder)

    def queue_fill(self, p: Phases) -> None:
        p.mark()
        encoder = self.device.create_command_encoder()
        encoder.clear_buffer(self.buffer, 0, 4)
        self._submit_wait(p, encoder)

    def queue_update(self, p: Phases) -> None:
        p.mark()
        self.device.queue.write_buffer(self.buffer, 0, self.data)
        self.device.queue.submit([])
        p.mark()
        self._wait()
        p.mark()


CASES = {
    "fill_cb": ("record", "end", "queue_execute", "wait"),
    "queue_copy": ("call", "wait"),
    "queue_fill": ("call", "wait"),
    "queue_update": ("call", "wait"),
    "dispatch_cb": ("record", "end", "queue_execute", "wait"),
}


def measure(run: Callable[[Phases], None], reps: int) -> list[list[tuple[float, float]]]:
    for _ in range(max(10, reps // 10)):
        run(Phases())
    samples = []
    for _ in range(reps):
        p = Phases()
        run(p)
        samples.append(p.spans())
    return samples


def summary(samples: list[list[tuple[float, float]]], names: tuple[str, ...]) -> str:
    cells = []
    for i, name in enumerate(names):
        cpu = statistics.median(s[i][0] for s in samples) * 1e6
        wall = statistics.median(s[i][1] for s in samples) * 1e6
        cells.append(f"{name} {cpu:.1f}/{wall:.1f}")
    cpu_total = statistics.median(sum(x[0] for x in s) for s in samples) * 1e6
    wall_total = statistics.median(sum(x[1] for x in s) for s in samples) * 1e6
    cells.append(f"total {cpu_total:.1f}/{wall_total:.1f}")
    return "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--implementation", default=None)
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--profile", default=None, help="case to cProfile")
    parser.add_argument("--no-raw", action="store_true")
    args = parser.parse_args()
    device = hal.create_device(implementation=args.implementation)
    print(f"# {device.info}; thread CPU µs / wall µs, medians of {args.reps}")
    cases = HalCases(device)
    raw = None
    if device.backend.implementation != "null" and not args.no_raw:
        raw = RawCases(device)
    for case, names in CASES.items():
        print(f"hal {case:13s}", summary(measure(getattr(cases, case), args.reps), names))
        if raw is not None:
            raw_names = names if len(names) == 2 else ("record", "-", "submit", "wait")
            print(f"raw {case:13s}", summary(measure(getattr(raw, case), args.reps), raw_names))
    if args.profile:
        run = getattr(cases, args.profile)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.reps):
            run(Phases())
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)
    device.close()


if __name__ == "__main__":
    main()
