"""Dispatch overhead of hal against hand-written wgpu-py.

N tiny dispatches of ``shaders/noop.wgsl:touch`` (one read_write binding; dispatch ``i`` binds
buffer ``i % B``) are submitted and waited for in four ways:

* ``hal``: a DEFAULT-mode (reusable) command buffer recorded once with N dispatches and an
  ``execution_barrier`` between each two; per repetition ``device.queue_execute`` (which
  re-encodes the compiled plan into a fresh wgpu command buffer and submits it) and
  ``Semaphore.wait``;
* ``wgpu_one_pass``: hand-written wgpu-py, one compute pass, ``set_pipeline`` once and
  ``set_bind_group`` + ``dispatch_workgroups`` per dispatch, then ``device._poll(True)``;
* ``wgpu_pass_per_dispatch``: hand-written, a compute pass around every dispatch;
* ``hal_naive``: hal's naive lowering (``cb.lower_naive()``, one pass per command) compiled
  with ``hal.runtime.encoder.compile_plan`` and replayed with ``Program.encode`` + ``queue.submit``.

Separately it times hal's recording (create_command_buffer + begin + N dispatches and barriers
+ end) and the one-off compilation of the lowered plan (what a first submission adds).

All modes use the same wgpu pipeline (``executable.pipeline(entry)``) and equivalent bind groups
created before timing. Repetitions are interleaved: every round runs each mode once, in a fresh
seeded random order, so that drift in machine load and the tails of helper threads affect all
modes alike. Every wait is bounded: semaphore waits take a timeout, and every repetition
(``device._poll(True)`` has no timeout) and every untimed step runs under a watchdog that
aborts the process with all threads' tracebacks when its bound expires.

Run: ``python3 benchmarks/dispatch_overhead.py [--sizes 100,1000,10000] [--reps 11]``. Works when
hal is installed, or from a source checkout (the repository root is added to ``sys.path``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import faulthandler
import importlib
import importlib.util
import io
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (100, 1000, 10000)
DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "dispatch_overhead.json"
SUBMIT_TARGET = 1.5
"""Goal: hal's submit-side cost at most this many times hand-written one-pass wgpu-py."""
SETUP_TIMEOUT_S = 60.0
"""Least bound on untimed steps (device creation, recording, counter read-back)."""
EARLY_SIGNAL_SLACK_S = 200e-6
"""The GPU may look busy this long after hal's semaphore was reached without suspicion."""

HAL = "hal"
ONE_PASS = "wgpu_one_pass"
PASS_PER_DISPATCH = "wgpu_pass_per_dispatch"
HAL_NAIVE = "hal_naive"
MODES = (HAL, ONE_PASS, PASS_PER_DISPATCH, HAL_NAIVE)
MODE_TITLES = {
    HAL: "hal, DEFAULT cb, lowered (1 pass)",
    ONE_PASS: "wgpu-py by hand, 1 pass",
    PASS_PER_DISPATCH: "wgpu-py by hand, pass per dispatch",
    HAL_NAIVE: "hal, naive lowering (pass per cmd)",
}


# -- importing hal ----------------------------------------------------------------------------


def import_hal() -> Any:
    """Import ``hal``, falling back to the source checkout this file lives in.

    In a source checkout without installation ``hal.shaders`` does not exist (pyproject maps
    that package name to the top-level ``shaders/`` folder only when installing), so it is
    registered here from ``shaders/``; hal needs it to compile its builtin kernels.
    """
    hal: Any
    try:
        hal = importlib.import_module("hal")
    except ModuleNotFoundError as error:
        if error.name != "hal":
            raise
        sys.path.insert(0, str(REPO_ROOT))
        hal = importlib.import_module("hal")
    try:
        importlib.import_module("hal.shaders")
    except ModuleNotFoundError:
        init = REPO_ROOT / "shaders" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "hal.shaders", init, submodule_search_locations=[str(init.parent)]
        )
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules["hal.shaders"] = module
        spec.loader.exec_module(module)
        hal.shaders = module
    importlib.import_module("hal.core.builtins")
    importlib.import_module("hal.runtime.encoder")
    return hal


