"""Hostile review (session 21) of the stream-polling completion tracker (b62acb3, b1541c1), the
interrupt fixes of 577ade3 and the early chain-link submission.

Interrupts are injected with a one-shot ``sys.settrace`` hook on the main thread, at the first
line after a ``with lock:`` block: CPython checks for a pending signal after every CALL (the
lock's ``__exit__`` is one), so that is exactly where a real Ctrl-C can land. The polling mode
is forced on lavapipe (``HAL_TRACKER_POLL_US``/``HAL_WAIT_POLL_US``) as
tests/test_tracker_polls.py does; the backend's blocking wait is held behind a gate and its
non-blocking poll capped, so what hal believes finished is under the test's control."""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.runtime.completion import STREAM_WINDOW_S, Completion
from hal.runtime.queue import Queue
from hal.runtime.semaphore import Semaphore

LONG = 32 << 20
SETTLE_S = 1.0
"""How long a semaphore gets to settle where the tracker would settle it in microseconds."""


@dataclass
class Gated:
    """A wgpu-native device in the polling mode: its blocking wait holds off until ``gate``
    is set, its non-blocking poll reports at most ``limit[0]``."""

    device: hal.Device
    gate: threading.Event = field(default_factory=threading.Event)
    limit: list[float] = field(default_factory=lambda: [float("inf")])
    blocking: list[int] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)

    @property
    def completion(self) -> Completion:
        queue: Queue = self.device._queue  # type: ignore[attr-defined]
        return queue.completion


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gated]:
    """A polling wgpu-native device (tracker 250 µs, host waits poll 1 ms first)."""
    monkeypatch.setenv("HAL_TRACKER_POLL_US", "250")
    monkeypatch.setenv("HAL_WAIT_POLL_US", "1000")
    try:
        device = hal.create_device(implementation="wgpu-native")
    except hal.UnavailableError as error:  # pragma: no cover - no wgpu-native here
        pytest.skip(str(error))
    backend: Any = device.backend
    if backend.tracker_poll_s != pytest.approx(250e-6):  # pragma: no cover
        device.close()
        pytest.skip("this wgpu-py build has no wgpuQueueOnSubmittedWorkDone callbacks")
    state = Gated(device)
    state.gate.set()
    real_wait, real_done, real_submit = backend.wait, backend.completed_ticket, backend.submit

    def wait(ticket: int) -> None:
        state.blocking.append(ticket)
        state.gate.wait(WAIT)
        real_wait(ticket)

    def completed_ticket() -> int:
        return int(min(real_done(), state.limit[0]))

    def submit(command_buffers: Any) -> int:
        ticket = int(real_submit(command_buffers))
        state.submitted.append(ticket)
        return ticket

    monkeypatch.setattr(backend, "wait", wait)
    monkeypatch.setattr(backend, "completed_ticket", completed_ticket)
    monkeypatch.setattr(backend, "submit", submit)
    yield state
    state.gate.set()
    state.limit[0] = float("inf")
    device.close()


