"""Session 23 round-trip fixed cost: the single-point wait's fused path, the completion that
drops its wait's note in the lock it takes anyway, and the cheaper checks keep results,
messages and interrupt safety."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, interrupt_on_line

import hal
import hal.runtime.completion as completion_module
from hal.runtime.semaphore import MAX_VALUE, normalise_points


@pytest.fixture
def null() -> Iterator[hal.Device]:
    device = hal.create_device(implementation="null", backend="null")
    yield device
    device.close()


@pytest.mark.parametrize("implementation", ["null", None])
def test_round_trips_give_exact_bytes(implementation: str | None) -> None:
    """One-fill command buffers, queue_fill and queue_copy round trips, each waited with
    the fused single-point wait (float, int and None timeouts): the bytes of every step
    (the null backend's clears write zeros whatever the pattern: it fills with 0 there)."""
    if implementation == "null":
        d = hal.create_device(implementation="null", backend="null")
        patterns = [0] * 2
    else:
        d = hal.create_device()
        patterns = [0x100, 0x200]
    try:
        expected = np.arange(1, 1025, dtype=np.uint32)
        buf = d.buffer_from_numpy(expected.copy())
        other = d.allocate_buffer(8192)
        s = d.create_semaphore()
        expected_other = np.zeros(2048, np.uint32)
        value = 0
        for i, timeout in enumerate([10.0, 10, None, 10.0, 10, None]):
            first, second = (p and p + i for p in patterns)
            value += 1
            with d.record() as cb:
                cb.fill_buffer(buf, 4 * i, 4, first)
            d.queue_execute(cb, signal=[(s, value)])
            s.wait(value, timeout=timeout)
            expected[i] = first
            value += 1
            d.queue_fill(buf, 64 + 4 * i, 8, second, signal=((s, value),))
            s.wait(value, timeout=timeout)
            expected[16 + i : 18 + i] = second
            value += 1
            d.queue_copy(buf, 0, other, 4096, 256, signal=[(s, value)])
            s.wait(value, timeout=timeout)
            expected_other[1024:1088] = expected[:64]
            np.testing.assert_array_equal(buf.to_numpy(np.uint32), expected)
            np.testing.assert_array_equal(other.to_numpy(np.uint32), expected_other)
        assert s.query() == value
        completion = d._queue.completion
        d.wait_idle(WAIT)
        assert completion._direct == [] and completion._completing == 0
    finally:
        d.close()


def test_one_point_lists_normalise_as_before() -> None:
    s = hal.Semaphore()
    assert normalise_points("x", [(s, 3)]) == ((s, 3),)
    assert normalise_points("x", ((s, MAX_VALUE),)) == ((s, MAX_VALUE),)
    assert normalise_points("x", [[s, 3]]) == ((s, 3),)  # a list pair: the general path
    with pytest.raises(hal.InvalidArgumentError, match="x: 3 is not a Semaphore"):
        normalise_points("x", [(3, s)])
    with pytest.raises(hal.OutOfRangeError, match="exceeds the maximum"):
        normalise_points("x", [(s, MAX_VALUE + 1)])
    with pytest.raises(hal.InvalidArgumentError):
        normalise_points("x", [(s, -1)])
    with pytest.raises(hal.InvalidArgumentError, match=r"is not a \(semaphore, value\) pair"):
        normalise_points("x", [(s, 1, 2)])
    with pytest.raises(hal.InvalidArgumentError):
        normalise_points("x", [(s, 1.0)])


def test_queue_op_lists_are_checked_before_anything_is_queued(null: hal.Device) -> None:
    buf = null.allocate_buffer(4096)
    s = null.create_semaphore()
    with pytest.raises(hal.InvalidArgumentError, match="queue_copy signal"):
        null.queue_copy(buf, 0, buf, 256, 256, signal=[(s, -1)])
    with pytest.raises(hal.InvalidArgumentError, match="queue_copy wait"):
        null.queue_copy(buf, 0, buf, 256, 256, wait=[("no", 1)], signal=[(s, 1)])
    with pytest.raises(hal.InvalidArgumentError, match="queue_execute signal"):
        with null.record() as cb:
            cb.fill_buffer(buf, 0, 4, 1)
        null.queue_execute(cb, signal=[(s, "1")])
    # Rejected calls changed nothing: the command buffer is still submittable once.
    null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    assert s.query() == 1


@pytest.mark.parametrize("timeout", [-1, -0.5, math.nan, True, "1", [1]])
def test_bad_timeouts_still_raise_from_the_fast_wait(null: hal.Device, timeout: Any) -> None:
    s = null.create_semaphore()
    with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait: timeout"):
        s.wait(1, timeout=timeout)
    s.signal(1)  # reached: the timeout is still checked
    with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait: timeout"):
        s.wait(1, timeout=timeout)


def test_timeouts_of_the_fast_wait(null: hal.Device) -> None:
    s = null.create_semaphore()
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        s.wait(1, timeout=0)
    with pytest.raises(hal.DeadlineExceededError):
        s.wait(1, timeout=0.05)
    assert time.monotonic() - start >= 0.05
    threading.Timer(0.05, s.signal, (1,)).start()
    s.wait(1, timeout=float(1 << 40))  # past UNBOUNDED_TIMEOUT: waits forever
    assert s.query() == 1


def test_a_failed_semaphore_aborts_the_fast_wait(null: hal.Device) -> None:
    s = null.create_semaphore()
    threading.Timer(0.05, s.fail, ("broken",)).start()
    with pytest.raises(hal.AbortedError, match="broken"):
        s.wait(1, timeout=WAIT)


def test_closed_and_lost_devices_are_named_by_each_call() -> None:
    d = hal.create_device(implementation="null", backend="null")
    buf = d.allocate_buffer(64)
    cb = d.create_command_buffer()
    cb.begin()
    d.close()
    with pytest.raises(hal.UnavailableError, match="create_command_buffer: the device is closed"):
        d.record().__enter__()
    with pytest.raises(hal.UnavailableError, match="fill_buffer: the device is closed"):
        cb.fill_buffer(buf, 0, 4, 0)
    with pytest.raises(hal.UnavailableError, match="queue_copy: the device is closed"):
        d.queue_copy(buf, 0, buf, 32, 16)
    for how in ("queue", "backend"):
        lost = hal.create_device(implementation="null", backend="null")
        try:
            target = lost.allocate_buffer(64)
            if how == "queue":
                lost._queue.mark_lost("test")
            else:  # known to the backend only: the check takes it over
                lost.backend.lost_reason = "test"
            with pytest.raises(hal.UnavailableError, match="queue_fill: the device was lost: test"):
                lost.queue_fill(target, 0, 4, 0)
            assert lost._queue._lost is not None
        finally:
            lost.close()


def test_expect_tells_whether_the_semaphore_is_awaited() -> None:
    class Kicked:
        kicks = 0

        def kick(self) -> None:
            self.kicks += 1

    completion = Kicked()
    s = hal.Semaphore()
    assert s.expect(1, completion, 1) is False
    s.watch(lambda: None)
    assert completion.kicks == 1
    assert s.expect(2, completion, 2) is True
    s.signal(2)  # the watcher ran: nothing awaits it now
    assert s.expect(3, completion, 3) is False


@pytest.mark.parametrize(
    "marker",
    [
        "self._direct.remove(ticket)",
        "self._linger_until = time.monotonic() + LINGER_S",
        "left.append(True)",
    ],
)
def test_an_interrupt_where_the_completion_drops_the_note_leaks_nothing(
    null: hal.Device, marker: str
) -> None:
    """A KeyboardInterrupt landing on each line of the note drop that the completion of a
    host wait's own work now does (simulated with a trace function): it reaches the caller,
    the work is completed (the right bytes), no note or count is left, and the tracker still
    completes work nobody waits for."""
    device = null
    source = device.buffer_from_numpy(np.arange(256, dtype=np.uint32))
    target = device.buffer_from_numpy(np.zeros(256, np.uint32))
    device.wait_idle(WAIT)
    s = device.create_semaphore()
    device.queue_copy(source, 0, target, 0, 1024, signal=[(s, 1)])
    # The note drop is Completion._drop_note, called from _finish_through's release.
    where = {"_finish_through", "_drop_note"}
    with (
        interrupt_on_line(completion_module.__file__, where, marker) as fired,
        pytest.raises(KeyboardInterrupt),
    ):
        s.wait(1, timeout=WAIT)
    assert fired, "the interrupt point was not reached"
    completion = device._queue.completion
    assert s.query() == 1
    assert completion._direct == [] and completion._completing == 0
    np.testing.assert_array_equal(target.to_numpy(np.uint32), np.arange(256, dtype=np.uint32))
    # The tracker is not parked: work nobody waits for completes on its own.
    time.sleep(completion_module.LINGER_S + 0.01)
    quiet = device.create_semaphore()
    device.queue_fill(target, 0, 16, 7, signal=[(quiet, 1)])
    deadline = time.monotonic() + WAIT
    while quiet.query() < 1:
        assert time.monotonic() < deadline, "the tracker did not complete the work"
        time.sleep(0.001)
    device.wait_idle(WAIT)
    assert completion._direct == []
