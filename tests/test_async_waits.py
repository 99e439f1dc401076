"""Awaitable waits (``Semaphore.wait_async``, ``Fence.wait_async``,
``Device.wait_idle_async``) under ``asyncio.run``: a ticker task must keep ticking while they
wait (the loop is never blocked), timeouts raise DeadlineExceededError, failures AbortedError,
and a cancelled or finished wait leaves no watcher behind."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

import hal
from hal.core.builtins import shader_path

TICK = 0.005


async def _with_ticker(waiter: Awaitable[Any]) -> tuple[Any, int, float]:
    """(result of ``waiter``, ticks counted meanwhile, seconds it took). The ticker sleeps
    ``TICK`` between ticks: a blocked loop makes it stop."""
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            await asyncio.sleep(TICK)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    try:
        result = await waiter
    finally:
        elapsed = time.perf_counter() - start
        stop = True
        await task
    return result, ticks, elapsed


def _later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def _min_ticks(elapsed: float) -> int:
    # Generous: a shared 2-core machine may stall the loop now and then, never for long.
    return max(3, int(elapsed / TICK / 10))


def test_semaphore_wait_async_does_not_block_the_loop(device: hal.Device) -> None:
    sem = device.create_semaphore()
    thread = _later(0.3, lambda: sem.signal(5))
    _, ticks, elapsed = asyncio.run(_with_ticker(sem.wait_async(5)))
    thread.join()
    assert sem.query() == 5 and elapsed >= 0.25
    assert ticks >= _min_ticks(elapsed), (ticks, elapsed)
    assert sem._watchers == []


def test_wait_async_on_gpu_work(device: hal.Device) -> None:
    ops = device.create_executable(shader_path("elementwise.wgsl"))
    x = np.arange(4096, dtype=np.float32)
    src = device.buffer_view_from_numpy(x)
    dst = device.buffer_view_from_numpy(np.zeros_like(x))
    with device.record() as cb:
        cb.dispatch(ops, "scale", (64, 1, 1), constants=[4096, 2.0, 0.5], bindings=[src, dst])
    gate, done = device.create_semaphore(), device.create_semaphore()
    device.queue_execute(cb, wait=[(gate, 1)], signal=[(done, 1)])

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.1, gate.signal, 1)
        _, ticks, elapsed = await _with_ticker(hal.Fence([(done, 1)]).wait_async(timeout=30))
        assert ticks >= _min_ticks(elapsed)

    asyncio.run(main())
    np.testing.assert_array_equal(dst.to_numpy(), x * 2 + 0.5)


def test_timeouts_raise_deadline_exceeded_and_remove_the_watcher(device: hal.Device) -> None:
    sem = device.create_semaphore()

    async def main() -> None:
        with pytest.raises(hal.DeadlineExceededError) as caught:
            await _with_ticker(sem.wait_async(1, timeout=0.2))
        assert "not reached within 0.2 s" in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        with pytest.raises(hal.DeadlineExceededError):
            await sem.wait_async(1, timeout=0)  # 0 polls
        await sem.wait_async(0, timeout=0)  # already reached: returns at once

    asyncio.run(main())
    assert sem._watchers == []


def test_failure_raises_aborted_with_the_cause(device: hal.Device) -> None:
    a, b = device.create_semaphore(), device.create_semaphore()
    boom = ValueError("boom")
    thread = _later(0.1, lambda: b.fail(boom))
    with pytest.raises(hal.AbortedError) as caught:
        asyncio.run(_with_ticker(hal.Fence([(a, 1), (b, 1)]).wait_async(timeout=30)))
    thread.join()
    assert caught.value.__cause__ is boom and "boom" in str(caught.value)
    assert a._watchers == [] and b._watchers == []


def test_cancellation_removes_the_watcher(device: hal.Device) -> None:
    sem = device.create_semaphore()

    async def main() -> None:
        task = asyncio.create_task(sem.wait_async(1))
        await asyncio.sleep(0.05)
        assert len(sem._watchers) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sem._watchers == []
        # asyncio.wait_for's own timeout cancels the same way.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sem.wait_async(1), 0.05)
        assert sem._watchers == []

    asyncio.run(main())
    sem.signal(1)  # nothing left to call into the closed loop


def test_many_concurrent_waiters_one_signal(device: hal.Device) -> None:
    sem = device.create_semaphore()

    async def main() -> list[int]:
        order: list[int] = []

        async def waiter(i: int) -> None:
            await sem.wait_async(1 + i % 3, timeout=30)
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(30)]
        await asyncio.sleep(0.05)
        for value in (1, 2, 3):
            _later(0, lambda v=value: sem.signal(v)).join()  # type: ignore[misc]
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(main())
    assert sorted(order) == list(range(30))
    assert sem._watchers == []


def test_wait_idle_async(device: hal.Device) -> None:
    buf = device.allocate_buffer(1 << 20)
    device.queue_fill(buf, 0, 1 << 20, 0xAB, 1)
    _, ticks, _ = asyncio.run(_with_ticker(device.wait_idle_async(timeout=30)))
    assert ticks >= 0
    assert bytes(buf.to_numpy()[:8]) == b"\xab" * 8

    async def bounded() -> None:
        await device.wait_idle_async(timeout=0)  # nothing in flight: returns, no timeout

    asyncio.run(bounded())


def test_bad_arguments(device: hal.Device) -> None:
    sem = device.create_semaphore()

    async def main() -> None:
        with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait_async"):
            await sem.wait_async(-1)
        with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait_async"):
            await sem.wait_async(1, timeout=-1)
        with pytest.raises(hal.InvalidArgumentError, match=r"Fence\.wait_async"):
            await hal.Fence([(sem, 1)]).wait_async(timeout="soon")  # type: ignore[arg-type]
        with pytest.raises(hal.InvalidArgumentError, match="wait_idle_async"):
            await device.wait_idle_async(timeout=float("nan"))

    asyncio.run(main())


def test_wait_idle_async_after_close_is_unavailable() -> None:
    device = hal.create_device()
    device.close()
    with pytest.raises(hal.UnavailableError, match="wait_idle_async"):
        asyncio.run(device.wait_idle_async())
