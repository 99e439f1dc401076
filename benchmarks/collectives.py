"""Collectives through hal against mpi4py on host arrays (the floor), with the staging cost.

Run under MPI, one process per rank (the ``mpi`` extra)::

    mpiexec -n 2 python3 benchmarks/collectives.py [--max-size 256M] [--reps 5]
    mpiexec -n 2 python3 benchmarks/collectives.py --quick        # 4 KiB - 1 MiB, 3 reps

Rows, per operation and size (4 KiB up to ``--max-size``, ×4 steps), median seconds over the
repetitions, each repetition timed from a barrier to the slowest rank's end:

- ``mpi4py``: ``comm.Allreduce`` / ``comm.Allgather`` on host numpy arrays (float32 SUM).
- ``hal``: ``device.queue_collective`` on device buffers plus the wait on its semaphore
  (recording, the split, staging out, the same MPI call non-blocking, staging back).
- ``staging``: the measured host round trip hal adds — ``transfer_d2h`` of the send range
  plus ``transfer_h2d`` of the received bytes — on the same buffers.

``size`` is the all_reduce buffer, and the all_gather result (each rank sends size / N).
The issue's target: hal ≤ 1.5 × (mpi4py + staging) at 64 MiB. Rank 0 writes ``--json``
(every sample, the adapter, the ranks) and ``--markdown`` (the table) and prints the table.
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

import mpi4py

mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI  # noqa: E402 - after the thread level
from sizes import human, parse_size  # noqa: E402

import hal  # noqa: E402

TIMEOUT = 600.0


def timed(comm: Any, run: Callable[[], Any], reps: int) -> list[float]:
    """Seconds per repetition after one warm-up: barrier, run, the slowest rank's time."""
    run()
    samples = []
    for _ in range(reps):
        comm.Barrier()
        start = time.perf_counter()
        run()
        samples.append(comm.allreduce(time.perf_counter() - start, op=MPI.MAX))
    return samples


def cell(
    comm: Any, device: hal.Device, channel: hal.Channel, op: str, size: int, reps: int
) -> dict[str, Any]:
    """The three rows of one operation and size; checks hal's bytes against mpi4py's."""
    n = comm.Get_size()
    words = size // 4
    send_words = words if op == "all_reduce" else words // n
    rng = np.random.default_rng(comm.Get_rank())
    host_send = rng.integers(0, 100, send_words).astype(np.float32)
    host_recv = np.empty(words, np.float32)
    send = device.buffer_from_numpy(host_send)
    recv = device.allocate_buffer(4 * words)
    kind = hal.CollectiveKind.ALL_REDUCE if op == "all_reduce" else hal.CollectiveKind.ALL_GATHER
    reduction = hal.CollectiveReduction.SUM if op == "all_reduce" else None
    sem = device.create_semaphore()
    count = [0]

    def mpi_run() -> None:
        if op == "all_reduce":
            comm.Allreduce(host_send, host_recv, op=MPI.SUM)
        else:
            comm.Allgather(host_send, host_recv)

    def hal_run() -> None:
        count[0] += 1
        device.queue_collective(
            channel,
            kind,
            send,
            recv,
            send_words,
            element_type=np.float32,
            reduction=reduction,
            signal=[(sem, count[0])],
        )
        sem.wait(count[0], timeout=TIMEOUT)

    def staging_run() -> None:
        device.transfer_d2h(send)
        device.transfer_h2d(host_recv, recv)

    rows = {"mpi4py": timed(comm, mpi_run, reps), "hal": timed(comm, hal_run, reps)}
    hal_run()
    mpi_run()
    if not np.array_equal(recv.to_numpy(np.float32), host_recv):
        raise AssertionError(f"{op} {human(size)}: hal's result differs from mpi4py's")
    rows["staging"] = timed(comm, staging_run, reps)
    send.release()
    recv.release()
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table: medians, bandwidth and hal ÷ (mpi4py + staging)."""
    lines = [
        "| op | size | mpi4py | staging | hal | hal GB/s | hal ÷ (mpi4py + staging) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        m = {k: statistics.median(v) for k, v in r["samples"].items()}
        floor = m["mpi4py"] + m["staging"]
        lines.append(
            f"| {r['op']} | {human(r['size'])} | {m['mpi4py'] * 1e3:.3f} ms | "
            f"{m['staging'] * 1e3:.3f} ms | {m['hal'] * 1e3:.3f} ms | "
            f"{r['size'] / m['hal'] / 1e9:.2f} | {m['hal'] / floor:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-size", default="4K")
    parser.add_argument("--max-size", default="256M")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4 KiB - 1 MiB, 3 repetitions")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--json", default="benchmarks/results/collectives.json")
    parser.add_argument("--markdown", default="benchmarks/results/collectives.md")
    args = parser.parse_args()
    if args.quick:
        args.max_size, args.reps = "1M", 3
    comm = MPI.COMM_WORLD
    sizes = []
    size = parse_size(args.min_size)
    while size <= parse_size(args.max_size):
        sizes.append(size)
        size *= 4
    adapter = int(args.adapter) if args.adapter and args.adapter.isdigit() else args.adapter
    results = []
    with hal.create_device(adapter) as device, device.create_channel() as channel:
        for op in ("all_reduce", "all_gather"):
            for size in sizes:
                samples = cell(comm, device, channel, op, size, args.reps)
                results.append({"op": op, "size": size, "samples": samples})
        info = str(device.info)
    if comm.Get_rank() == 0:
        markdown = table(results)
        print(f"{comm.Get_size()} ranks, {info}, {MPI.Get_library_version().splitlines()[0]}")
        print(markdown)
        record = {
            "ranks": comm.Get_size(),
            "adapter": info,
            "mpi": MPI.Get_library_version().splitlines()[0],
            "host": platform.node(),
            "reps": args.reps,
            "results": results,
        }
        for path, text in ((args.json, json.dumps(record, indent=1)), (args.markdown, markdown)):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
