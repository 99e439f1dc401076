"""Host waits that poll wgpu-native without blocking on their own thread (issue 10).

wgpu-native's only blocking wait (``wgpuDevicePoll(wait = true)``) has no timeout, so a bounded
host wait used to sleep until the completion thread handed the work over. On a GPU a wait now
first polls ``wgpuDevicePoll(wait = false)`` for up to ``HAL_WAIT_POLL_US`` on its own thread
and completes small work there. These tests force the poll on lavapipe (where it is off by
default: it would take the cores that run the GPU work) and pin that the waiting thread itself
completes the work, that the deadline holds while polling, and the defaults.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal


def _wgpu_native_device(monkeypatch: pytest.MonkeyPatch, poll_us: str | None) -> hal.Device:
    if poll_us is None:
        monkeypatch.delenv("HAL_WAIT_POLL_US", raising=False)
    else:
        monkeypatch.setenv("HAL_WAIT_POLL_US", poll_us)
    try:
        return hal.create_device(implementation="wgpu-native")
    except hal.UnavailableError as error:  # pragma: no cover - a machine without wgpu-native
        pytest.skip(str(error))


def test_a_wait_polls_and_completes_the_work_on_its_own_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the tracker's blocking poll held off, only the waiting thread's non-blocking polls
    can complete the copy: the bounded wait returns with the bytes in place."""
    device = _wgpu_native_device(monkeypatch, "5000000")
    try:
        backend: Any = device.backend
        assert backend.waiter_poll_s == pytest.approx(5.0)
        polls: list[str] = []
        original = backend.completed_ticket

        def recording() -> int:
            polls.append(threading.current_thread().name)
            return int(original())

        data = np.arange(512, dtype=np.uint8)
        source = device.buffer_from_numpy(data)
        target = device.allocate_buffer(512)
        semaphore = device.create_semaphore()
        released = threading.Event()
        original_wait = backend.wait
        monkeypatch.setattr(backend, "completed_ticket", recording)
        monkeypatch.setattr(backend, "wait", lambda ticket: released.wait(WAIT))
        try:
            device.queue_copy(source, 0, target, 0, 512, signal=[(semaphore, 1)])
            semaphore.wait(1, timeout=WAIT)
            assert semaphore.query() == 1
        finally:
            monkeypatch.setattr(backend, "wait", original_wait)
            released.set()
        assert threading.current_thread().name in polls
        assert np.array_equal(target.to_numpy(np.uint8), data)
    finally:
        device.close()


def test_a_polling_bounded_wait_keeps_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls that never see the work finish stop at the wait's deadline (not the longer poll
    budget): DeadlineExceededError in time; the tracker completes the work later."""
    device = _wgpu_native_device(monkeypatch, "10000000")  # 10 s of polling allowed
    try:
        backend: Any = device.backend
        released = threading.Event()
        original_wait = backend.wait

        def held_wait(ticket: int) -> None:
            released.wait(WAIT)
            original_wait(ticket)

        monkeypatch.setattr(backend, "completed_ticket", lambda: 0)
        monkeypatch.setattr(backend, "wait", held_wait)
        buffer = device.allocate_buffer(16)
        semaphore = device.create_semaphore()
        device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
        start = time.monotonic()
        with pytest.raises(hal.DeadlineExceededError, match=r"not reached within 0\.1 s"):
            semaphore.wait(1, timeout=0.1)
        assert time.monotonic() - start < 3.0
        released.set()
        semaphore.wait(1, timeout=WAIT)
        assert buffer.to_numpy(np.uint8).tolist() == [7] * 16
    finally:
        device.close()


@pytest.mark.parametrize(("setting", "expected"), [("250", 250e-6), ("-3", 0.0), ("nan", 0.0)])
def test_the_poll_budget_comes_from_hal_wait_poll_us(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: float
) -> None:
    device = _wgpu_native_device(monkeypatch, setting)
    try:
        assert device.backend.waiter_poll_s == pytest.approx(expected)  # type: ignore[attr-defined]
    finally:
        device.close()


def test_no_polling_by_default_on_a_cpu_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU adapter (lavapipe, llvmpipe) the default is 0: polling would take the cores
    the GPU work runs on. A malformed value falls back to the default."""
    for setting in (None, "fast"):
        device = _wgpu_native_device(monkeypatch, setting)
        try:
            if device.info.adapter_type != "cpu":
                pytest.skip("a GPU adapter: the default polls")
            assert device.backend.waiter_poll_s == 0.0  # type: ignore[attr-defined]
        finally:
            device.close()
