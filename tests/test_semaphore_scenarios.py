"""Semaphore and submission scenarios, after IREE's CTS ``semaphore_test`` and
``semaphore_submission_test`` suites.

Every wait is bounded (``WAIT`` or a short explicit timeout), so a lost signal or a deadlock
fails the test instead of hanging it. Checks that an operation was held back read its target
after ``device.wait_idle`` (which drains everything actually submitted): a held-back operation
that ran too early would have changed the bytes by then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal

SHORT = 0.25
"""Timeout (seconds) for waits that are expected to time out."""

SLACK = 1.0
"""How far past its timeout a wait may return (scheduling noise on a loaded machine)."""


class Worker(threading.Thread):
    """Runs ``fn`` on a daemon thread and keeps its result or exception for ``finish``."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as error:  # handed to the test thread by finish()
            self.error = error
        finally:
            self.finished_at = time.monotonic()

    def finish(self, timeout: float = WAIT) -> Any:
        """Join (bounded); re-raise the thread's exception; return its result."""
        self.join(timeout)
        assert not self.is_alive(), "worker thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


def start(fn: Callable[[], Any]) -> Worker:
    """Start ``fn`` on a new worker thread."""
    worker = Worker(fn)
    worker.start()
    return worker


def read(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    """All bytes of ``buffer`` after the submitted work finished."""
    return np.frombuffer(device.transfer_d2h(buffer), dtype=np.uint8).copy()


def settled(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    """``buffer``'s bytes once everything actually submitted has finished (held-back
    operations excluded), after a short pause that gives an early submission time to land."""
    time.sleep(0.02)
    device.wait_idle(WAIT)
    return read(device, buffer)


def filled(device: hal.Device, size: int, seed: int) -> tuple[hal.Buffer, np.ndarray]:
    """A buffer of ``size`` non-zero random bytes and its numpy model."""
    data = random_bytes(size, seed)
    return device.buffer_from_numpy(data), data.copy()


def values(semaphores: Sequence[hal.Semaphore]) -> list[int]:
    """Current values of ``semaphores``."""
    return [s.query() for s in semaphores]


def assert_aborted_by(error: BaseException, cause: BaseException) -> None:
    """``error`` is an AbortedError that carries ``cause`` as ``__cause__`` and ``.status``."""
    assert isinstance(error, RuntimeError)
    assert isinstance(error, hal.AbortedError)
    assert error.__cause__ is cause
    assert error.status is cause


# -- signal, query, failure -----------------------------------------------------------------------


def test_signal_and_query(device: hal.Device) -> None:
    sem = device.create_semaphore(5)
    assert sem.query() == 5
    sem.signal(6)
    assert sem.query() == 6
    sem.signal(1000)
    assert sem.query() == 1000
    sem.signal((1 << 63) - 1)
    assert sem.query() == (1 << 63) - 1
    sem.wait(1000, timeout=0)
    sem.wait((1 << 63) - 1, timeout=0)


def test_fail_then_query_and_wait(device: hal.Device) -> None:
    sem = device.create_semaphore(3)
    cause = ValueError("kernel exploded")
    sem.fail(cause)
    with pytest.raises(hal.AbortedError) as info:
        sem.query()
    assert_aborted_by(info.value, cause)
    # A wait for a value above, at or below the last value fails alike.
    for value in (4, 3, 1):
        with pytest.raises(hal.AbortedError) as info:
            sem.wait(value, timeout=WAIT)
        assert_aborted_by(info.value, cause)
    with pytest.raises(hal.AbortedError) as info:
        device.wait_semaphores([(sem, 4)], timeout=WAIT)
    assert_aborted_by(info.value, cause)
    with pytest.raises(hal.AbortedError):
        sem.signal(10)


def test_double_failure_keeps_first(device: hal.Device) -> None:
    sem = device.create_semaphore()
    first, second = OSError("first"), KeyError("second")
    sem.fail(first)
    sem.fail(second)
    sem.fail("third")
    with pytest.raises(hal.AbortedError) as info:
        sem.wait(1, timeout=WAIT)
    assert_aborted_by(info.value, first)


# -- waits: empty, already reached, timeouts ------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "any"])
@pytest.mark.parametrize("timeout", [None, 0, 1.0])
def test_empty_wait_list_returns(device: hal.Device, mode: str, timeout: float | None) -> None:
    start_time = time.monotonic()
    device.wait_semaphores([], mode=mode, timeout=timeout)
    device.wait_semaphores(hal.Fence(), mode=mode, timeout=timeout)
    hal.Fence().wait(timeout=timeout)
    assert time.monotonic() - start_time < SLACK


def test_wait_on_reached_values_returns_at_once(device: hal.Device) -> None:
    a = device.create_semaphore(10)
    b = device.create_semaphore(0)
    a.wait(0, timeout=0)
    a.wait(10, timeout=0)
    b.wait(0, timeout=0)
    device.wait_semaphores([(a, 7), (b, 0), (a, 10)], timeout=0)
    device.wait_semaphores([(a, 10), (b, 1)], mode="any", timeout=0)
    hal.Fence([(a, 10), (b, 0)]).wait(timeout=0)


def test_wait_on_future_value_polls_with_timeout_zero(device: hal.Device) -> None:
    sem = device.create_semaphore(1)
    start_time = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        sem.wait(2, timeout=0)
    with pytest.raises(TimeoutError):
        device.wait_semaphores([(sem, 1), (sem, 2)], timeout=0)
    assert time.monotonic() - start_time < SLACK
    assert sem.query() == 1


@pytest.mark.parametrize("how", ["semaphore", "all", "any", "fence"])
def test_timeout_raises_deadline_exceeded(device: hal.Device, how: str) -> None:
    a = device.create_semaphore(0)
    b = device.create_semaphore(2)
    waits: dict[str, Callable[[], None]] = {
        "semaphore": lambda: a.wait(1, timeout=SHORT),
        "all": lambda: device.wait_semaphores([(a, 1), (b, 2)], timeout=SHORT),
        "any": lambda: device.wait_semaphores([(a, 1), (b, 3)], mode="any", timeout=SHORT),
        "fence": lambda: hal.Fence([(a, 1), (b, 1)]).wait(timeout=SHORT),
    }
    start_time = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError) as info:
        waits[how]()
    elapsed = time.monotonic() - start_time
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, hal.HalError)
    assert SHORT * 0.9 <= elapsed < SHORT + SLACK
    assert values([a, b]) == [0, 2]


