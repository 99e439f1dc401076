"""Lifetimes and leaks: work in flight keeps what it uses alive, release() defers, and 10,000
submit/wait cycles leave wgpu object counts and process memory flat."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import wgpu
from conftest import WAIT
from reference_kernels import kernel_path

import hal

CYCLES = int(os.environ.get("HAL_LEAK_CYCLES", "10000"))
MEMORY_SLACK = 24 << 20  # bytes of RSS growth tolerated over all cycles (allocator noise)
COUNT_SLACK = 8  # wgpu objects per type that caches may still add after warm-up


def rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def native_counts() -> dict[str, int]:
    """Live wgpu-native objects per type (none to count on another implementation: Dawn has
    no such diagnostics, and the RSS bound still applies there)."""
    if not hasattr(wgpu.diagnostics, "wgpu_native_counts"):
        return {}
    counts = wgpu.diagnostics.wgpu_native_counts.get_dict()
    return {name: int(v["count"]) for name, v in counts.items() if name != "total"}


def gated_copy(device: hal.Device, size: int) -> tuple[hal.Semaphore, hal.Semaphore, hal.Buffer]:
    """A copy of a filled buffer into a new one, held back on a host semaphore; the caller
    keeps only the gate, the done semaphore and the target."""
    gate, done = device.create_semaphore(), device.create_semaphore()
    source = device.buffer_from_numpy(np.arange(size, dtype=np.uint8))
    target = device.allocate_buffer(size)
    xor = device.create_executable(kernel_path("xor_inplace.wgsl"))
    with device.record() as cb:
        cb.copy_buffer(source, 0, target, 0, size)
        cb.execution_barrier()
        cb.dispatch(xor, "xor_inplace", (1, 1, 1), constants=[0x01010101], bindings=[target])
    device.queue_execute(cb, wait=[(gate, 1)], signal=[(done, 1)])
    return gate, done, target


def test_dropped_buffers_stay_alive_until_held_back_work_ran(device: hal.Device) -> None:
    gate, done, target = gated_copy(device, 256)
    gc.collect()
    for _ in range(4):  # new allocations process the dropped ones
        device.allocate_buffer(16).release()
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    want = np.arange(256, dtype=np.uint8) ^ 1
    np.testing.assert_array_equal(target.to_numpy(), want)


def test_release_while_in_use_is_deferred_not_rejected(device: hal.Device) -> None:
    gate, done = device.create_semaphore(), device.create_semaphore()
    source = device.buffer_from_numpy(np.full(4096, 9, np.uint8))
    view = source.subspan(100, 200)
    target = device.allocate_buffer(4096)
    with device.record() as cb:
        cb.copy_buffer(view, 0, target, 0, 200)
    device.queue_execute(cb, wait=[(gate, 1)], signal=[(done, 1)])
    allocation = source._allocation
    view.release()
    source.release()  # deferred: the held-back copy still sees the bytes
    assert source.is_released and not allocation.destroyed
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    assert target.to_numpy()[:201].tolist() == [9] * 200 + [0]
    device.wait_idle(WAIT)
    assert allocation.destroyed  # freed once the work completed


def test_a_dropped_allocation_is_freed_once_unreferenced(device: hal.Device) -> None:
    buffer = device.allocate_buffer(1024)
    allocation = buffer._allocation
    ref = weakref.ref(buffer)
    del buffer
    gc.collect()
    assert ref() is None
    device.allocate_buffer(4).release()  # processes dropped allocations
    device.wait_idle(WAIT)
    assert allocation.released and allocation.destroyed


def test_submit_wait_cycles_do_not_leak() -> None:
    """CYCLES submit/wait cycles over three workloads: a reused command buffer, a new
    ONE_SHOT command buffer on new buffers (released or just dropped), queue operations."""
    with hal.create_device() as device:
        xor = device.create_executable(kernel_path("xor_words.wgsl"))
        a, b = device.allocate_buffer(4096), device.allocate_buffer(4096)
        with device.record(mode=hal.CommandBufferMode.DEFAULT) as reused:
            reused.fill_buffer(a, 1, 33, 0x5A, 1)
            reused.update_buffer(b"hello", 0, a, 100, 5)
            reused.execution_barrier()
            reused.dispatch(xor, "xor_copy", (1, 1, 1), constants=[7], bindings=[a, b])
            reused.copy_buffer(b, 3, a, 2001, 999)
        done = device.create_semaphore()
        value = 0

        def cycle(i: int) -> None:
            nonlocal value
            value += 1
            kind = i % 3
            if kind == 0:
                device.queue_execute(reused, signal=[(done, value)])
            elif kind == 1:
                fresh = device.allocate_buffer(64 + i % 7)
                with device.record() as cb:
                    cb.fill_buffer(fresh, 0, None, 3, 1)
                    cb.dispatch(
                        xor, "xor_copy", (1, 1, 1), constants=[i],
                        bindings=[hal.BufferRef(a, i % 64, 64), fresh],
                    )  # fmt: skip
                device.queue_execute(cb, signal=[(done, value)])
                if i % 2:
                    fresh.release()  # the other half is simply dropped
            else:
                device.queue_copy(a, i % 100, b, 7, 33, signal=[(done, value)])
            done.wait(value, timeout=WAIT)

        for i in range(min(1000, CYCLES)):  # warm-up: caches, pools, allocator arenas
            cycle(i)
        gc.collect()
        device.wait_idle(WAIT)
        # The allocator's free pool keeps released buffers for reuse (bounded by
        # HAL_BUFFER_POOL_BYTES, not a leak): emptied before each count, checked below.
        device.allocator.empty_pool()
        counts, memory = native_counts(), rss()
        for i in range(CYCLES):
            cycle(i)
        gc.collect()
        device.allocate_buffer(4).release()
        device.wait_idle(WAIT)
        pooled = device.allocator.pool_statistics()
        # Reuse keeps it to the buffers released at once (a collection frees dropped ones
        # in batches), not one per cycle.
        assert pooled.held_buffers <= 64 and pooled.reused >= CYCLES // 3, pooled
        device.allocator.empty_pool()
        grown = {
            name: (counts.get(name, 0), count)
            for name, count in native_counts().items()
            if count > counts.get(name, 0) + COUNT_SLACK
        }
        assert not grown, f"wgpu objects grew over {CYCLES} cycles: {grown}"
        growth = rss() - memory
        assert growth < MEMORY_SLACK, f"RSS grew {growth / 2**20:.1f} MiB over {CYCLES} cycles"
