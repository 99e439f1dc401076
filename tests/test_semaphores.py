"""Timeline semaphores, fences and queue ordering through them.

Host-side semantics (query, signal, wait, fail), queue operations that wait on and signal
semaphores (checked through the data they write), failure propagation, ``hal.Fence``,
``device.wait_semaphores`` and ``device.wait_idle``. Every wait is bounded by a timeout; a
helper thread is always joined with a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal

SHORT = 0.05
"""A timeout for waits that are expected to time out."""


def fill_cb(device: hal.Device, buffer: hal.Buffer, value: int) -> hal.CommandBuffer:
    """A ONE_SHOT command buffer that fills ``buffer`` with the byte ``value``."""
    with device.record() as cb:
        cb.fill_buffer(buffer, 0, buffer.byte_length, value, 1)
    return cb


def copy_cb(device: hal.Device, source: hal.Buffer, target: hal.Buffer) -> hal.CommandBuffer:
    """A ONE_SHOT command buffer that copies ``source`` into ``target``."""
    with device.record() as cb:
        cb.copy_buffer(source, 0, target, 0, source.byte_length)
    return cb


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` in a daemon thread; the dict receives its ``result`` or ``error``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def bytes_of(buffer: hal.Buffer) -> np.ndarray:
    """The buffer's bytes."""
    return buffer.to_numpy(np.uint8)


# -- host-side semantics -----------------------------------------------------------------------


def test_create_and_query(device: hal.Device) -> None:
    """A new semaphore reports its initial value."""
    assert device.create_semaphore().query() == 0
    assert device.create_semaphore(41).query() == 41
    assert device.create_semaphore(initial_value=2**63 - 1).query() == 2**63 - 1


def test_signal_is_monotonic(device: hal.Device) -> None:
    """Signal raises the value; a value that does not increase it raises and changes
    nothing."""
    s = device.create_semaphore(3)
    s.signal(4)
    s.signal(100)
    assert s.query() == 100
    for value in (100, 99, 0):
        with pytest.raises(hal.HalError):
            s.signal(value)
        assert s.query() == 100
    s.signal(2**63 - 1)
    assert s.query() == 2**63 - 1


def test_values_beyond_63_bits_are_rejected(device: hal.Device) -> None:
    """Values are ints ≤ 2**63 - 1."""
    s = device.create_semaphore()
    with pytest.raises(hal.HalError):
        s.signal(2**63)
    with pytest.raises(hal.HalError):
        device.create_semaphore(2**63)
    assert s.query() == 0


def test_wait_on_reached_value_returns_at_once(device: hal.Device) -> None:
    """Waiting for a value already reached (or below it) returns immediately, also with a
    zero timeout (a poll)."""
    s = device.create_semaphore(5)
    start = time.monotonic()
    s.wait(5, timeout=WAIT)
    s.wait(3, timeout=0)
    s.wait(0, timeout=0)
    assert time.monotonic() - start < 1.0


def test_wait_timeout_raises_deadline_exceeded(device: hal.Device) -> None:
    """A wait that is not satisfied in time raises DeadlineExceededError (a TimeoutError)
    after about the timeout."""
    s = device.create_semaphore(1)
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        s.wait(2, timeout=SHORT)
    elapsed = time.monotonic() - start
    assert SHORT * 0.9 <= elapsed < SHORT + 2.0
    with pytest.raises(TimeoutError):
        s.wait(2, timeout=0)
    assert issubclass(hal.DeadlineExceededError, TimeoutError)
    assert s.query() == 1


def test_wait_wakes_on_signal_from_another_thread(device: hal.Device) -> None:
    """A blocked host wait returns once another thread signals the value."""
    s = device.create_semaphore()
    thread, box = in_thread(lambda: s.wait(3, timeout=WAIT))
    time.sleep(SHORT)
    assert thread.is_alive()
    s.signal(2)
    time.sleep(SHORT)
    assert thread.is_alive()
    s.signal(3)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert "error" not in box


def test_fail_makes_wait_and_query_raise_aborted(device: hal.Device) -> None:
    """After fail(): query and wait raise AbortedError whose __cause__ (and .status) is the
    original error; waits on values already reached fail too."""
    s = device.create_semaphore(1)
    original = RuntimeError("boom")
    s.fail(original)
    with pytest.raises(hal.AbortedError) as info:
        s.query()
    assert info.value.__cause__ is original
    assert info.value.status is original
    with pytest.raises(hal.AbortedError) as info:
        s.wait(2, timeout=WAIT)
    assert info.value.__cause__ is original
    with pytest.raises(hal.AbortedError):
        s.wait(1, timeout=0)
    with pytest.raises(hal.AbortedError):
        s.signal(5)