# -- several threads ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_ping_pong_between_threads(device: hal.Device) -> None:
    """Two host threads hand one semaphore back and forth: the pinger signals odd values and
    waits for the next even one, the ponger the reverse."""
    rounds = 200
    sem = device.create_semaphore()
    seen: dict[str, list[int]] = {"ping": [], "pong": []}

    def player(name: str, first: int) -> None:
        for value in range(first, 2 * rounds + 1, 2):
            sem.wait(value - 1, timeout=WAIT)
            seen[name].append(sem.query())
            sem.signal(value)

    pong = start(lambda: player("pong", 2))
    ping = start(lambda: player("ping", 1))
    ping.finish()
    pong.finish()
    assert sem.query() == 2 * rounds
    # Each player saw exactly the value the other had just signalled.
    assert seen["ping"] == list(range(0, 2 * rounds, 2))
    assert seen["pong"] == list(range(1, 2 * rounds, 2))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_wait_any_returns_when_one_is_signalled(device: hal.Device, which: int) -> None:
    sems = [device.create_semaphore() for _ in range(3)]
    points = [(sem, 1) for sem in sems]
    waiter = start(lambda: device.wait_semaphores(points, mode="any", timeout=WAIT))
    time.sleep(0.1)
    assert waiter.is_alive(), "wait-any returned before anything was signalled"
    signalled_at = time.monotonic()
    sems[which].signal(1)
    waiter.finish()
    assert waiter.finished_at is not None
    assert waiter.finished_at - signalled_at < SLACK
    assert values(sems) == [1 if i == which else 0 for i in range(3)]


