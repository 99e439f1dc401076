"""Where a Dawn round trip's time goes: hal's backend against wgpudawn's own calls.

Issue 11 wants hal's one-dispatch round trip on Dawn ≤ 1.1× raw Dawn by hand. Session 22
found hal's backend submit + wait alone 1.21× wgpudawn's ``queue.submit`` +
``queue.on_submitted_work_done_sync()`` on the H200. This script splits that: every mode
encodes the same compiled one-dispatch program (hal's, as benchmarks/queue_latency.py's raw
rows do), submits it and waits for it; the submit half (encode included) and the wait half
are timed apart.

Modes:

- ``raw``: wgpudawn ``queue.submit`` + ``on_submitted_work_done_sync`` (the anchor);
- ``backend``: hal's ``DawnBackend.submit`` + ``DawnBackend.wait`` (what hal runs);
- ``bsub_rawwait``: hal's submit, wgpudawn's wait;
- ``cffi``: the fewest Python calls possible: ``wgpuQueueSubmit``,
  ``wgpuQueueOnSubmittedWorkDone`` (one callback registered once) and
  ``wgpuInstanceWaitAny``, raw cffi calls, no lock; ``cffi_late`` registers the work-done
  future in the wait half instead (as wgpudawn does); ``cffi_spontaneous`` and
  ``cffi_waitany_only`` use those callback modes instead of AllowProcessEvents;
- ``hal_unbounded`` / ``hal_bounded``: ``queue_execute`` + ``Semaphore.wait`` (with
  ``timeout=``), last, so that the completion thread has never run in the earlier modes;
- ``raw_after`` / ``backend_after``: the first two again after hal's modes (the completion
  thread then stands by).

Batches of ``--batch`` round trips, modes interleaved per round; best, first quartile and
median of the batch means, µs (total, submit half, wait half).

    python3 benchmarks/dawn_round_trip.py [--rounds 30] [--batch 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hal
from hal.core.builtins import shader_path

Mode = Callable[[], tuple[float, float]]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = hal.create_device(implementation="dawn")
    backend: Any = device.backend
    wgpu_device = backend.device
    queue = wgpu_device.queue
    noop = device.create_executable(shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)
    tiny = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    tiny.begin()
    tiny.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])
    tiny.end()
    program = tiny.prepare(None)  # compiled without a submission: the tracker never ran
    semaphore = device.create_semaphore()
    value = [0]

    from hal.backends import dawn as dawn_module

    ffi, lib = dawn_module._modules["ffi"], dawn_module._modules["lib"]
    instance = dawn_module._modules["instance"]
    callbacks, c_callback = dawn_module._modules["callbacks"], dawn_module._modules["c_callback"]
    done = [0]

    def on_done(status: int, message: Any, userdata1: Any, userdata2: Any) -> None:
        done[0] += 1

    def callback_info(mode: int) -> Any:
        info = ffi.new("WGPUQueueWorkDoneCallbackInfo *")
        info.mode = mode
        info.callback = c_callback("WGPUQueueWorkDoneCallback")
        info.userdata1 = callbacks.register(on_done, once=False)
        return info

    infos = {
        "cffi": callback_info(lib.WGPUCallbackMode_AllowProcessEvents),
        "cffi_spontaneous": callback_info(lib.WGPUCallbackMode_AllowSpontaneous),
        "cffi_waitany_only": callback_info(lib.WGPUCallbackMode_WaitAnyOnly),
    }
    wait_info = ffi.new("WGPUFutureWaitInfo *")
    handles = ffi.new("WGPUCommandBuffer[1]")
    raw_queue = queue._internal

    def halves(submit: Callable[[Any], Any], wait: Callable[[Any], object]) -> Mode:
        """A mode that encodes and ``submit``s (the submit half), then ``wait``s for what
        ``submit`` returned (the wait half)."""

        def run() -> tuple[float, float]:
            t0 = time.perf_counter()
            submitted = submit(program.encode())
            t1 = time.perf_counter()
            wait(submitted)
            return t1 - t0, time.perf_counter() - t1

        return run

    def raw_wait(_: Any) -> None:
        queue.on_submitted_work_done_sync()

    raw = halves(lambda cb: queue.submit([cb]), raw_wait)
    backend_mode = halves(lambda cb: backend.submit([cb]), backend.wait)
    bsub_rawwait = halves(lambda cb: backend.submit([cb]), raw_wait)

    def cffi_mode(info: Any, late: bool = False) -> Mode:
        def run() -> tuple[float, float]:
            t0 = time.perf_counter()
            cb = program.encode()
            handles[0] = cb._internal
            lib.wgpuQueueSubmit(raw_queue, 1, handles)
            if not late:
                wait_info.future.id = lib.wgpuQueueOnSubmittedWorkDone(raw_queue, info[0]).id
            t1 = time.perf_counter()
            if late:
                wait_info.future.id = lib.wgpuQueueOnSubmittedWorkDone(raw_queue, info[0]).id
            while not wait_info.completed:
                lib.wgpuInstanceWaitAny(instance, 1, wait_info, 100_000_000)
            wait_info.completed = False
            return t1 - t0, time.perf_counter() - t1

        return run

    def hal_mode(bounded: bool) -> Mode:
        def run() -> tuple[float, float]:
            value[0] += 1
            t0 = time.perf_counter()
            device.queue_execute(tiny, signal=[(semaphore, value[0])])
            t1 = time.perf_counter()
            semaphore.wait(value[0], timeout=60 if bounded else None)
            return t1 - t0, time.perf_counter() - t1

        return run

    phases: list[dict[str, Mode]] = [
        {
            "raw": raw,
            "backend": backend_mode,
            "bsub_rawwait": bsub_rawwait,
            **{name: cffi_mode(info) for name, info in infos.items()},
            "cffi_late": cffi_mode(infos["cffi"], late=True),
        },
        {
            "hal_unbounded": hal_mode(False),
            "hal_bounded": hal_mode(True),
            "raw_after": raw,
            "backend_after": backend_mode,
        },
    ]
    results: dict[str, dict[str, float]] = {}
    for modes in phases:
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
        for run in modes.values():  # warm-up
            for _ in range(20):
                run()
        for _ in range(args.rounds):
            for name, run in modes.items():
                sub = wait = 0.0
                for _ in range(args.batch):
                    s, w = run()
                    sub += s
                    wait += w
                samples[name].append((sub / args.batch, wait / args.batch))
        for name, pairs in samples.items():
            totals = sorted(s + w for s, w in pairs)
            q = len(totals) // 4
            results[name] = {
                "best_us": totals[0] * 1e6,
                "q25_us": totals[q] * 1e6,
                "median_us": statistics.median(totals) * 1e6,
                "submit_median_us": statistics.median(s for s, _ in pairs) * 1e6,
                "wait_median_us": statistics.median(w for _, w in pairs) * 1e6,
            }
    device.close()
    anchor = results["raw"]
    print(f"{'mode':<16}{'best':>8}{'q25':>8}{'median':>8}{'submit':>8}{'wait':>8}{'q25/raw':>9}")
    for name, row in results.items():
        print(
            f"{name:<16}{row['best_us']:>8.1f}{row['q25_us']:>8.1f}{row['median_us']:>8.1f}"
            f"{row['submit_median_us']:>8.1f}{row['wait_median_us']:>8.1f}"
            f"{row['q25_us'] / anchor['q25_us']:>8.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