# -- timing helpers ---------------------------------------------------------------------------


class Watchdog:
    """Aborts the process, with every thread's traceback, if an armed block overruns.

    Bounds the waits that take no timeout themselves (``wgpuDevicePoll(wait=True)``). Arming
    and disarming only store a deadline; a daemon thread checks it twice a second, so nothing
    runs on another thread while a repetition is timed (``faulthandler.dump_traceback_later``
    starts a thread on every call).
    """

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.seconds = 0.0
        threading.Thread(target=self._watch, name="benchmark-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                print(f"\nwatchdog: a wait exceeded {self.seconds} s; aborting", file=sys.stderr)
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                os._exit(124)

    @contextmanager
    def bound(self, seconds: float) -> Iterator[None]:
        """Abort the process if the block runs longer than ``seconds``."""
        outer = self.deadline, self.seconds
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.deadline, self.seconds = outer


@dataclass
class Samples:
    """Raw per-repetition seconds of one mode at one size."""

    submit: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    busy_after: list[float] = field(default_factory=list)


Timing = tuple[float, float, float]
"""(submit-side, total, busy after the wait returned) seconds of one repetition."""


def median_us_per_dispatch(samples: Sequence[float], n: int) -> float:
    """Median of ``samples`` (seconds for ``n`` dispatches) in µs per dispatch."""
    return statistics.median(samples) / n * 1e6


# -- the workload -----------------------------------------------------------------------------


@dataclass
class Workload:
    """The device objects every mode shares."""

    hal: Any
    device: Any
    executable: Any
    entry: str
    buffers: list[Any]
    pipeline: Any
    groups: list[Any]
    timeout: float
    watchdog: Watchdog

    @property
    def wgpu_device(self) -> Any:
        """The raw wgpu device under hal."""
        return self.device.backend.device


def wgpu_buffer_of(buffer: Any) -> Any:
    """The wgpu buffer under a hal Buffer (the one hal's encoder binds)."""
    return buffer.allocation.handle


def make_workload(
    hal: Any, buffer_count: int, timeout: float, adapter: int | str | None, watchdog: Watchdog
) -> Workload:
    """Create the device, the ``touch`` executable, ``buffer_count`` buffers and one bind group
    per buffer on the pipeline's group-0 layout."""
    device = hal.create_device(adapter)
    executable = device.create_executable(hal.core.builtins.shader_path("noop.wgsl"), label="noop")
    entry = "touch"
    buffers = [device.allocate_buffer(256) for _ in range(buffer_count)]
    device.wait_idle(timeout=timeout)  # flush hal's zero-clears of the new buffers
    pipeline, layout, _constants_layout = executable.pipeline(entry)
    groups = [
        device.backend.device.create_bind_group(
            layout=layout,
            entries=[
                {
                    "binding": 0,
                    "resource": {
                        "buffer": wgpu_buffer_of(b),
                        "offset": b.byte_offset,
                        "size": b.byte_length,
                    },
                }
            ],
        )
        for b in buffers
    ]
    return Workload(hal, device, executable, entry, buffers, pipeline, groups, timeout, watchdog)


def record_chain(w: Workload, n: int) -> Any:
    """A DEFAULT-mode command buffer of ``n`` dispatches with a barrier between each two."""
    hal = w.hal
    cb = w.device.create_command_buffer(mode=hal.CommandBufferMode.DEFAULT)
    cb.begin()
    buffers, count = w.buffers, len(w.buffers)
    for i in range(n):
        if i:
            cb.execution_barrier()
        cb.dispatch(w.executable, w.entry, (1, 1, 1), bindings=[buffers[i % count]])
    cb.end()
    return cb


def read_counters(w: Workload) -> list[int]:
    """The ``counter[0]`` word of every buffer (the device must be idle)."""
    return [int(b.to_numpy(dtype="uint32")[0]) for b in w.buffers]


class Runner:
    """The timed modes at one size; each ``run_*`` returns a :data:`Timing` and leaves the
    device idle."""

    def __init__(self, w: Workload, n: int) -> None:
        self.w = w
        self.n = n
        self.cb = record_chain(w, n)
        self.semaphore = w.device.create_semaphore()
        self.value = 0
        self.naive = w.hal.runtime.encoder.compile_plan(self.cb.lower_naive(), w.device.encoding)
        self.sequence = [w.groups[i % len(w.groups)] for i in range(n)]

    def run_hal(self) -> Timing:
        """``queue_execute`` of the reusable command buffer, then ``Semaphore.wait``.

        Afterwards (untimed) ``device._poll(True)`` checks that the GPU really was done when
        the semaphore was reached: its duration is the third value (about 0 when hal is right;
        the time the GPU still worked after hal signalled otherwise)."""
        device, semaphore, wdev = self.w.device, self.semaphore, self.w.wgpu_device
        self.value += 1
        value = self.value
        with self.w.watchdog.bound(self.w.timeout):
            t0 = time.perf_counter()
            device.queue_execute(self.cb, signal=[(semaphore, value)])
            t1 = time.perf_counter()
            semaphore.wait(value, timeout=self.w.timeout)
            t2 = time.perf_counter()
            wdev._poll(True)
            t3 = time.perf_counter()
        return t1 - t0, t2 - t0, t3 - t2

    def run_one_pass(self) -> Timing:
        """Hand-written wgpu-py: one compute pass, the pipeline set once."""
        wdev, pipeline = self.w.wgpu_device, self.w.pipeline
        queue, sequence = wdev.queue, self.sequence
        with self.w.watchdog.bound(self.w.timeout):
            t0 = time.perf_counter()
            encoder = wdev.create_command_encoder()
            compute = encoder.begin_compute_pass()
            compute.set_pipeline(pipeline)
            for group in sequence:
                compute.set_bind_group(0, group)
                compute.dispatch_workgroups(1, 1, 1)
            compute.end()
            queue.submit([encoder.finish()])
            t1 = time.perf_counter()
            wdev._poll(True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0, 0.0

    def run_pass_per_dispatch(self) -> Timing:
        """Hand-written wgpu-py: a compute pass around every dispatch."""
        wdev, pipeline = self.w.wgpu_device, self.w.pipeline
        queue, sequence = wdev.queue, self.sequence
        with self.w.watchdog.bound(self.w.timeout):
            t0 = time.perf_counter()
            encoder = wdev.create_command_encoder()
            for group in sequence:
                compute = encoder.begin_compute_pass()
                compute.set_pipeline(pipeline)
                compute.set_bind_group(0, group)
                compute.dispatch_workgroups(1, 1, 1)
                compute.end()
            queue.submit([encoder.finish()])
            t1 = time.perf_counter()
            wdev._poll(True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0, 0.0

    def run_hal_naive(self) -> Timing:
        """hal's naive plan (one pass per command): ``Program.encode`` + ``queue.submit``."""
        wdev, program = self.w.wgpu_device, self.naive
        queue = wdev.queue
        with self.w.watchdog.bound(self.w.timeout):
            t0 = time.perf_counter()
            queue.submit([program.encode()])
            t1 = time.perf_counter()
            wdev._poll(True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0, 0.0

    def modes(self) -> dict[str, Callable[[], Timing]]:
        """The timed modes by name."""
        return {
            HAL: self.run_hal,
            ONE_PASS: self.run_one_pass,
            PASS_PER_DISPATCH: self.run_pass_per_dispatch,
            HAL_NAIVE: self.run_hal_naive,
        }


def time_recording(w: Workload, n: int, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Seconds to record (create + begin + n dispatches/barriers + end) and to compile the
    lowered plan (what the first ``queue_execute`` of a command buffer adds), per run."""
    record: list[float] = []
    compile_: list[float] = []
    compile_plan = w.hal.runtime.encoder.compile_plan
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        cb = record_chain(w, n)
        t1 = time.perf_counter()
        compile_plan(cb.plan, w.device.encoding)
        t2 = time.perf_counter()
        if i >= warmup:
            record.append(t1 - t0)
            compile_.append(t2 - t1)
    return record, compile_


def bench_size(w: Workload, n: int, reps: int, warmup: int) -> dict[str, Any]:
    """Measure every mode at ``n`` dispatches; returns the JSON-ready result for ``n``."""
    runner = Runner(w, n)
    before = read_counters(w)
    samples = {mode: Samples() for mode in MODES}
    modes = runner.modes()
    names = list(modes)
    shuffler = random.Random(n)  # reproducible order
    for rep in range(warmup + reps):
        # A fresh order every round: tails of the previous repetition (hal's completion
        # thread, lavapipe's workers) then do not always fall on the same mode.
        shuffler.shuffle(names)
        for mode in names:
            submit, total, busy_after = modes[mode]()
            if rep >= warmup:
                samples[mode].submit.append(submit)
                samples[mode].total.append(total)
                samples[mode].busy_after.append(busy_after)
    w.device.wait_idle(timeout=w.timeout)
    after = read_counters(w)
    count = len(w.buffers)
    expected = [(warmup + reps) * len(modes) * len(range(j, n, count)) for j in range(count)]
    got = [(a - b) % (1 << 32) for a, b in zip(after, before, strict=True)]
    if got != expected:
        raise RuntimeError(f"N={n}: counters advanced by {got}, expected {expected}")
    record, compile_ = time_recording(w, n, reps, min(warmup, 1))

    result: dict[str, Any] = {"modes": {}, "recording": {}}
    for mode in MODES:
        s = samples[mode]
        result["modes"][mode] = {
            "submit_us_per_dispatch": median_us_per_dispatch(s.submit, n),
            "total_us_per_dispatch": median_us_per_dispatch(s.total, n),
            "busy_after_signal_us_per_dispatch": median_us_per_dispatch(s.busy_after, n),
            "total_to_idle_us_per_dispatch": median_us_per_dispatch(
                [t + b for t, b in zip(s.total, s.busy_after, strict=True)], n
            ),
            "submit_s": s.submit,
            "total_s": s.total,
            "busy_after_signal_s": s.busy_after,
        }
    result["recording"] = {
        "record_us_per_dispatch": median_us_per_dispatch(record, n),
        "compile_us_per_dispatch": median_us_per_dispatch(compile_, n),
        "record_s": record,
        "compile_s": compile_,
    }
    m = {mode: result["modes"][mode] for mode in MODES}
    result["ratios"] = {
        "hal_over_one_pass_submit": m[HAL]["submit_us_per_dispatch"]
        / m[ONE_PASS]["submit_us_per_dispatch"],
        "hal_over_one_pass_total": m[HAL]["total_us_per_dispatch"]
        / m[ONE_PASS]["total_us_per_dispatch"],
        "pass_per_dispatch_over_hal_submit": m[PASS_PER_DISPATCH]["submit_us_per_dispatch"]
        / m[HAL]["submit_us_per_dispatch"],
        "pass_per_dispatch_over_hal_total": m[PASS_PER_DISPATCH]["total_us_per_dispatch"]
        / m[HAL]["total_us_per_dispatch"],
        "naive_over_hal_submit": m[HAL_NAIVE]["submit_us_per_dispatch"]
        / m[HAL]["submit_us_per_dispatch"],
        "naive_over_hal_total": m[HAL_NAIVE]["total_us_per_dispatch"]
        / m[HAL]["total_us_per_dispatch"],
        "hal_to_idle_over_one_pass_total": m[HAL]["total_to_idle_us_per_dispatch"]
        / m[ONE_PASS]["total_us_per_dispatch"],
    }
    # A correct semaphore is reached only when the GPU is done, so the poll after the wait
    # returns at once (tens of µs). Much more means hal signalled while work was running.
    busy = statistics.median(samples[HAL].busy_after)
    total = statistics.median(samples[HAL].total)
    result["checks"] = {
        "hal_signalled_before_gpu_finished": busy > max(EARLY_SIGNAL_SLACK_S, 0.1 * total),
        "hal_busy_after_signal_median_s": busy,
    }
    result["stats"] = {
        "lowered_compute_passes": runner.cb.stats.compute_passes,
        "naive_compute_passes": runner.naive.plan.stats.compute_passes,
    }
    return result


def profile_hal(w: Workload, n: int, calls: int, top: int) -> str:
    """cProfile of ``calls`` ``queue_execute`` calls of an ``n``-dispatch chain (the waits
    are not profiled); the ``top`` functions by own time."""
    runner = Runner(w, n)
    runner.run_hal()  # compile the plan outside the profile
    profiler = cProfile.Profile()
    for _ in range(calls):
        runner.value += 1
        with w.watchdog.bound(w.timeout):
            profiler.enable()
            w.device.queue_execute(runner.cb, signal=[(runner.semaphore, runner.value)])
            profiler.disable()
            runner.semaphore.wait(runner.value, timeout=w.timeout)
            w.wgpu_device._poll(True)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- reporting --------------------------------------------------------------------------------


def adapter_description(w: Workload) -> dict[str, Any]:
    """The hal adapter info plus wgpu's own adapter summary and info dict, where available."""
    info = w.device.info
    out: dict[str, Any] = {
        "name": info.name,
        "backend": info.backend,
        "adapter_type": info.adapter_type,
        "vendor": info.vendor,
    }
    adapter = getattr(w.wgpu_device, "adapter", None)
    if adapter is not None:
        out["wgpu_summary"] = str(getattr(adapter, "summary", ""))
        out["wgpu_info"] = {k: str(v) for k, v in dict(getattr(adapter, "info", {})).items()}
    return out


def environment() -> dict[str, Any]:
    """Host, Python and wgpu versions, host load, and the git commit of the checkout (with
    any uncommitted changes to ``hal/`` and ``shaders/``) when known."""
    wgpu = importlib.import_module("wgpu")
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "wgpu": getattr(wgpu, "__version__", "?"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        native = importlib.import_module("wgpu.backends.wgpu_native")
        env["wgpu_native"] = str(getattr(native, "__version__", "?"))
    except ImportError:
        env["wgpu_native"] = None
    try:
        env["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        # Uncommitted changes to what is measured make the commit alone misleading.
        env["git_modified"] = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "hal", "shaders"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = env["git_modified"] = None
    return env


def format_tables(results: dict[int, dict[str, Any]]) -> str:
    """Markdown tables: µs per dispatch per mode, then the ratios and recording costs."""
    lines = [
        "| N | mode | submit-side µs/dispatch | total µs/dispatch | "
        "GPU busy after signal µs/dispatch |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for n, r in results.items():
        for mode in MODES:
            m = r["modes"][mode]
            busy = f"{m['busy_after_signal_us_per_dispatch']:.2f}" if mode == HAL else "–"
            lines.append(
                f"| {n} | {MODE_TITLES[mode]} | {m['submit_us_per_dispatch']:.2f} | "
                f"{m['total_us_per_dispatch']:.2f} | {busy} |"
            )
    lines += [
        "",
        "| N | hal / 1-pass submit | hal / 1-pass total | hal to idle / 1-pass total | "
        "pass-per-dispatch / hal submit | pass-per-dispatch / hal total | naive / hal submit | "
        "naive / hal total | hal record µs/dispatch | hal compile µs/dispatch |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, r in results.items():
        q, rec = r["ratios"], r["recording"]
        flag = "" if q["hal_over_one_pass_submit"] <= SUBMIT_TARGET else " ✗"
        lines.append(
            f"| {n} | {q['hal_over_one_pass_submit']:.2f}×{flag} | "
            f"{q['hal_over_one_pass_total']:.2f}× | "
            f"{q['hal_to_idle_over_one_pass_total']:.2f}× | "
            f"{q['pass_per_dispatch_over_hal_submit']:.2f}× | "
            f"{q['pass_per_dispatch_over_hal_total']:.2f}× | "
            f"{q['naive_over_hal_submit']:.2f}× | {q['naive_over_hal_total']:.2f}× | "
            f"{rec['record_us_per_dispatch']:.2f} | {rec['compile_us_per_dispatch']:.2f} |"
        )
    early = [n for n, r in results.items() if r["checks"]["hal_signalled_before_gpu_finished"]]
    if early:
        lines += [
            "",
            f"WARNING: at N={', '.join(map(str, early))} hal's semaphore was reached while the "
            "GPU was still working (see 'GPU busy after signal'); hal's 'total' is then too low "
            "and the next mode starts on a busy GPU unless drained (this benchmark drains it).",
        ]
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    """``"100,1000"`` → ``[100, 1000]``; every size must be positive."""
    sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated dispatch counts N (default: %(default)s)",
    )
    parser.add_argument("--reps", type=int, default=11, help="timed repetitions (default: 11)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up repetitions (default: 2)")
    parser.add_argument(
        "--buffers", type=int, default=8, help="distinct buffers bound round-robin (default: 8)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="bound in seconds on every wait; exceeded means abort (default: 120)",
    )
    parser.add_argument("--adapter", default=None, help="hal adapter index or name substring")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also cProfile 5 hal submissions of an N-dispatch chain and print the top functions",
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or args.warmup < 0 or args.buffers < 1 or args.timeout <= 0:
        parser.error("--reps and --buffers must be ≥ 1, --warmup ≥ 0, --timeout > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the JSON file."""
    args = parse_args(argv)
    hal = import_hal()
    adapter: int | str | None = args.adapter
    if isinstance(adapter, str) and adapter.isdigit():
        adapter = int(adapter)
    started = time.perf_counter()
    env = environment()  # before the run: its load average tells how busy the host was
    watchdog = Watchdog()
    # Untimed steps (device creation, recording, read-back) get a generous bound even when
    # --timeout is tight; each timed repetition is bounded by --timeout itself.
    setup = max(args.timeout, SETUP_TIMEOUT_S)
    with watchdog.bound(setup):
        w = make_workload(hal, args.buffers, args.timeout, adapter, watchdog)
    try:
        load = env["loadavg"]
        print(
            f"device: {w.device.info}; {args.buffers} buffers; median of {args.reps} reps "
            f"after {args.warmup} warm-up; host load average {load[0] if load else '?'}"
        )
        results: dict[int, dict[str, Any]] = {}
        for n in args.sizes:
            t = time.perf_counter()
            # Bounds the untimed steps (recording, counter read-back); repetitions are
            # bounded one by one inside.
            with watchdog.bound(setup * (args.reps + args.warmup + 2) * 2):
                results[n] = bench_size(w, n, args.reps, args.warmup)
            print(f"  N={n}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        print(format_tables(results))
        report: dict[str, Any] = {
            "benchmark": "dispatch_overhead",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "command": [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
            "adapter": adapter_description(w),
            "environment": env,
            "config": {
                "sizes": args.sizes,
                "reps": args.reps,
                "warmup": args.warmup,
                "buffers": args.buffers,
                "kernel": "noop.wgsl:touch",
                "submit_target_ratio": SUBMIT_TARGET,
            },
            "results": {str(n): r for n, r in results.items()},
        }
        if args.profile:
            with watchdog.bound(setup * 8):
                text = profile_hal(w, args.profile, 5, 25)
            title = f"cProfile of 5 hal queue_execute calls (waits excluded), N={args.profile}"
            print(f"\n{title}:\n{text}")
            report["profile"] = text
        report["elapsed_s"] = time.perf_counter() - started
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json} ({report['elapsed_s']:.1f} s)")
    finally:
        with watchdog.bound(setup):
            w.device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
