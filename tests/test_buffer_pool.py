"""The allocator's free pool (hal/runtime/buffer_pool.py): a released buffer's backend buffer,
once no submitted work uses it, serves a later allocation of its size class; reused memory
reads as zeros (padding included), work in flight keeps its buffer out of the pool, the bound
and ``HAL_BUFFER_POOL_BYTES`` hold, and running out of memory empties the pool and retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.backends.null import NullBackend, NullBuffer
from hal.backends.protocol import BackendError
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device

_INFO = AdapterInfo("null", "null", "cpu", "hal", "null")


def _dirty(device: hal.Device, size: int, value: int = 0xA5) -> tuple[Any, int]:
    """A released buffer of ``size`` bytes whose bytes were all ``value``; (its backend
    handle, its backend size) once it is idle."""
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(np.full(size, value, np.uint8), buffer)
    device.wait_idle(WAIT)
    handle = buffer.allocation.handle
    buffer.release()
    return handle, size


def test_a_released_buffer_is_reused_and_reads_as_zeros(shared_or_null: hal.Device) -> None:
    device = shared_or_null
    handle, _ = _dirty(device, 4000)
    before = device.allocator.pool_statistics()
    assert before.held_buffers >= 1
    again = device.allocate_buffer(4000)
    assert again.allocation.handle is handle
    np.testing.assert_array_equal(again.to_numpy(), np.zeros(4000, np.uint8))
    after = device.allocator.pool_statistics()
    assert after.reused == before.reused + 1 and after.created == before.created
    again.release()


def test_one_size_class_serves_nearby_sizes(null: hal.Device) -> None:
    """1000 and 1020 bytes are one class (1024: an eighth of 1024 per step): the second
    allocation takes the first's backend buffer, and reads as zeros to its last padding
    byte."""
    handle, _ = _dirty(null, 1000)
    assert handle.size == 1024
    again = null.allocate_buffer(1020)
    assert again.allocation.handle is handle and again.allocation.size == 1024
    null.wait_idle(WAIT)
    assert bytes(handle.data) == bytes(1024)
    again.release()
    other = null.allocate_buffer(2000)  # another class: a new buffer
    assert other.allocation.handle is not handle
    other.release()


def test_buffer_from_numpy_on_reused_memory_is_exact_and_padding_zero(null: hal.Device) -> None:
    """A reused buffer is not cleared under the array's bytes (they are overwritten), but
    every byte past them is zero; the bytes are the array's."""
    handle, _ = _dirty(null, 1024, 0xFF)
    array = (np.arange(1012 // 4, dtype=np.uint64) * 2654435761 % 2**32).astype(np.uint32)
    buffer = null.buffer_from_numpy(array)
    assert buffer.allocation.handle is handle
    np.testing.assert_array_equal(buffer.to_numpy(np.uint32), array)
    assert bytes(handle.data[1012:]) == bytes(12)
    buffer.release()


@pytest.mark.parametrize("size", [4096, 1001, 3 << 20])
def test_buffer_from_numpy_reuses_exact_bytes(device: hal.Device, size: int) -> None:
    """On the real device, unaligned and streamed sizes included, after the same class was
    dirtied: the bytes equal numpy's, and the next allocation of the class reads zeros."""
    _dirty(device, size, 0xEE)
    rng = np.random.default_rng(size)
    array = rng.integers(0, 256, size, dtype=np.uint8)
    with device.buffer_from_numpy(array) as buffer:
        np.testing.assert_array_equal(buffer.to_numpy(), array)
    device.wait_idle(WAIT)
    with device.allocate_buffer(size) as zeroed:
        np.testing.assert_array_equal(zeroed.to_numpy(), np.zeros(size, np.uint8))


def test_a_buffer_in_use_is_not_reused_until_its_work_finished(shared_or_null: hal.Device) -> None:
    device = shared_or_null
    gate, done = device.create_semaphore(), device.create_semaphore()
    source = device.buffer_from_numpy(np.full(4096, 9, np.uint8))
    target = device.allocate_buffer(4096)
    with device.record() as cb:
        cb.copy_buffer(source, 0, target, 0, 4096)
    device.queue_execute(cb, wait=[(gate, 1)], signal=[(done, 1)])
    held = source.allocation.handle
    source.release()  # deferred: the held-back copy still needs it
    other = device.allocate_buffer(4096)
    assert other.allocation.handle is not held
    device.transfer_h2d(np.full(4096, 1, np.uint8), other)
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    np.testing.assert_array_equal(target.to_numpy(), np.full(4096, 9, np.uint8))
    device.wait_idle(WAIT)
    reused = device.allocate_buffer(4096)  # now idle: pooled and taken
    assert reused.allocation.handle is held
    np.testing.assert_array_equal(reused.to_numpy(), np.zeros(4096, np.uint8))
    for buffer in (target, other, reused):
        buffer.release()


def test_the_pool_is_bounded_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAL_BUFFER_POOL_BYTES", "8K")
    with hal.create_device(implementation="null", backend="null") as device:
        held = [device.allocate_buffer(4096) for _ in range(3)]
        device.wait_idle(WAIT)  # their clears done: nothing uses them
        first, second, third = (buffer.allocation.handle for buffer in held)
        for buffer in held:  # past 8 KiB at the third: the least recently pooled goes
            buffer.release()
        stats = device.allocator.pool_statistics()
        assert (stats.limit, stats.held_bytes, stats.held_buffers) == (8192, 8192, 2)
        assert first.destroyed and not second.destroyed and not third.destroyed
        big, _ = _dirty(device, 16384)  # larger than the bound: never pooled
        assert big.destroyed
        assert device.allocator.empty_pool() == 8192
        assert second.destroyed and third.destroyed
    monkeypatch.setenv("HAL_BUFFER_POOL_BYTES", "0")
    with hal.create_device(implementation="null", backend="null") as device:
        handle, _ = _dirty(device, 1000)
        assert handle.destroyed and handle.size == 1008  # no size classes while off
        again = device.allocate_buffer(1000)
        assert again.allocation.handle is not handle
        stats = device.allocator.pool_statistics()
        assert (stats.limit, stats.held_buffers, stats.reused) == (0, 0, 0)


def test_close_and_loss_empty_the_pool() -> None:
    device = hal.create_device(implementation="null", backend="null")
    handle, _ = _dirty(device, 4096)
    kept = device.allocate_buffer(64)
    device.wait_idle(WAIT)
    assert not handle.destroyed
    device.close()
    assert handle.destroyed
    kept.release()  # after close: destroyed, not pooled
    assert kept.allocation.handle.destroyed

    backend = NullBackend()
    lost = Device(backend, _INFO, "lost")
    try:
        pooled, _ = _dirty(lost, 4096)
        live = lost.allocate_buffer(8192)
        lost.wait_idle(WAIT)
        backend.lose("gone")
        live.release()  # found lost: destroyed, and the pool emptied with it
        assert live.allocation.handle.destroyed and pooled.destroyed
        with pytest.raises(hal.UnavailableError):
            lost.allocate_buffer(4096)
        assert lost.allocator.pool_statistics().held_buffers == 0
    finally:
        lost.close()


class _Capped(NullBackend):
    """The null backend with ``capacity`` bytes of memory: past it create_buffer fails as an
    out-of-memory backend error does."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.live = 0

    def create_buffer(self, size: int, *, uniform: bool = False, label: str = "hal") -> Any:
        if self.live + size > self.capacity:
            raise BackendError(f"out of memory: {self.live} + {size} > {self.capacity}")
        buffer = super().create_buffer(size, uniform=uniform, label=label)
        self.live += size
        return buffer

    def destroy_buffer(self, buffer: Any) -> None:
        if not buffer.destroyed and isinstance(buffer, NullBuffer) and buffer.label == "hal":
            self.live -= buffer.size
        super().destroy_buffer(buffer)


@pytest.fixture
def capped() -> Iterator[tuple[Device, _Capped]]:
    backend = _Capped(3 << 20)
    device = Device(backend, _INFO, "capped")
    yield device, backend
    device.close()


def test_out_of_memory_empties_the_pool_and_retries(capped: tuple[Device, _Capped]) -> None:
    device, backend = capped
    a, b = device.allocate_buffer(1 << 20), device.allocate_buffer(1 << 20)
    device.wait_idle(WAIT)
    a.release()
    b.release()
    assert device.allocator.pool_statistics().held_bytes == 2 << 20
    # 2 MiB is another class: only fits once the pooled 1 MiB buffers are destroyed.
    big = device.buffer_from_numpy(np.full(2 << 20, 3, np.uint8))
    stats = device.allocator.pool_statistics()
    assert stats.held_buffers == 0 and backend.live == 2 << 20
    np.testing.assert_array_equal(big.to_numpy(), np.full(2 << 20, 3, np.uint8))
    # Still too large after emptying: ResourceExhaustedError, nothing changed.
    created = stats.created
    with pytest.raises(hal.ResourceExhaustedError, match="out of memory"):
        device.allocate_buffer(2 << 20)
    assert device.allocator.pool_statistics().created == created
    big.release()
    again = device.allocate_buffer(2 << 20)  # the released one, pooled and reused
    np.testing.assert_array_equal(again.to_numpy(), np.zeros(2 << 20, np.uint8))
    again.release()


def test_a_failed_upload_releases_its_buffer(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """buffer_from_numpy whose copy fails (even by KeyboardInterrupt) hands nothing out and
    leaves no buffer allocated: its memory is back in the pool, and a later allocation of it
    reads zeros."""
    handle, _ = _dirty(null, 4096, 0x77)
    transfers = null._host

    def failing(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(transfers, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        null.buffer_from_numpy(np.ones(4096, np.uint8))
    monkeypatch.undo()
    null.wait_idle(WAIT)
    buffer = null.allocate_buffer(4096)
    assert buffer.allocation.handle is handle
    np.testing.assert_array_equal(buffer.to_numpy(), np.zeros(4096, np.uint8))
    buffer.release()


def test_a_late_forget_never_drops_the_next_owners_bind_groups(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """release() of a buffer in flight, its thread preempted before the bind groups are
    forgotten (a sleep stands in for the preemption), while the work finishes: the handle is
    pooled only after the forget, and dispatches on the next allocation keep their bind
    groups (a late forget of the shared handle freed them under the recipe's calls: wgpu-core
    aborted the process)."""
    from hal.runtime.encoder import BindGroupCache

    forget = BindGroupCache.forget
    releasing = threading.Event()

    def slow_forget(self: BindGroupCache, handle: Any) -> None:
        if threading.current_thread().name == "releaser":
            releasing.set()
            time.sleep(0.3)
        forget(self, handle)

    monkeypatch.setattr(BindGroupCache, "forget", slow_forget)
    noop = device.create_executable(hal.shader_path("noop.wgsl"))

    def touch(buffer: hal.Buffer) -> None:
        cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[buffer])
        cb.end()
        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=WAIT)

    a = device.allocate_buffer(256)
    gate = device.create_semaphore()
    device.queue_fill(a, 0, 256, 0, wait=[(gate, 1)])  # a stays in flight until the gate
    releaser = threading.Thread(target=a.release, name="releaser")
    releaser.start()
    assert releasing.wait(WAIT)
    gate.signal(1)
    device.wait_idle(WAIT)  # a's work is done while its release is still forgetting
    b = device.allocate_buffer(256)
    assert b.allocation.handle is not a.allocation.handle  # not pooled before the forget
    touch(b)
    releaser.join(WAIT)
    c = device.allocate_buffer(256)  # now a's handle is in the pool
    for buffer in (b, c, b, c):
        touch(buffer)
    np.testing.assert_array_equal(b.to_numpy(np.uint32)[:1], [3])
    np.testing.assert_array_equal(c.to_numpy(np.uint32)[:1], [2])