def test_first_failure_wins(device: hal.Device) -> None:
    """A second fail() is ignored: the cause stays the first error."""
    s = device.create_semaphore()
    first, second = ValueError("first"), KeyError("second")
    s.fail(first)
    s.fail(second)
    s.fail("third")
    with pytest.raises(hal.AbortedError) as info:
        s.query()
    assert info.value.__cause__ is first


def test_fail_with_message(device: hal.Device) -> None:
    """fail() with a string records an exception carrying that message."""
    s = device.create_semaphore()
    s.fail("device fell over")
    with pytest.raises(hal.AbortedError) as info:
        s.wait(1, timeout=WAIT)
    assert isinstance(info.value.__cause__, BaseException)
    assert "device fell over" in str(info.value.__cause__)


def test_fail_wakes_a_blocked_waiter(device: hal.Device) -> None:
    """A thread blocked in wait() gets AbortedError when the semaphore fails."""
    s = device.create_semaphore()
    original = OSError("lost")
    thread, box = in_thread(lambda: s.wait(1, timeout=WAIT))
    time.sleep(SHORT)
    s.fail(original)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), hal.AbortedError)
    assert box["error"].__cause__ is original


# -- queue operations --------------------------------------------------------------------------


def test_signal_after_gpu_finished(device: hal.Device) -> None:
    """queue_execute(..., signal=[(s, 1)]): once s reaches 1 the work's results are
    visible."""
    buf = device.allocate_buffer(4096)
    s = device.create_semaphore()
    device.queue_execute(fill_cb(device, buf, 0x3C), signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    assert s.query() >= 1
    np.testing.assert_array_equal(bytes_of(buf), np.full(4096, 0x3C, dtype=np.uint8))


def test_queue_execute_held_back_until_host_signals(device: hal.Device) -> None:
    """An operation waiting on a semaphore does not run until the host signals it (from
    another thread); then it runs and signals its own semaphore."""
    buf = device.allocate_buffer(256)
    gate, done = device.create_semaphore(), device.create_semaphore()
    device.queue_execute(fill_cb(device, buf, 0x5A), wait=[(gate, 2)], signal=[(done, 1)])
    time.sleep(SHORT)
    assert done.query() == 0
    np.testing.assert_array_equal(bytes_of(buf), np.zeros(256, dtype=np.uint8))
    gate.signal(1)  # not enough
    time.sleep(SHORT)
    assert done.query() == 0
    np.testing.assert_array_equal(bytes_of(buf), np.zeros(256, dtype=np.uint8))
    timer = threading.Timer(SHORT, gate.signal, args=(2,))
    timer.start()
    done.wait(1, timeout=WAIT)
    timer.join(WAIT)
    np.testing.assert_array_equal(bytes_of(buf), np.full(256, 0x5A, dtype=np.uint8))


def test_queue_chain_orders_dependent_work(device: hal.Device) -> None:
    """Op 2 (copy A→B) waits on op 1 (fill A) through a semaphore; op 2 is submitted first
    and held back until the host releases op 1."""
    a, b = device.allocate_buffer(512), device.allocate_buffer(512)
    gate, mid, done = (device.create_semaphore() for _ in range(3))
    device.queue_execute(copy_cb(device, a, b), wait=[(mid, 1)], signal=[(done, 1)])
    device.queue_execute(fill_cb(device, a, 0x77), wait=[(gate, 1)], signal=[(mid, 1)])
    time.sleep(SHORT)
    assert done.query() == 0 and mid.query() == 0
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    assert mid.query() == 1
    np.testing.assert_array_equal(bytes_of(b), np.full(512, 0x77, dtype=np.uint8))


def test_chain_submitted_in_reverse_order(device: hal.Device) -> None:
    """Twelve operations on one timeline: op i waits for value i and signals i + 1, and
    copies the word op i - 1 wrote. Submitted last-first, they still run in chain order."""
    n = 12
    buf = device.allocate_buffer(4 * (n + 1))
    timeline = device.create_semaphore()
    for i in reversed(range(n)):
        with device.record() as cb:
            if i == 0:
                cb.fill_buffer(buf, 0, 4, 0xC0FFEE01, 4)
            else:
                cb.copy_buffer(buf, 4 * (i - 1), buf, 4 * i, 4)
        device.queue_execute(cb, wait=[(timeline, i + 100)], signal=[(timeline, i + 101)])
    time.sleep(SHORT)
    assert timeline.query() == 0
    timeline.signal(100)
    timeline.wait(100 + n, timeout=WAIT)
    words = buf.to_numpy(np.uint32)
    np.testing.assert_array_equal(words[:n], np.full(n, 0xC0FFEE01, dtype=np.uint32))
    assert words[n] == 0


def test_concurrent_submitters(device: hal.Device) -> None:
    """Four threads record, submit and wait on their own semaphores at the same time; every
    submission's data arrives."""
    rounds, threads = 8, 4
    buf = device.allocate_buffer(threads * rounds * 16)

    def worker(t: int) -> None:
        s = device.create_semaphore()
        for r in range(rounds):
            offset = (t * rounds + r) * 16
            with device.record() as cb:
                cb.fill_buffer(buf, offset, 16, t * 16 + r + 1, 1)
            device.queue_execute(cb, signal=[(s, r + 1)])
            s.wait(r + 1, timeout=WAIT)

    started = [in_thread(lambda t=t: worker(t)) for t in range(threads)]
    for thread, box in started:
        thread.join(WAIT)
        assert not thread.is_alive()
        assert "error" not in box, box.get("error")
    expected = np.repeat(
        np.array([t * 16 + r + 1 for t in range(threads) for r in range(rounds)], np.uint8), 16
    )
    np.testing.assert_array_equal(bytes_of(buf), expected)


def test_queue_execute_with_fences(device: hal.Device) -> None:
    """wait= and signal= accept hal.Fence objects, and None is a pure barrier."""
    buf = device.allocate_buffer(64)
    gate, done, barrier = (device.create_semaphore() for _ in range(3))
    device.queue_execute(
        fill_cb(device, buf, 0x42), wait=hal.Fence([(gate, 1)]), signal=hal.Fence([(done, 7)])
    )
    device.queue_execute(None, wait=[(done, 7)], signal=[(barrier, 1)])
    time.sleep(SHORT)
    assert barrier.query() == 0
    hal.Fence([(gate, 1)]).signal()
    hal.Fence([(barrier, 1)]).wait(timeout=WAIT)
    assert done.query() == 7
    np.testing.assert_array_equal(bytes_of(buf), np.full(64, 0x42, dtype=np.uint8))


def test_queued_op_waiting_on_failed_semaphore_does_not_run(device: hal.Device) -> None:
    """A held-back operation whose wait semaphore fails never runs, and its signal
    semaphores fail (AbortedError, caused by the original failure)."""
    buf = device.allocate_buffer(128)
    gate, done, other = (device.create_semaphore() for _ in range(3))
    device.queue_execute(
        fill_cb(device, buf, 0x99), wait=[(gate, 1)], signal=[(done, 1), (other, 5)]
    )
    original = RuntimeError("upstream failed")
    gate.fail(original)
    with pytest.raises(hal.AbortedError) as info:
        done.wait(1, timeout=WAIT)
    chain: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__
    assert original in chain
    with pytest.raises(hal.AbortedError):
        other.query()
    device.wait_idle(timeout=WAIT)
    np.testing.assert_array_equal(bytes_of(buf), np.zeros(128, dtype=np.uint8))


def test_queue_execute_on_already_failed_semaphore(device: hal.Device) -> None:
    """Submitting work that waits on an already failed semaphore: it does not run, its
    signal semaphore fails."""
    buf = device.allocate_buffer(32)
    gate, done = device.create_semaphore(), device.create_semaphore()
    gate.fail(RuntimeError("early"))
    try:
        device.queue_execute(fill_cb(device, buf, 0x11), wait=[(gate, 1)], signal=[(done, 1)])
    except hal.AbortedError:
        pass  # refusing at once is also acceptable; either way nothing runs
    else:
        with pytest.raises(hal.AbortedError):
            done.wait(1, timeout=WAIT)
    device.wait_idle(timeout=WAIT)
    np.testing.assert_array_equal(bytes_of(buf), np.zeros(32, dtype=np.uint8))


# -- fences ------------------------------------------------------------------------------------


def test_fence_basics(device: hal.Device) -> None:
    """insert keeps the larger value per semaphore; is_reached, wait, signal, join."""
    a, b = device.create_semaphore(), device.create_semaphore(10)
    fence = hal.Fence([(a, 2)])
    fence.insert(a, 1)
    fence.insert(b, 10)
    assert len(fence) == 2
    assert dict(fence.points) == {a: 2, b: 10}
    assert not fence.is_reached
    with pytest.raises(hal.DeadlineExceededError):
        fence.wait(timeout=SHORT)
    a.signal(2)
    assert fence.is_reached
    fence.wait(timeout=WAIT)
    c = device.create_semaphore()
    joined = hal.Fence.join(fence, hal.Fence([(c, 3), (a, 4)]))
    assert dict(joined.points) == {a: 4, b: 10, c: 3}
    joined2 = hal.Fence([(c, 3), (a, 4)])
    joined2.signal()
    assert a.query() == 4 and c.query() == 3
    assert joined.is_reached
    assert hal.Fence().is_reached
    hal.Fence().wait(timeout=0)


def test_fence_fail(device: hal.Device) -> None:
    """Fence.fail fails every semaphore; is_reached and wait then raise AbortedError."""
    a, b = device.create_semaphore(), device.create_semaphore()
    fence = hal.Fence([(a, 1), (b, 1)])
    original = RuntimeError("fence failed")
    fence.fail(original)
    for s in (a, b):
        with pytest.raises(hal.AbortedError) as info:
            s.query()
        assert info.value.__cause__ is original
    with pytest.raises(hal.AbortedError):
        _ = fence.is_reached
    with pytest.raises(hal.AbortedError):
        fence.wait(timeout=WAIT)


# -- device-level waits ------------------------------------------------------------------------


def test_wait_semaphores_all_and_any(device: hal.Device) -> None:
    """mode='all' needs every point; mode='any' one of them; an empty list returns."""
    a, b = device.create_semaphore(), device.create_semaphore()
    points = [(a, 1), (b, 1)]
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores(points, mode="any", timeout=SHORT)
    a.signal(1)
    device.wait_semaphores(points, mode="any", timeout=WAIT)
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores(points, mode="all", timeout=SHORT)
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores(points, timeout=0)
    thread, box = in_thread(lambda: device.wait_semaphores(points, mode="all", timeout=WAIT))
    time.sleep(SHORT)
    assert thread.is_alive()
    b.signal(1)
    thread.join(WAIT)
    assert not thread.is_alive() and "error" not in box
    device.wait_semaphores([], mode="all", timeout=0)
    device.wait_semaphores([], mode="any", timeout=0)
    device.wait_semaphores(hal.Fence(points), timeout=WAIT)


def test_wait_semaphores_any_wakes_on_one_gpu_signal(device: hal.Device) -> None:
    """mode='any' returns when the GPU signals one point while the other stays unsignalled."""
    buf = device.allocate_buffer(64)
    never, done = device.create_semaphore(), device.create_semaphore()
    device.queue_execute(fill_cb(device, buf, 0x24), signal=[(done, 1)])
    device.wait_semaphores([(never, 1), (done, 1)], mode="any", timeout=WAIT)
    assert never.query() == 0
    np.testing.assert_array_equal(bytes_of(buf), np.full(64, 0x24, dtype=np.uint8))


def test_wait_semaphores_all_on_failed_semaphore(device: hal.Device) -> None:
    """A failed semaphore makes an 'all' wait raise AbortedError."""
    a, b = device.create_semaphore(1), device.create_semaphore()
    original = RuntimeError("bad")
    b.fail(original)
    with pytest.raises(hal.AbortedError) as info:
        device.wait_semaphores([(a, 1), (b, 1)], mode="all", timeout=WAIT)
    assert info.value.__cause__ is original


def test_wait_semaphores_bad_mode(device: hal.Device) -> None:
    """An unknown mode is an InvalidArgumentError."""
    s = device.create_semaphore(1)
    with pytest.raises(hal.InvalidArgumentError):
        device.wait_semaphores([(s, 1)], mode="some", timeout=0)


def test_wait_idle_waits_for_submitted_work(device: hal.Device) -> None:
    """After wait_idle every submitted operation has signalled and its data is visible."""
    bufs = [device.allocate_buffer(1 << 16) for _ in range(4)]
    sems = [device.create_semaphore() for _ in bufs]
    for i, (buf, s) in enumerate(zip(bufs, sems, strict=True)):
        device.queue_execute(fill_cb(device, buf, 0x10 + i), signal=[(s, 1)])
    device.wait_idle(timeout=WAIT)
    for i, (buf, s) in enumerate(zip(bufs, sems, strict=True)):
        assert s.query() == 1
        np.testing.assert_array_equal(bytes_of(buf), np.full(1 << 16, 0x10 + i, np.uint8))
    device.wait_idle(timeout=1.0)  # nothing left but bookkeeping: returns promptly
