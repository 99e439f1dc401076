"""Multi-threaded submission stress: 8 host threads × 1,000 queue operations each, ordered by
cross-thread semaphore waits.

Thread ``t`` owns semaphore ``S_t`` and a log region ``log_t`` of one u32 per step. Step ``i``
of thread ``t`` waits on ``(S_t, i - 1)`` (its own previous step) and on one dependency
``(S_u, j)`` of another thread, drawn from a seeded plan with ``j < i`` or ``(j == i and u < t)``,
and signals ``(S_t, i)``. Ordering every step after steps that come earlier in ``(i, t)`` order
makes the dependency graph acyclic, so there is no deadlock by construction; host threads also
block (bounded) on their own step ``i - WINDOW`` and now and then on another thread's step
``i - 1``, which are earlier steps too.

A step either copies its dependency's log word into its own (``queue_copy`` or a pre-recorded
reusable command buffer with a binding table) or writes a unique value (``queue_update`` or
``queue_fill``). Had a copy run before its dependency, it would have copied a zero, so the final
logs, compared with the values the plan predicts, show that every wait held. Every semaphore must
end at exactly ``STEPS``: no signal is lost.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal

THREADS = 8
STEPS = 1000
WINDOW = 24
"""How many of its own steps a host thread may have outstanding."""
TIME_LIMIT = 120.0
"""Seconds the whole stress may take before it counts as a failure."""


@dataclass(frozen=True)
class Step:
    """One planned queue operation: its cross-thread dependency and what it does."""

    dep: tuple[int, int] | None  # (thread, step) or None
    kind: str  # "copy", "execute", "update" or "fill"


def make_plan(seed: int) -> list[list[Step]]:
    """``plan[t][i]`` for steps ``i = 1..STEPS`` (index 0 unused)."""
    rng = np.random.default_rng(seed)
    plan: list[list[Step]] = []
    for t in range(THREADS):
        steps = [Step(None, "update")]
        for i in range(1, STEPS + 1):
            candidates = [(u, j) for u in range(THREADS) if u != t for j in (i - 1, i - 2, i)]
            candidates = [(u, j) for u, j in candidates if j >= 1 and (j < i or u < t)]
            if rng.random() < 0.5 and t > 0:
                dep: tuple[int, int] | None = (t - 1, i)  # the previous thread's same step
            elif candidates:
                dep = candidates[int(rng.integers(len(candidates)))]
            else:
                dep = None
            roll = rng.random()
            if dep is None or roll < 0.2:
                kind = "update" if roll < 0.1 or dep is None else "fill"
            else:
                kind = "copy" if roll < 0.6 else "execute"
            steps.append(Step(dep, kind))
        plan.append(steps)
    return plan


def unique(t: int, i: int) -> int:
    """The value a writing step stores: never zero, distinct per step."""
    return (t + 1) << 16 | i


def expected_logs(plan: list[list[Step]]) -> np.ndarray:
    """``[t, i]``: the u32 the plan predicts in log word ``i`` of thread ``t``."""
    out = np.zeros((THREADS, STEPS + 1), dtype=np.uint32)
    for i in range(1, STEPS + 1):  # (i, t) order: every dependency is computed first
        for t in range(THREADS):
            step = plan[t][i]
            if step.kind in ("copy", "execute"):
                assert step.dep is not None
                u, j = step.dep
                out[t, i] = out[u, j]
            else:
                out[t, i] = unique(t, i)
    return out


class Worker(threading.Thread):
    """Runs ``fn`` on a daemon thread and keeps its exception for ``finish``."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        super().__init__(daemon=True, name=name)
        self._fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as error:  # handed to the test thread by finish()
            self.error = error

    def finish(self, deadline: float) -> None:
        """Join until ``deadline`` (monotonic); re-raise the thread's exception."""
        self.join(max(0.0, deadline - time.monotonic()))
        assert not self.is_alive(), f"{self.name} still running: deadlock or lost signal"
        if self.error is not None:
            raise self.error


