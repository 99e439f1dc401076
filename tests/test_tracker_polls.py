"""wgpu-native's completion tracker polling without blocking while submissions stream
(``HAL_TRACKER_POLL_US``, forced on lavapipe, where it is off by default): wgpu-core 29's
blocking poll holds the device's fence lock that ``wgpuQueueSubmit`` needs (gfx-rs/wgpu#9470),
so once work is submitted behind unfinished work, neither the tracker nor a host wait blocks in
``wgpuDevicePoll(wait = true)`` until the queue drains; a lone submission keeps the blocking
wait. Every completion, wait, failure and loss must still be seen, with the right bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.runtime.completion import STREAM_WINDOW_S

LONG = 32 << 20  # bytes filled four times over by the long program (tens of ms on lavapipe)


@dataclass
class Polling:
    """A device whose tracker polls while streaming, with its backend's blocking waits and
    submissions recorded (tickets)."""

    device: hal.Device
    blocking: list[int] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)
    #: Cleared, the backend's blocking wait holds off until set: work it is called for stays
    #: in flight as far as hal knows, whatever the GPU did (lavapipe may be fast).
    gate: threading.Event = field(default_factory=threading.Event)
    #: What the blocking wait calls once through the gate (the backend's own wait).
    real_wait: Callable[[int], None] = lambda ticket: None


@pytest.fixture
def polling(monkeypatch: pytest.MonkeyPatch) -> Iterator[Polling]:
    """A wgpu-native device whose tracker sleeps up to 250 µs between polls while streaming
    and whose host waits poll for 1 ms first."""
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
    state = Polling(device, real_wait=backend.wait)
    state.gate.set()
    submit = backend.submit

    def counted_wait(ticket: int) -> None:
        state.blocking.append(ticket)
        state.gate.wait(WAIT)
        state.real_wait(ticket)

    def counted_submit(command_buffers: Any) -> int:
        ticket = submit(command_buffers)
        state.submitted.append(ticket)
        return int(ticket)

    monkeypatch.setattr(backend, "wait", counted_wait)
    monkeypatch.setattr(backend, "submit", counted_submit)
    yield state
    state.gate.set()
    device.close()


def _submit_long(device: hal.Device, buffer: hal.Buffer) -> None:
    """A program that runs for a while (four fills of :data:`LONG` bytes, the last of 9)."""
    cb = device.create_command_buffer(mode=hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for value in (3, 5, 7, 9):
        cb.fill_buffer(buffer, 0, LONG, value, 1)
    cb.end()
    device.queue_execute(cb)


def _submit_long_held(polling: Polling, buffer: hal.Buffer) -> None:
    """:func:`_submit_long` with the gate closed, returning once the tracker blocks on it:
    from then on the long program is in flight as far as hal knows, until the gate opens.
    Earlier work (an upload) is waited for and the stream window let pass first, so this is
    a lone submission."""
    polling.device.wait_idle(timeout=WAIT)
    time.sleep(STREAM_WINDOW_S * 1.5)
    polling.gate.clear()
    _submit_long(polling.device, buffer)
    ticket = polling.submitted[-1]
    deadline = time.monotonic() + WAIT
    while ticket not in polling.blocking:
        assert time.monotonic() < deadline, "the tracker never blocked on a lone submission"
        time.sleep(0.001)


def _check_long(buffer: hal.Buffer) -> None:
    sample = buffer.to_numpy(np.uint8)[:: 1 << 16]
    assert np.array_equal(sample, np.full(sample.shape, 9, np.uint8))


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


def test_a_submission_behind_unfinished_work_is_never_blocked_on(polling: Polling) -> None:
    device = polling.device
    long = device.allocate_buffer(LONG)
    small = device.allocate_buffer(256)
    semaphore = device.create_semaphore()
    _submit_long_held(polling, long)  # in flight until the fill is submitted
    device.queue_fill(small, 0, 256, 0x5A, 1, signal=[(semaphore, 1)])
    behind = polling.submitted[-1]
    polling.gate.set()
    semaphore.wait(1)  # unbounded, past its 1 ms poll: polls on
    device.wait_idle()
    assert behind not in polling.blocking
    assert np.array_equal(small.to_numpy(np.uint8), np.full(256, 0x5A, np.uint8))
    _check_long(long)


def test_a_lone_submission_keeps_the_blocking_wait(polling: Polling) -> None:
    """Nothing streams: the tracker blocks in the backend as before (it costs the submitting
    thread nothing), and the work completes with its bytes."""
    device = polling.device
    long = device.allocate_buffer(LONG)
    _submit_long(device, long)
    lone = polling.submitted[-1]
    assert device.wait_idle(timeout=WAIT) is None or True
    deadline = time.monotonic() + WAIT
    while lone not in polling.blocking and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lone in polling.blocking
    _check_long(long)


def test_a_polling_wait_returns_by_its_deadline(
    polling: Polling, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = polling.device
    backend: Any = device.backend
    finished = threading.Event()
    real = backend.completed_ticket
    # Until released, no poll sees anything finish and the blocking wait holds off.
    monkeypatch.setattr(backend, "completed_ticket", lambda: real() if finished.is_set() else 0)
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    _submit_long_held(polling, long)
    device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        semaphore.wait(1, timeout=0.3)
    assert time.monotonic() - start < 0.3 + 1.0
    finished.set()  # the "GPU" finishes: the tracker sees it
    polling.gate.set()
    semaphore.wait(1, timeout=WAIT)
    assert np.array_equal(buffer.to_numpy(np.uint8), np.full(16, 7, np.uint8))
    _check_long(long)


def test_a_barrier_released_by_a_finished_point_still_signals(polling: Polling) -> None:
    """A barrier held back on a semaphore carries a ticket that already finished: the polling
    tracker must complete it rather than take it for done (a lost signal, found in testing)."""
    device = polling.device
    long = device.allocate_buffer(LONG)
    buffer = device.buffer_from_numpy(np.zeros(4 * 256, np.uint8))
    semaphore, other = device.create_semaphore(), device.create_semaphore()
    _submit_long(device, long)
    for value in range(1, 5):
        device.queue_fill(buffer, (value - 1) * 256, 256, value, 1, signal=[(semaphore, value)])
    device.queue_barrier(wait=[(semaphore, 4)], signal=[(other, 1)])
    other.wait(1, timeout=WAIT)
    assert semaphore.query() == 4 and other.query() == 1
    expected = np.repeat(np.arange(1, 5, dtype=np.uint8), 256)
    assert np.array_equal(buffer.to_numpy(np.uint8), expected)
    _check_long(long)


def test_threads_waiting_while_another_submits(polling: Polling) -> None:
    device = polling.device
    long = device.allocate_buffer(LONG)
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
    _submit_long_held(polling, long)
    first = len(polling.submitted)
    for value in range(1, 9):
        device.queue_fill(buffer, (value - 1) * 128, 128, value, 1, signal=[(semaphore, value)])
    polling.gate.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert errors == []
    expected = np.repeat(np.arange(1, 9, dtype=np.uint8), 128)
    assert np.array_equal(buffer.to_numpy(np.uint8), expected)
    assert polling.submitted[first] not in polling.blocking
    _check_long(long)


def test_a_poll_failure_is_reported_by_the_tracker(
    polling: Polling, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing non-blocking poll while streaming: the tracker falls back to the blocking
    wait, which reports the failure (here a lost device): the work fails with
    UnavailableError."""
    from hal.backends.protocol import BackendError

    device = polling.device
    backend: Any = device.backend
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()

    def lost(*args: object) -> Any:
        raise BackendError("wgpuDevicePoll failed: lost", lost=True)

    _submit_long_held(polling, long)
    device.queue_fill(buffer, 0, 16, 7, 1, signal=[(semaphore, 1)])
    monkeypatch.setattr(backend, "completed_ticket", lost)
    polling.real_wait = lost
    polling.gate.set()
    with pytest.raises(hal.AbortedError) as caught:
        semaphore.wait(1, timeout=WAIT)
    assert isinstance(caught.value.__cause__, hal.UnavailableError)