@pytest.mark.timeout(60)
def test_wait_any_on_gpu_signals(device: hal.Device) -> None:
    """Wait-any over semaphores that queue operations signal; only one of them is released."""
    host = device.create_semaphore()
    sems = [device.create_semaphore() for _ in range(3)]
    for i, sem in enumerate(sems):
        device.queue_barrier(wait=[(host, i + 1)], signal=[(sem, 1)])
    points = [(sem, 1) for sem in sems]
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores(points, mode="any", timeout=0.05)
    host.signal(1)
    device.wait_semaphores(points, mode="any", timeout=WAIT)
    assert sems[0].query() == 1
    device.wait_idle(WAIT)
    assert values(sems) == [1, 0, 0]
    host.signal(3)
    device.wait_semaphores(points, mode="all", timeout=WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["semaphore", "all", "any", "fence"])
def test_fail_while_another_thread_waits(device: hal.Device, how: str) -> None:
    a = device.create_semaphore()
    b = device.create_semaphore()
    waits: dict[str, Callable[[], None]] = {
        "semaphore": lambda: a.wait(1, timeout=WAIT),
        "all": lambda: device.wait_semaphores([(b, 1), (a, 1)], timeout=WAIT),
        "any": lambda: device.wait_semaphores([(b, 1), (a, 1)], mode="any", timeout=WAIT),
        "fence": lambda: hal.Fence([(b, 1), (a, 1)]).wait(timeout=WAIT),
    }
    waiter = start(waits[how])
    time.sleep(0.1)
    assert waiter.is_alive()
    cause = RuntimeError("device-side failure")
    failed_at = time.monotonic()
    a.fail(cause)
    with pytest.raises(hal.AbortedError) as info:
        waiter.finish()
    assert_aborted_by(info.value, cause)
    assert waiter.finished_at is not None
    assert waiter.finished_at - failed_at < SLACK
    assert b.query() == 0


@pytest.mark.timeout(60)
def test_host_threads_chain_through_queue_operations(device: hal.Device) -> None:
    """A thread signals, a queue operation waits on it and signals another semaphore that a
    second thread waits on, which in turn signals the first thread back."""
    rounds = 50
    to_gpu = device.create_semaphore()
    from_gpu = device.create_semaphore()
    back = device.create_semaphore()
    buffer = device.allocate_buffer(4 * rounds)
    for i in range(1, rounds + 1):
        device.queue_fill(buffer, 4 * (i - 1), 4, i, wait=[(to_gpu, i)], signal=[(from_gpu, i)])

    def producer() -> None:
        for i in range(1, rounds + 1):
            to_gpu.signal(i)
            back.wait(i, timeout=WAIT)

    def consumer() -> None:
        for i in range(1, rounds + 1):
            from_gpu.wait(i, timeout=WAIT)
            back.signal(i)

    workers = [start(consumer), start(producer)]
    for worker in workers:
        worker.finish()
    assert values([to_gpu, from_gpu, back]) == [rounds] * 3
    assert np.array_equal(
        read(device, buffer).view(np.uint32), np.arange(1, rounds + 1, dtype=np.uint32)
    )