@pytest.mark.timeout(240)
def test_threads_submit_with_cross_thread_waits(device: hal.Device) -> None:
    plan = make_plan(seed=1234)
    expected = expected_logs(plan)
    words = STEPS + 1
    log = device.allocate_buffer(THREADS * words * 4)
    sems = [device.create_semaphore() for _ in range(THREADS)]
    started = time.monotonic()
    deadline = started + TIME_LIMIT
    failed = threading.Event()

    def word(t: int, i: int) -> int:
        return (t * words + i) * 4

    def run_thread(t: int) -> None:
        # One reusable command buffer per thread: copy slot 0 into slot 1.
        cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=2)
        cb.begin()
        cb.copy_buffer(hal.SlotRef(0), 0, hal.SlotRef(1), 0, 4)
        cb.end()
        other = sems[(t + 1) % THREADS]
        for i in range(1, STEPS + 1):
            if failed.is_set():
                return
            if i > WINDOW:
                sems[t].wait(i - WINDOW, timeout=max(0.1, deadline - time.monotonic()))
            if i % 97 == 0:  # a host wait on another thread's earlier step
                device.wait_semaphores(
                    [(other, i - 1), (sems[t], i - 1)],
                    mode="any" if i % 2 else "all",
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            step = plan[t][i]
            wait = [(sems[t], i - 1)]
            if step.dep is not None:
                u, j = step.dep
                wait.append((sems[u], j))
            signal = [(sems[t], i)]
            target = word(t, i)
            if step.kind == "update":
                value = np.array([unique(t, i)], dtype=np.uint32)
                device.queue_update(value, 0, log, target, 4, wait=wait, signal=signal)
            elif step.kind == "fill":
                device.queue_fill(log, target, 4, unique(t, i), 4, wait=wait, signal=signal)
            else:
                assert step.dep is not None
                source = word(*step.dep)
                if step.kind == "copy":
                    device.queue_copy(log, source, log, target, 4, wait=wait, signal=signal)
                else:
                    table = [hal.BufferRef(log, source, 4), hal.BufferRef(log, target, 4)]
                    device.queue_execute(cb, wait=wait, signal=signal, binding_table=table)
        sems[t].wait(STEPS, timeout=max(0.1, deadline - time.monotonic()))

    def guarded(t: int) -> Callable[[], None]:
        def body() -> None:
            try:
                run_thread(t)
            except BaseException:
                failed.set()
                raise

        return body

    workers = [Worker(guarded(t), f"stress-{t}") for t in range(THREADS)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.finish(deadline)
    finally:
        failed.set()
    elapsed = time.monotonic() - started
    print(f"{THREADS} threads x {STEPS} submissions: {elapsed:.1f} s")

    assert [s.query() for s in sems] == [STEPS] * THREADS
    logs = np.frombuffer(device.transfer_d2h(log), dtype=np.uint32).reshape(THREADS, words)
    wrong = [(int(t), int(i)) for t, i in np.argwhere(logs != expected)]
    assert not wrong, (
        f"{len(wrong)} log words differ, first (thread, step) {wrong[0]}: "
        f"{int(logs[wrong[0]]):#x} != {int(expected[wrong[0]]):#x}"
    )
    assert elapsed < TIME_LIMIT


@pytest.mark.timeout(240)
def test_threads_allocate_and_write_concurrently(device: hal.Device) -> None:
    """8 threads each allocate 1,000 fresh buffers and write them at once with queue_update
    or queue_fill: the zero-initialisation of a new buffer must never land after a write
    that another thread submitted to it."""
    per_thread = 1000
    started = time.monotonic()
    deadline = started + TIME_LIMIT
    results: list[list[tuple[hal.Buffer, int]]] = [[] for _ in range(THREADS)]
    sems = [device.create_semaphore() for _ in range(THREADS)]

    def run_thread(t: int) -> None:
        for i in range(1, per_thread + 1):
            buffer = device.allocate_buffer(16)
            value = unique(t, i)
            if i % 2:
                data = np.full(4, value, dtype=np.uint32)
                device.queue_update(data, 0, buffer, 0, 16, signal=[(sems[t], i)])
            else:
                device.queue_fill(buffer, 0, 16, value, 4, signal=[(sems[t], i)])
            results[t].append((buffer, value))
        sems[t].wait(per_thread, timeout=max(0.1, deadline - time.monotonic()))

    workers = [Worker(functools.partial(run_thread, t), f"alloc-{t}") for t in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.finish(deadline)
    elapsed = time.monotonic() - started
    print(f"{THREADS} threads x {per_thread} allocate+write: {elapsed:.1f} s")

    device.wait_idle(WAIT)
    lost = []
    for t in range(THREADS):
        for buffer, value in results[t]:
            got = np.frombuffer(device.transfer_d2h(buffer), dtype=np.uint32)
            if not np.all(got == value):
                lost.append((t, value & 0xFFFF, got.tolist()))
            buffer.release()
    assert not lost, f"{len(lost)} writes lost, e.g. (thread, step, contents) {lost[:3]}"
    assert elapsed < TIME_LIMIT
