"""hal's benchmark suite (issue 4): one run, JSON + a Markdown table + PNG plots.

Four sections, each against a raw wgpu-py reference on the same device:

1. ``dispatch`` — tiny-dispatch overhead: hal (DEFAULT command buffer, one pass) vs
   hand-written one-pass wgpu-py vs pass-per-dispatch wgpu-py vs hal with its optimisations
   off (``LoweringOptions(naive=True)``), submit-side CPU time separately from total time.
   This section *is* ``benchmarks/dispatch_overhead.py`` (its ``bench_size``), run at the
   suite's sizes.
2. ``mixed`` — programs interleaving fills, copies (some unaligned) and dispatches, with and
   without barriers: time and pass counts of hal's optimised lowering vs
   ``LoweringOptions(reorder=False)`` vs ``LoweringOptions(naive=True)``. The target case, a
   barrier-free program of dispatches, fills and unaligned copies, must lower to exactly one
   compute pass (asserted).
3. ``bandwidth`` — copy and fill bandwidth from 4 KiB up to ``--max-size``: hal
   (``copy_buffer``/``fill_buffer`` through ``queue_execute``, default cost model, and forced
   builtin kernels) vs wgpu's ``copy_buffer_to_buffer`` / ``clear_buffer`` vs the device's
   shader-copy peak (a hand-written vec4 WGSL grid-stride copy, up to 4096 workgroups × 256).
   Several transfers per submission amortise the submit cost. GB/s count **bytes copied (or
   filled)** per second; a copy's memory traffic is twice that (read + write).
4. ``replay`` — a reusable command buffer resubmitted (DEFAULT mode) vs recorded again for
   every submission vs the same wgpu commands written by hand in wgpu-py every time.

Every wait is bounded: hal waits take ``--timeout``; raw ``device._poll(True)`` (which takes
no timeout) runs under ``dispatch_overhead.Watchdog``, which aborts the process with every
thread's traceback when the bound expires.

``--implementation dawn`` runs everything on Dawn (wgpudawn): hal on Dawn, and the raw
references are the same wgpu-py-API calls on wgpudawn's device. Dawn has no blocking poll
(wgpudawn's ``device._poll(True)`` only processes events), so for this process the raw
device's ``_poll(True)`` is made to wait with ``queue.on_submitted_work_done_sync()``.

Run from the repository root (hal installed, or the repository root on ``PYTHONPATH``)::

    python3 benchmarks/run_all.py --quick          # CI / lavapipe, well under a minute
    python3 benchmarks/run_all.py                  # full sizes (64 MiB cap on CPU adapters)
    python3 benchmarks/run_all.py --quick --implementation dawn

matplotlib is optional: without it the plots are skipped with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import dispatch_overhead as overhead  # noqa: E402  (benchmarks/ is not a package)

DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "run_all.json"
SECTIONS = ("dispatch", "mixed", "bandwidth", "replay")
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

# Targets (issue 4).
SUBMIT_TARGET = overhead.SUBMIT_TARGET
"""hal's submit-side cost per tiny dispatch ≤ this × hand-written one-pass wgpu-py."""
COPY_PEAK_TARGET = 0.85
"""hal copy ≥ this × the shader-copy peak, for sizes ≥ TARGET_MIN_SIZE."""
COPY_OVER_WGPU_TARGET = 3.0
"""hal copy ≥ this × wgpu's copy_buffer_to_buffer (a target on the H100, reported anywhere)."""
FILL_TARGET = 0.85
"""hal any-pattern fill ≥ this × clear_buffer, for sizes ≥ TARGET_MIN_SIZE."""
REPLAY_TARGET = 0.8
"""hal replay submit-side ≤ this × hand-writing the same wgpu commands."""
TARGET_MIN_SIZE = 64 * MIB

