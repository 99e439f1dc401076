"""Host waits that block or poll in the backend on their own thread
(hal/runtime/semaphore.py ``_wait_in_backend``; Dawn/null bounded waits, wgpu-native's
``HAL_WAIT_POLL_US`` poll forced on lavapipe). A wait must still notice what happens to its
semaphore on the host meanwhile (``fail``), and several threads waiting at once must all
return with the right bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal


@pytest.fixture
def null_device() -> Iterator[hal.Device]:
    device = hal.create_device(implementation="null", backend="null")
    yield device
    device.close()


def _wgpu_native(monkeypatch: pytest.MonkeyPatch, poll_us: str) -> hal.Device:
    monkeypatch.setenv("HAL_WAIT_POLL_US", poll_us)
    try:
        return hal.create_device(implementation="wgpu-native")
    except hal.UnavailableError as error:  # pragma: no cover - no wgpu-native here
        pytest.skip(str(error))


def _wait_in_thread(wait: Callable[[], None]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            wait()
            out["error"] = None
        except BaseException as error:  # examined on the main thread
            out["error"] = error
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_bounded_wait_in_the_backend_sees_a_host_failure(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = null_device.backend
    release = threading.Event()  # the "GPU work": finishes only once released
    monkeypatch.setattr(backend, "wait", lambda ticket: release.wait(WAIT))
    monkeypatch.setattr(backend, "wait_bounded", lambda ticket, timeout: release.wait(timeout))
    buffer = null_device.allocate_buffer(4)
    semaphore = null_device.create_semaphore()
    null_device.queue_fill(buffer, 0, 4, 0, signal=[(semaphore, 1)])
    try:
        thread, out = _wait_in_thread(lambda: semaphore.wait(1, timeout=20.0))
        time.sleep(0.2)
        semaphore.fail("failed on the host")
        thread.join(3.0)
        # Before session 20 a bounded wait slept on the semaphores' condition: woken at once.
        assert not thread.is_alive(), "the waiter still blocks in the backend after fail()"
        assert isinstance(out["error"], hal.AbortedError)
        assert "failed on the host" in str(out["error"])
    finally:
        release.set()
        thread.join(WAIT)


def test_a_bounded_wait_in_the_backend_sees_a_host_signal(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Any = null_device.backend
    release = threading.Event()
    monkeypatch.setattr(backend, "wait", lambda ticket: release.wait(WAIT))
    monkeypatch.setattr(backend, "wait_bounded", lambda ticket, timeout: release.wait(timeout))
    buffer = null_device.allocate_buffer(4)
    semaphore = null_device.create_semaphore()
    null_device.queue_fill(buffer, 0, 4, 0, signal=[(semaphore, 2)])
    try:
        thread, out = _wait_in_thread(lambda: semaphore.wait(1, timeout=20.0))
        time.sleep(0.2)
        semaphore.signal(1)
        thread.join(3.0)
        assert not thread.is_alive(), "the waiter still blocks in the backend after signal(1)"
        assert out["error"] is None and semaphore.query() == 1
    finally:
        release.set()
        thread.join(WAIT)
    semaphore.wait(2, timeout=WAIT)


def test_a_polling_wait_sees_a_host_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    device = _wgpu_native(monkeypatch, "4000000")  # 4 s of polling allowed
    try:
        backend: Any = device.backend
        release = threading.Event()
        original_wait = backend.wait

        def held_wait(ticket: int) -> None:  # the tracker's blocking poll: held off
            release.wait(WAIT)
            original_wait(ticket)

        monkeypatch.setattr(backend, "completed_ticket", lambda: 0)  # never seen finished
        monkeypatch.setattr(backend, "wait", held_wait)
        buffer = device.allocate_buffer(16)
        semaphore = device.create_semaphore()
        device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
        try:
            thread, out = _wait_in_thread(lambda: semaphore.wait(1, timeout=20.0))
            time.sleep(0.2)
            semaphore.fail("failed on the host")
            thread.join(2.0)
            assert not thread.is_alive(), "the waiter kept polling after fail()"
            assert isinstance(out["error"], hal.AbortedError)
        finally:
            release.set()
            thread.join(WAIT)
    finally:
        device.close()


def test_polling_waiters_on_many_values_all_return_with_their_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four threads poll (forced on lavapipe) for four values of one semaphore and one more
    for a second semaphore, the work of each value a fill of its own range."""
    device = _wgpu_native(monkeypatch, "200000")
    try:
        assert device.backend.waiter_poll_s == pytest.approx(0.2)  # type: ignore[attr-defined]
        buffer = device.buffer_from_numpy(np.zeros(4 * 256, np.uint8))
        semaphore, other = device.create_semaphore(), device.create_semaphore()
        waits = [_wait_in_thread(lambda v=v: semaphore.wait(v, timeout=WAIT)) for v in (4, 1, 3, 2)]
        waits.append(_wait_in_thread(lambda: other.wait(1, timeout=WAIT)))
        for v in range(1, 5):
            device.queue_fill(buffer, (v - 1) * 256, 256, v, 1, signal=[(semaphore, v)])
        device.queue_barrier(wait=[(semaphore, 4)], signal=[(other, 1)])
        for thread, out in waits:
            thread.join(WAIT)
            assert not thread.is_alive() and out["error"] is None
        expected = np.repeat(np.arange(1, 5, dtype=np.uint8), 256)
        assert np.array_equal(buffer.to_numpy(np.uint8), expected)
        assert semaphore.query() == 4 and other.query() == 1
    finally:
        device.close()


def test_a_keyboard_interrupt_in_a_bounded_backend_wait_changes_nothing(
    null_device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a bounded wait blocks in the backend: KeyboardInterrupt propagates, the
    work stays in flight (the semaphore neither failed nor signalled), and a second wait
    returns once it finished, with the bytes in place."""
    backend: Any = null_device.backend
    release = threading.Event()
    original_wait, original_bounded = backend.wait, backend.wait_bounded
    interrupted: list[int] = []

    def interrupting(ticket: int, timeout: float) -> bool:
        if not interrupted:
            interrupted.append(ticket)
            raise KeyboardInterrupt
        return bool(original_bounded(ticket, timeout))

    def held(ticket: int) -> None:
        release.wait(WAIT)
        original_wait(ticket)

    monkeypatch.setattr(backend, "wait", held)
    monkeypatch.setattr(backend, "wait_bounded", interrupting)
    source = null_device.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    target = null_device.allocate_buffer(32)
    semaphore = null_device.create_semaphore()
    null_device.queue_copy(source, 0, target, 0, 32, signal=[(semaphore, 1)])
    try:
        with pytest.raises(KeyboardInterrupt):
            semaphore.wait(1, timeout=WAIT)
        assert interrupted and semaphore.query() == 0 and semaphore.failure is None
        semaphore.wait(1, timeout=WAIT)
    finally:
        release.set()
    assert semaphore.query() == 1
    assert np.array_equal(target.to_numpy(np.uint8), np.arange(32, dtype=np.uint8))
