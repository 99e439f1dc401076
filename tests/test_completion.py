"""A semaphore signalled by the GPU means the GPU finished: never earlier.

wgpu-native's non-blocking poll reported an empty queue with work in flight, which once made
hal signal early; these tests pin that completion is real.
"""

from __future__ import annotations

import time

import numpy as np
from conftest import WAIT

import hal
from hal.core.builtins import shader_path

DISPATCHES = 3000


def _heavy_command_buffer(device: hal.Device, counter: hal.Buffer) -> hal.CommandBuffer:
    noop = device.create_executable(shader_path("noop.wgsl"))
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    for _ in range(DISPATCHES):
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])
        cb.execution_barrier()
    cb.end()
    return cb


def test_signal_means_the_gpu_finished(device: hal.Device) -> None:
    """After the wait returns, a blocking device poll has nothing left to wait for, and the
    counter every dispatch incremented holds its final value."""
    counter = device.allocate_buffer(4)
    cb = _heavy_command_buffer(device, counter)
    semaphore = device.create_semaphore()
    start = time.perf_counter()
    device.queue_execute(cb, signal=[(semaphore, 1)])
    semaphore.wait(1, timeout=WAIT)
    gpu_time = time.perf_counter() - start
    start = time.perf_counter()
    device.backend.device._poll(True)
    leftover = time.perf_counter() - start
    assert leftover < max(0.005, gpu_time / 4), (leftover, gpu_time)
    assert counter.to_numpy(np.uint32)[0] == DISPATCHES


def test_queue_ops_chained_on_gpu_completion_run_in_order(device: hal.Device) -> None:
    """An operation waiting on a GPU-signalled value starts only after that work finished:
    a copy of the counter taken then sees every increment."""
    counter = device.allocate_buffer(4)
    snapshot = device.allocate_buffer(4)
    cb = _heavy_command_buffer(device, counter)
    first, second = device.create_semaphore(), device.create_semaphore()
    device.queue_copy(counter, 0, snapshot, 0, 4, wait=[(first, 1)], signal=[(second, 1)])
    device.queue_execute(cb, signal=[(first, 1)])
    second.wait(1, timeout=WAIT)
    assert snapshot.to_numpy(np.uint32)[0] == DISPATCHES