FILL_PATTERN = 0x01020304
PEAK_WORKGROUP = 256
PEAK_MAX_WORKGROUPS = 4096
PEAK_WGSL = """
// Shader-copy peak: vec4 grid-stride copy of the whole bound range.
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let n = arrayLength(&dst);
  let stride = groups.x * 256u;
  for (var i = gid.x; i < n; i += stride) {
    dst[i] = src[i];
  }
}
"""
PEAK_FILL_WGSL = f"""
// Shader-fill peak: vec4 grid-stride store of a constant pattern over the bound range.
@group(0) @binding(0) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {{
  let n = arrayLength(&dst);
  let stride = groups.x * 256u;
  let value = vec4<u32>(0x{FILL_PATTERN:08X}u);
  for (var i = gid.x; i < n; i += stride) {{
    dst[i] = value;
  }}
}}
"""


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one run (``--quick`` or the default)."""

    dispatch_sizes: tuple[int, ...]
    mixed_rounds: int
    mixed_elements: int
    bandwidth_max: int
    replay_layers: tuple[int, ...]
    replay_elements: int
    reps: int
    warmup: int
    bandwidth_reps: int
    transfers_per_submit: int = 8


QUICK = Config(
    dispatch_sizes=(10, 100, 1000),
    mixed_rounds=16,
    mixed_elements=4096,
    bandwidth_max=16 * MIB,
    replay_layers=(4, 32, 256),
    replay_elements=256,
    reps=9,
    warmup=2,
    bandwidth_reps=5,
)
FULL = Config(
    dispatch_sizes=(100, 1000, 10000),
    mixed_rounds=32,
    mixed_elements=16384,
    bandwidth_max=GIB,
    replay_layers=(4, 32, 256),
    replay_elements=256,
    reps=11,
    warmup=2,
    bandwidth_reps=7,
)
CPU_MAX_SIZE = 64 * MIB
"""Default ``--max-size`` on CPU adapters (lavapipe copies at a few GB/s)."""


# -- small helpers ----------------------------------------------------------------------------


class Progress:
    """A tiny progress bar on stderr: redrawn in place on a terminal, a line per 10% else."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self._drawn = 0.0
        self._decile = -1

    def advance(self, steps: int = 1, label: str = "") -> None:
        """Count ``steps`` more units of work and redraw."""
        self.done = min(self.total, self.done + steps)
        now = time.monotonic()
        fraction = self.done / self.total
        elapsed = now - self.started
        if self.tty:
            if now - self._drawn < 0.1 and self.done < self.total:
                return
            self._drawn = now
            filled = int(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r[{bar}] {fraction:4.0%} {elapsed:6.1f} s  {label[:40]:<40}"
            self.stream.write(line)
        else:
            decile = int(fraction * 10)
            if decile == self._decile:
                return
            self._decile = decile
            self.stream.write(f"[{fraction:4.0%}] {elapsed:6.1f} s  {label}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Samples:
    """Raw seconds of one mode: submit-side and total, one entry per repetition."""

    submit: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    def summary(self, per: float = 1.0) -> dict[str, Any]:
        """Medians (µs, divided by ``per``) and the raw samples."""
        return {
            "submit_us": statistics.median(self.submit) * 1e6 / per,
            "total_us": statistics.median(self.total) * 1e6 / per,
            "submit_s": self.submit,
            "total_s": self.total,
        }


Timing = tuple[float, float]
"""(submit-side, total) seconds of one repetition."""


def interleaved(
    modes: dict[str, Callable[[], Timing]],
    reps: int,
    warmup: int,
    seed: int,
    progress: Progress,
    label: str,
) -> dict[str, Samples]:
    """Run every mode once per round, in a fresh seeded random order each round (so load
    drift and helper-thread tails hit all modes alike); the first ``warmup`` rounds are
    dropped. Advances ``progress`` once per round."""
    samples = {name: Samples() for name in modes}
    names = list(modes)
    shuffler = random.Random(seed)
    for rep in range(warmup + reps):
        shuffler.shuffle(names)
        for name in names:
            submit, total = modes[name]()
            if rep >= warmup:
                samples[name].submit.append(submit)
                samples[name].total.append(total)
        progress.advance(1, label)
    return samples


def wgpu_buffer(buffer: Any) -> Any:
    """The wgpu buffer under a hal Buffer."""
    return overhead.wgpu_buffer_of(buffer)


def size_text(size: int) -> str:
    """4096 → "4 KiB", 1 << 30 → "1 GiB"."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def parse_size(text: str) -> int:
    """ "64M", "1G", "4096", "512k" → bytes."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": KIB, "M": MIB, "G": GIB}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16 bytes, got {text!r}")
    return value


class Bench:
    """The shared device state and helpers of every section."""

    def __init__(self, w: overhead.Workload, timeout: float, progress: Progress) -> None:
        self.w = w
        self.hal = w.hal
        self.device = w.device
        self.wdev = w.wgpu_device
        self.timeout = timeout
        self.watchdog = w.watchdog
        self.progress = progress
        self.semaphore = w.device.create_semaphore()
        self.value = 0
        self.scale = w.device.create_executable(
            w.hal.core.builtins.shader_path("elementwise.wgsl"), label="elementwise"
        )

    # hal and raw submission paths, each returning (submit-side, total) seconds.

    def hal_execute(self, cb: Any) -> Timing:
        """``queue_execute`` + ``Semaphore.wait``; then (untimed) a device poll."""
        self.value += 1
        value = self.value
        with self.watchdog.bound(self.timeout):
            t0 = time.perf_counter()
            self.device.queue_execute(cb, signal=[(self.semaphore, value)])
            t1 = time.perf_counter()
            self.semaphore.wait(value, timeout=self.timeout)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0

    def program_run(self, program: Any) -> Timing:
        """hal's encoder without hal's queue: ``Program.encode`` + ``queue.submit`` + a
        blocking device poll."""
        wdev = self.wdev
        with self.watchdog.bound(self.timeout):
            t0 = time.perf_counter()
            wdev.queue.submit([program.encode()])
            t1 = time.perf_counter()
            wdev._poll(True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0

    def raw_run(self, encode: Callable[[Any], None]) -> Timing:
        """Hand-written wgpu-py: ``encode(encoder)`` then submit and a blocking device poll."""
        wdev = self.wdev
        with self.watchdog.bound(self.timeout):
            t0 = time.perf_counter()
            encoder = wdev.create_command_encoder()
            encode(encoder)
            wdev.queue.submit([encoder.finish()])
            t1 = time.perf_counter()
            wdev._poll(True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t0

    def idle(self) -> None:
        """Wait (bounded) until hal's queue and the device are idle."""
        with self.watchdog.bound(self.timeout):
            self.device.wait_idle(timeout=self.timeout)
            self.wdev._poll(True)

    def record(self, body: Callable[[Any], None], one_shot: bool = False) -> Any:
        """A command buffer recorded by ``body(cb)`` and ended (which lowers it)."""
        mode = self.hal.CommandBufferMode
        cb = self.device.create_command_buffer(mode=mode.ONE_SHOT if one_shot else mode.DEFAULT)
        cb.begin()
        body(cb)
        cb.end()
        return cb

    def compile(self, segments: Sequence[Any], options: Any) -> Any:
        """``compile_plan(lower(segments, caps, options))``."""
        plan = self.hal.core.lowering.lower(segments, self.device.caps, options)
        return self.hal.runtime.encoder.compile_plan(plan, self.device.encoding)

    def clear(self, buffers: Iterable[Any]) -> None:
        """Zero every byte of ``buffers`` (raw clear_buffer; waits)."""

        def encode(encoder: Any) -> None:
            for b in buffers:
                encoder.clear_buffer(wgpu_buffer(b), b.byte_offset, b.byte_length)

        self.raw_run(encode)

    def digest(self, buffers: Iterable[Any]) -> str:
        """SHA-256 of the bytes of ``buffers`` (device idle)."""
        h = hashlib.sha256()
        with self.watchdog.bound(self.timeout):
            for b in buffers:
                h.update(self.device.transfer_d2h(b))
        return h.hexdigest()

    def scale_dispatch(
        self, cb: Any, source: Any, target: Any, elements: int, scale: float, bias: float
    ) -> None:
        """``elementwise.wgsl:scale``: target = source * scale + bias over ``elements``."""
        cb.dispatch(
            self.scale,
            "scale",
            (-(-elements // 64), 1, 1),
            constants=[elements, scale, bias],
            bindings=[source, target],
        )


def stats_of(plan: Any) -> dict[str, int]:
    """The plan counts the report shows."""
    s = plan.stats
    return {
        "compute_passes": s.compute_passes,
        "pass_switches": s.pass_switches,
        "dispatches": s.dispatches,
        "builtin_dispatches": s.builtin_dispatches,
        "native_copies": s.native_copies,
        "native_clears": s.native_clears,
        "regions": s.regions,
    }


# -- 1. dispatch overhead ---------------------------------------------------------------------


def bench_dispatch(b: Bench, config: Config) -> dict[str, Any]:
    """``dispatch_overhead.bench_size`` at every size (same modes, same checks)."""
    results: dict[str, Any] = {}
    for n in config.dispatch_sizes:
        with b.watchdog.bound(b.timeout * (config.reps + config.warmup + 2) * 4):
            results[str(n)] = overhead.bench_size(b.w, n, config.reps, config.warmup)
        b.progress.advance(config.reps + config.warmup, f"dispatch N={n}")
    return {
        "kernel": "noop.wgsl:touch (1 invocation), a barrier between each two dispatches",
        "modes": overhead.MODE_TITLES,
        "sizes": results,
    }


# -- 2. mixed programs ------------------------------------------------------------------------

OPTIMISED, NO_REORDER, NAIVE, HAL_QUEUE = "optimised", "no_reorder", "naive", "hal_queue"
MIXED_VARIANTS = {
    OPTIMISED: "hal lowering (reorder + cost model)",
    NO_REORDER: "LoweringOptions(reorder=False)",
    NAIVE: "LoweringOptions(naive=True)",
}
MIXED_MODES = {
    HAL_QUEUE: "hal queue_execute (optimised)",
    OPTIMISED: "optimised plan, encode+submit",
    NO_REORDER: "reorder=False plan, encode+submit",
    NAIVE: "naive plan, encode+submit",
}


@dataclass
class MixedProgram:
    """One mixed program: how to record it and which buffers it writes."""

    name: str
    description: str
    barriers: bool
    target_one_pass: bool
    body: Callable[[Any], None]
    outputs: list[Any]
    commands: int


def mixed_programs(b: Bench, rounds: int, elements: int) -> list[MixedProgram]:
    """The mixed programs. Every program reads only its constant sources or bytes it wrote
    earlier (behind a barrier), so its result does not depend on the lowering: the check
    compares the bytes every variant leaves behind."""
    device = b.device
    nbytes = elements * 4
    rng = np.random.default_rng(4)
    sources = [
        device.buffer_from_numpy(rng.standard_normal(elements, dtype=np.float32)) for _ in range(4)
    ]

    def outputs(count: int) -> list[Any]:
        return [device.allocate_buffer(nbytes) for _ in range(count)]

    programs: list[MixedProgram] = []

    # (a) the target: no barriers; dispatches, fills (any pattern, zero, byte-unaligned) and
    # unaligned copies, on disjoint buffers.
    out_a = outputs(5 * rounds)

    def target(cb: Any) -> None:
        for r in range(rounds):
            o = out_a[5 * r : 5 * r + 5]
            b.scale_dispatch(cb, sources[r % 4], o[0], elements, 2.0, float(r))
            cb.fill_buffer(o[1], 0, nbytes, FILL_PATTERN, 4)
            cb.fill_buffer(o[2], 4, nbytes - 8, 0, 4)
            cb.copy_buffer(sources[(r + 1) % 4], 1, o[3], 3, nbytes - 4)
            cb.fill_buffer(o[4], 1, nbytes - 3, 0x5A, 1)

    programs.append(
        MixedProgram(
            "barrier_free_target",
            "no barriers: dispatch, 4-byte-pattern fill, zero fill, unaligned copy, "
            "unaligned byte fill per round (disjoint buffers)",
            False,
            True,
            target,
            out_a,
            5 * rounds,
        )
    )

    # (b) the same plus aligned copies between distinct buffers (native-eligible).
    out_b = outputs(6 * rounds)

    def with_aligned(cb: Any) -> None:
        for r in range(rounds):
            o = out_b[6 * r : 6 * r + 6]
            b.scale_dispatch(cb, sources[r % 4], o[0], elements, 2.0, float(r))
            cb.copy_buffer(sources[(r + 2) % 4], 0, o[5], 0, nbytes)
            cb.fill_buffer(o[1], 0, nbytes, FILL_PATTERN, 4)
            cb.fill_buffer(o[2], 4, nbytes - 8, 0, 4)
            cb.copy_buffer(sources[(r + 1) % 4], 1, o[3], 3, nbytes - 4)
            cb.fill_buffer(o[4], 1, nbytes - 3, 0x5A, 1)

    programs.append(
        MixedProgram(
            "barrier_free_aligned_copies",
            "as the target plus an aligned copy per round (native-eligible)",
            False,
            True,
            with_aligned,
            out_b,
            6 * rounds,
        )
    )

    # (c) a dependency chain: every round reads what the previous round wrote, and most
    # commands read what the command before them wrote (barriers everywhere).
    out_c = outputs(4 * rounds)

    def chained(cb: Any) -> None:
        previous = sources[0]
        for r in range(rounds):
            a, t, c, d = out_c[4 * r : 4 * r + 4]
            cb.copy_buffer(previous, 0, a, 0, nbytes)  # aligned
            cb.execution_barrier()
            b.scale_dispatch(cb, a, t, elements, 0.5, float(r))
            cb.execution_barrier()
            cb.copy_buffer(t, 4, c, 1, nbytes - 4)  # unaligned
            cb.execution_barrier()
            cb.fill_buffer(d, 0, nbytes, 0x3F800000, 4)  # 1.0f
            cb.execution_barrier()
            cb.copy_buffer(c, 0, d, 0, nbytes // 2)  # aligned, after both writers
            cb.execution_barrier()
            cb.fill_buffer(t, 0, nbytes // 2, 0, 4)  # zero, aligned, after t was read
            cb.execution_barrier()
            previous = d

    programs.append(
        MixedProgram(
            "chained_barriers",
            "barrier after every command; each round reads the previous round's output "
            "(aligned copy → dispatch → unaligned copy → pattern fill → aligned copy → "
            "zero fill)",
            True,
            False,
            chained,
            out_c,
            6 * rounds,
        )
    )

    # (d) barriers everywhere, but the regions do not touch each other's bytes.
    out_d = outputs(5 * rounds)

    def independent(cb: Any) -> None:
        for r in range(rounds):
            o = out_d[5 * r : 5 * r + 5]
            b.scale_dispatch(cb, sources[r % 4], o[0], elements, 2.0, float(r))
            cb.execution_barrier()
            cb.copy_buffer(sources[(r + 1) % 4], 0, o[1], 0, nbytes)
            cb.execution_barrier()
            cb.fill_buffer(o[2], 0, nbytes, 0, 4)
            cb.execution_barrier()
            cb.copy_buffer(sources[(r + 2) % 4], 1, o[3], 3, nbytes - 4)
            cb.execution_barrier()
            cb.fill_buffer(o[4], 0, nbytes, FILL_PATTERN, 4)
            cb.execution_barrier()

    programs.append(
        MixedProgram(
            "independent_barriers",
            "barrier after every command, but no command touches bytes another one uses "
            "(dispatch, aligned copy, zero fill, unaligned copy, pattern fill)",
            True,
            False,
            independent,
            out_d,
            5 * rounds,
        )
    )
    with b.watchdog.bound(b.timeout):
        device.wait_idle(timeout=b.timeout)
    return programs


def bench_mixed(b: Bench, config: Config) -> dict[str, Any]:
    """Pass counts, time and a cross-lowering byte check of every mixed program."""
    LoweringOptions = b.hal.core.lowering.LoweringOptions
    options = {
        OPTIMISED: LoweringOptions(),
        NO_REORDER: LoweringOptions(reorder=False),
        NAIVE: LoweringOptions(naive=True),
    }
    results: dict[str, Any] = {}
    for index, p in enumerate(mixed_programs(b, config.mixed_rounds, config.mixed_elements)):
        cb = b.record(p.body)
        programs = {name: b.compile(cb.segments, opt) for name, opt in options.items()}
        plans = {name: prog.plan for name, prog in programs.items()}
        if p.target_one_pass:
            passes = cb.stats.compute_passes
            assert passes == 1, f"{p.name}: lowered to {passes} compute passes, expected 1"
        # Byte check: every variant leaves the same bytes.
        modes: dict[str, Callable[[], Timing]] = {HAL_QUEUE: lambda cb=cb: b.hal_execute(cb)}
        for name, prog in programs.items():
            modes[name] = lambda prog=prog: b.program_run(prog)
        digests: dict[str, str] = {}
        for name, run in modes.items():
            b.clear(p.outputs)
            run()
            b.idle()
            digests[name] = b.digest(p.outputs)
        same = len(set(digests.values())) == 1
        if not same:
            raise RuntimeError(f"{p.name}: lowerings left different bytes: {digests}")
        samples = interleaved(
            modes, config.reps, config.warmup, 100 + index, b.progress, f"mixed {p.name}"
        )
        results[p.name] = {
            "description": p.description,
            "barriers": p.barriers,
            "commands": p.commands,
            "segments": len(cb.segments),
            "plans": {name: stats_of(plan) for name, plan in plans.items()},
            "modes": {name: s.summary() for name, s in samples.items()},
            "bytes_identical_across_lowerings": same,
            "target_one_pass": p.target_one_pass,
            "decisions": list(cb.plan.notes[:8]),
        }
    return {
        "rounds": config.mixed_rounds,
        "bytes_per_command": config.mixed_elements * 4,
        "variants": MIXED_VARIANTS,
        "modes": MIXED_MODES,
        "programs": results,
    }


# -- 3. bandwidth -----------------------------------------------------------------------------

BW_MODES = {
    "hal_copy": "hal copy_buffer (queue_execute, cost model)",
    "hal_copy_kernel": "hal copy, forced kernel (transfers='kernel')",
    "wgpu_copy": "wgpu copy_buffer_to_buffer",
    "shader_copy_peak": "shader-copy peak (vec4 WGSL, raw wgpu)",
    "hal_fill_pattern": f"hal fill_buffer 0x{FILL_PATTERN:08X} (queue_execute)",
    "hal_fill_zero": "hal fill_buffer 0 (queue_execute, cost model)",
    "wgpu_clear": "wgpu clear_buffer",
    "shader_fill_peak": f"shader-fill peak 0x{FILL_PATTERN:08X} (vec4 WGSL, raw wgpu)",
}
COPY_MODES = ("hal_copy", "hal_copy_kernel", "wgpu_copy", "shader_copy_peak")
FILL_MODES = ("hal_fill_pattern", "hal_fill_zero", "wgpu_clear", "shader_fill_peak")


class Bandwidth:
    """Source and target buffers of the largest size, and the shader peak pipelines."""

    def __init__(self, b: Bench, max_size: int, repeat: int) -> None:
        self.b = b
        self.repeat = repeat
        device = b.device
        self.src = device.allocate_buffer(max_size)
        self.dst = device.allocate_buffer(max_size)
        self.data = np.arange(max_size // 4, dtype=np.uint32) * np.uint32(2654435761)
        with b.watchdog.bound(max(b.timeout, 60.0)):
            device.transfer_h2d(self.data, self.src)
            device.wait_idle(timeout=b.timeout)
        self.pipeline = self._pipeline(PEAK_WGSL, "copy")
        self.fill_pipeline = self._pipeline(PEAK_FILL_WGSL, "fill")
        # One bound window may not exceed max-storage-buffer-binding-size.
        self.window = max(256, (device.caps.max_binding_size // 256) * 256)

    def _pipeline(self, code: str, entry: str) -> Any:
        module = self.b.wdev.create_shader_module(code=code, label=f"peak-{entry}")
        return self.b.wdev.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": entry}
        )

    def peak_groups(self, size: int, copy: bool) -> list[tuple[Any, int]]:
        """(bind group, workgroups) per window of a ``size``-byte copy (or fill)."""
        out = []
        buffers = [self.src, self.dst] if copy else [self.dst]
        layout = (self.pipeline if copy else self.fill_pipeline).get_bind_group_layout(0)
        for start in range(0, size, self.window):
            length = min(self.window, size - start)
            group = self.b.wdev.create_bind_group(
                layout=layout,
                entries=[
                    {
                        "binding": i,
                        "resource": {
                            "buffer": wgpu_buffer(buf),
                            "offset": buf.byte_offset + start,
                            "size": length,
                        },
                    }
                    for i, buf in enumerate(buffers)
                ],
            )
            blocks = length // 16
            out.append((group, max(1, min(PEAK_MAX_WORKGROUPS, -(-blocks // PEAK_WORKGROUP)))))
        return out

    def modes(self, size: int) -> tuple[dict[str, Callable[[], Timing]], dict[str, Any]]:
        """The timed modes at ``size`` and the lowering decisions of hal's command buffers."""
        b, n = self.b, self.repeat
        src, dst = self.src, self.dst
        ws, wd = wgpu_buffer(src), wgpu_buffer(dst)
        so, do = src.byte_offset, dst.byte_offset

        def repeated(command: Callable[[Any], None]) -> Callable[[Any], None]:
            def body(cb: Any) -> None:
                for i in range(n):
                    if i:
                        cb.execution_barrier()
                    command(cb)

            return body

        cb_copy = b.record(repeated(lambda cb: cb.copy_buffer(src, 0, dst, 0, size)))
        cb_pattern = b.record(repeated(lambda cb: cb.fill_buffer(dst, 0, size, FILL_PATTERN, 4)))
        cb_zero = b.record(repeated(lambda cb: cb.fill_buffer(dst, 0, size, 0, 4)))
        kernel = b.compile(
            cb_copy.segments, b.hal.core.lowering.LoweringOptions(transfers="kernel")
        )
        copy_groups = self.peak_groups(size, copy=True)
        fill_groups = self.peak_groups(size, copy=False)

        def wgpu_copy(encoder: Any) -> None:
            for _ in range(n):
                encoder.copy_buffer_to_buffer(ws, so, wd, do, size)

        def wgpu_clear(encoder: Any) -> None:
            for _ in range(n):
                encoder.clear_buffer(wd, do, size)

        def shader(pipeline: Any, groups: list[tuple[Any, int]]) -> Callable[[Any], None]:
            def encode(encoder: Any) -> None:
                compute = encoder.begin_compute_pass()
                compute.set_pipeline(pipeline)
                for _ in range(n):
                    for group, workgroups in groups:
                        compute.set_bind_group(0, group)
                        compute.dispatch_workgroups(workgroups, 1, 1)
                compute.end()

            return encode

        copy_peak = shader(self.pipeline, copy_groups)
        fill_peak = shader(self.fill_pipeline, fill_groups)

        modes: dict[str, Callable[[], Timing]] = {
            "hal_copy": lambda: b.hal_execute(cb_copy),
            "hal_copy_kernel": lambda: b.program_run(kernel),
            "wgpu_copy": lambda: b.raw_run(wgpu_copy),
            "shader_copy_peak": lambda: b.raw_run(copy_peak),
            "hal_fill_pattern": lambda: b.hal_execute(cb_pattern),
            "hal_fill_zero": lambda: b.hal_execute(cb_zero),
            "wgpu_clear": lambda: b.raw_run(wgpu_clear),
            "shader_fill_peak": lambda: b.raw_run(fill_peak),
        }

        def decision(cb: Any) -> str:
            s = cb.stats
            kinds = []
            if s.native_copies or s.native_clears:
                kinds.append("native")
            if s.builtin_dispatches:
                kinds.append("kernel")
            return "+".join(kinds) or "none"

        decisions = {
            "hal_copy": decision(cb_copy),
            "hal_copy_kernel": "kernel",
            "hal_fill_pattern": decision(cb_pattern),
            "hal_fill_zero": decision(cb_zero),
        }
        return modes, decisions

    def check_ranges(self, size: int) -> list[tuple[int, int]]:
        """(offset, length) ranges to read back after a ``size``-byte transfer: all of it up
        to 16 MiB; else 64 KiB at both ends of every bound window of the shader peaks."""
        if size <= 16 * MIB:
            return [(0, size)]
        sample = 64 * KIB
        ranges = []
        for start in range(0, size, self.window):
            length = min(self.window, size - start)
            ranges += [(start, min(sample, length)), (start + max(0, length - sample), sample)]
        return ranges

    def verify(self, modes: dict[str, Callable[[], Timing]], size: int) -> dict[str, bool]:
        """Run each mode once and check the bytes it leaves (see :meth:`check_ranges`): copies
        start from a zeroed target, fills from a copy of the source."""
        b = self.b
        ok: dict[str, bool] = {}
        for name, run in modes.items():
            if name in FILL_MODES:
                # Start from the copied data so a fill that does nothing is caught.
                b.raw_run(
                    lambda e: e.copy_buffer_to_buffer(
                        wgpu_buffer(self.src),
                        self.src.byte_offset,
                        wgpu_buffer(self.dst),
                        self.dst.byte_offset,
                        size,
                    )
                )
            else:
                b.clear([self.dst])
            run()
            b.idle()
            good = True
            for offset, length in self.check_ranges(size):
                with b.watchdog.bound(max(b.timeout, 60.0)):
                    data = b.device.transfer_d2h(self.dst, offset, length)
                got = np.frombuffer(data, dtype=np.uint32)
                if name in ("hal_fill_pattern", "shader_fill_peak"):
                    want = np.full(length // 4, FILL_PATTERN, dtype=np.uint32)
                elif name in FILL_MODES:
                    want = np.zeros(length // 4, dtype=np.uint32)
                else:
                    want = self.data[offset // 4 : (offset + length) // 4]
                good = good and bool(np.array_equal(got, want))
            ok[name] = good
        return ok


def bandwidth_sizes(max_size: int) -> list[int]:
    """4 KiB, 16 KiB, ... (×4) up to ``max_size``; ``max_size`` itself if not on the grid."""
    sizes = []
    size = 4 * KIB
    while size <= max_size:
        sizes.append(size)
        size *= 4
    top = max_size & ~15
    if top >= 4 * KIB and (not sizes or sizes[-1] != top):
        sizes.append(top)
    return sizes


def bench_bandwidth(b: Bench, config: Config, max_size: int) -> dict[str, Any]:
    """GB/s of every copy and fill mode at every size, with byte checks."""
    sizes = bandwidth_sizes(max_size)
    bw = Bandwidth(b, sizes[-1], config.transfers_per_submit)
    check_sizes = {sizes[0], max(s for s in sizes if s <= 16 * MIB), sizes[-1]}
    results: dict[str, Any] = {}
    for size in sizes:
        modes, decisions = bw.modes(size)
        verified = bw.verify(modes, size) if size in check_sizes else None
        if verified is not None and not all(verified.values()):
            raise RuntimeError(f"bandwidth {size_text(size)}: wrong bytes: {verified}")
        samples = interleaved(
            modes,
            config.bandwidth_reps,
            config.warmup,
            size,
            b.progress,
            f"bandwidth {size_text(size)}",
        )
        moved = config.transfers_per_submit * size
        entry: dict[str, Any] = {"bytes": size, "decisions": decisions, "verified": verified}
        entry["modes"] = {}
        for name, s in samples.items():
            total = statistics.median(s.total)
            entry["modes"][name] = {"gbps": moved / total / 1e9, **s.summary()}
        g = {name: m["gbps"] for name, m in entry["modes"].items()}
        entry["ratios"] = {
            "hal_copy_over_peak": g["hal_copy"] / g["shader_copy_peak"],
            "hal_copy_kernel_over_peak": g["hal_copy_kernel"] / g["shader_copy_peak"],
            "hal_copy_over_wgpu_copy": g["hal_copy"] / g["wgpu_copy"],
            "peak_over_wgpu_copy": g["shader_copy_peak"] / g["wgpu_copy"],
            "hal_fill_pattern_over_clear": g["hal_fill_pattern"] / g["wgpu_clear"],
            "hal_fill_zero_over_clear": g["hal_fill_zero"] / g["wgpu_clear"],
            "hal_fill_pattern_over_fill_peak": g["hal_fill_pattern"] / g["shader_fill_peak"],
            "fill_peak_over_clear": g["shader_fill_peak"] / g["wgpu_clear"],
        }
        results[str(size)] = entry
    return {
        "unit": "GB/s = bytes copied (or filled) per second, 1 GB = 1e9 B; a copy reads and "
        "writes, so its memory traffic is twice this",
        "transfers_per_submission": config.transfers_per_submit,
        "timing": "submit to completion of one submission holding that many transfers with a "
        "barrier between each two; median",
        "max_size": max_size,
        "window": bw.window,
        "modes": BW_MODES,
        "sizes": results,
    }


# -- 4. replay --------------------------------------------------------------------------------

REPLAY_MODES = {
    "hal_replay": "hal: resubmit the DEFAULT cb (queue_execute)",
    "hal_rerecord": "hal: record + end + queue_execute (ONE_SHOT) each time",
    "wgpu_by_hand": "wgpu-py by hand: the same commands each time",
}


class HandWritten:
    """hal's plan for a command buffer written out as wgpu-py calls, as a careful user would
    write them by hand: pipelines and bind groups created once, then per submission a new
    encoder, ``begin_compute_pass``/``set_pipeline`` (only when it changes)/``set_bind_group``
    /``set_immediates``/``dispatch_workgroups``, ``copy_buffer_to_buffer``, ``clear_buffer``,
    ``finish`` and ``submit``. Same commands as hal's replay, through wgpu-py's API."""

    def __init__(self, b: Bench, cb: Any) -> None:
        from hal.core.plan import AuxBuffer, ClearBuffer, ComputePass, CopyBuffer

        device = b.device
        program = cb.prepare(None)  # hal's own aux buffers (staging, scratch)
        self.b = b

        def buffer_of(region: Any) -> Any:
            if isinstance(region.resource, AuxBuffer):
                return program.aux[region.resource]
            return wgpu_buffer(region.resource)

        steps: list[tuple[str, Any]] = []
        for step in cb.plan.steps:
            if isinstance(step, CopyBuffer):
                s, t = step.source, step.target
                steps.append(("copy", (buffer_of(s), s.offset, buffer_of(t), t.offset, t.size)))
            elif isinstance(step, ClearBuffer):
                t = step.target
                steps.append(("clear", (buffer_of(t), t.offset, t.size)))
            else:
                assert isinstance(step, ComputePass)
                calls = []
                for d in step.dispatches:
                    executable = (
                        device.encoding.builtins.executable(d.kernel) if d.is_builtin else d.kernel
                    )
                    pipeline, layout, constants_layout = executable.pipeline(d.entry_point)
                    group = device.encoding.bind_groups.get(
                        layout,
                        tuple((i, buffer_of(r), r.offset, r.size) for i, _, r in d.bindings),
                    )
                    constants: tuple[Any, ...] = ()
                    if d.constants_offset is not None and constants_layout is not None:
                        size = executable.layout(d.entry_point).constants_size
                        cgroup = device.encoding.bind_groups.get(
                            constants_layout,
                            ((0, program.aux[AuxBuffer.CONSTANTS], 0, size),),
                        )
                        constants = ("group", cgroup, [d.constants_offset])
                    elif d.constants:
                        constants = ("immediates", bytes(d.constants))
                    assert d.workgroups is not None, "indirect dispatches are not hand-written"
                    calls.append((pipeline, group, constants, d.workgroups))
                steps.append(("pass", calls))
        self.steps = steps
        self._program = program  # keeps the aux buffers alive

    def encode(self, encoder: Any) -> None:
        """Write the commands into ``encoder``."""
        for kind, args in self.steps:
            if kind == "copy":
                encoder.copy_buffer_to_buffer(*args)
            elif kind == "clear":
                encoder.clear_buffer(*args)
            else:
                compute = encoder.begin_compute_pass()
                current = current_group = None
                for pipeline, group, constants, (x, y, z) in args:
                    if pipeline is not current:
                        compute.set_pipeline(pipeline)
                        current, current_group = pipeline, None
                    if group is not current_group:
                        compute.set_bind_group(0, group)
                        current_group = group
                    if constants:
                        if constants[0] == "immediates":
                            compute.set_immediates(0, constants[1], 0, len(constants[1]))
                        else:
                            compute.set_bind_group(1, constants[1], constants[2])
                    compute.dispatch_workgroups(x, y, z)
                compute.end()


def bench_replay(b: Bench, config: Config) -> dict[str, Any]:
    """Replay vs re-record vs hand-written, per layer count."""
    device = b.device
    elements = config.replay_elements
    nbytes = elements * 4
    sets = 8
    rng = np.random.default_rng(5)
    x = [
        device.buffer_from_numpy(rng.standard_normal(elements, dtype=np.float32))
        for _ in range(sets)
    ]
    y, w, z, v = ([device.allocate_buffer(nbytes) for _ in range(sets)] for _ in range(4))
    outputs = [*y, *w, *z, *v]
    b.idle()
    results: dict[str, Any] = {}
    for layers in config.replay_layers:

        def body(cb: Any, layers: int = layers) -> None:
            for i in range(layers):
                k = i % sets
                b.scale_dispatch(cb, x[k], y[k], elements, 1.5, float(i))
                cb.execution_barrier()
                cb.copy_buffer(y[k], 0, w[k], 0, nbytes)
                cb.fill_buffer(z[k], 0, nbytes, FILL_PATTERN, 4)
                cb.copy_buffer(y[k], 1, v[k], 3, nbytes - 4)
                cb.execution_barrier()

        cb = b.record(body)
        b.hal_execute(cb)  # compiles the program
        hand = HandWritten(b, cb)

        def rerecord(body: Callable[[Any], None] = body) -> Timing:
            b.value += 1
            value = b.value
            with b.watchdog.bound(b.timeout):
                t0 = time.perf_counter()
                fresh = b.record(body, one_shot=True)
                device.queue_execute(fresh, signal=[(b.semaphore, value)])
                t1 = time.perf_counter()
                b.semaphore.wait(value, timeout=b.timeout)
                t2 = time.perf_counter()
            return t1 - t0, t2 - t0

        modes: dict[str, Callable[[], Timing]] = {
            "hal_replay": lambda cb=cb: b.hal_execute(cb),
            "hal_rerecord": rerecord,
            "wgpu_by_hand": lambda hand=hand: b.raw_run(hand.encode),
        }
        digests = {}
        for name, run in modes.items():
            b.clear(outputs)
            run()
            b.idle()
            digests[name] = b.digest(outputs)
        if len(set(digests.values())) != 1:
            raise RuntimeError(f"replay, {layers} layers: modes left different bytes: {digests}")
        samples = interleaved(
            modes, config.reps, config.warmup, 200 + layers, b.progress, f"replay {layers}"
        )
        commands = 4 * layers
        summary = {name: s.summary() for name, s in samples.items()}
        results[str(layers)] = {
            "commands": commands,
            "plan": stats_of(cb.plan),
            "modes": summary,
            "ratios": {
                "replay_over_by_hand_submit": summary["hal_replay"]["submit_us"]
                / summary["wgpu_by_hand"]["submit_us"],
                "replay_over_by_hand_total": summary["hal_replay"]["total_us"]
                / summary["wgpu_by_hand"]["total_us"],
                "rerecord_over_replay_submit": summary["hal_rerecord"]["submit_us"]
                / summary["hal_replay"]["submit_us"],
            },
            "bytes_identical_across_modes": True,
        }
    return {
        "layer": f"scale dispatch ({elements} floats); barrier; aligned copy {nbytes} B, "
        f"0x{FILL_PATTERN:08X} fill {nbytes} B, unaligned copy {nbytes - 4} B; barrier "
        f"({sets} buffer sets round-robin)",
        "modes": REPLAY_MODES,
        "layers": results,
    }


# -- targets, Markdown, plots -----------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every issue-4 target with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    sections = report["sections"]

    def add(name: str, measured: str, met: bool | None, note: str = "") -> None:
        out.append({"target": name, "measured": measured, "met": met, "note": note})

    if "dispatch" in sections:
        for n, r in sections["dispatch"]["sizes"].items():
            q = r["ratios"]["hal_over_one_pass_submit"]
            add(
                f"dispatch N={n}: hal submit ≤ {SUBMIT_TARGET}× hand-written one-pass",
                f"{q:.2f}×",
                q <= SUBMIT_TARGET,
            )
    if "mixed" in sections:
        for name, p in sections["mixed"]["programs"].items():
            if p["target_one_pass"]:
                passes = p["plans"][OPTIMISED]["compute_passes"]
                add(
                    f"mixed {name}: exactly 1 compute pass",
                    f"{passes} pass(es)",
                    passes == 1,
                )
    if "bandwidth" in sections:
        sizes = sections["bandwidth"]["sizes"]
        big = [s for s in sizes.values() if s["bytes"] >= TARGET_MIN_SIZE]
        note = ""
        if not big:
            big = [sizes[max(sizes, key=int)]]
            note = "no size ≥ 64 MiB measured: at the largest size"
        where = ", ".join(size_text(s["bytes"]) for s in big)

        def worst(key: str) -> float:
            return min(s["ratios"][key] for s in big)

        r = worst("hal_copy_over_peak")
        add(
            f"copy ≥ {COPY_PEAK_TARGET:.0%} of the shader-copy peak ({where})",
            f"{r:.0%}",
            r >= COPY_PEAK_TARGET,
            note,
        )
        r = worst("hal_copy_over_wgpu_copy")
        gpu = report["adapter"].get("adapter_type") != "cpu"
        add(
            f"copy ≥ {COPY_OVER_WGPU_TARGET:.0f}× wgpu copy_buffer_to_buffer ({where}; "
            "a target for the H100)",
            f"{r:.2f}× (shader peak {worst('peak_over_wgpu_copy'):.2f}× wgpu copy)",
            r >= COPY_OVER_WGPU_TARGET if gpu else None,
            note if gpu else "not applicable on a CPU adapter",
        )
        r = worst("hal_fill_pattern_over_clear")
        add(
            f"0x{FILL_PATTERN:08X} fill ≥ {FILL_TARGET:.0%} of clear_buffer ({where})",
            f"{r:.0%} ({worst('hal_fill_pattern_over_fill_peak'):.0%} of the shader-fill peak)",
            r >= FILL_TARGET,
            note,
        )
    if "replay" in sections:
        for layers, r in sections["replay"]["layers"].items():
            q = r["ratios"]["replay_over_by_hand_submit"]
            add(
                f"replay {layers} layers: submit ≤ {REPLAY_TARGET}× hand-written",
                f"{q:.2f}×",
                q <= REPLAY_TARGET,
            )
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    sections = report["sections"]
    env = report["environment"]
    load = env.get("loadavg") or [float("nan")]
    lines = [
        f"# hal benchmark suite: {report['adapter']['name']} ({report['adapter']['backend']})",
        "",
        f"Command: `{' '.join(report['command'])}` ({report['mode']} mode); wgpu "
        f"{env.get('wgpu')}, wgpu-native {env.get('wgpu_native')}, Python {env.get('python')}; "
        f"git {str(env.get('git_commit'))[:7]}; {env.get('cpu_count')} CPUs, load average "
        f"{load[0]:.2f} at the start; {report['elapsed_s']:.0f} s in all.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | ---: | :---: |",
    ]
    for t in report["targets"]:
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']}{note} | {t['measured']} | {met} |")

    if "dispatch" in sections:
        d = sections["dispatch"]
        lines += [
            "",
            "## 1. Tiny-dispatch overhead",
            "",
            f"Kernel: {d['kernel']}. µs per dispatch, medians. *Submit* = the host call that "
            "builds and submits the work; *total* = until the host knows it is done.",
            "",
            "| N | mode | submit µs/dispatch | total µs/dispatch | compute passes |",
            "| ---: | --- | ---: | ---: | ---: |",
        ]
        for n, r in d["sizes"].items():
            passes = {
                overhead.HAL: r["stats"]["lowered_compute_passes"],
                overhead.ONE_PASS: 1,
                overhead.PASS_PER_DISPATCH: int(n),
                overhead.HAL_NAIVE: r["stats"]["naive_compute_passes"],
            }
            for mode in overhead.MODES:
                m = r["modes"][mode]
                lines.append(
                    f"| {n} | {overhead.MODE_TITLES[mode]} | {m['submit_us_per_dispatch']:.2f} | "
                    f"{m['total_us_per_dispatch']:.2f} | {passes[mode]} |"
                )
        lines += [
            "",
            "| N | hal / 1-pass submit | hal / 1-pass total | naive / hal submit | "
            "naive / hal total | pass-per-dispatch / hal submit | hal record µs/dispatch |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n, r in d["sizes"].items():
            q = r["ratios"]
            lines.append(
                f"| {n} | {q['hal_over_one_pass_submit']:.2f}× | "
                f"{q['hal_over_one_pass_total']:.2f}× | {q['naive_over_hal_submit']:.2f}× | "
                f"{q['naive_over_hal_total']:.2f}× | "
                f"{q['pass_per_dispatch_over_hal_submit']:.2f}× | "
                f"{r['recording']['record_us_per_dispatch']:.2f} |"
            )

    if "mixed" in sections:
        m = sections["mixed"]
        lines += [
            "",
            "## 2. Mixed programs",
            "",
            f"{m['rounds']} rounds, {m['bytes_per_command']} B per command. Passes and "
            "switches from `cb.stats` (`compute_passes`, `pass_switches`); time in µs per "
            "submission, medians (plans run through `Program.encode` + submit + device poll; "
            "`hal queue_execute` adds hal's queue and semaphore wait). Every variant left the "
            "same bytes.",
            "",
            "| program | lowering | passes | switches | kernels (builtin) | native copies / "
            "clears | submit µs | total µs |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, p in m["programs"].items():
            for variant, title in MIXED_VARIANTS.items():
                s = p["plans"][variant]
                t = p["modes"][variant]
                lines.append(
                    f"| {name} | {title} | {s['compute_passes']} | {s['pass_switches']} | "
                    f"{s['dispatches']} ({s['builtin_dispatches']}) | "
                    f"{s['native_copies']} / {s['native_clears']} | {t['submit_us']:.0f} | "
                    f"{t['total_us']:.0f} |"
                )
            t = p["modes"][HAL_QUEUE]
            s = p["plans"][OPTIMISED]
            lines.append(
                f"| {name} | {MIXED_MODES[HAL_QUEUE]} | {s['compute_passes']} | "
                f"{s['pass_switches']} | {s['dispatches']} ({s['builtin_dispatches']}) | "
                f"{s['native_copies']} / {s['native_clears']} | {t['submit_us']:.0f} | "
                f"{t['total_us']:.0f} |"
            )
        lines.append("")
        for name, p in m["programs"].items():
            lines.append(f"- `{name}`: {p['description']} ({p['commands']} commands).")

    if "bandwidth" in sections:
        bw = sections["bandwidth"]
        lines += [
            "",
            "## 3. Copy and fill bandwidth",
            "",
            f"GB/s = **bytes copied (or filled) per second** (1 GB = 10⁹ B; a copy's memory "
            f"traffic, read + write, is twice this). {bw['transfers_per_submission']} transfers "
            "per submission, a barrier between each two; medians of submit → completion. "
            "`hal copy` uses the adapter's cost model (decision in brackets).",
            "",
            "| size | hal copy | hal copy (kernel) | wgpu copy | shader peak | hal/peak | "
            "kernel/peak | hal/wgpu | hal fill 0x01020304 | hal fill 0 | clear_buffer | "
            "fill peak | fill/clear | fill/fill peak |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
            "---: | ---: |",
        ]
        for s in bw["sizes"].values():
            g = {k: v["gbps"] for k, v in s["modes"].items()}
            q = s["ratios"]
            lines.append(
                f"| {size_text(s['bytes'])} | {g['hal_copy']:.2f} [{s['decisions']['hal_copy']}]"
                f" | {g['hal_copy_kernel']:.2f} | {g['wgpu_copy']:.2f} | "
                f"{g['shader_copy_peak']:.2f} | {q['hal_copy_over_peak']:.0%} | "
                f"{q['hal_copy_kernel_over_peak']:.0%} | "
                f"{q['hal_copy_over_wgpu_copy']:.2f}× | {g['hal_fill_pattern']:.2f} | "
                f"{g['hal_fill_zero']:.2f} [{s['decisions']['hal_fill_zero']}] | "
                f"{g['wgpu_clear']:.2f} | {g['shader_fill_peak']:.2f} | "
                f"{q['hal_fill_pattern_over_clear']:.0%} | "
                f"{q['hal_fill_pattern_over_fill_peak']:.0%} |"
            )

    if "replay" in sections:
        r = sections["replay"]
        lines += [
            "",
            "## 4. Replay of a reusable command buffer",
            "",
            f"One layer: {r['layer']}. µs per submission, medians. Every mode left the same bytes.",
            "",
            "| layers | commands | passes | mode | submit µs | total µs | submit µs/command |",
            "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        ]
        for layers, e in r["layers"].items():
            for mode, title in REPLAY_MODES.items():
                t = e["modes"][mode]
                lines.append(
                    f"| {layers} | {e['commands']} | {e['plan']['compute_passes']} | {title} | "
                    f"{t['submit_us']:.0f} | {t['total_us']:.0f} | "
                    f"{t['submit_us'] / e['commands']:.2f} |"
                )
        lines += [
            "",
            "| layers | replay / by hand (submit) | replay / by hand (total) | "
            "re-record / replay (submit) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for layers, e in r["layers"].items():
            q = e["ratios"]
            lines.append(
                f"| {layers} | {q['replay_over_by_hand_submit']:.2f}× | "
                f"{q['replay_over_by_hand_total']:.2f}× | "
                f"{q['rerecord_over_replay_submit']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """PNG plots of every section; [] (with a message) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plots", file=sys.stderr)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    sections = report["sections"]
    title = f"{report['adapter']['name']} ({report['adapter']['backend']})"
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if "dispatch" in sections:
        d = sections["dispatch"]["sizes"]
        ns = [int(n) for n in d]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, label in (
            (axes[0], "submit_us_per_dispatch", "submit-side µs/dispatch"),
            (axes[1], "total_us_per_dispatch", "total µs/dispatch"),
        ):
            for mode in overhead.MODES:
                ax.plot(
                    ns,
                    [d[str(n)]["modes"][mode][key] for n in ns],
                    "o-",
                    label=overhead.MODE_TITLES[mode],
                )
            ax.set_xscale("log")
            ax.set_xlabel("dispatches per submission (N)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Tiny-dispatch overhead — {title}")
        save(fig, "dispatch_overhead.png")

    if "mixed" in sections:
        programs = sections["mixed"]["programs"]
        names = list(programs)
        fig, ax = plt.subplots(figsize=(11, 4.5))
        width = 0.2
        for i, variant in enumerate([HAL_QUEUE, OPTIMISED, NO_REORDER, NAIVE]):
            xs = [k + (i - 1.5) * width for k in range(len(names))]
            values = [programs[n]["modes"][variant]["total_us"] / 1e3 for n in names]
            bars = ax.bar(xs, values, width, label=MIXED_MODES[variant])
            if variant != HAL_QUEUE:
                for bar, n in zip(bars, names, strict=True):
                    passes = programs[n]["plans"][variant]["compute_passes"]
                    ax.annotate(
                        f"{passes}p",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("total ms per submission (labels: compute passes)")
        ax.legend(fontsize=8)
        ax.set_title(f"Mixed programs — {title}")
        save(fig, "mixed.png")

    if "bandwidth" in sections:
        s = sections["bandwidth"]["sizes"]
        sizes = [int(k) for k in s]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, group, name in ((axes[0], COPY_MODES, "copy"), (axes[1], FILL_MODES, "fill")):
            for mode in group:
                ax.plot(
                    sizes,
                    [s[str(k)]["modes"][mode]["gbps"] for k in sizes],
                    "o-",
                    label=BW_MODES[mode],
                )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("bytes per transfer")
            ax.set_ylabel(
                f"GB/s (bytes {name}ed per second)"
                if name == "fill"
                else "GB/s (bytes copied per second)"
            )
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"Transfer bandwidth — {title}")
        save(fig, "bandwidth.png")

    if "replay" in sections:
        layers = sections["replay"]["layers"]
        ls = [int(k) for k in layers]
        fig, ax = plt.subplots(figsize=(7, 4))
        for mode, label in REPLAY_MODES.items():
            ax.plot(ls, [layers[str(k)]["modes"][mode]["submit_us"] for k in ls], "o-", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("layers (4 commands each)")
        ax.set_ylabel("submit-side µs per submission")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"Replay vs re-record vs by hand — {title}")
        save(fig, "replay.png")
    return written


# -- main -------------------------------------------------------------------------------------


def use_implementation(implementation: str | None) -> None:
    """Open every device of this run on ``implementation`` (through ``HAL_IMPLEMENTATION``,
    which every ``create_device`` here reads); on Dawn, make the raw device's
    ``_poll(True)`` block until its queue is idle, as wgpu-native's does."""
    if implementation is None:
        return
    os.environ["HAL_IMPLEMENTATION"] = implementation
    if implementation != "dawn":
        return
    from hal.backends import dawn

    device_class = dawn.load().backends.dawn.GPUDevice
    process = device_class._poll

    def poll(self: Any, block: bool = False) -> None:
        if block:
            self.queue.on_submitted_work_done_sync()  # Dawn's TimedWaitAny on the queue
        else:
            process(self)

    device_class._poll = poll


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI, lavapipe)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="Markdown file (default: JSON path, .md)"
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="folder for PNG plots (default: next to the JSON file, <name>_plots)",
    )
    parser.add_argument(
        "--max-size",
        type=parse_size,
        default=None,
        help="largest transfer (e.g. 64M, 1G; default 16M with --quick, else 64M on CPU "
        "adapters and 1G otherwise; capped by max-buffer-size)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per mode")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="bound in seconds on every wait"
    )
    parser.add_argument("--adapter", default=None, help="hal adapter index or name substring")
    parser.add_argument(
        "--implementation", default=None, help="wgpu-native or dawn (default: HAL_IMPLEMENTATION)"
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown or not args.sections:
        parser.error(f"--sections: unknown {sorted(unknown)}; choose from {SECTIONS}")
    if args.timeout <= 0 or (args.reps is not None and args.reps < 1):
        parser.error("--timeout must be > 0 and --reps ≥ 1")
    if args.markdown is None:
        args.markdown = args.json.with_suffix(".md")
    if args.plots is None:
        args.plots = args.json.parent / f"{args.json.stem}_plots"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections and write JSON, Markdown and plots."""
    args = parse_args(argv)
    hal = overhead.import_hal()
    use_implementation(args.implementation)
    for module in ("hal.core.lowering", "hal.runtime.encoder", "hal.core.plan"):
        importlib.import_module(module)  # attributes of the package from here on
    config = QUICK if args.quick else FULL
    if args.reps is not None:
        config = dataclasses.replace(config, reps=args.reps, bandwidth_reps=args.reps)
    adapter: int | str | None = args.adapter
    if isinstance(adapter, str) and adapter.isdigit():
        adapter = int(adapter)
    started = time.perf_counter()
    env = overhead.environment()
    watchdog = overhead.Watchdog()
    setup = max(args.timeout, overhead.SETUP_TIMEOUT_S)

    def open_workload() -> overhead.Workload:
        with watchdog.bound(setup):
            return overhead.make_workload(hal, 8, args.timeout, adapter, watchdog)

    # A first device for the adapter's description and limits.
    w = open_workload()
    device = w.device
    try:
        limit = device.limits["max-buffer-size"]
        if args.max_size is not None:
            max_size = args.max_size
        elif args.quick:
            max_size = config.bandwidth_max
        else:
            max_size = CPU_MAX_SIZE if device.info.adapter_type == "cpu" else config.bandwidth_max
        max_size = max(4 * KIB, min(max_size, limit & ~255))
        header: dict[str, Any] = {
            "adapter": overhead.adapter_description(w),
            "implementation": device.info.implementation,
            "limits": {
                k: device.limits[k]
                for k in ("max-buffer-size", "max-storage-buffer-binding-size")
                if k in device.limits
            },
            "cost_model": device.caps.costs.as_dict(),
        }
        print(
            f"device: {device.info}; mode {'quick' if args.quick else 'full'}; sections "
            f"{','.join(args.sections)}; transfers up to {size_text(max_size)}",
            file=sys.stderr,
        )
    finally:
        with watchdog.bound(setup):
            device.close()
    rounds = config.reps + config.warmup
    steps = {
        "dispatch": len(config.dispatch_sizes) * rounds,
        "mixed": 4 * rounds,
        "bandwidth": len(bandwidth_sizes(max_size)) * (config.bandwidth_reps + config.warmup),
        "replay": len(config.replay_layers) * rounds,
    }
    progress = Progress(sum(steps[name] for name in args.sections))
    runners: dict[str, Callable[[Bench], dict[str, Any]]] = {
        "dispatch": lambda b: bench_dispatch(b, config),
        "mixed": lambda b: bench_mixed(b, config),
        "bandwidth": lambda b: bench_bandwidth(b, config, max_size),
        "replay": lambda b: bench_replay(b, config),
    }
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in args.sections:
            continue
        # Every section gets a fresh device: on lavapipe, one submission of 10,000 compute
        # passes (the pass-per-dispatch modes) slows every later submission of that device
        # by about 2.4 ms, which would distort the sections after it.
        w = open_workload()
        try:
            # The whole section is bounded too (each wait inside is bounded on its own).
            with watchdog.bound(setup * 30):
                sections[name] = runners[name](Bench(w, args.timeout, progress))
        finally:
            with watchdog.bound(setup):
                w.device.close()
    progress.close()
    report: dict[str, Any] = {
        "benchmark": "run_all",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "mode": "quick" if args.quick else "full",
        **header,
        "environment": env,
        "config": {**dataclasses.asdict(config), "max_size": max_size},
        "device_per_section": True,
        "sections": sections,
    }
    report["targets"] = targets(report)
    report["elapsed_s"] = time.perf_counter() - started
    text = markdown(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(text)
    written = plots(report, args.plots)
    print(f"wrote {args.json}, {args.markdown}", file=sys.stderr)
    if written:
        print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr)
    failed = [t["target"] for t in report["targets"] if t["met"] is False]
    if failed:
        print(f"targets not met: {len(failed)} (see the Targets table)", file=sys.stderr)
    if any(math.isnan(v) for v in _floats(sections)):
        print("WARNING: NaN in results", file=sys.stderr)
    return 0


def _floats(value: Any) -> Iterable[float]:
    """Every float in a nested result (for a sanity check)."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


if __name__ == "__main__":
    sys.exit(main())