def _long_held(state: Gated, buffer: hal.Buffer) -> int:
    """A long lone submission the tracker blocks on behind the closed gate; its ticket."""
    device = state.device
    device.wait_idle(timeout=WAIT)
    time.sleep(STREAM_WINDOW_S * 1.5)
    state.gate.clear()
    cb = device.create_command_buffer(mode=hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for value in (3, 5, 7, 9):
        cb.fill_buffer(buffer, 0, LONG, value, 1)
    cb.end()
    device.queue_execute(cb)
    ticket = state.submitted[-1]
    _until(lambda: ticket in state.blocking, "the tracker never blocked on the lone submission")
    return ticket


def _until(condition: Callable[[], bool], message: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.0005)


def _settles(semaphore: hal.Semaphore, value: int, seconds: float = SETTLE_S) -> bool:
    """Whether ``semaphore`` reaches ``value`` or fails within ``seconds``, watched without
    waiting on it (a wait would complete the work on this thread)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if semaphore.failure is not None or semaphore.value >= value:
            return True
        time.sleep(0.001)
    return False


@contextlib.contextmanager
def _interrupt_after(function: Callable[..., Any], marker: str) -> Iterator[list[bool]]:
    """Raise KeyboardInterrupt once, on this thread, at the first line of ``function`` that
    contains ``marker`` (where a pending SIGINT is delivered after the CALL before it)."""
    code = function.__code__
    lines, start = inspect.getsourcelines(function)
    target = start + next(i for i, line in enumerate(lines) if marker in line)
    fired: list[bool] = []

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == target and not fired:
            fired.append(True)
            frame.f_trace = None
            raise KeyboardInterrupt
        return local

    def global_(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code is code and not fired else None

    previous = sys.gettrace()
    sys.settrace(global_)
    try:
        yield fired
    finally:
        sys.settrace(previous)


# -- the tracker leaves polling to a host wait that only completes its own ticket ------------


def test_a_host_poller_does_not_hold_off_completion_of_earlier_work(gated: Gated) -> None:
    """While a host wait polls (``_pollers``), the polling tracker does not poll, and the host
    poll completes only once ITS ticket finished: earlier work that the GPU finished stays
    uncompleted (its semaphore unsignalled) until the later ticket is done."""
    device = gated.device
    long = device.allocate_buffer(LONG)
    first, second = device.allocate_buffer(16), device.allocate_buffer(16)
    a, b = device.create_semaphore(), device.create_semaphore()
    _long_held(gated, long)
    device.queue_fill(first, 0, 16, 1, 1, signal=[(a, 1)])
    ticket_a = gated.submitted[-1]
    device.queue_fill(second, 0, 16, 2, 1, signal=[(b, 1)])
    gated.limit[0] = ticket_a  # the GPU finished everything up to A, B "still runs"
    waiter = threading.Thread(target=b.wait, args=(1, WAIT), daemon=True)
    waiter.start()
    try:
        _until(lambda: gated.completion._pollers == 1, "the host wait never polled")
        gated.gate.set()  # the tracker moves on to A and polls for it
        assert _settles(a, 1), "A finished on the GPU but nobody completed it"
        assert a.query() == 1
    finally:
        gated.limit[0] = float("inf")
        waiter.join(WAIT)
    assert np.array_equal(first.to_numpy(np.uint8), np.full(16, 1, np.uint8))


# -- interrupts that strand work or counters ---------------------------------------------------


def test_an_interrupt_entering_a_poll_does_not_leak_a_poller(gated: Gated) -> None:
    """KeyboardInterrupt right after ``_polled`` counted itself in (the lock released, the
    ``try`` not yet entered): ``_pollers`` stays 1 for ever, and the polling tracker, which
    leaves the polling to host waits while any is counted, never completes a stream again."""
    device = gated.device
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    _long_held(gated, long)
    device.queue_fill(buffer, 0, 16, 4, 1, signal=[(semaphore, 1)])  # behind: a stream
    completion = gated.completion
    try:
        with (
            pytest.raises(KeyboardInterrupt),
            _interrupt_after(Completion._polled, "try:") as fired,
        ):
            semaphore.wait(1, timeout=WAIT)
        assert fired
        leaked = completion._pollers
        gated.gate.set()
        settled = _settles(semaphore, 1)
        assert (leaked, settled) == (0, True)
    finally:
        completion._pollers = 0  # repaired, so that close() does not wait out its timeout
    semaphore.wait(1, timeout=WAIT)


def test_an_interrupt_after_taking_work_off_the_list_does_not_strand_it(gated: Gated) -> None:
    """KeyboardInterrupt between ``_finish_through``'s locked block (work removed from the
    in-flight list, ``_completing`` raised) and its ``try``: the work is never completed,
    its semaphore never signals and wait_idle never returns (``_completing`` stays up)."""
    device = gated.device
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    _long_held(gated, long)
    device.queue_fill(buffer, 0, 16, 6, 1, signal=[(semaphore, 1)])
    with (
        pytest.raises(KeyboardInterrupt),
        _interrupt_after(Completion._finish_through, "stop: BaseException") as fired,
    ):
        semaphore.wait(1, timeout=WAIT)  # its poll finds it finished and completes it here
    assert fired
    gated.gate.set()
    assert _settles(semaphore, 1), "the interrupted completion was lost"
    device.wait_idle(timeout=SETTLE_S)
    assert np.array_equal(buffer.to_numpy(np.uint8), np.full(16, 6, np.uint8))


def test_an_interrupt_before_tracking_released_work_does_not_lose_it(device: hal.Device) -> None:
    """Held-back work released by a host signal(): a KeyboardInterrupt landing in ``_submit``
    after the backend submission and the ticket, before ``completion.add`` (the CALL into
    ``add``, now in ``Queue._track_submitted``): ``_schedule_released`` saw a ticket and took
    the work for submitted, but nothing tracked it, so its semaphore hung. Now the tracking
    is resumed and the interrupt raised afterwards."""
    buffer = device.allocate_buffer(16)
    host, done = device.create_semaphore(), device.create_semaphore()
    device.queue_fill(buffer, 0, 16, 8, 1, wait=[(host, 1)], signal=[(done, 1)])
    with (
        pytest.raises(KeyboardInterrupt),
        _interrupt_after(
            Queue._track_submitted, "box.append(completion.add(work, quiet))"
        ) as fired,
    ):
        host.signal(1)
    assert fired
    assert _settles(done, 1), "the released operation was submitted and never tracked"
    done.wait(1, timeout=WAIT)
    assert np.array_equal(buffer.to_numpy(np.uint8), np.full(16, 8, np.uint8))


def test_an_interrupt_after_taking_the_watchers_does_not_drop_them(device: hal.Device) -> None:
    """KeyboardInterrupt in ``Semaphore._notify_watchers`` after it swapped the watcher list
    out (lock released) and before its loop: every watcher is dropped unrun. The queue's
    watcher released held-back work and the queue still counts the semaphore as watched, so
    no later signal ever releases that work."""
    buffer = device.allocate_buffer(16)
    host, done = device.create_semaphore(), device.create_semaphore()
    device.queue_fill(buffer, 0, 16, 9, 1, wait=[(host, 2)], signal=[(done, 1)])
    with (
        pytest.raises(KeyboardInterrupt),
        _interrupt_after(Semaphore._notify_watchers, "stop: BaseException") as fired,
    ):
        host.signal(2)
    assert fired
    host.signal(3)  # a later change: still nothing releases it
    assert _settles(done, 1), "the held-back operation was stranded"
    done.wait(1, timeout=WAIT)
    assert np.array_equal(buffer.to_numpy(np.uint8), np.full(16, 9, np.uint8))


# -- a backend bug in the tracker's poll ---------------------------------------------------------


def test_a_backend_bug_in_the_trackers_poll_does_not_stop_it(
    gated: Gated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait_for`` promises a backend bug (an exception that is not a BackendError) never
    stops the tracker; ``poll_backoff`` lets it through: the tracker thread dies, and
    nothing completes the work in flight unless a host wait does."""
    device = gated.device
    backend: Any = device.backend
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    _long_held(gated, long)
    device.queue_fill(buffer, 0, 16, 5, 1, signal=[(semaphore, 1)])  # a stream
    capped = backend.completed_ticket
    bug = [True]

    def completed_ticket() -> int:
        if bug[0] and threading.current_thread().name == "hal-completion":
            bug[0] = False
            raise RuntimeError("a backend bug")
        return int(capped())

    monkeypatch.setattr(backend, "completed_ticket", completed_ticket)
    with contextlib.suppress(Exception), warnings_ignored():
        gated.gate.set()
        _until(lambda: not bug[0], "the tracker never polled", seconds=5)
        time.sleep(0.05)
    alive = gated.completion._tracker.is_alive()
    settled = _settles(semaphore, 1)
    assert (alive, settled) == (True, True)


