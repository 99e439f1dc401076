"""How the lowering and ``end()`` scale with the number of commands (issue 10, item 2).

For each mix of commands and each size (default 1k, 10k, 100k commands) the script records
one command buffer and reports, per command:

* ``end()``: ``cb.end()`` on a command buffer without binding-table slots (it lowers there);
* ``lower``: :func:`hal.core.lowering.lower` alone on the same segments (for the ``slots``
  mix: on the segments resolved against a binding table, the work a submission does).

The mixes:

* ``user``: dispatch (reads buffer a, writes b), copy (a to c), fill (d), barrier,
  repeated: the program of the issue;
* ``mixed``: dispatches (bindings: a Buffer, BufferRefs at aligned and unaligned offsets),
  copies, zero and pattern fills, updates, an execution barrier every four commands and an
  event signal/wait every 40, on eight buffers; ranges move along the buffers, so commands
  of different regions overlap now and then;
* ``slots``: ``mixed`` with one binding of each dispatch a SlotRef;
* ``no-barriers``: ``mixed`` without a barrier or event;
* ``one-buffer``: ``mixed`` with every range in one buffer;
* ``distinct``: every command on buffers of its own;
* ``overlapping``: every range inside the same 4 KiB of two buffers, a barrier every three
  commands, so nearly everything conflicts with something earlier.

Commands are recorded on the null backend (no GPU) under the lavapipe cost model, which
makes aligned copies and zero fills native transfers between compute passes: the case
whose conflict analysis used to be quadratic. ``--before REV`` also times the lowering of
git revision REV (its ``hal/core/lowering.py``, loaded beside the current modules) up to
``--before-max`` commands; larger sizes are left out (``null`` in the JSON) because the old
code needs minutes there.

Run from the repository root::

    python3 benchmarks/lowering_scale.py                 # after only
    python3 benchmarks/lowering_scale.py --before 633b303

It prints a Markdown table and writes ``benchmarks/results/lowering_scale.json``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hal  # noqa: E402
from hal.backends.null import NullBackend  # noqa: E402
from hal.core.lowering import lower  # noqa: E402
from hal.core.slots import SlotRequirements  # noqa: E402
from hal.runtime import programs  # noqa: E402
from hal.runtime.adapters import AdapterInfo  # noqa: E402
from hal.runtime.device import Device  # noqa: E402

MIXES = ("user", "mixed", "slots", "no-barriers", "one-buffer", "distinct", "overlapping")
KERNEL = ROOT / "tests" / "kernels" / "xor_bytes.wgsl"
BUFFER_SIZE = 1 << 20
Lower = Callable[..., Any]


def make_device() -> Device:
    """A null-backend device whose adapter description selects the lavapipe cost model."""
    info = AdapterInfo("llvmpipe (null backend)", "vulkan", "cpu", "mesa", "null")
    return Device(NullBackend(), info, "lowering-scale")


class Recorder:
    """Records one mix of ``n`` commands into a fresh command buffer."""

    def __init__(self, device: Device, executable: hal.Executable, mix: str, n: int) -> None:
        self.device, self.executable, self.mix, self.n = device, executable, mix, n
        self.rng = random.Random(n)
        count = 2 * n + 2 if mix == "distinct" else 1 if mix == "one-buffer" else 8
        size = 4096 if mix == "distinct" else BUFFER_SIZE
        self.buffers = [device.allocate_buffer(size) for _ in range(count)]
        # Whole-buffer bindings name small buffers that only dispatches and copies read: a
        # whole 1 MiB buffer that a dispatch also binds read-write would be shadowed whole.
        self.small = [device.allocate_buffer(4096) for _ in range(4)]
        self.next = 0
        self.cb = device.create_command_buffer(
            hal.CommandBufferMode.DEFAULT, binding_capacity=1 if mix == "slots" else 0
        )

    def buffer(self) -> hal.Buffer:
        if self.mix == "distinct":
            self.next += 1
            return self.buffers[self.next - 1]
        return self.buffers[self.rng.randrange(len(self.buffers))]

    def offset(self, index: int, length: int, align: int) -> int:
        """Ranges advance with the command index (a streaming program); ``overlapping``
        keeps them in the first 4 KiB."""
        limit = 4096 if self.mix == "overlapping" else BUFFER_SIZE // 2
        if self.mix == "distinct":
            limit = 2048
        base = (index * 64 + self.rng.randrange(0, 2048)) % (limit - length)
        return base // align * align

    def record(self) -> hal.CommandBuffer:
        cb, rng, exe = self.cb, self.rng, self.executable
        event = self.device.create_event()
        barriers = self.mix not in ("no-barriers", "distinct")
        every = 3 if self.mix == "overlapping" else 4
        cb.begin()
        if self.mix == "user":
            self.record_user()
            return cb
        for i in range(self.n):
            if barriers and i % every == every - 1:
                if i % 40 == 39:
                    cb.signal_event(event)
                    cb.wait_events([event])
                else:
                    cb.execution_barrier()
                continue
            kind = i % 5
            if kind == 0:
                source = self.buffer()
                target: Any = hal.BufferRef(self.buffer(), self.offset(i, 512, 256), 512)
                if rng.random() < 0.2:  # unaligned: shadowed through scratch
                    target = hal.BufferRef(target.buffer, target.offset + 4, 508)
                if self.mix == "slots":
                    target = hal.SlotRef(0, self.offset(i, 512, 256), 512)
                binding: Any = hal.BufferRef(source, self.offset(i, 1024, 256), 1024)
                if rng.random() < 0.3:
                    binding = self.small[i % 4]
                cb.dispatch(exe, "xor_words", (2, 1, 1), constants=[i], bindings=[binding, target])
            elif kind == 1:
                length = rng.choice([64, 256, 1000])
                source, target = self.buffer(), self.buffer()
                src, dst = self.offset(i, length, 4), self.offset(i + 7, length, 4)
                if source is target and src < dst + length and dst < src + length:
                    dst = (src + length + 4) % (BUFFER_SIZE // 2)
                cb.copy_buffer(source, src, target, dst, length)
            elif kind == 2:
                cb.fill_buffer(self.buffer(), self.offset(i, 256, 4), 256, 0)
            elif kind == 3:
                data = bytes(rng.randrange(256) for _ in range(16))
                cb.update_buffer(data, 0, self.buffer(), self.offset(i, 16, 4), 16)
            else:
                cb.fill_buffer(self.buffer(), self.offset(i, 64, 1), 63, 0xA5, 1)
        return cb

    def record_user(self) -> None:
        """Dispatch, copy, fill, barrier, repeated, on four whole buffers."""
        cb, (a, b, c, d) = self.cb, self.buffers[:4]
        for i in range(self.n):
            step = i % 4
            if step == 0:
                cb.dispatch(self.executable, "xor_words", (2, 1, 1), constants=[i], bindings=[a, b])
            elif step == 1:
                cb.copy_buffer(a, 0, c, 0, 4096)
            elif step == 2:
                cb.fill_buffer(d, 0, 4096, 0)
            else:
                cb.execution_barrier()


def load_old_lowering(revision: str) -> Lower:
    """``lower`` of ``hal/core/lowering.py`` at git ``revision``, imported beside the
    current modules (its imports are the current hal.core ones)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:hal/core/lowering.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_lowering.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_lowering", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_lowering"] = module
    spec.loader.exec_module(module)
    return module.lower  # type: ignore[no-any-return]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and its result. The garbage collector stays on, as for a
    user; earlier garbage is collected first."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(
    device: Device, executable: hal.Executable, mix: str, n: int, fn: Lower, reps: int
) -> dict:
    """end() and lower() seconds for one mix and size, with lowering function ``fn``: the
    best of ``reps`` command buffers (each recorded afresh; end() runs once per buffer)."""
    end_s = lower_s = float("inf")
    for _ in range(reps):
        cb, end_once, lower_once, plan = _measure_once(device, executable, mix, n, fn)
        end_s, lower_s = min(end_s, end_once), min(lower_s, lower_once)
    s = plan.stats
    return {
        "commands": n,
        "segments": len(cb.segments),
        "reps": reps,
        "end_s": end_s,
        "lower_s": lower_s,
        "end_us_per_command": end_s / n * 1e6,
        "lower_us_per_command": lower_s / n * 1e6,
        "compute_passes": s.compute_passes,
        "dispatches": s.dispatches,
        "native_copies": s.native_copies,
        "native_clears": s.native_clears,
        "regions": s.regions,
    }


