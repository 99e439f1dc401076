"""``device.queue_host_call``: host functions ordered by semaphores, run on hal's host threads.

Each test builds a chain of real GPU work around the host call and compares the bytes with
numpy; failure paths check the exact exception types and causes. Every wait is bounded.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal


def test_host_call_in_queue_order_with_real_bytes(device: hal.Device) -> None:
    """update → host call (reads the buffer, writes it back doubled) → copy, ordered only by
    semaphores and submitted in reverse."""
    src = device.allocate_buffer(64)
    dst = device.allocate_buffer(64)
    sem = device.create_semaphore()
    values = np.arange(16, dtype=np.int32)
    seen: list[np.ndarray] = []

    def double() -> None:
        data = src.to_numpy(np.int32)
        seen.append(data)
        device.transfer_h2d((data * 2).tobytes(), src)

    device.queue_copy(src, 0, dst, 0, 64, wait=[(sem, 2)], signal=[(sem, 3)])
    device.queue_host_call(double, wait=[(sem, 1)], signal=[(sem, 2)])
    time.sleep(0.05)
    assert not seen, "the host call ran before its wait was reached"
    device.queue_update(values, 0, src, 0, 64, signal=[(sem, 1)])
    sem.wait(3, timeout=WAIT)
    np.testing.assert_array_equal(seen[0], values)
    np.testing.assert_array_equal(dst.to_numpy(np.int32), values * 2)


def test_host_call_runs_on_a_host_thread(device: hal.Device) -> None:
    sem = device.create_semaphore()
    names: list[str] = []
    device.queue_host_call(lambda: names.append(threading.current_thread().name), signal=[(sem, 1)])
    sem.wait(1, timeout=WAIT)
    assert names == ["hal-host-call"]


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt(), SystemExit(3)])
def test_exception_fails_signals_with_cause(device: hal.Device, error: BaseException) -> None:
    """Any BaseException from fn fails the signals (AbortedError, cause: the exception), and
    queue work waiting on them fails with the same cause and leaves its target alone."""
    sem, after = device.create_semaphore(), device.create_semaphore()
    target = device.buffer_from_numpy(random_bytes(32, 3))

    def fail() -> None:
        raise error

    device.queue_host_call(fail, signal=[(sem, 1)])
    device.queue_fill(target, 0, 32, 0, 1, wait=[(sem, 1)], signal=[(after, 1)])
    with pytest.raises(hal.AbortedError) as raised:
        sem.wait(1, timeout=WAIT)
    assert raised.value.__cause__ is error and raised.value.status is error
    with pytest.raises(hal.AbortedError) as downstream:
        after.wait(1, timeout=WAIT)
    assert downstream.value.__cause__ is error
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(target.to_numpy(), random_bytes(32, 3))


def test_failed_wait_skips_fn(device: hal.Device) -> None:
    gate, sem = device.create_semaphore(), device.create_semaphore()
    called: list[int] = []
    device.queue_host_call(lambda: called.append(1), wait=[(gate, 1)], signal=[(sem, 1)])
    cause = RuntimeError("upstream failed")
    gate.fail(cause)
    with pytest.raises(hal.AbortedError) as raised:
        sem.wait(1, timeout=WAIT)
    assert raised.value.__cause__ is cause
    time.sleep(0.05)
    assert called == []


def test_failure_of_any_wait_is_noticed(device: hal.Device) -> None:
    """Of two unreached waits, the second failing fails the call at once."""
    a, b, sem = (device.create_semaphore() for _ in range(3))
    device.queue_host_call(lambda: None, wait=[(a, 1), (b, 1)], signal=[(sem, 1)])
    b.fail("b failed")
    with pytest.raises(hal.AbortedError, match="b failed"):
        sem.wait(1, timeout=5)


@pytest.mark.parametrize("fn", [None, 42, "print"])
def test_not_callable(device: hal.Device, fn: object) -> None:
    sem = device.create_semaphore()
    with pytest.raises(hal.InvalidArgumentError, match=r"queue_host_call: fn .* is not callable"):
        device.queue_host_call(fn, signal=[(sem, 1)])  # type: ignore[arg-type]
    assert sem.query() == 0


def test_bad_wait_list(device: hal.Device) -> None:
    called: list[int] = []
    with pytest.raises(hal.InvalidArgumentError, match="queue_host_call wait"):
        device.queue_host_call(lambda: called.append(1), wait=[("x", 1)])  # type: ignore[list-item]
    time.sleep(0.02)
    assert called == []


def test_blocked_host_call_never_delays_other_work(device: hal.Device) -> None:
    """Two host calls blocked on an event: an unrelated queue_fill and a third host call still
    complete meanwhile."""
    release = threading.Event()
    blocked, fill_done, third = (device.create_semaphore() for _ in range(3))
    for value in (1, 2):
        device.queue_host_call(lambda: release.wait(WAIT), signal=[(blocked, value)])
    target = device.allocate_buffer(16)
    try:
        device.queue_fill(target, 0, 16, 0xAB, 1, signal=[(fill_done, 1)])
        fill_done.wait(1, timeout=10)
        device.queue_host_call(lambda: None, signal=[(third, 1)])
        third.wait(1, timeout=10)
        assert blocked.value == 0
        np.testing.assert_array_equal(target.to_numpy(), np.full(16, 0xAB, np.uint8))
    finally:
        release.set()
    blocked.wait(2, timeout=WAIT)


def test_wait_idle_waits_for_running_host_call(device: hal.Device) -> None:
    done: list[int] = []

    def slow() -> None:
        time.sleep(0.2)
        done.append(1)

    device.queue_host_call(slow)
    time.sleep(0.02)
    device.wait_idle(WAIT)
    assert done == [1]


def test_close_fails_waiting_host_calls() -> None:
    with hal.create_device() as other:
        gate, sem = other.create_semaphore(), other.create_semaphore()
        called: list[int] = []
        other.queue_host_call(lambda: called.append(1), wait=[(gate, 1)], signal=[(sem, 1)])
    with pytest.raises(hal.AbortedError) as raised:
        sem.wait(1, timeout=WAIT)
    assert isinstance(raised.value.__cause__, hal.UnavailableError)
    gate.signal(1)
    time.sleep(0.05)
    assert called == []
    with pytest.raises(hal.UnavailableError, match="queue_host_call"):
        other.queue_host_call(lambda: None)