@pytest.mark.timeout(60)
def test_unbounded_waits_on_gpu_and_host_signals(device: hal.Device) -> None:
    """``timeout=None`` waits (run on a worker, so a hang fails the join instead of the test
    run) on values signalled by submitted GPU work, by held-back work and by the host."""
    buffer = device.allocate_buffer(1 << 20)
    chain, host, tail = (device.create_semaphore() for _ in range(3))
    for i in range(1, 21):
        device.queue_fill(buffer, 0, None, i, 4, wait=[(chain, i - 1)], signal=[(chain, i)])
    device.queue_barrier(wait=[(host, 1), (chain, 20)], signal=[(tail, 1)])

    def waits() -> list[int]:
        chain.wait(5)
        chain.wait(20)
        device.wait_semaphores([(chain, 20)])
        tail.wait(1)
        return [chain.query(), tail.query()]

    worker = start(waits)
    time.sleep(0.05)
    host.signal(1)
    assert worker.finish() == [20, 1]

    failing = device.create_semaphore()
    waiter = start(lambda: failing.wait(1))
    time.sleep(0.05)
    cause = RuntimeError("never signalled")
    failing.fail(cause)
    with pytest.raises(hal.AbortedError) as info:
        waiter.finish()
    assert_aborted_by(info.value, cause)


# -- submissions that wait ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_submit_waits_for_host_signal(device: hal.Device) -> None:
    buffer, model = filled(device, 256, seed=1)
    host = device.create_semaphore()
    done = device.create_semaphore()
    with device.record() as cb:
        cb.fill_buffer(buffer, 16, 64, 0x5A, 1)
        cb.execution_barrier()
        cb.copy_buffer(buffer, 0, buffer, 128, 96)
    device.queue_execute(cb, wait=[(host, 1)], signal=[(done, 1)])

    assert np.array_equal(settled(device, buffer), model), "ran before its wait was reached"
    assert done.query() == 0
    with pytest.raises(hal.DeadlineExceededError):
        done.wait(1, timeout=0.05)

    host.signal(1)
    done.wait(1, timeout=WAIT)
    model[16:80] = 0x5A
    model[128:224] = model[0:96]
    assert np.array_equal(read(device, buffer), model)


@pytest.mark.timeout(60)
def test_submit_with_several_waits_and_signals(device: hal.Device) -> None:
    buffer, model = filled(device, 128, seed=2)
    waits = [device.create_semaphore(v) for v in (0, 10, 100)]
    signals = [device.create_semaphore(v) for v in (0, 5, 50)]
    with device.record() as cb:
        cb.fill_buffer(buffer, 8, 32, b"\x01\x02\x03\x04")
    device.queue_execute(
        cb,
        wait=[(waits[0], 1), (waits[1], 12), (waits[2], 100)],
        signal=hal.Fence([(signals[0], 1), (signals[1], 7), (signals[2], 51)]),
    )
    waits[1].signal(11)
    waits[0].signal(1)
    assert np.array_equal(settled(device, buffer), model)
    assert values(signals) == [0, 5, 50]
    waits[1].signal(12)
    hal.Fence([(signals[0], 1), (signals[1], 7), (signals[2], 51)]).wait(timeout=WAIT)
    assert values(signals) == [1, 7, 51]
    model[8:40] = np.tile(np.frombuffer(b"\x01\x02\x03\x04", np.uint8), 8)
    assert np.array_equal(read(device, buffer), model)


@pytest.mark.timeout(60)
def test_pure_barrier_submission_orders_and_signals(device: hal.Device) -> None:
    host = device.create_semaphore()
    mid = device.create_semaphore()
    done = device.create_semaphore()
    device.queue_execute(None, wait=[(host, 1)], signal=[(mid, 1)])
    device.queue_execute([], wait=[(mid, 1)], signal=[(done, 2)])
    time.sleep(0.02)
    assert values([mid, done]) == [0, 0]
    host.signal(1)
    done.wait(2, timeout=WAIT)
    assert mid.query() == 1


