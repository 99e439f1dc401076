"""Bounded host waits that block in the backend's own timed wait (issue 10, session 20).

Where the backend's wait returns by a deadline (Dawn's TimedWaitAny, the null backend), a
``Semaphore.wait(value, timeout)`` on work submitted by this device blocks there and completes
the work on its own thread, instead of sleeping until the completion thread hands over. These
tests pin that it does, that the deadline still holds when the work does not finish, and that
a backend whose wait cannot be bounded (wgpu-native) keeps leaving bounded waits to the
tracker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip

import hal


@pytest.fixture
def null_device() -> Any:
    device = hal.create_device(implementation="null", backend="null")
    yield device
    device.close()


def test_bounded_wait_blocks_in_the_backend_on_this_thread(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting thread itself calls the backend's bounded wait with the work's ticket and
    a timeout no longer than its own; the bytes are there when it returns."""
    backend: Any = null_device.backend
    assert backend.bounded_waits
    calls: list[tuple[str, int, float]] = []
    original = backend.wait_bounded

    def recording(ticket: int, timeout: float) -> bool:
        calls.append((threading.current_thread().name, ticket, timeout))
        return bool(original(ticket, timeout))

    monkeypatch.setattr(backend, "wait_bounded", recording)
    # The tracker's own (unbounded) wait is held off, so only this thread can complete it.
    tracker_released = threading.Event()
    monkeypatch.setattr(backend, "wait", lambda ticket: tracker_released.wait(WAIT))
    try:
        source = null_device.buffer_from_numpy(np.arange(16, dtype=np.uint8))
        buffer = null_device.allocate_buffer(16)
        semaphore = null_device.create_semaphore()
        # (a native copy: the null backend moves its bytes; builtin kernels only count)
        null_device.queue_copy(source, 0, buffer, 0, 16, signal=[(semaphore, 1)])
        semaphore.wait(1, timeout=WAIT)
        assert semaphore.query() == 1
        assert np.array_equal(buffer.to_numpy(np.uint8), np.arange(16, dtype=np.uint8))
    finally:
        tracker_released.set()
    assert calls, "the bounded wait did not block in the backend"
    name, ticket, timeout = calls[0]
    assert name == threading.current_thread().name
    assert ticket > 0 and 0 < timeout <= WAIT


def test_bounded_wait_in_the_backend_keeps_its_deadline(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work that does not finish: the bounded backend wait gives up at the deadline, the host
    wait raises DeadlineExceededError in time, and the work completes later (tracker)."""
    backend: Any = null_device.backend
    release = threading.Event()
    timeouts: list[float] = []

    def blocking_wait(ticket: int) -> None:
        release.wait(WAIT)

    def bounded_wait(ticket: int, timeout: float) -> bool:
        timeouts.append(timeout)
        return release.wait(timeout)

    monkeypatch.setattr(backend, "wait", blocking_wait)
    monkeypatch.setattr(backend, "wait_bounded", bounded_wait)
    buffer = null_device.allocate_buffer(4)
    semaphore = null_device.create_semaphore()
    null_device.queue_fill(buffer, 0, 4, 0, signal=[(semaphore, 1)])
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError, match=r"not reached within 0\.05 s"):
        semaphore.wait(1, timeout=0.05)
    assert time.monotonic() - start < 2.0
    assert timeouts and all(t <= 0.05 for t in timeouts)
    assert semaphore.query() == 0
    release.set()
    semaphore.wait(1, timeout=WAIT)
    assert semaphore.query() == 1


def test_a_backend_without_bounded_waits_leaves_them_to_the_tracker(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``bounded_waits`` off (wgpu-native's case) a bounded host wait never calls the
    backend's wait on its own thread: the completion thread does, and the wait returns."""
    backend: Any = null_device.backend
    monkeypatch.setattr(backend, "bounded_waits", False)
    waiting_threads: list[str] = []
    original = backend.wait

    def recording(ticket: int) -> None:
        waiting_threads.append(threading.current_thread().name)
        original(ticket)

    monkeypatch.setattr(backend, "wait", recording)
    source = null_device.buffer_from_numpy(np.array([1, 2, 3, 4], np.uint8))
    buffer = null_device.allocate_buffer(4)
    semaphore = null_device.create_semaphore()
    null_device.queue_copy(source, 0, buffer, 0, 4, signal=[(semaphore, 1)])
    semaphore.wait(1, timeout=WAIT)
    assert semaphore.query() == 1
    assert waiting_threads and set(waiting_threads) == {"hal-completion"}
    assert buffer.to_numpy(np.uint8).tolist() == [1, 2, 3, 4]


def test_a_bounded_wait_on_a_failed_semaphore_raises_aborted(null_device: hal.Device) -> None:
    """The fast path for a value already reached does not hide a failure, and a bad timeout
    is still rejected when the value is reached."""
    semaphore = null_device.create_semaphore(3)
    semaphore.wait(2, timeout=0)
    with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait"):
        semaphore.wait(2, timeout=-1)
    semaphore.fail("broken")
    with pytest.raises(hal.AbortedError, match="broken"):
        semaphore.wait(2, timeout=0)


def test_dawn_bounded_wait_blocks_in_timed_wait_any_on_this_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Dawn the waiting thread itself waits (with a finite timeout) for a real GPU copy;
    the bytes are there; a ticket already finished answers a zero timeout with True. The
    wait's polls are off: on a GPU they would finish the copy before the blocking wait."""
    monkeypatch.setenv("HAL_WAIT_POLL_US", "0")
    device = hal.create_device(implementation="dawn", backend=dawn_backend_or_skip())
    try:
        backend: Any = device.backend
        assert backend.bounded_waits
        calls: list[tuple[str, float | None]] = []
        original = backend.wait_bounded
        tracker_released = threading.Event()

        def recording(ticket: int, timeout: float | None) -> bool:
            calls.append((threading.current_thread().name, timeout))
            return bool(original(ticket, timeout))

        data = np.arange(256, dtype=np.uint8)
        source = device.buffer_from_numpy(data)
        target = device.allocate_buffer(256)
        semaphore = device.create_semaphore()
        original_wait = backend.wait
        monkeypatch.setattr(backend, "wait_bounded", recording)
        # The tracker's own wait is held off (and given back before it is released: a
        # released stand-in would complete later work without waiting for it).
        monkeypatch.setattr(backend, "wait", lambda ticket: tracker_released.wait(WAIT))
        try:
            device.queue_copy(source, 0, target, 0, 256, signal=[(semaphore, 1)])
            semaphore.wait(1, timeout=WAIT)
        finally:
            monkeypatch.setattr(backend, "wait", original_wait)
            tracker_released.set()
        assert np.array_equal(target.to_numpy(np.uint8), data)
        me = threading.current_thread().name
        assert any(name == me and t is not None and 0 < t <= WAIT for name, t in calls), calls
        assert original(backend._completed, 0.0) is True
    finally:
        device.close()
