"""The dispatch recording fast path (a repeat of a dispatch recorded before in the same
command buffer) records what the general path records and raises what it raises: a repeat
after a release, a permission change or with a grid of non-ints is checked afresh."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import submit_and_wait
from reference_kernels import kernel_path

import hal

ONE = (1, 1, 1)


def noop(device: hal.Device) -> hal.Executable:
    """The shipped one-binding kernel: ``counter[0] += 1`` per workgroup."""
    return device.create_executable(hal.shader_path("noop.wgsl"))


def recording(device: hal.Device) -> hal.CommandBuffer:
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    return cb


def counters(device: hal.Device, n: int) -> list[hal.Buffer]:
    return [device.allocate_buffer(16) for _ in range(n)]


@pytest.mark.parametrize("kind", ["buffer", "ref", "view"])
def test_repeated_dispatches_run_every_time(device: hal.Device, kind: str) -> None:
    """1000 repeats of a few dispatches (+ barriers) add exactly their count (an atomic
    counter: the two workgroups of the wider grid run concurrently on a GPU)."""
    kernel = device.create_executable(kernel_path("atomic_touch.wgsl"))
    buffers = counters(device, 3)
    targets = {
        "buffer": list(buffers),
        "ref": [hal.BufferRef(b, 0, 16) for b in buffers],
        "view": [hal.BufferView(b, (4,), "uint32") for b in buffers],
    }[kind]
    cb = recording(device)
    for buffer in buffers:
        cb.fill_buffer(buffer, 0, 16, 0)
    cb.execution_barrier()
    for i in range(300):
        cb.dispatch(kernel, "touch", ONE, bindings=[targets[i % 3]])
        cb.execution_barrier()
        cb.dispatch(kernel, "touch", (2, 1, 1), bindings=(targets[0],))
        cb.execution_barrier()
    assert len(cb.segments) == 4 + 1200
    cb.end()
    submit_and_wait(device, cb)
    got = [int(b.to_numpy(np.uint32)[0]) for b in buffers]
    assert got == [100 + 600, 100, 100]


def test_a_repeat_after_a_release_is_refused(device: hal.Device) -> None:
    kernel = noop(device)
    (buffer,) = counters(device, 1)
    cb = recording(device)
    cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    buffer.release()
    with pytest.raises(hal.FailedPreconditionError, match=r"dispatch: bindings\[0\].*released"):
        cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    assert len(cb.segments) == 2


def test_a_repeat_after_a_subspans_release_is_refused(device: hal.Device) -> None:
    kernel = noop(device)
    (root,) = counters(device, 1)
    span = root.subspan(0, 16)
    cb = recording(device)
    cb.dispatch(kernel, "touch", ONE, bindings=[span])
    span.release()
    with pytest.raises(hal.FailedPreconditionError, match=r"dispatch: bindings\[0\].*released"):
        cb.dispatch(kernel, "touch", ONE, bindings=[span])
    assert len(cb.segments) == 1


def test_a_repeat_after_a_permission_change_is_refused(device: hal.Device) -> None:
    kernel = noop(device)
    (buffer,) = counters(device, 1)
    cb = recording(device)
    cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    buffer.memory_type = hal.MemoryType.HOST_LOCAL  # no such buffer is allocated today
    with pytest.raises(hal.PermissionDeniedError, match=r"dispatch: bindings\[0\] lacks memory"):
        cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    assert len(cb.segments) == 1


@pytest.mark.parametrize("grid", [(1.0, 1, 1), (True, 1, 1), (1, 1, True)])
def test_a_repeat_with_a_grid_of_non_ints_is_refused(device: hal.Device, grid: tuple) -> None:
    """``(1.0, 1, 1) == (1, 1, 1)``: the cached entry's key matches, its types do not."""
    kernel = noop(device)
    (buffer,) = counters(device, 1)
    cb = recording(device)
    cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    fresh = recording(device)
    with pytest.raises(hal.InvalidArgumentError) as expected:
        fresh.dispatch(kernel, "touch", grid, bindings=[buffer])
    with pytest.raises(hal.InvalidArgumentError) as info:
        cb.dispatch(kernel, "touch", grid, bindings=[buffer])
    assert str(info.value) == str(expected.value)
    assert "workgroup_count" in str(info.value)
    assert len(cb.segments) == 1


def test_a_repeat_in_a_wrong_state_or_category_is_refused(device: hal.Device) -> None:
    kernel = noop(device)
    (buffer,) = counters(device, 1)
    cb = recording(device)
    cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    cb.end()
    with pytest.raises(hal.FailedPreconditionError, match="dispatch: the command buffer is not"):
        cb.dispatch(kernel, "touch", ONE, bindings=[buffer])
    transfer = device.create_command_buffer(
        hal.CommandBufferMode.ONE_SHOT, categories=hal.CommandCategory.TRANSFER
    )
    transfer.begin()
    with pytest.raises(hal.FailedPreconditionError, match="dispatch: requires category"):
        transfer.dispatch(kernel, "touch", ONE, bindings=[buffer])
    with pytest.raises(hal.FailedPreconditionError, match="execution_barrier: the command"):
        cb.execution_barrier()


def test_a_barrier_records_the_shared_full_barrier(device: hal.Device) -> None:
    cb = recording(device)
    cb.execution_barrier()
    cb.execution_barrier(hal.ExecutionStage.ALL, hal.ExecutionStage.ALL)
    first, second = cb.segments
    assert first is second
    with pytest.raises(hal.InvalidArgumentError, match="execution_barrier: flags"):
        cb.execution_barrier(flags=-1)
    assert len(cb.segments) == 2