@pytest.mark.timeout(60)
def test_batches_submitted_in_reverse_dependency_order(device: hal.Device) -> None:
    """C waits on B, B on A, A on the host; submitted C, B, A. Every step's result depends on
    the one before it, so only A→B→C produces the expected bytes."""
    buffer, model = filled(device, 96, seed=3)
    x = random_bytes(16, seed=4)
    host, sa, sb, sc = (device.create_semaphore() for _ in range(4))

    device.queue_copy(buffer, 0, buffer, 32, 32, wait=[(sb, 1)], signal=[(sc, 1)])  # C
    with device.record() as cb:  # B
        cb.copy_buffer(buffer, 0, buffer, 16, 16)
        cb.execution_barrier()
        cb.fill_buffer(buffer, 0, 8, 0xBB, 1)
    device.queue_execute(cb, wait=[(sa, 1)], signal=[(sb, 1)])
    device.queue_update(x, 0, buffer, 0, 16, wait=[(host, 1)], signal=[(sa, 1)])  # A

    assert np.array_equal(settled(device, buffer), model)
    assert values([sa, sb, sc]) == [0, 0, 0]
    host.signal(1)
    sc.wait(1, timeout=WAIT)

    model[0:16] = x  # A
    model[16:32] = model[0:16]  # B
    model[0:8] = 0xBB
    model[32:64] = model[0:32]  # C
    assert np.array_equal(read(device, buffer), model)
    assert values([sa, sb, sc]) == [1, 1, 1]


@pytest.mark.timeout(60)
def test_batches_wait_on_different_values_of_one_semaphore(device: hal.Device) -> None:
    """Operations wait on values 3, 2, 1 of one semaphore (submitted in that order); the host
    signals 1, 2, 3 one at a time and each operation runs only once its value is reached."""
    buffer, model = filled(device, 3 * 64, seed=5)
    timeline = device.create_semaphore()
    done = [device.create_semaphore() for _ in range(3)]
    for value in (3, 2, 1):
        region = 64 * (value - 1)
        device.queue_fill(
            buffer,
            region + 1,
            33,
            0x10 * value,
            1,
            wait=[(timeline, value)],
            signal=[(done[value - 1], 1)],
        )
    assert np.array_equal(settled(device, buffer), model)
    for value in (1, 2, 3):
        timeline.signal(value)
        done[value - 1].wait(1, timeout=WAIT)
        region = 64 * (value - 1)
        model[region + 1 : region + 34] = 0x10 * value
        assert np.array_equal(settled(device, buffer), model), f"after signalling {value}"
        assert values(done) == [1 if i < value else 0 for i in range(3)]


@pytest.mark.timeout(60)
def test_signal_jumping_past_several_waits(device: hal.Device) -> None:
    """One signal to a large value releases every operation waiting on smaller values."""
    buffer = device.allocate_buffer(64)
    timeline = device.create_semaphore()
    done = device.create_semaphore()
    for i in range(16):
        device.queue_fill(buffer, 4 * i, 4, i + 1, wait=[(timeline, 16 - i)])
    device.queue_barrier(wait=[(timeline, 16)], signal=[(done, 1)])
    timeline.signal(1 << 40)
    done.wait(1, timeout=WAIT)
    device.wait_idle(WAIT)
    assert np.array_equal(read(device, buffer).view(np.uint32), np.arange(1, 17))


# -- failure propagation --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_failure_propagates_through_chain(device: hal.Device, order: str) -> None:
    """A waits on s0 and signals s1, B waits on s1 and signals s2. Failing s0 fails s1 and s2
    with the original failure, and neither A nor B touches its target."""
    buffer_a, model_a = filled(device, 64, seed=6)
    buffer_b, model_b = filled(device, 64, seed=7)
    s0, s1, s2 = (device.create_semaphore() for _ in range(3))

    def submit_a() -> None:
        device.queue_fill(buffer_a, 0, 64, 0xAA, 1, wait=[(s0, 1)], signal=[(s1, 1)])

    def submit_b() -> None:
        with device.record() as cb:
            cb.fill_buffer(buffer_b, 0, 64, 0xBB, 1)
        device.queue_execute(cb, wait=[(s1, 1)], signal=[(s2, 1)])

    for submit in (submit_a, submit_b) if order == "forward" else (submit_b, submit_a):
        submit()

    waiter = start(lambda: s2.wait(1, timeout=WAIT))
    time.sleep(0.05)
    cause = ZeroDivisionError("upstream failed")
    s0.fail(cause)
    with pytest.raises(hal.AbortedError) as info:
        waiter.finish()
    assert_aborted_by(info.value, cause)
    for sem in (s0, s1, s2):
        with pytest.raises(hal.AbortedError) as info:
            sem.wait(1, timeout=WAIT)
        assert_aborted_by(info.value, cause)
        with pytest.raises(hal.AbortedError):
            sem.query()
    with pytest.raises(hal.AbortedError) as info:
        device.wait_semaphores([(s2, 1), (s1, 1)], mode="any", timeout=WAIT)
    assert_aborted_by(info.value, cause)
    assert np.array_equal(settled(device, buffer_a), model_a)
    assert np.array_equal(read(device, buffer_b), model_b)


