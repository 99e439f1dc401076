"""Two devices in one process: peer-copy bandwidth and cross-device ping-pong latency.

Both devices are opened on one adapter (``--adapter``, default: hal's pick), as on an H200
opened twice. Rows (median of ``--reps`` repetitions):

peer copy, per size (4 KiB up to ``--max-size``, ×4 steps), GB/s of payload, each timed from
the call until the signal semaphore is reached:
- ``hal peer queue_copy``: ``b.queue_copy(buffer_of_a, 0, buffer_of_b, 0, n, signal=...)``
  (staged through host memory, chunks pipelined across the two devices).
- ``host round trip``: ``a.transfer_d2h(...)`` into new bytes, then ``b.transfer_h2d(...)``
  and ``b.wait_idle()`` — what a user without peer copies would write.
Every hal row checks its bytes once per size.

ping-pong, µs per hop, a chain queued up front and then released:
- ``barrier hop``: ``queue_barrier`` on A waiting on B's semaphore and signalling A's, and
  back (``--hops`` hops): the cost of one cross-device semaphore hand-off.
- ``4-byte peer copy hop``: the same chain, each hop a 4-byte peer copy from the other
  device: hand-off plus the staged copy.

Usage (repository root)::

    python3 benchmarks/multi_device.py [--max-size 256M] [--reps 5] [--hops 200]
        [--json PATH] [--md PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sizes import KIB, MIB, human, parse_size

import hal

TIMEOUT = 120.0


def sizes(max_size: int) -> list[int]:
    """4 KiB, 16 KiB, … up to ``max_size``."""
    out, size = [], 4 * KIB
    while size <= max_size:
        out.append(size)
        size *= 4
    return out


def _median_seconds(run: Callable[[], None], reps: int) -> tuple[float, list[float]]:
    run()  # warm-up: staging buffers, pipelines
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def bench_peer_copy(a: hal.Device, b: hal.Device, size: int, reps: int) -> dict[str, Any]:
    """Peer copy and host round trip of ``size`` bytes from A to B: GB/s and samples."""
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    source, target = a.buffer_from_numpy(data), b.allocate_buffer(size)
    done = b.create_semaphore()
    counter = [0]

    def peer() -> None:
        counter[0] += 1
        b.queue_copy(source, 0, target, 0, size, signal=[(done, counter[0])])
        done.wait(counter[0], timeout=TIMEOUT)

    def round_trip() -> None:
        b.transfer_h2d(a.transfer_d2h(source), target)
        b.wait_idle(TIMEOUT)

    rows = {}
    for name, run in (("hal peer queue_copy", peer), ("host round trip", round_trip)):
        target_bytes = np.zeros(1, np.uint8)
        b.transfer_h2d(target_bytes, target)  # the check below sees this row's copy
        seconds, samples = _median_seconds(run, reps)
        if not np.array_equal(np.frombuffer(b.transfer_d2h(target), np.uint8), data):
            raise AssertionError(f"{name}: wrong bytes at {human(size)}")
        rows[name] = {"gb_s": size / seconds / 1e9, "seconds": samples}
    source.release()
    target.release()
    return rows


def bench_ping_pong(a: hal.Device, b: hal.Device, hops: int, copy: bool) -> float:
    """µs per hop of a chain of ``hops`` cross-device hand-offs queued before it starts;
    each hop a barrier or (``copy``) a 4-byte peer copy from the other device."""
    sems = {a: a.create_semaphore(), b: b.create_semaphore()}
    buffers = {a: a.buffer_from_numpy(np.arange(4, dtype=np.uint8)), b: b.allocate_buffer(4)}
    start = a.create_semaphore()
    previous = (start, 1)
    for hop in range(hops):
        here, there = (b, a) if hop % 2 == 0 else (a, b)
        point = (sems[here], hop + 1)
        if copy:
            here.queue_copy(buffers[there], 0, buffers[here], 0, 4, wait=[previous], signal=[point])
        else:
            here.queue_barrier(wait=[previous], signal=[point])
        previous = point
    began = time.perf_counter()
    start.signal(1)
    previous[0].wait(previous[1], timeout=TIMEOUT)
    elapsed = time.perf_counter() - began
    if copy:
        for device, buffer in buffers.items():
            assert np.frombuffer(device.transfer_d2h(buffer), np.uint8).tolist() == [0, 1, 2, 3]
    return elapsed / hops * 1e6


def run(
    max_size: int = 256 * MIB,
    reps: int = 5,
    hops: int = 200,
    adapter: int | str | None = None,
    json_path: str | None = None,
    md_path: str | None = None,
) -> dict[str, Any]:
    """Run every row on two devices of one adapter; write JSON and Markdown where asked.
    Returns the results."""
    with hal.create_device(adapter, label="A") as a, hal.create_device(adapter, label="B") as b:
        results: dict[str, Any] = {
            "adapter": str(a.info),
            "implementation": a.info.implementation,
            "python": platform.python_version(),
            "reps": reps,
            "peer_copy": {},
            "ping_pong_us": {},
        }
        for size in sizes(max_size):
            results["peer_copy"][str(size)] = bench_peer_copy(a, b, size, reps)
            print(f"{human(size):>8}: " + ", ".join(
                f"{name} {row['gb_s']:.3g} GB/s"
                for name, row in results["peer_copy"][str(size)].items()
            ), flush=True)  # fmt: skip
        for name, copy in (("barrier hop", False), ("4-byte peer copy hop", True)):
            samples = [bench_ping_pong(a, b, hops, copy) for _ in range(max(1, reps))]
            results["ping_pong_us"][name] = {
                "median": statistics.median(samples),
                "samples": samples,
            }
            print(f"{name}: {statistics.median(samples):.1f} µs", flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    if md_path:
        Path(md_path).write_text(markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    """The results as two Markdown tables."""
    lines = [
        f"Two devices of {results['adapter']} ({results['implementation']}), "
        f"median of {results['reps']}.",
        "",
        "| size | hal peer queue_copy GB/s | host round trip GB/s |",
        "| ---: | ---: | ---: |",
    ]
    for size, rows in results["peer_copy"].items():
        lines.append(
            f"| {human(int(size))} | {rows['hal peer queue_copy']['gb_s']:.3g} | "
            f"{rows['host round trip']['gb_s']:.3g} |"
        )
    lines += ["", "| cross-device ping-pong | µs per hop |", "| --- | ---: |"]
    for name, row in results["ping_pong_us"].items():
        lines.append(f"| {name} | {row['median']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-size", default="256M", help="largest copy (default 256M)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--hops", type=int, default=200)
    parser.add_argument("--adapter", default=None, help="index or name substring")
    parser.add_argument("--json", default=None)
    parser.add_argument("--md", default=None)
    args = parser.parse_args()
    adapter: int | str | None = args.adapter
    if isinstance(adapter, str) and adapter.isdigit():
        adapter = int(adapter)
    run(parse_size(args.max_size), args.reps, args.hops, adapter, args.json, args.md)


if __name__ == "__main__":
    main()
