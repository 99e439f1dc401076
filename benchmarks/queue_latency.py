"""Queue latency: submit → GPU done → host wake, through hal and through raw wgpu-py.

(a) round trip of one tiny dispatch: hal ``queue_execute`` + ``Semaphore.wait`` (unbounded, so
    the waiting thread blocks in the device poll itself; and with a timeout, so the completion
    thread wakes it) against raw
    wgpu-py submit of the same commands + ``device._poll(True)``; and of an empty
    submission: hal ``queue_execute`` of an empty command buffer (nothing reaches the GPU: it
    completes like a barrier) and of no command buffer (a pure queue barrier), each followed
    by ``Semaphore.wait``; raw wgpu-py ``queue.submit`` of an empty command buffer +
    ``device._poll(True)``; and raw
    wgpu-native submit-for-index + a blocking poll on that index (what hal's tracker does).
    With ``--implementation dawn`` the raw rows are the same calls on wgpudawn's device,
    waited with ``queue.on_submitted_work_done_sync()`` (Dawn has no blocking poll), and
    ``raw_submit_poll_index`` is hal's Dawn backend submit + its TimedWaitAny wait.
(b) a chain of dependent tiny submissions (one dispatch each): hal submits them all up front,
    each waiting on the previous one's semaphore value, then waits for the last; raw wgpu-py
    submits and blocks in the device poll after each.

Usage: python benchmarks/queue_latency.py [--implementation dawn] [--reps 200] [--chain 1000]
       [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hal
from hal.core.builtins import shader_path

TIMEOUT = 60.0


def raw_wait(wgpu_device: Any) -> None:
    """Block until the raw device's queue is idle: wgpu-native's blocking poll, or on Dawn
    (whose ``_poll`` never blocks) ``on_submitted_work_done_sync`` (a TimedWaitAny)."""
    if type(wgpu_device).__module__.startswith("wgpudawn"):
        wgpu_device.queue.on_submitted_work_done_sync()
    else:
        wgpu_device._poll(True)


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def round_trips(device: hal.Device, reps: int) -> dict[str, list[float]]:
    """Per-mode round-trip samples in seconds."""
    wgpu_device = device.backend.device
    empty = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    empty.begin()
    empty.end()
    semaphore = device.create_semaphore()
    executable = device.create_executable(shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)
    tiny = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    tiny.begin()
    tiny.dispatch(executable, "touch", (1, 1, 1), bindings=[counter])
    tiny.end()
    device.queue_execute(tiny, signal=[(semaphore, 1)])  # compiles the program
    semaphore.wait(1, timeout=TIMEOUT)
    tiny_program = tiny.prepare(None)
    value = [1]

    def hal_tiny(bounded: bool) -> float:
        value[0] += 1
        start = time.perf_counter()
        device.queue_execute(tiny, signal=[(semaphore, value[0])])
        # unbounded: this thread blocks in the device's wait itself; bounded: it polls, then
        # blocks in a timed wait (Dawn) or leaves the work to the completion thread
        semaphore.wait(value[0], timeout=TIMEOUT if bounded else None)
        return time.perf_counter() - start

    def raw_tiny() -> float:
        start = time.perf_counter()
        wgpu_device.queue.submit([tiny_program.encode()])
        raw_wait(wgpu_device)
        return time.perf_counter() - start

    def hal_empty(command_buffer: hal.CommandBuffer | None) -> float:
        value[0] += 1
        start = time.perf_counter()
        if command_buffer is None:
            device.queue_barrier(signal=[(semaphore, value[0])])
        else:
            device.queue_execute(command_buffer, signal=[(semaphore, value[0])])
        semaphore.wait(value[0])
        return time.perf_counter() - start

    def raw_empty() -> float:
        start = time.perf_counter()
        wgpu_device.queue.submit([wgpu_device.create_command_encoder().finish()])
        raw_wait(wgpu_device)
        return time.perf_counter() - start

    def raw_index() -> float:
        start = time.perf_counter()
        index = device.backend.submit([wgpu_device.create_command_encoder().finish()])
        device.backend.wait(index)
        return time.perf_counter() - start

    modes: dict[str, Callable[[], float]] = {
        "hal_execute_1_dispatch": lambda: hal_tiny(False),
        "hal_execute_1_dispatch_timeout": lambda: hal_tiny(True),
        "raw_1_dispatch_poll_wait": raw_tiny,
        "hal_execute_empty_cb": lambda: hal_empty(empty),
        "hal_barrier": lambda: hal_empty(None),
        "raw_submit_poll_wait": raw_empty,
        "raw_submit_poll_index": raw_index,
    }
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    order = list(modes.items())
    shuffle = random.Random(24).shuffle
    for rep in range(reps + 10):  # the first 10 are warm-up
        # A new order each repetition, so each mode follows every other one about as often:
        # in a fixed order (session 23 and before) the mode after the raw rows ran ~10% slower
        # than the same work after a hal row, on both implementations (H200).
        shuffle(order)
        for mode, run in order:
            elapsed = run()
            if rep >= 10:
                samples[mode].append(elapsed)
    return samples


def chain(device: hal.Device, length: int) -> dict[str, float]:
    """Seconds for ``length`` dependent tiny submissions, hal and raw."""
    executable = device.create_executable(shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    cb.dispatch(executable, "touch", (1, 1, 1), bindings=[counter])
    cb.end()
    semaphore = device.create_semaphore()
    device.queue_execute(cb, signal=[(semaphore, 1)])  # warm-up: compiles the program
    semaphore.wait(1, timeout=TIMEOUT)

    start = time.perf_counter()
    for i in range(1, length + 1):
        device.queue_execute(cb, wait=[(semaphore, i)], signal=[(semaphore, i + 1)])
    semaphore.wait(length + 1, timeout=TIMEOUT)
    hal_seconds = time.perf_counter() - start
    count = int(counter.to_numpy("uint32")[0])
    assert count == length + 1, f"chain ran {count} dispatches, expected {length + 1}"

    wgpu_device = device.backend.device
    program = cb.prepare(None)
    start = time.perf_counter()
    for _ in range(length):
        wgpu_device.queue.submit([program.encode()])
        raw_wait(wgpu_device)
    raw_seconds = time.perf_counter() - start
    return {"hal_s": hal_seconds, "raw_s": raw_seconds}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--chain", type=int, default=1000)
    parser.add_argument("--json", default="benchmarks/results/queue_latency.json")
    parser.add_argument(
        "--implementation", default=None, help="wgpu-native or dawn (default: HAL_IMPLEMENTATION)"
    )
    args = parser.parse_args(argv)
    with hal.create_device(implementation=args.implementation) as device:
        print(f"adapter: {device.info}")
        trips = round_trips(device, args.reps)
        medians = {mode: _median_us(s) for mode, s in trips.items()}
        raw = medians["raw_submit_poll_wait"]
        raw_tiny = medians["raw_1_dispatch_poll_wait"]
        print(f"\n(a) round trip, median of {args.reps} (µs)")
        print(f"{'mode':<28}{'µs':>10}{'vs raw':>10}")
        for mode, value in medians.items():
            base = raw_tiny if "1_dispatch" in mode else raw
            print(f"{mode:<28}{value:>10.1f}{value / base:>9.2f}x")
        links = chain(device, args.chain)
        per_hal = links["hal_s"] / args.chain * 1e6
        per_raw = links["raw_s"] / args.chain * 1e6
        print(f"\n(b) chain of {args.chain} dependent tiny submissions (µs per link)")
        print(f"{'hal (semaphore-ordered)':<26}{per_hal:>10.1f}{per_hal / per_raw:>13.2f}x")
        print(f"{'raw (submit + poll wait)':<26}{per_raw:>10.1f}{1.0:>13.2f}x")
        result: dict[str, Any] = {
            "adapter": str(device.info),
            "implementation": device.info.implementation,
            "reps": args.reps,
            "round_trip_median_us": medians,
            "round_trip_samples_s": trips,
            "round_trip_ratio_vs_raw": {
                m: v / (raw_tiny if "1_dispatch" in m else raw) for m, v in medians.items()
            },
            "chain_length": args.chain,
            "chain_us_per_link": {"hal": per_hal, "raw": per_raw},
        }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