@pytest.mark.timeout(60)
def test_submit_waiting_on_already_failed_semaphore(device: hal.Device) -> None:
    buffer, model = filled(device, 32, seed=8)
    failed = device.create_semaphore()
    cause = RuntimeError("gone")
    failed.fail(cause)
    done = device.create_semaphore()
    device.queue_fill(buffer, 0, 32, 0, 1, wait=[(failed, 1)], signal=[(done, 1)])
    with pytest.raises(hal.AbortedError) as info:
        done.wait(1, timeout=WAIT)
    assert_aborted_by(info.value, cause)
    assert np.array_equal(settled(device, buffer), model)


@pytest.mark.timeout(60)
def test_failure_of_one_wait_among_several(device: hal.Device) -> None:
    """An operation with several waits fails when any one of them fails, even if the others
    were reached; its other signal points fail too."""
    buffer, model = filled(device, 32, seed=9)
    good, bad = device.create_semaphore(), device.create_semaphore()
    out1, out2 = device.create_semaphore(), device.create_semaphore(3)
    device.queue_fill(
        buffer, 0, 32, 0x77, 1, wait=[(good, 1), (bad, 1)], signal=[(out1, 1), (out2, 4)]
    )
    good.signal(1)
    cause = RuntimeError("bad")
    bad.fail(cause)
    for sem, value in ((out1, 1), (out2, 4)):
        with pytest.raises(hal.AbortedError) as info:
            sem.wait(value, timeout=WAIT)
        assert_aborted_by(info.value, cause)
    assert good.query() == 1
    assert np.array_equal(settled(device, buffer), model)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("failing", [0, 1, 2])
def test_failure_of_an_unreached_wait_fails_operation_promptly(
    device: hal.Device, failing: int
) -> None:
    """An operation waiting on three semaphores, none reached, fails as soon as any one of
    them fails: it must not stay held back until the others are signalled."""
    buffer, model = filled(device, 32, seed=10)
    waits = [device.create_semaphore() for _ in range(3)]
    out = device.create_semaphore()
    device.queue_fill(buffer, 0, 32, 0x66, 1, wait=[(sem, 1) for sem in waits], signal=[(out, 1)])
    cause = RuntimeError(f"wait {failing} failed")
    waits[failing].fail(cause)
    try:
        with pytest.raises(hal.AbortedError) as info:
            out.wait(1, timeout=2.0)
        assert_aborted_by(info.value, cause)
        assert np.array_equal(settled(device, buffer), model)
    finally:
        for sem in waits:  # release whatever is still held back, so nothing lingers
            if sem.failure is None:
                sem.signal(1)
    with pytest.raises(hal.AbortedError):
        out.wait(1, timeout=WAIT)
    assert np.array_equal(settled(device, buffer), model)


# -- fences ---------------------------------------------------------------------------------------


