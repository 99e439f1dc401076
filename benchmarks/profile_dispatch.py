"""One-shot dispatch programs phase by phase (issue 10, session 21): thread CPU µs of
create + begin, recording, ``end()``, ``queue_execute`` and the wait of a ONE_SHOT cb of N
``dispatch(noop, "touch")`` + ``execution_barrier()`` pairs; ``queue_execute`` of a
100-dispatch cb with a binding-table slot, same table vs a new one of 32 each time; and a
chain of 100 dependent submissions (submit-side CPU, total CPU and wall per link). A
quantile (``--quantile``, 0.5 the median) over ``--reps`` repetitions after 20 warm-ups.

    python3 benchmarks/profile_dispatch.py [--implementation null] [--reps 1000] \\
        [--cases 1,10,table,chain] [--quantile 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import hal  # noqa: E402

TIMEOUT = 30.0
Sample = Callable[[], tuple[float, ...]]


class Cases:
    """The cases on one device."""

    def __init__(self, device: hal.Device) -> None:
        self.device = device
        self.buffer = device.allocate_buffer(1 << 20)
        self.noop = device.create_executable(hal.shader_path("noop.wgsl"))
        self.views = [hal.BufferRef(self.buffer, 256 * i, 256) for i in range(8)]
        self.semaphore = device.create_semaphore()
        self.value = 0

    def program(self, n: int) -> tuple[float, ...]:
        clock = time.thread_time
        t0 = clock()
        cb = self.device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        t1 = clock()
        for i in range(n):
            cb.dispatch(self.noop, "touch", (1, 1, 1), bindings=[self.views[i % 8]])
            cb.execution_barrier()
        t2 = clock()
        cb.end()
        t3 = clock()
        self.value += 1
        self.device.queue_execute(cb, signal=[(self.semaphore, self.value)])
        t4 = clock()
        self.semaphore.wait(self.value, timeout=TIMEOUT)
        t5 = clock()
        return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)

    def table(self, new: bool) -> Sample:
        cb = self.device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=1)
        cb.begin()
        for i in range(100):
            cb.dispatch(
                self.noop, "touch", (1, 1, 1), bindings=[hal.SlotRef(0, 256 * (i % 8), 256)]
            )
            cb.execution_barrier()
        cb.end()
        tables = [[self.device.allocate_buffer(4096)] for _ in range(32)]
        count = iter(range(1 << 30))

        def run() -> tuple[float, ...]:
            table = tables[next(count) % 32] if new else tables[0]
            self.value += 1
            start = time.thread_time()
            self.device.queue_execute(
                cb, signal=[(self.semaphore, self.value)], binding_table=table
            )
            submitted = time.thread_time() - start
            self.semaphore.wait(self.value, timeout=TIMEOUT)
            return (submitted,)

        return run

    def chain(self, n: int = 100) -> Sample:
        cb = self.device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
        cb.begin()
        cb.dispatch(self.noop, "touch", (1, 1, 1), bindings=[self.views[0]])
        cb.execution_barrier()
        cb.end()

        def run() -> tuple[float, ...]:
            semaphore = self.device.create_semaphore()
            start, wall = time.thread_time(), time.perf_counter()
            for i in range(n):
                self.device.queue_execute(cb, wait=[(semaphore, i)], signal=[(semaphore, i + 1)])
            submitted = time.thread_time() - start
            semaphore.wait(n, timeout=TIMEOUT)
            total, elapsed = time.thread_time() - start, time.perf_counter() - wall
            return (submitted / n, total / n, elapsed / n)

        return run


def quantile(sample: Sample, reps: int, q: float) -> list[float]:
    """The ``q`` quantile of each column over ``reps`` runs of ``sample``, in µs."""
    for _ in range(20):
        sample()
    columns = zip(*[sample() for _ in range(reps)], strict=True)
    return [sorted(c)[min(len(c) - 1, int(len(c) * q))] * 1e6 for c in columns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--implementation", default="null")
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--cases", default="1,10,table,chain")
    parser.add_argument("--quantile", type=float, default=0.5)
    args = parser.parse_args()
    cases = Cases(hal.create_device(implementation=args.implementation))
    reps, q = args.reps, args.quantile
    for case in args.cases.split(","):
        if case.isdigit():
            n = int(case)
            r = quantile(lambda n=n: cases.program(n), reps if n < 100 else max(20, reps // 20), q)
            print(
                f"N={n}: create+begin {r[0]:.1f} record {r[1]:.1f} end {r[2]:.1f} "
                f"execute {r[3]:.1f} wait {r[4]:.1f} total {r[5]:.1f}"
            )
        elif case == "table":
            same = quantile(cases.table(False), reps // 2, q)[0]
            new = quantile(cases.table(True), reps // 2, q)[0]
            print(f"table N=100 submit: same {same:.1f} new {new:.1f} ratio {new / same:.2f}")
        elif case == "chain":
            r = quantile(cases.chain(), max(10, reps // 50), q)
            print(f"chain per link: submit cpu {r[0]:.1f} total cpu {r[1]:.1f} wall {r[2]:.1f}")
        else:
            parser.error(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
