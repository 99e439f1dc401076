"""The completion thread leaves work to a host wait that polls for it (session 23).

On wgpu-native with a GPU a host wait first polls ``wgpuDevicePoll(wait = false)`` on its own
thread (``waiter_poll_s``). The tracker, woken by each submission, used to block in
``wgpuDevicePoll(wait = true)`` beside it: that holds the device's fence lock, so the waiter's
polls queued behind it and both threads woke at completion (~35 µs of a one-dispatch round
trip on the H200 host, ``benchmarks/results/h200/s23_diag``). Now a polling wait is noted like
a blocking one (the tracker yields to it), and the tracker stands by after host waits on
every backend, so a quiet submission does not wake it. Here the null backend plays
wgpu-native: no bounded waits, polls first, and its work "runs" until a gate opens.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
import hal.runtime.completion as completion_module

TRACKER = "hal-completion"


@pytest.fixture
def device(null: hal.Device) -> hal.Device:
    """A null device of its own (conftest's ``null``): the gate patches its backend."""
    return null


class PollGate:
    """The null backend as wgpu-native on a GPU: waits unbounded, host waits poll first
    (``waiter_poll_s``), and submissions made while the gate is closed are reported finished
    only once it opens. Every backend call is recorded as (thread name, call)."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch, poll_s: float) -> None:
        self.backend = backend
        self.open = threading.Event()
        self.open.set()
        self.done_before = 0
        self.calls: list[tuple[str, str]] = []
        real_completed = backend.completed_ticket
        monkeypatch.setattr(backend, "bounded_waits", False)
        monkeypatch.setattr(backend, "waiter_poll_s", poll_s)

        def completed_ticket() -> int:
            self.calls.append((threading.current_thread().name, "completed_ticket"))
            if self.open.is_set():
                return int(real_completed())
            time.sleep(0.0005)  # a C poll lets the GIL go
            return self.done_before

        def wait(ticket: int) -> None:
            self.calls.append((threading.current_thread().name, "wait"))
            self.open.wait(WAIT)

        monkeypatch.setattr(backend, "completed_ticket", completed_ticket)
        monkeypatch.setattr(backend, "wait", wait)

    def close(self, device: hal.Device) -> None:
        """Let ``device`` go idle, then hold later submissions' completion off."""
        device.wait_idle()
        # The uploads before may have been the tracker's to complete: let it get back to
        # standing by, as between the round trips of a submit-and-wait loop.
        time.sleep(0.005)
        self.done_before = self.backend.submissions
        self.calls.clear()
        self.open.clear()

    def tracker_calls(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] == TRACKER]


def _round_trip(
    device: hal.Device, data: np.ndarray, open_after: float, timeout: float | None
) -> tuple[hal.Buffer, hal.Semaphore, float]:
    """Copy ``data`` into a zeroed buffer, the gate opening ``open_after`` s later; wait for
    it with ``timeout``. Returns the target, the semaphore and the wait's seconds."""
    source = device.buffer_from_numpy(data)
    target = device.buffer_from_numpy(np.zeros_like(data))
    gate = device.backend._test_gate  # type: ignore[attr-defined]
    gate.close(device)
    semaphore = device.create_semaphore()
    opener = threading.Timer(open_after, gate.open.set)
    device.queue_copy(source, 0, target, 0, data.nbytes, signal=[(semaphore, 1)])
    opener.start()
    try:
        start = time.monotonic()
        semaphore.wait(1, timeout=timeout)
        seconds = time.monotonic() - start
    finally:
        gate.open.set()
        opener.join()
    return target, semaphore, seconds


def _gate(device: hal.Device, monkeypatch: pytest.MonkeyPatch, poll_s: float) -> PollGate:
    gate = PollGate(device.backend, monkeypatch, poll_s)
    device.backend._test_gate = gate  # type: ignore[attr-defined]
    return gate


