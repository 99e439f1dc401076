"""wgpu-native's completion tracker polling without blocking (``HAL_TRACKER_POLL_US``,
forced on lavapipe, where it is off by default): wgpu-core 29's blocking poll holds the
device's fence lock that ``wgpuQueueSubmit`` needs (gfx-rs/wgpu#9470), so neither the tracker
nor a host wait may block in ``wgpuDevicePoll(wait = true)``. Every completion, wait, failure
and loss must still be seen, with the right bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal


@pytest.fixture
def polling(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[hal.Device, list[int]]]:
    """A wgpu-native device whose tracker polls (250 µs at most between polls) and whose
    host waits poll for 1 ms; its blocking ``backend.wait`` counts its calls."""
    monkeypatch.setenv("HAL_TRACKER_POLL_US", "250")
    monkeypatch.setenv("HAL_WAIT_POLL_US", "1000")
    try:
        device = hal.create_device(implementation="wgpu-native")
    except hal.UnavailableError as error:  # pragma: no cover - no wgpu-native here
        pytest.skip(str(error))
    backend: Any = device.backend
    if backend.tracker_poll_s != pytest.approx(250e-6):
        device.close()
        pytest.skip("this wgpu-py build has no wgpuQueueOnSubmittedWorkDone callbacks")
    blocking: list[int] = []
    original = backend.wait

    def counted(ticket: int) -> None:
        blocking.append(ticket)
        original(ticket)

    monkeypatch.setattr(backend, "wait", counted)
    yield device, blocking
    device.close()


def test_the_tracker_is_off_on_cpu_adapters_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAL_TRACKER_POLL_US", raising=False)
    try:
        device = hal.create_device(implementation="wgpu-native")
    except hal.UnavailableError as error:  # pragma: no cover
        pytest.skip(str(error))
    try:
        if device.info.adapter_type != "cpu":  # pragma: no cover - a GPU here
            pytest.skip("not a CPU adapter")
        assert device.backend.tracker_poll_s == 0.0  # type: ignore[attr-defined]
    finally:
        device.close()


def test_back_to_back_submissions_complete_with_their_bytes_and_never_block(
    polling: tuple[hal.Device, list[int]],
) -> None:
    device, blocking = polling
    buffer = device.buffer_from_numpy(np.zeros(64 * 64, np.uint8))
    semaphore = device.create_semaphore()
    for i in range(64):
        device.queue_fill(buffer, i * 64, 64, i + 1, 1, signal=[(semaphore, i + 1)])
    semaphore.wait(64, timeout=WAIT)
    device.wait_idle(timeout=WAIT)
    device.wait_idle()  # unbounded: the tracker's polls, not a blocking poll
    expected = np.repeat(np.arange(1, 65, dtype=np.uint8), 64)
    assert np.array_equal(buffer.to_numpy(np.uint8), expected)
    assert blocking == []


def test_unbounded_and_bounded_waits_see_work_longer_than_their_poll(
    polling: tuple[hal.Device, list[int]],
) -> None:
    """A program that runs well past the 1 ms poll window: both waits finish by polling."""
    device, blocking = polling
    size = 32 << 20
    buffer = device.allocate_buffer(size)
    for timeout in (None, WAIT):
        semaphore = device.create_semaphore()
        cb = device.create_command_buffer(mode=hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        for value in (3, 5, 7, 9):
            cb.fill_buffer(buffer, 0, size, value, 1)
        cb.end()
        device.queue_execute(cb, signal=[(semaphore, 1)])
        semaphore.wait(1, timeout=timeout)
        assert semaphore.query() == 1
        head = buffer.to_numpy(np.uint8)[:: 1 << 16]
        assert np.array_equal(head, np.full(head.shape, 9, np.uint8))
    assert blocking == []


def test_a_polling_wait_returns_by_its_deadline(
    polling: tuple[hal.Device, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    device, _ = polling
    backend: Any = device.backend
    finished = threading.Event()
    real = backend.completed_ticket
    monkeypatch.setattr(backend, "completed_ticket", lambda: real() if finished.is_set() else 0)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        semaphore.wait(1, timeout=0.3)
    assert time.monotonic() - start < 0.3 + 1.0
    finished.set()  # the "GPU" finishes: the tracker sees it
    semaphore.wait(1, timeout=WAIT)
    assert np.array_equal(buffer.to_numpy(np.uint8), np.full(16, 7, np.uint8))


def test_a_barrier_released_by_a_finished_point_still_signals(
    polling: tuple[hal.Device, list[int]],
) -> None:
    """A barrier held back on a semaphore carries a ticket that already finished: the polling
    tracker must complete it rather than take it for done (a lost signal, found in review)."""
    device, _ = polling
    buffer = device.buffer_from_numpy(np.zeros(4 * 256, np.uint8))
    semaphore, other = device.create_semaphore(), device.create_semaphore()
    for value in range(1, 5):
        device.queue_fill(buffer, (value - 1) * 256, 256, value, 1, signal=[(semaphore, value)])
    device.queue_barrier(wait=[(semaphore, 4)], signal=[(other, 1)])
    other.wait(1, timeout=WAIT)
    assert semaphore.query() == 4 and other.query() == 1
    expected = np.repeat(np.arange(1, 5, dtype=np.uint8), 256)
    assert np.array_equal(buffer.to_numpy(np.uint8), expected)


def test_threads_waiting_while_another_submits(polling: tuple[hal.Device, list[int]]) -> None:
    device, blocking = polling
    buffer = device.buffer_from_numpy(np.zeros(8 * 128, np.uint8))
    semaphore = device.create_semaphore()
    errors: list[BaseException] = []

    def wait(value: int) -> None:
        try:
            semaphore.wait(value, timeout=WAIT)
        except BaseException as error:  # examined below
            errors.append(error)

    threads = [threading.Thread(target=wait, args=(v,), daemon=True) for v in (8, 2, 5, 1)]
    for thread in threads:
        thread.start()
    for value in range(1, 9):
        device.queue_fill(buffer, (value - 1) * 128, 128, value, 1, signal=[(semaphore, value)])
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert errors == []
    expected = np.repeat(np.arange(1, 9, dtype=np.uint8), 128)
    assert np.array_equal(buffer.to_numpy(np.uint8), expected)
    assert blocking == []


def test_a_poll_failure_is_reported_by_the_tracker(
    polling: tuple[hal.Device, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing non-blocking poll: the tracker falls back to the blocking wait, which
    reports the failure (here a lost device) by failing the work with UnavailableError."""
    from hal.backends.protocol import BackendError

    device, _ = polling
    backend: Any = device.backend

    def failing() -> int:
        raise BackendError("wgpuDevicePoll failed: lost", lost=True)

    def lost_wait(ticket: int) -> None:
        raise BackendError("wgpuDevicePoll failed: lost", lost=True)

    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    monkeypatch.setattr(backend, "completed_ticket", failing)
    monkeypatch.setattr(backend, "wait", lost_wait)
    device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
    with pytest.raises((hal.UnavailableError, hal.AbortedError)):
        semaphore.wait(1, timeout=WAIT)