@contextlib.contextmanager
def warnings_ignored() -> Iterator[None]:
    """Keeps a dying tracker's traceback out of pytest's unhandled-thread-exception warning."""
    hook = threading.excepthook
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        threading.excepthook = hook


# -- regression tests that pass: the early chain link and a loss while polling -------------------


def test_an_early_chain_link_fails_when_its_wait_fails_meanwhile(gated: Gated) -> None:
    """Work waiting on a point that plain work already submitted signals goes to the GPU at
    once (``early``); a host fail() of that semaphore before the completion fails it too."""
    device = gated.device
    long = device.allocate_buffer(LONG)
    first, second = device.allocate_buffer(16), device.allocate_buffer(16)
    link, after = device.create_semaphore(), device.create_semaphore()
    _long_held(gated, long)
    device.queue_fill(first, 0, 16, 1, 1, signal=[(link, 1)])
    count = len(gated.submitted)
    device.queue_fill(second, 0, 16, 2, 1, wait=[(link, 1)], signal=[(after, 1)])
    assert len(gated.submitted) == count + 1  # submitted early, not held back
    link.fail("the host gave up")
    gated.gate.set()
    with pytest.raises(hal.AbortedError) as caught:
        after.wait(1, timeout=WAIT)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "the host gave up" in str(caught.value.__cause__)
    device.wait_idle(timeout=WAIT)


def test_a_loss_while_the_tracker_polls_fails_the_stream(gated: Gated) -> None:
    """The device lost while the tracker polls for a stream: every operation in flight fails
    with UnavailableError, the tracker stays up and close() returns at once."""
    device = gated.device
    long = device.allocate_buffer(LONG)
    buffer = device.allocate_buffer(16)
    semaphore = device.create_semaphore()
    _long_held(gated, long)
    gated.limit[0] = 0  # nothing seen finished: the tracker polls on
    device.queue_fill(buffer, 0, 16, 3, 1, signal=[(semaphore, 1)])
    gated.gate.set()
    _until(lambda: gated.completion._in_flight[0].ticket != gated.blocking[-1], "no poll")
    gated.device._queue.mark_lost("pulled out in a test")  # type: ignore[attr-defined]
    with pytest.raises(hal.AbortedError) as caught:
        semaphore.wait(1, timeout=WAIT)
    assert isinstance(caught.value.__cause__, hal.UnavailableError)
    assert "pulled out in a test" in str(caught.value.__cause__)
    assert gated.completion._tracker.is_alive()
    start = time.monotonic()
    device.close()
    assert time.monotonic() - start < 5.0
