"""The completion thread yields to a host wait that blocks in the backend itself, and stands
by after one (session 22).

A host wait for the oldest work in flight blocks in the backend's wait on its own thread and
completes the work there; the tracker, woken by the submission, used to block in the backend
beside it, and whichever of the two threads ran first on completion made the other wait for
the GIL (on Dawn ~25 µs of a ~70 µs round trip, in about half the round trips). The tracker
now stays parked while such a wait runs, and takes the work over when the wait gives up (its
deadline, an interrupt): every completion still happens, with the right bytes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, interrupt_on_line

import hal
import hal.runtime.completion as completion_module

TRACKER = "hal-completion"


@pytest.fixture
def null_device() -> Iterator[hal.Device]:
    device = hal.create_device(implementation="null", backend="null")
    yield device
    device.close()


class Gate:
    """The null backend's waits held off while :attr:`open` is clear, each call recorded as
    (thread name, ticket, timeout or None). Closed by :meth:`close`."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.calls: list[tuple[str, int, float | None]] = []
        self.interrupt_once = False
        monkeypatch.setattr(backend, "wait", self.wait)
        monkeypatch.setattr(backend, "wait_bounded", self.wait_bounded)

    def wait(self, ticket: int) -> None:
        self.calls.append((threading.current_thread().name, ticket, None))
        self.open.wait(WAIT)

    def wait_bounded(self, ticket: int, timeout: float | None) -> bool:
        self.calls.append((threading.current_thread().name, ticket, timeout))
        self.entered.set()
        if self.interrupt_once:
            self.interrupt_once = False
            raise KeyboardInterrupt
        return self.open.wait(timeout)

    def close(self, device: hal.Device) -> None:
        """Let ``device`` go idle (its uploads), then hold the waits off."""
        device.wait_idle()
        self.calls.clear()
        self.open.clear()

    def tracker_calls(self) -> list[tuple[str, int, float | None]]:
        return [call for call in self.calls if call[0] == TRACKER]


def _buffers(device: hal.Device, data: np.ndarray) -> tuple[hal.Buffer, hal.Buffer]:
    """A buffer holding ``data`` and a zeroed one of its size."""
    return device.buffer_from_numpy(data), device.buffer_from_numpy(np.zeros_like(data))


def _copy(device: hal.Device, buffers: tuple[hal.Buffer, hal.Buffer]) -> hal.Semaphore:
    """Queue a copy of the first buffer into the second, signalling a new semaphore to 1."""
    source, target = buffers
    semaphore = device.create_semaphore()
    device.queue_copy(source, 0, target, 0, source.byte_length, signal=[(semaphore, 1)])
    return semaphore


def _reached_without_waiting(semaphore: hal.Semaphore, value: int) -> None:
    """Poll ``semaphore`` (no hal wait, which would block in the backend itself) until it
    reaches ``value``: only the tracker can complete the work."""
    deadline = time.monotonic() + WAIT
    while semaphore.query() < value:
        assert time.monotonic() < deadline, "the tracker did not complete the work"
        time.sleep(0.001)


