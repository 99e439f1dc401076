"""Issue 10's two CPU targets from benchmarks/eager.py's ``Hal`` pieces, A/B between trees.

``run`` measures, in this process (the ``hal`` on ``PYTHONPATH``), on the null backend
(``null``: hal's own CPU cost) or the default device (``real``: lavapipe here):

- ``table``: the row "replay with a binding table, N = 100, submit side" — the same table,
  a new table each submission (32 buffers cycled; the program cache keeps 8, so each is a
  miss), and a fresh buffer each submission (allocated before the timing, released after);
  µs per dispatch, each the best of ``reps`` medians of 15, alternated; ``ratio`` is the
  median over reps of new ÷ same;
- ``fill``: the one-fill command buffer round trip (``Hal.fill_round_trip``) beside
  ``queue_fill`` and ``queue_copy`` round trips (µs, best of ``reps`` medians of 50), and
  raw wgpu-py's ``clear_buffer`` round trip on a real device;
- ``rawtable`` (a real device): the table row by hand in raw wgpu-py, the same buffer's
  bind groups vs another buffer's each submission (what wgpu-native itself pays).

``ab`` runs ``run`` in fresh processes for each tree in turn (order alternated per round)
and prints each tree's medians over the rounds: the trees share the machine's load alike.

    python3 benchmarks/eager_pieces.py run null table 15
    python3 benchmarks/eager_pieces.py ab 8 null fill /path/to/base /path/to/this
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _best_median(sample: Callable[[], float], count: int, reps: int) -> float:
    """The best over ``reps`` of the median of ``count`` samples (5 discarded first), µs."""
    best = float("inf")
    for _ in range(reps):
        for _ in range(5):
            sample()
        best = min(best, statistics.median(sample() for _ in range(count)))
    return best * 1e6


def run(kind: str, what: str, reps: int) -> dict[str, float]:
    """The pieces of ``what`` on a ``kind`` device (see the module docstring)."""
    import hal  # the tree on PYTHONPATH: first, so that eager.py's own path is not used

    sys.path.insert(0, str(HERE))
    import eager  # this script's eager.py (the same benchmark code for every tree)

    if kind == "null":
        device = hal.create_device(implementation="null", backend="null")
    else:
        device = hal.create_device()
    h = eager.Hal(device)
    out: dict[str, float] = {}
    if what == "table":
        cb = h.record_dispatches(100, hal.CommandBufferMode.DEFAULT, table=True)
        tables = [[device.allocate_buffer(4096)] for _ in range(32)]
        cycle = iter(range(1 << 30))
        same, new = [], []
        for _ in range(reps):  # alternated, so load hits both alike
            same.append(_best_median(lambda: h.replay(cb, 100, tables[0]), 15, 1))
            new.append(_best_median(lambda: h.replay(cb, 100, tables[next(cycle) % 32]), 15, 1))
        out["same"], out["new"] = min(same), min(new)
        out["ratio"] = statistics.median(n / s for n, s in zip(new, same, strict=True))
        out["fresh"] = _best_median(lambda: h.replay_fresh(cb, 100), 15, reps)
    elif what == "rawtable":
        out = _raw_table(eager.Raw(device), reps)
    else:
        semaphore = h.semaphore

        def queue_fill() -> float:
            start = time.perf_counter()
            value = h.next()
            device.queue_fill(h.buffer, 0, 4, 0, signal=[(semaphore, value)])
            semaphore.wait(value, timeout=60)
            return time.perf_counter() - start

        cases: dict[str, Callable[[], float]] = {
            "fill_cb": h.fill_round_trip,
            "queue_fill": queue_fill,
            "queue_copy": h.copy_round_trip,
        }
        if device.info.implementation == "wgpu-native":
            cases["raw_clear"] = eager.Raw(device).clear_round_trip
        found: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(reps):
            for name, case in cases.items():
                found[name].append(_best_median(case, 50, 1))
        out = {name: min(values) for name, values in found.items()}
    device.close()
    return out


def _raw_table(raw: Any, reps: int) -> dict[str, float]:
    """The table row by hand in raw wgpu-py (wgpu-native only): 100 x (set_bind_group of
    one of 8 groups on one buffer + dispatch) encoded and submitted, the groups of the same
    buffer each time or of one of 32 buffers in turn (groups made up front): what wgpu-native
    itself pays for a different buffer each submission, µs per dispatch, submit side."""
    device, ffi, lib = raw.device, raw.ffi, raw.lib
    usage = raw.wgpu.BufferUsage
    layout = raw.pipeline.get_bind_group_layout(0)
    groups = []
    for _ in range(32):
        buffer = device.create_buffer(
            size=4096, usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
        )
        resource = {"buffer": buffer, "size": 256}
        groups.append(
            [
                device.create_bind_group(
                    layout=layout,
                    entries=[{"binding": 0, "resource": dict(resource, offset=256 * i)}],
                )
                for i in range(8)
            ]
        )

    def submit(chosen: list[Any]) -> float:
        start = time.perf_counter()
        encoder = device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        compute.set_pipeline(raw.pipeline)
        for i in range(100):
            compute.set_bind_group(0, chosen[i % 8])
            compute.dispatch_workgroups(1, 1, 1)
        compute.end()
        handles = ffi.new("WGPUCommandBuffer[]", [encoder.finish()._internal])
        index = lib.wgpuQueueSubmitForIndex(device.queue._internal, 1, handles)
        elapsed = time.perf_counter() - start
        lib.wgpuDevicePoll(device._internal, True, ffi.new("WGPUSubmissionIndex*", index))
        return elapsed / 100

    cycle = iter(range(1 << 30))
    same, new = [], []
    for _ in range(reps):
        same.append(_best_median(lambda: submit(groups[0]), 15, 1))
        new.append(_best_median(lambda: submit(groups[next(cycle) % 32]), 15, 1))
    return {
        "raw_same": min(same),
        "raw_new": min(new),
        "raw_ratio": statistics.median(n / s for n, s in zip(new, same, strict=True)),
    }


def ab(rounds: int, kind: str, what: str, trees: list[str], reps: int) -> None:
    """``run`` in a fresh process per tree and round, the order alternated per round; each
    tree's median of every figure over the rounds."""
    env = dict(os.environ)
    found: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for index in range(rounds):
        for tree in trees if index % 2 == 0 else trees[::-1]:
            done = subprocess.run(
                [sys.executable, str(HERE / "eager_pieces.py"), "run", kind, what, str(reps)],
                cwd=tree,
                env=dict(env, PYTHONPATH=tree),
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode:
                raise SystemExit(done.stderr[-2000:])
            found[tree].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for tree, results in found.items():
        figures = " ".join(
            f"{key} {statistics.median(r[key] for r in results):.3f}" for key in results[0]
        )
        print(f"{tree}: {figures}")


def main() -> None:
    """``run KIND WHAT REPS`` or ``ab ROUNDS KIND WHAT TREE...`` (REPS from the environment,
    default 3); anything else prints the usage and exits."""
    args = sys.argv[1:]
    if args[:1] == ["run"] and len(args) == 4:
        print(json.dumps(run(args[1], args[2], int(args[3]))))
    elif args[:1] == ["ab"] and len(args) >= 5:
        ab(int(args[1]), args[2], args[3], args[4:], int(os.environ.get("REPS", "3")))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