def _measure_once(
    device: Device, executable: hal.Executable, mix: str, n: int, fn: Lower
) -> tuple[hal.CommandBuffer, float, float, Any]:
    recorder = Recorder(device, executable, mix, n)
    cb = recorder.record()
    saved = programs.lower
    programs.lower = fn
    try:
        end_s, _ = timed(cb.end)
    finally:
        programs.lower = saved
    segments: Sequence[Any] = cb.segments
    if mix == "slots":
        target = recorder.buffers[0]
        entries = [(target, target, 0, target.byte_length)]
        segments = SlotRequirements.resolve("bench", segments, entries)
    lower_s, plan = timed(lambda: fn(segments, device.caps))
    return cb, end_s, lower_s, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--mixes", default=",".join(MIXES))
    parser.add_argument("--before", default=None, help="git revision of the old lowering")
    parser.add_argument("--before-max", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=3, help="best of this many buffers")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/lowering_scale.json"))
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    mixes = args.mixes.split(",")
    old = load_old_lowering(args.before) if args.before else None
    device = make_device()
    executable = device.create_executable(KERNEL)
    rows: list[dict] = []
    for mix in mixes:
        for n in sizes:
            row = {"mix": mix, "after": measure(device, executable, mix, n, lower, args.reps)}
            row["before"] = (
                measure(device, executable, mix, n, old, args.reps)
                if old is not None and n <= args.before_max
                else None
            )
            rows.append(row)
            print_row(row, flush=True)
    print()
    print(table(rows, args.before))
    result = {
        "benchmark": "lowering_scale",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cost_model": device.caps.costs.name,
        "before_revision": args.before,
        "before_max": args.before_max,
        "load_average": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    device.close()


def print_row(row: dict, flush: bool) -> None:
    a = row["after"]
    print(
        f"# {row['mix']} n={a['commands']}: end {a['end_us_per_command']:.2f} us/cmd, "
        f"lower {a['lower_us_per_command']:.2f} us/cmd, {a['compute_passes']} passes",
        file=sys.stderr,
        flush=flush,
    )


def table(rows: list[dict], before: str | None) -> str:
    head = "| mix | commands | end() µs/cmd | lower µs/cmd | passes | natives |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if before:
        head += f" end() µs/cmd before ({before}) | lower µs/cmd before | passes before |"
        rule += " ---: | ---: | ---: |"
    lines = [head, rule]
    for row in rows:
        a, b = row["after"], row["before"]
        line = (
            f"| {row['mix']} | {a['commands']} | {a['end_us_per_command']:.2f} | "
            f"{a['lower_us_per_command']:.2f} | {a['compute_passes']} | "
            f"{a['native_copies'] + a['native_clears']} |"
        )
        if before:
            line += (
                " — | — | — |"
                if b is None
                else f" {b['end_us_per_command']:.2f} | {b['lower_us_per_command']:.2f} | "
                f"{b['compute_passes']} |"
            )
        lines.append(line)
    return "\n".join(lines)


def git_commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


if __name__ == "__main__":
    main()