def test_the_tracker_leaves_the_oldest_work_to_a_blocked_host_wait(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """While a host wait blocks in the backend for the oldest ticket, the tracker never
    enters the backend's wait; the waiter completes the work, bytes exact."""
    gate = Gate(null_device.backend, monkeypatch)
    data = np.arange(64, dtype=np.uint8)
    buffers = _buffers(null_device, data)
    target = buffers[1]
    gate.close(null_device)
    opener = threading.Timer(0.2, gate.open.set)
    opener.start()
    try:
        semaphore = _copy(null_device, buffers)
        semaphore.wait(1)  # unbounded: slices of the backend's bounded wait on this thread
    finally:
        gate.open.set()
        opener.join()
    assert semaphore.query() == 1
    assert np.array_equal(target.to_numpy(np.uint8), data)
    me = threading.current_thread().name
    assert gate.calls and all(name == me for name, _, _ in gate.calls), gate.calls
    assert gate.tracker_calls() == []


def test_a_host_wait_giving_up_hands_the_work_to_the_tracker(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """A bounded wait that passes its deadline wakes the parked tracker, which then waits
    for the work and completes it once it finishes, with no host wait left."""
    gate = Gate(null_device.backend, monkeypatch)
    data = np.arange(32, dtype=np.uint8)[::-1].copy()
    buffers = _buffers(null_device, data)
    target = buffers[1]
    gate.close(null_device)
    semaphore = _copy(null_device, buffers)
    with pytest.raises(hal.DeadlineExceededError):
        semaphore.wait(1, timeout=0.05)
    assert semaphore.query() == 0
    deadline = time.monotonic() + WAIT
    while not gate.tracker_calls():  # the tracker took over the wait
        assert time.monotonic() < deadline, "the tracker was not woken"
        time.sleep(0.001)
    gate.open.set()
    _reached_without_waiting(semaphore, 1)
    assert np.array_equal(target.to_numpy(np.uint8), data)


def test_an_interrupted_host_wait_hands_the_work_to_the_tracker(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """A KeyboardInterrupt in the backend's wait propagates from the host wait; the tracker
    is not left parked for that wait: it completes the work."""
    gate = Gate(null_device.backend, monkeypatch)
    data = np.full(16, 7, dtype=np.uint8)
    buffers = _buffers(null_device, data)
    target = buffers[1]
    gate.close(null_device)
    gate.interrupt_once = True
    semaphore = _copy(null_device, buffers)
    with pytest.raises(KeyboardInterrupt):
        semaphore.wait(1)
    gate.open.set()
    _reached_without_waiting(semaphore, 1)
    assert np.array_equal(target.to_numpy(np.uint8), data)


def test_a_wait_for_later_work_does_not_hold_back_older_work(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """A host wait blocked on the newer of two submissions: the tracker still waits for the
    older one itself (the waiter would complete it only with the newer)."""
    gate = Gate(null_device.backend, monkeypatch)
    older = np.arange(8, dtype=np.uint8)
    newer = older + 100
    first_buffers, second_buffers = _buffers(null_device, older), _buffers(null_device, newer)
    first, second = first_buffers[1], second_buffers[1]
    gate.close(null_device)
    first_done = _copy(null_device, first_buffers)
    second_done = _copy(null_device, second_buffers)
    opener = threading.Timer(0.2, gate.open.set)
    opener.start()
    try:
        second_done.wait(1)
    finally:
        gate.open.set()
        opener.join()
    _reached_without_waiting(first_done, 1)
    assert np.array_equal(first.to_numpy(np.uint8), older)
    assert np.array_equal(second.to_numpy(np.uint8), newer)
    tickets = {ticket for _, ticket, _ in gate.tracker_calls()}
    assert tickets and min(tickets) < max(ticket for _, ticket, _ in gate.calls)


def test_dawn_round_trips_complete_on_the_waiting_thread_alone(
    monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """On Dawn, a round trip of a real copy with an unbounded and with a bounded wait: only
    the waiting thread waits in the backend (TimedWaitAny), never the tracker beside it. The
    waits' polls are off: on a GPU they would finish the copies before any blocking wait."""
    monkeypatch.setenv("HAL_WAIT_POLL_US", "0")
    device = hal.create_device(implementation="dawn", backend=dawn_backend_or_skip())
    try:
        backend: Any = device.backend
        threads: list[str] = []
        recording_on = [False]  # only around each round trip (the reads wait too)
        original_bounded, original_wait = backend.wait_bounded, backend.wait

        def bounded(ticket: int, timeout: float | None) -> bool:
            if recording_on[0]:
                threads.append(threading.current_thread().name)
            return bool(original_bounded(ticket, timeout))

        def unbounded(ticket: int) -> None:
            if recording_on[0]:
                threads.append(threading.current_thread().name)
            original_wait(ticket)

        monkeypatch.setattr(backend, "wait_bounded", bounded)
        monkeypatch.setattr(backend, "wait", unbounded)
        sources = [
            (data, device.buffer_from_numpy(data))
            for data in (np.arange(1024, dtype=np.uint32) * k for k in range(1, 21))
        ]
        targets = [device.allocate_buffer(4096) for _ in sources]
        semaphore = device.create_semaphore()
        device.wait_idle()
        for value, ((_, source), target) in enumerate(zip(sources, targets, strict=True), 1):
            recording_on[0] = True
            device.queue_copy(source, 0, target, 0, 4096, signal=[(semaphore, value)])
            semaphore.wait(value, timeout=None if value % 2 else WAIT)
            recording_on[0] = False
        assert threads and TRACKER not in threads, threads
        for (data, _), target in zip(sources, targets, strict=True):
            assert np.array_equal(target.to_numpy(np.uint32), data)
    finally:
        device.close()


# -- standing by: after a host wait completed work itself, quiet submissions do not wake the
# tracker; it looks for unclaimed work every STANDBY_S, and a consumer that needs it (a
# watcher, a host thread asleep, a host call, a bounded wait_idle) wakes it at once.

FAST = 5.0
"""Seconds within which a woken tracker completes work (STANDBY_S is set far beyond it)."""


@pytest.fixture
def standing_by(null_device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> Iterator[hal.Device]:
    """A null device whose tracker, once a host wait completed work itself, stands by for a
    minute and looks for unclaimed work only every 30 s: only a wake-up completes quiet
    work in time."""
    monkeypatch.setattr(completion_module, "STANDBY_S", 30.0)
    monkeypatch.setattr(completion_module, "LINGER_S", 60.0)
    _round_trip(null_device)
    yield null_device
    monkeypatch.setattr(completion_module, "STANDBY_S", 0.001)
    monkeypatch.setattr(completion_module, "LINGER_S", 0.0)
    null_device.queue_barrier()  # not quiet after the fixture's waits: wakes the tracker


def _round_trip(device: hal.Device) -> None:
    """A copy waited for on this thread (so the tracker stands by), bytes checked."""
    data = np.arange(8, dtype=np.uint8) * 3
    buffers = _buffers(device, data)
    device.wait_idle()
    semaphore = _copy(device, buffers)
    semaphore.wait(1)
    assert np.array_equal(buffers[1].to_numpy(np.uint8), data)


def _standing_by(device: hal.Device) -> None:
    """Let ``device`` go idle and its tracker settle into standing by (it may still be
    finishing the work a wait_idle waited for: it would find later work without a wake)."""
    device.wait_idle()
    time.sleep(0.05)


def _within(seconds: float, reached: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not reached():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_quiet_work_nobody_waits_for_completes_within_the_standby_slice(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fire and forget while the tracker stands by: the semaphore is signalled (seen by
    polling, no hal wait) once the tracker looks again, bytes exact."""
    monkeypatch.setattr(completion_module, "STANDBY_S", 0.05)
    monkeypatch.setattr(completion_module, "LINGER_S", 60.0)
    _round_trip(null_device)
    data = np.arange(16, dtype=np.uint8) + 1
    buffers = _buffers(null_device, data)  # (its upload's waits are host waits too)
    semaphore = _copy(null_device, buffers)
    start = time.monotonic()
    assert _within(FAST, lambda: semaphore.query() == 1)
    assert time.monotonic() - start < FAST
    assert np.array_equal(buffers[1].to_numpy(np.uint8), data)
    monkeypatch.setattr(completion_module, "LINGER_S", 0.0)


def test_a_watcher_after_a_quiet_submission_wakes_the_tracker(
    standing_by: hal.Device,
) -> None:
    """wait_async registers watchers after the work was submitted quietly: it returns in
    time (the tracker was woken), not after the 30 s slice."""
    data = np.arange(32, dtype=np.uint8)
    buffers = _buffers(standing_by, data)
    _standing_by(standing_by)
    semaphore = _copy(standing_by, buffers)

    async def wait() -> None:
        await semaphore.wait_async(1, timeout=FAST)

    start = time.monotonic()
    asyncio.run(wait())
    assert time.monotonic() - start < FAST
    assert np.array_equal(buffers[1].to_numpy(np.uint8), data)


def test_a_multi_point_wait_after_a_quiet_submission_wakes_the_tracker(
    standing_by: hal.Device,
) -> None:
    """A wait on two points sleeps on the shared condition (no backend wait of its own):
    it wakes the tracker for the quiet work and returns in time."""
    first, second = np.arange(8, dtype=np.uint8), np.arange(8, 16, dtype=np.uint8)
    a, b = _buffers(standing_by, first), _buffers(standing_by, second)
    _standing_by(standing_by)
    sa, sb = _copy(standing_by, a), _copy(standing_by, b)
    standing_by.wait_semaphores([(sa, 1), (sb, 1)], "all", timeout=FAST)
    assert np.array_equal(a[1].to_numpy(np.uint8), first)
    assert np.array_equal(b[1].to_numpy(np.uint8), second)


def test_a_host_call_during_standby_runs_in_time(standing_by: hal.Device) -> None:
    """Work with host code at completion is never quiet: a host call queued behind a copy
    runs without any wait for it."""
    data = np.full(8, 9, dtype=np.uint8)
    buffers = _buffers(standing_by, data)
    _standing_by(standing_by)
    first = _copy(standing_by, buffers)
    seen: list[bytes] = []
    standing_by.queue_host_call(lambda: seen.append(bytes(data)), wait=[(first, 1)])
    assert _within(FAST, lambda: bool(seen))
    assert seen == [bytes(data)]


def test_a_bounded_wait_idle_during_standby_returns_in_time(standing_by: hal.Device) -> None:
    """wait_idle with a timeout leaves the work to the tracker: it wakes it."""
    data = np.arange(8, dtype=np.uint8) + 40
    buffers = _buffers(standing_by, data)
    _standing_by(standing_by)
    semaphore = _copy(standing_by, buffers)
    start = time.monotonic()
    standing_by.wait_idle(timeout=FAST)
    assert time.monotonic() - start < FAST
    assert semaphore.query() == 1


def test_quiet_work_behind_a_long_host_wait_completes_when_it_ends(
    standing_by: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host wait (another thread) holds the oldest work for a while; quiet work submitted
    behind it, that nobody waits for, completes once that wait ends (its leaving wakes the
    tracker: the 30 s slice would be too late), bytes exact."""
    gate = Gate(standing_by.backend, monkeypatch)
    older, newer = np.arange(16, dtype=np.uint8), np.arange(16, dtype=np.uint8) * 2
    first_buffers, second_buffers = _buffers(standing_by, older), _buffers(standing_by, newer)
    _standing_by(standing_by)
    gate.close(standing_by)
    first = _copy(standing_by, first_buffers)
    waiter = threading.Thread(target=first.wait, args=(1, WAIT))
    waiter.start()
    assert gate.entered.wait(WAIT)
    time.sleep(0.01)  # the tracker looks twice meanwhile (every ms): a long wait
    second = _copy(standing_by, second_buffers)
    time.sleep(0.05)
    assert second.query() == 0
    gate.open.set()
    waiter.join(WAIT)
    assert first.query() == 1
    assert _within(FAST, lambda: second.query() == 1)
    assert np.array_equal(first_buffers[1].to_numpy(np.uint8), older)
    assert np.array_equal(second_buffers[1].to_numpy(np.uint8), newer)


def test_a_note_leaked_by_an_interrupt_never_parks_the_tracker(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt landing in a host wait's ``finally`` (at the line that drops its
    note, simulated with a trace function) leaks the note: work nobody waits for still
    completes, host calls run and a bounded wait_idle returns (the tracker yielded to a
    completed ticket's note for good before). The wait's first backend wait gives up, so
    that the note is the ``finally``'s to drop (a completion on the waiting thread drops it
    itself since session 23: tests/test_round_trip_s23.py interrupts that)."""
    device = null_device
    backend = device.backend
    original = backend.wait_bounded
    gave_up: list[int] = []

    def give_up_once(ticket: int, timeout: float) -> bool:
        if not gave_up and threading.current_thread() is threading.main_thread():
            gave_up.append(ticket)
            return False
        return original(ticket, timeout)

    buffers = _buffers(device, np.arange(256, dtype=np.uint32))
    device.wait_idle()
    monkeypatch.setattr(backend, "wait_bounded", give_up_once)
    first = _copy(device, buffers)
    with (
        interrupt_on_line(
            completion_module.__file__, {"_blocked"}, "self._leave_direct(ticket)"
        ) as fired,
        pytest.raises(KeyboardInterrupt),
    ):
        first.wait(1, timeout=WAIT)
    assert fired, "the interrupt point was not reached"
    time.sleep(completion_module.LINGER_S + 0.01)
    quiet = _copy(device, buffers)
    _reached_without_waiting(quiet, 1)
    ran = threading.Event()
    device.queue_host_call(ran.set, wait=[(quiet, 1)])
    assert ran.wait(WAIT)
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(buffers[1].to_numpy(np.uint32), np.arange(256, dtype=np.uint32))


def test_a_leaked_note_on_work_in_flight_is_taken_over(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note left for work still in flight (its host wait gone without dropping it): the
    tracker leaves that work to the wait for one period only, then completes it itself."""
    device = null_device
    gate = Gate(device.backend, monkeypatch)
    buffers = _buffers(device, np.arange(64, dtype=np.uint32))
    gate.close(device)
    semaphore = _copy(device, buffers)
    completion = device._queue.completion  # the note itself, as an interrupt leaves it
    with completion.cond:
        completion._direct.append(completion._in_flight[0].ticket)
    gate.open.set()
    _reached_without_waiting(semaphore, 1)
    np.testing.assert_array_equal(buffers[1].to_numpy(np.uint32), np.arange(64, dtype=np.uint32))