def test_fence_insert_keeps_max_and_join(device: hal.Device) -> None:
    a, b, c = (device.create_semaphore() for _ in range(3))
    fence = hal.Fence([(a, 3), (b, 1)])
    fence.insert(a, 2)
    fence.insert(b, 5)
    fence.insert(a, 3)
    assert dict(fence.points) == {a: 3, b: 5}
    assert len(fence) == 2
    other = hal.Fence([(b, 4), (c, 7)])
    joined = hal.Fence.join(fence, other, hal.Fence())
    assert dict(joined.points) == {a: 3, b: 5, c: 7}
    assert dict(fence.points) == {a: 3, b: 5}, "join must not modify its inputs"
    assert dict(other.points) == {b: 4, c: 7}
    assert dict(hal.Fence.join().points) == {}
    not_a_semaphore: Any = "not a semaphore"
    with pytest.raises(hal.InvalidArgumentError):
        fence.insert(not_a_semaphore, 1)


@pytest.mark.timeout(60)
def test_fence_signal_wait_and_is_reached(device: hal.Device) -> None:
    a, b = device.create_semaphore(), device.create_semaphore(2)
    fence = hal.Fence([(a, 4), (b, 3)])
    assert not fence.is_reached
    with pytest.raises(hal.DeadlineExceededError):
        fence.wait(timeout=0)
    waiter = start(lambda: fence.wait(timeout=WAIT))
    time.sleep(0.05)
    assert waiter.is_alive()
    fence.signal()
    waiter.finish()
    assert fence.is_reached
    assert values([a, b]) == [4, 3]
    assert hal.Fence().is_reached


@pytest.mark.timeout(60)
def test_fence_fail(device: hal.Device) -> None:
    a, b = device.create_semaphore(), device.create_semaphore()
    fence = hal.Fence([(a, 1), (b, 1)])
    cause = RuntimeError("fence failed")
    fence.fail(cause)
    for sem in (a, b):
        with pytest.raises(hal.AbortedError) as info:
            sem.query()
        assert_aborted_by(info.value, cause)
    with pytest.raises(hal.AbortedError) as info:
        fence.wait(timeout=WAIT)
    assert_aborted_by(info.value, cause)
    with pytest.raises(hal.AbortedError):
        _ = fence.is_reached


@pytest.mark.timeout(60)
def test_fences_as_wait_and_signal_lists(device: hal.Device) -> None:
    buffer = device.allocate_buffer(16)
    a, b, c = (device.create_semaphore() for _ in range(3))
    wait = hal.Fence([(a, 1), (b, 2)])
    signal = hal.Fence([(c, 9)])
    device.queue_fill(buffer, 0, 16, 0x01020304, wait=wait, signal=signal)
    hal.Fence([(a, 1)]).signal()
    assert not signal.is_reached
    b.signal(2)
    signal.wait(timeout=WAIT)
    assert signal.is_reached
    assert c.query() == 9
    assert read(device, buffer).view("<u4").tolist() == [0x01020304] * 4


# -- waits are bounded ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["semaphore", "all", "any", "fence"])
def test_wait_never_hangs_past_timeout_with_gpu_busy(device: hal.Device, how: str) -> None:
    """While the GPU works on a long chain (so host waits also poll the device), a wait
    on a point nobody signals still returns by its deadline."""
    buffer = device.allocate_buffer(1 << 20)
    chain = device.create_semaphore()
    for i in range(1, 41):
        device.queue_fill(buffer, 0, None, i, wait=[(chain, i - 1)], signal=[(chain, i)])
    never = device.create_semaphore()
    waits: dict[str, Callable[[], None]] = {
        "semaphore": lambda: never.wait(1, timeout=SHORT),
        "all": lambda: device.wait_semaphores([(chain, 40), (never, 1)], timeout=SHORT),
        "any": lambda: device.wait_semaphores([(never, 1), (chain, 1 << 62)], "any", SHORT),
        "fence": lambda: hal.Fence([(never, 1), (chain, 1)]).wait(timeout=SHORT),
    }
    start_time = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError):
        waits[how]()
    elapsed = time.monotonic() - start_time
    assert elapsed < SHORT + SLACK
    chain.wait(40, timeout=WAIT)
