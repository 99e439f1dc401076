"""The completion thread yields to a host wait that blocks in the backend itself (session 22).

A host wait for the oldest work in flight blocks in the backend's wait on its own thread and
completes the work there; the tracker, woken by the submission, used to block in the backend
beside it, and whichever of the two threads ran first on completion made the other wait for
the GIL (on Dawn ~25 µs of a ~70 µs round trip, in about half the round trips). The tracker
now stays parked while such a wait runs, and takes the work over when the wait gives up (its
deadline, an interrupt): every completion still happens, with the right bytes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip

import hal

TRACKER = "hal-completion"


@pytest.fixture
def null_device() -> Iterator[hal.Device]:
    device = hal.create_device(implementation="null", backend="null")
    yield device
    device.close()


@pytest.fixture
def no_forced_switches() -> Iterator[None]:
    """No forced GIL hand-over within a test's few µs between a submission and its wait: the
    tracker, woken by the submission, runs only once the waiting thread blocks."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    yield
    sys.setswitchinterval(interval)


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
    the waiting thread waits in the backend (TimedWaitAny), never the tracker beside it."""
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