@pytest.mark.parametrize("timeout", [None, 10.0], ids=["unbounded", "bounded"])
def test_the_tracker_leaves_work_to_a_polling_host_wait(
    device: hal.Device,
    monkeypatch: pytest.MonkeyPatch,
    no_forced_switches: None,
    timeout: float | None,
) -> None:
    """Round trips whose work finishes within the host wait's polls, after a first one (a
    submit-and-wait loop): the tracker makes no backend call at all (no blocking wait
    beside the polls), the waiter completes the work on its own thread, bytes exact."""
    # Standby looks 50 ms apart: a loaded host (xdist workers) may stall this thread for
    # more than the default look and its one grace slice between submission and wait.
    monkeypatch.setattr(completion_module, "STANDBY_S", 0.05)
    gate = _gate(device, monkeypatch, poll_s=5.0)
    me = threading.current_thread().name
    for round_trip in range(4):
        data = (np.arange(256, dtype=np.uint32) * (round_trip + 3)).astype(np.uint32)
        target, semaphore, _ = _round_trip(device, data, 0.05, timeout)
        assert semaphore.query() == 1
        tracker, calls = gate.tracker_calls(), list(gate.calls)  # before to_numpy's own
        assert np.array_equal(target.to_numpy(np.uint32), data)
        if round_trip == 0:
            continue  # the first after idle wakes the tracker: it stands by only after
        assert tracker == [], tracker
        assert (me, "completed_ticket") in calls


def test_an_unbounded_wait_past_its_polls_blocks_on_its_own_thread(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch, no_forced_switches: None
) -> None:
    """Work that outlasts the polls: the unbounded wait then blocks in the backend itself
    (the tracker, woken as the polls end, may block beside it: long work only), bytes
    exact."""
    gate = _gate(device, monkeypatch, poll_s=0.02)
    data = np.arange(100, dtype=np.uint8)
    _round_trip(device, data, 0.0, None)  # the first after idle wakes the tracker
    target, semaphore, _ = _round_trip(device, data, 0.08, None)
    assert semaphore.query() == 1
    me = threading.current_thread().name
    assert (me, "wait") in gate.calls
    assert np.array_equal(target.to_numpy(np.uint8), data)


def test_a_bounded_wait_past_its_polls_hands_the_work_to_the_tracker(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work that outlasts a bounded wait's polls: the wait leaves it to the tracker (which
    cannot be woken by the quiet submission, so the wait kicks it), and returns as soon as
    the tracker completed it, well before its deadline."""
    gate = _gate(device, monkeypatch, poll_s=0.02)
    data = np.arange(100, dtype=np.uint8)[::-1].copy()
    target, semaphore, seconds = _round_trip(device, data, 0.3, 20.0)
    assert semaphore.query() == 1
    assert seconds < 10.0
    assert gate.tracker_calls(), "the tracker did not take the work over"
    assert np.array_equal(target.to_numpy(np.uint8), data)


def test_work_nobody_waits_for_still_completes(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet submission after a host wait (the tracker standing by, not woken) and no
    wait at all: the tracker finds it on its own and completes it, bytes exact."""
    gate = _gate(device, monkeypatch, poll_s=0.02)
    data = np.arange(64, dtype=np.uint8)
    _round_trip(device, data, 0.0, None)  # a host wait: the tracker stands by after it
    source = device.buffer_from_numpy(data[::-1].copy())
    target = device.buffer_from_numpy(np.zeros_like(data))
    device.wait_idle()
    semaphore = device.create_semaphore()
    device.queue_copy(source, 0, target, 0, data.nbytes, signal=[(semaphore, 1)])
    deadline = time.monotonic() + WAIT
    while semaphore.query() < 1:
        assert time.monotonic() < deadline, "nobody completed the work"
        time.sleep(0.001)
    assert gate.open.is_set()
    assert np.array_equal(target.to_numpy(np.uint8), data[::-1])
