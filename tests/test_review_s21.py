"""Hostile review of session 21's fixed-cost change (d8ae59c..8554bf1): the transfer lane of
``queue_copy``/``queue_fill`` (hal/runtime/transfer_lane.py), one-command native programs
(hal/runtime/native_programs.py) and the one-point wait with its notify-only-while-asleep
conditions (hal/runtime/semaphore.py, hal/runtime/completion.py).

The tests named ``test_bug_*`` reproduce defects found by the review (they fail until fixed);
the others are regression tests of what the review tried and found right. Every wait is
bounded; the thread stress runs in about a second."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.runtime import queue as queue_module
from hal.runtime import semaphore as semaphore_module


def _poll(condition: Callable[[], bool], seconds: float = WAIT) -> None:
    """Spin (sleeping 1 ms) until ``condition()``; fails the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@pytest.fixture
def sigint(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A function that delivers SIGINT to the main thread right now (Python's default
    handler: KeyboardInterrupt at the next bytecode); the tests run on the main thread."""
    if not _on_main_thread():  # pragma: no cover - pytest runs tests on the main thread
        pytest.fail("the KeyboardInterrupt tests must run on the main thread")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield lambda: signal.raise_signal(signal.SIGINT)  # type: ignore[misc]
    signal.signal(signal.SIGINT, previous)


# == bugs =====================================================================================


def test_bug_wait_idle_returns_before_the_work_signalled(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """device.wait_idle() must return only once every submitted operation finished, its
    signals included. The tracker removes finished work from the in-flight list under the
    lock and only then (outside it) completes it (Work.complete: retire, advance): a
    wait_idle that looks in that window finds the list empty and returns while the
    operation's semaphore is still at 0. The window is widened here by a slow completion on
    the tracker thread; on a real device it is the time one Work.complete takes."""
    original = queue_module.Work.complete
    completing = threading.Event()

    def slow_complete(self: Any) -> None:
        if not _on_main_thread():
            completing.set()
            time.sleep(0.3)
        original(self)

    monkeypatch.setattr(queue_module.Work, "complete", slow_complete)
    a = null.allocate_buffer(64)
    s = null.create_semaphore()
    null.queue_fill(a, 0, 64, 0, signal=[(s, 1)])
    assert completing.wait(WAIT)  # the tracker took the work and is completing it
    null.wait_idle(timeout=WAIT)
    assert s.value == 1, "wait_idle returned before the operation's signal"


@pytest.mark.parametrize("kind", ["queue_copy", "queue_fill", "command_buffer"])
def test_bug_lowering_debug_record_dropped(
    null: hal.Device, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """API.md: the "hal" logger has debug records for lowering decisions. Before the change
    every queue_copy/queue_fill and every one-command cb's end() emitted its
    ``lowering: 1 segments -> PlanStats(...)`` record (single_plan logs it on a template
    hit); the transfer lane and NativePrograms skip single_plan, so with HAL_LOG=debug only
    the first call of a shape (the one that builds the template) logs anything."""
    a = null.buffer_from_numpy(np.arange(64, dtype=np.uint8))
    b = null.allocate_buffer(64)

    def once() -> None:
        s = null.create_semaphore()
        if kind == "queue_copy":
            null.queue_copy(a, 0, b, 0, 64, signal=[(s, 1)])
        elif kind == "queue_fill":
            null.queue_fill(b, 0, 64, 0, signal=[(s, 1)])
        else:
            cb = null.create_command_buffer()
            cb.begin()
            cb.copy_buffer(a, 0, b, 0, 64)
            cb.end()
            null.queue_execute(cb, signal=[(s, 1)])
        s.wait(1, timeout=WAIT)

    caplog.set_level(logging.DEBUG, logger="hal")
    once()  # the shape's template is made (and logged) here
    caplog.clear()
    once()
    lowering = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lowering:")]
    assert lowering, f"no lowering record for a second {kind}"


def test_bug_interrupt_while_completing_fails_the_operation(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch, sigint: Callable[[], None]
) -> None:
    """Ctrl-C in Semaphore.wait must fail only that wait. A one-point wait completes the work
    on its own thread (Completion.wait_for -> complete_through -> Work.complete); a
    KeyboardInterrupt that lands there (here: as the semaphore is advanced) is caught by
    _finish_through's ``except BaseException: work.abort(failure)``: the GPU work succeeded
    but its semaphore is failed for good with KeyboardInterrupt, and the waiter gets
    AbortedError instead of the interrupt."""
    backend = null.backend
    original_wait = backend.wait

    def slow_wait(ticket: int) -> None:  # the tracker: leaves the work to the waiter
        time.sleep(0.3)
        original_wait(ticket)

    monkeypatch.setattr(backend, "wait", slow_wait)
    original_advance = semaphore_module.Semaphore.advance
    armed = [True]

    def interrupted_advance(self: hal.Semaphore, value: int) -> None:
        if armed[0] and _on_main_thread():
            armed[0] = False
            sigint()
        original_advance(self, value)

    monkeypatch.setattr(semaphore_module.Semaphore, "advance", interrupted_advance)
    a = null.allocate_buffer(64)
    null.wait_idle(WAIT)
    s = null.create_semaphore()
    null.queue_fill(a, 0, 64, 0, signal=[(s, 1)])
    raised: BaseException | None = None
    try:
        s.wait(1, timeout=WAIT)
    except BaseException as error:
        raised = error
    assert not armed[0], "the interrupt was not delivered on the waiting thread"
    null.wait_idle(WAIT)
    assert s.failure is None, f"the interrupt failed the operation: {s.failure!r}"
    assert s.value == 1
    assert isinstance(raised, KeyboardInterrupt), f"the waiter got {raised!r}"


def test_bug_interrupt_in_a_watcher_strands_held_back_work(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch, sigint: Callable[[], None]
) -> None:
    """A KeyboardInterrupt that lands while the waiting thread releases held-back work (the
    semaphore's watcher -> Queue._release_ready -> schedule) is swallowed by
    Semaphore._notify_watchers (``except BaseException: _log.exception``) after the work was
    popped from its heap: that operation is never submitted, its semaphore never signals nor
    fails (every later wait on it times out), and the interrupt never reaches the user."""
    backend = null.backend
    original_wait = backend.wait

    def slow_wait(ticket: int) -> None:  # the tracker: leaves the work to the waiter
        time.sleep(0.3)
        original_wait(ticket)

    monkeypatch.setattr(backend, "wait", slow_wait)
    original_schedule = queue_module.Queue.schedule
    armed = [True]

    def interrupted_schedule(self: Any, work: Any) -> None:
        if armed[0] and work.held and _on_main_thread():
            armed[0] = False
            sigint()
        original_schedule(self, work)

    monkeypatch.setattr(queue_module.Queue, "schedule", interrupted_schedule)
    a = null.allocate_buffer(64)
    null.wait_idle(WAIT)
    s = null.create_semaphore()
    t = null.create_semaphore()
    null.queue_fill(a, 0, 64, 0, wait=[(s, 1)], signal=[(t, 1)])  # held back on s
    null.queue_fill(a, 0, 64, 0, signal=[(s, 1)])
    raised: BaseException | None = None
    try:
        s.wait(1, timeout=WAIT)
    except BaseException as error:
        raised = error
    assert not armed[0], "the interrupt was not delivered on the waiting thread"
    try:
        t.wait(1, timeout=1.0)
    except hal.AbortedError:
        pass  # failing the held-back operation would be consistent too
    except hal.DeadlineExceededError:
        pytest.fail("the held-back operation was lost: its semaphore never signals nor fails")
    assert isinstance(raised, KeyboardInterrupt), f"the interrupt was swallowed ({raised!r})"


# == regression tests: the one-point wait and the notify-only-while-asleep conditions ========


def test_threads_waiting_with_short_deadlines_never_miss_a_wake_up(
    shared_or_null: hal.Device,
) -> None:
    """8 threads × 40 rounds of one-point waits on work, on held-back work released by a
    host timer, ``any`` waits woken by a host signal, cross-thread waits and waits that
    must time out: each returns by its deadline (plus slack for a loaded machine) or sees
    its value, and the bytes of every copy land."""
    device = shared_or_null
    buffers = [device.buffer_from_numpy(np.full(64, i + 1, np.uint8)) for i in range(8)]
    targets = [device.allocate_buffer(64) for _ in range(8)]
    problems: list[str] = []
    shared = [device.create_semaphore() for _ in range(8)]

    def worker(i: int) -> None:
        rng = random.Random(i)
        for k in range(40):
            s = device.create_semaphore()
            h = device.create_semaphore()
            mode = k % 5
            try:
                if mode == 0:
                    device.queue_copy(buffers[i], 0, targets[i], 0, 64, signal=[(s, 1)])
                    s.wait(1, timeout=WAIT)
                elif mode == 1:
                    device.queue_fill(targets[i], 0, 64, 0, wait=[(h, 1)], signal=[(s, 1)])
                    threading.Timer(rng.random() * 0.002, h.signal, (1,)).start()
                    s.wait(1, timeout=WAIT)
                elif mode == 2:
                    threading.Timer(rng.random() * 0.002, s.signal, (1,)).start()
                    device.wait_semaphores([(h, 1), (s, 1)], "any", timeout=WAIT)
                elif mode == 3:
                    shared[i].signal(k)
                    shared[(i + 1) % 8].wait(k, timeout=WAIT)  # the neighbour's round k
                else:
                    start = time.monotonic()
                    with pytest.raises(hal.DeadlineExceededError):
                        s.wait(1, timeout=0.003)
                    if time.monotonic() - start > 2.0:
                        problems.append(f"thread {i} round {k}: a 3 ms wait took > 2 s")
            except BaseException as error:
                problems.append(f"thread {i} round {k}: {error!r}")
        device.queue_copy(buffers[i], 0, targets[i], 0, 64, signal=[(shared[i], 1000)])
        shared[i].wait(1000, timeout=WAIT)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    for i in range(8):
        assert np.array_equal(targets[i].to_numpy(np.uint8), np.full(64, i + 1, np.uint8))


def test_wait_idle_racing_submissions_returns_and_every_signal_lands(null: hal.Device) -> None:
    """Four threads submit while two others call bounded wait_idle in a loop: no wait_idle
    outlives its deadline by much, and once the submitters stop a wait_idle returns and every
    operation's semaphore reaches its value (waited, bounded)."""
    a = null.allocate_buffer(64)
    stop = threading.Event()
    late: list[float] = []
    semaphores = [null.create_semaphore() for _ in range(4)]

    def submitter(i: int) -> None:
        for k in range(1, 201):
            null.queue_fill(a, 0, 64, 0, signal=[(semaphores[i], k)])

    def idler() -> None:
        while not stop.is_set():
            start = time.monotonic()
            with contextlib.suppress(hal.DeadlineExceededError):
                null.wait_idle(timeout=0.01)
            if time.monotonic() - start > 2.0:
                late.append(time.monotonic() - start)

    idlers = [threading.Thread(target=idler) for _ in range(2)]
    submitters = [threading.Thread(target=submitter, args=(i,)) for i in range(4)]
    for thread in idlers + submitters:
        thread.start()
    for thread in submitters:
        thread.join(WAIT)
    stop.set()
    for thread in idlers:
        thread.join(WAIT)
    null.wait_idle(WAIT)
    for s in semaphores:
        s.wait(200, timeout=WAIT)
    assert late == []
    assert not any(t.is_alive() for t in idlers + submitters)


def test_waits_on_another_devices_semaphore(null: hal.Device) -> None:
    """One-point and multi-point waits on a semaphore of another device, signalled by that
    device's work that is itself held back on a host signal: both wake, the lane's copy on
    this device ordered after the other device's fill."""
    other = hal.create_device(implementation="null", backend="null")
    try:
        x = other.buffer_from_numpy(np.full(64, 3, np.uint8))
        h = other.create_semaphore()
        foreign = other.create_semaphore()
        other.queue_fill(x, 0, 64, 0, wait=[(h, 1)], signal=[(foreign, 1)])
        a = null.buffer_from_numpy(np.arange(64, dtype=np.uint8))
        b = null.allocate_buffer(64)
        s = null.create_semaphore()
        null.queue_copy(a, 0, b, 0, 64, wait=[(foreign, 1)], signal=[(s, 1)])
        woke: list[str] = []
        waiters = [
            threading.Thread(target=lambda: (foreign.wait(1, timeout=WAIT), woke.append("one"))),
            threading.Thread(
                target=lambda: (
                    null.wait_semaphores([(foreign, 1), (s, 1)], "all", timeout=WAIT),
                    woke.append("all"),
                )
            ),
        ]
        for thread in waiters:
            thread.start()
        time.sleep(0.02)
        assert woke == [] and s.value == 0
        h.signal(1)
        for thread in waiters:
            thread.join(WAIT)
        assert sorted(woke) == ["all", "one"]
        assert np.array_equal(b.to_numpy(np.uint8), np.arange(64, dtype=np.uint8))
        assert np.array_equal(x.to_numpy(np.uint8), np.zeros(64, np.uint8))
    finally:
        other.close()


def test_device_loss_wakes_every_waiter(null: hal.Device) -> None:
    """Eight threads asleep in one-point waits on held-back operations: the device is lost,
    the operations' wait is reached, and every waiter raises AbortedError whose cause is the
    device's UnavailableError, well before its deadline."""
    a = null.allocate_buffer(64)
    h = null.create_semaphore()
    signals = [null.create_semaphore() for _ in range(8)]
    for s in signals:
        null.queue_fill(a, 0, 64, 0, wait=[(h, 1)], signal=[(s, 1)])
    outcomes: list[BaseException | None] = [None] * 8

    def waiter(i: int) -> None:
        try:
            signals[i].wait(1, timeout=WAIT)
        except BaseException as error:
            outcomes[i] = error

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.02)
    null.backend.lose("reset by the review")  # type: ignore[attr-defined]
    start = time.monotonic()
    h.signal(1)
    for thread in threads:
        thread.join(WAIT)
    assert time.monotonic() - start < WAIT / 2
    for error in outcomes:
        assert isinstance(error, hal.AbortedError)
        assert isinstance(error.__cause__, hal.UnavailableError)
        assert "reset by the review" in str(error.__cause__)


def test_interrupt_asleep_in_a_wait_fails_only_that_wait(
    null: hal.Device, sigint: Callable[[], None]
) -> None:
    """A SIGINT sent to the main thread while it sleeps on the shared condition (a wait on a
    host semaphore) raises KeyboardInterrupt from that wait only: the sleeper count is back
    to 0, held-back work on that semaphore still runs when it is signalled, and a later
    wait (woken by a completion that notifies only while someone sleeps) works."""
    a = null.buffer_from_numpy(np.arange(64, dtype=np.uint8))
    b = null.allocate_buffer(64)
    h = null.create_semaphore()
    s = null.create_semaphore()
    null.queue_copy(a, 0, b, 0, 64, wait=[(h, 1)], signal=[(s, 1)])
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        h.wait(1, timeout=WAIT)
    timer.join(WAIT)
    assert semaphore_module._sleepers[0] == 0
    threading.Timer(0.05, h.signal, (1,)).start()
    s.wait(1, timeout=WAIT)
    assert np.array_equal(b.to_numpy(np.uint8), np.arange(64, dtype=np.uint8))


def test_interrupt_asleep_in_wait_idle_leaves_it_consistent(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch, sigint: Callable[[], None]
) -> None:
    """A SIGINT during a bounded wait_idle raises KeyboardInterrupt from it; the idle-waiter
    count is back to 0 and the next wait_idle sees the work finish."""
    backend = null.backend
    original_wait = backend.wait

    def slow_wait(ticket: int) -> None:
        time.sleep(0.3)
        original_wait(ticket)

    monkeypatch.setattr(backend, "wait", slow_wait)
    a = null.allocate_buffer(64)
    s = null.create_semaphore()
    null.queue_fill(a, 0, 64, 0, signal=[(s, 1)])
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        null.wait_idle(timeout=WAIT)
    timer.join(WAIT)
    completion = null._queue.completion  # type: ignore[attr-defined]
    assert completion._idle_waiters == 0
    s.wait(1, timeout=WAIT)
    null.wait_idle(timeout=WAIT)


# == regression tests: the lane =================================================================


def test_lane_edges_bytes_and_order(shared_or_null: hal.Device) -> None:
    """What the lane takes or declines keeps the general path's results: a copy from a
    buffer released while the copy is held back still copies; a subspan target lands at its
    offset and a range past it raises OutOfRangeError; a zero fill of the last bytes of an
    odd-sized allocation; zero-length operations still signal; a failed wait semaphore
    fails the signal with its cause."""
    device = shared_or_null
    data = np.arange(256, dtype=np.uint8)
    a = device.buffer_from_numpy(data)
    b = device.buffer_from_numpy(np.zeros(256, np.uint8))
    h = device.create_semaphore()
    s = device.create_semaphore()
    device.queue_copy(a, 0, b, 0, 256, wait=[(h, 1)], signal=[(s, 1)])
    a.release()
    h.signal(1)
    s.wait(1, timeout=WAIT)
    assert np.array_equal(b.to_numpy(np.uint8), data)

    a = device.buffer_from_numpy(data)
    c = device.buffer_from_numpy(np.zeros(256, np.uint8))
    sub = c.subspan(64, 64)
    device.queue_copy(a, 0, sub, 0, 64, signal=[(s, 2)])
    with pytest.raises(hal.OutOfRangeError, match=r"^queue_copy: target range \[4, 68\)"):
        device.queue_copy(a, 0, sub, 4, 64, signal=[(s, 3)])
    s.wait(2, timeout=WAIT)
    expected = np.zeros(256, np.uint8)
    expected[64:128] = data[:64]
    assert np.array_equal(c.to_numpy(np.uint8), expected)

    odd = device.buffer_from_numpy(np.full(68, 3, np.uint8))
    device.queue_fill(odd, 64, 4, 0, signal=[(s, 3)])
    device.queue_copy(a, 0, c, 0, 0, wait=[(s, 3)], signal=[(s, 4)])
    device.queue_fill(c, 0, 0, 0, wait=[(s, 4)], signal=[(s, 5)])
    s.wait(5, timeout=WAIT)
    assert odd.to_numpy(np.uint8).tolist() == [3] * 64 + [0] * 4
    assert np.array_equal(c.to_numpy(np.uint8), expected)

    failed = device.create_semaphore()
    failed.fail(RuntimeError("boom"))
    t = device.create_semaphore()
    device.queue_copy(a, 0, c, 0, 64, wait=[(failed, 1)], signal=[(t, 1)])
    with pytest.raises(hal.AbortedError, match="boom") as caught:
        t.wait(1, timeout=WAIT)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert np.array_equal(c.to_numpy(np.uint8), expected)


def test_lane_refuses_another_devices_buffers_and_a_closed_device() -> None:
    """A target of another device is InvalidArgumentError naming the operation; after close
    the operations raise UnavailableError."""
    device = hal.create_device(implementation="null", backend="null")
    other = hal.create_device(implementation="null", backend="null")
    try:
        a = device.allocate_buffer(64)
        x = other.allocate_buffer(64)
        with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy: target .*another"):
            device.queue_copy(a, 0, x, 0, 64)
        with pytest.raises(hal.InvalidArgumentError, match=r"^queue_fill: target .*another"):
            device.queue_fill(x, 0, 64, 0)
    finally:
        other.close()
        device.close()
    with pytest.raises(hal.UnavailableError, match=r"^queue_copy: the device is closed"):
        device.queue_copy(a, 0, a, 0, 0)
    with pytest.raises(hal.UnavailableError, match=r"^queue_fill: the device is closed"):
        device.queue_fill(a, 0, 4, 0)


# == regression tests: native one-command programs ==============================================


def test_native_reusable_cb_submitted_from_threads(shared_or_null: hal.Device) -> None:
    """One reusable cb of one native copy, submitted 25 times from each of 6 threads at once
    (each with its own semaphore), with and without an (ignored) binding table: every
    submission signals and the bytes are the copy's; once the source is released every
    submission raises FailedPreconditionError naming queue_execute and queues nothing."""
    device = shared_or_null
    data = np.arange(128, dtype=np.uint8)
    a = device.buffer_from_numpy(data)
    b = device.allocate_buffer(128)
    cb = device.create_command_buffer(mode=hal.CommandBufferMode.DEFAULT)
    cb.begin()
    cb.copy_buffer(a, 0, b, 0, 128)
    cb.end()
    problems: list[str] = []
    semaphores = [device.create_semaphore() for _ in range(6)]

    def submitter(i: int) -> None:
        try:
            for k in range(1, 26):
                table = [a] if k % 2 else None
                device.queue_execute(cb, signal=[(semaphores[i], k)], binding_table=table)
            semaphores[i].wait(25, timeout=WAIT)
        except BaseException as error:
            problems.append(repr(error))

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert problems == []
    assert np.array_equal(b.to_numpy(np.uint8), data)
    a.release()
    after = device.create_semaphore()
    with pytest.raises(hal.FailedPreconditionError, match=r"^queue_execute: .*released"):
        device.queue_execute(cb, signal=[(after, 1)])
    device.wait_idle(WAIT)
    assert after.query() == 0


def _race_one_shot(device: hal.Device, cb: hal.CommandBuffer, threads: int) -> list[int]:
    """Submit ``cb`` from ``threads`` threads released together; each thread's outcome (1
    accepted, 0 refused with FailedPreconditionError) and its semaphore's final value."""
    barrier = threading.Barrier(threads)
    semaphores = [device.create_semaphore() for _ in range(threads)]
    outcomes: list[str] = []

    def submit(i: int) -> None:
        barrier.wait(WAIT)
        try:
            device.queue_execute(cb, signal=[(semaphores[i], 1)])
            outcomes.append("ok")
        except hal.FailedPreconditionError:
            outcomes.append("refused")

    workers = [threading.Thread(target=submit, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    device.wait_idle(WAIT)
    assert len(outcomes) == threads
    return [outcomes.count("ok"), sum(s.value for s in semaphores)]


def test_native_one_shot_cb_raced_by_threads(null: hal.Device) -> None:
    """A ONE_SHOT native cb submitted by four threads at once is accepted exactly once; the
    others raise FailedPreconditionError and signal nothing (20 rounds)."""
    a = null.buffer_from_numpy(np.arange(64, dtype=np.uint8))
    b = null.allocate_buffer(64)
    for _ in range(20):
        cb = null.create_command_buffer()
        cb.begin()
        cb.copy_buffer(a, 0, b, 0, 64)
        cb.end()
        assert _race_one_shot(null, cb, 4) == [1, 1]
    assert np.array_equal(b.to_numpy(np.uint8), np.arange(64, dtype=np.uint8))


def test_lane_copy_from_a_collected_source_still_copies(shared_or_null: hal.Device) -> None:
    """The lane's Work holds allocations only (no keepalive of the Buffers): a held-back copy
    whose source Buffer is dropped and collected before its wait is reached still copies
    the source's bytes (the allocation lives until the copy completes)."""
    import gc

    device = shared_or_null
    data = np.arange(256, dtype=np.uint8)
    a = device.buffer_from_numpy(data)
    b = device.buffer_from_numpy(np.zeros(256, np.uint8))
    h = device.create_semaphore()
    s = device.create_semaphore()
    device.queue_copy(a, 0, b, 0, 256, wait=[(h, 1)], signal=[(s, 1)])
    del a
    gc.collect()
    h.signal(1)
    s.wait(1, timeout=WAIT)
    assert np.array_equal(b.to_numpy(np.uint8), data)


def test_native_cb_loss_while_encoding_is_unavailable(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend reports a loss while a native one-command cb is encoded: queue_execute
    raises UnavailableError, the cb is given back unsubmitted, nothing is signalled, and
    later operations raise UnavailableError too."""
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    cb = null.create_command_buffer()
    cb.begin()
    cb.copy_buffer(a, 0, b, 0, 32)
    cb.end()
    assert type(cb.programs).__name__ == "NativePrograms"
    s = null.create_semaphore()

    def lost_encode(*args: object, **kwargs: object) -> object:
        from hal.backends.protocol import BackendError

        raise BackendError("device lost: reset", lost=True)

    monkeypatch.setattr(null.backend, "encode", lost_encode)
    with pytest.raises(hal.UnavailableError, match="lost"):
        null.queue_execute(cb, signal=[(s, 1)])
    assert s.value == 0 and s.failure is None
    with pytest.raises(hal.UnavailableError):
        null.queue_fill(b, 0, 4, 0)


def test_a_rejection_on_a_device_lost_meanwhile_is_a_loss_not_a_command_error(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dawn reports calls on a device destroyed meanwhile as validation errors ("... is
    lost", not flagged as a loss): seen on the H200 while threads submitted during a device
    reset, as InvalidArgumentError naming command 0. The failure is asked of the backend's
    probe first, so the submission raises UnavailableError."""
    from hal.backends.protocol import BackendError
    from hal.runtime.programs import wgpu_failure

    backend: Any = null.backend
    error = BackendError('[Device "hal"] is lost. - While calling CreateBuffer')
    monkeypatch.setattr(backend, "probe_lost", lambda: "destroyed")
    failure = wgpu_failure(null, [], error)
    assert isinstance(failure, BackendError) and failure.lost
    assert "destroyed" in str(failure)
    monkeypatch.setattr(backend, "probe_lost", lambda: None)
    failure = wgpu_failure(null, [], error)
    assert isinstance(failure, hal.InvalidArgumentError)
    assert "wgpu rejected the command buffer" in str(failure)
