"""hal.reference: the numpy reference executor, checked on its own and against the GPU."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait
from reference_kernels import TEST_KERNELS, kernel_path

import hal
from hal.core.builtins import shader_source
from hal.core.reference import HostMemory, KernelRegistry, execute, load_words, store_words

U = hal.BufferUsage


def filled(device: hal.Device, size: int, seed: int) -> hal.Buffer:
    """A buffer of ``size`` random non-zero bytes."""
    buffer = device.allocate_buffer(size, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    device.transfer_h2d(random_bytes(size, seed), buffer)
    return buffer


def gpu_matches_reference(
    device: hal.Device, cb: hal.CommandBuffer, buffers: list[hal.Buffer], table=None
) -> HostMemory:
    """Run ``cb`` on the GPU and on the reference from the same start; assert equal bytes."""
    memory = HostMemory.snapshot(buffers)
    execute(cb, memory, table, TEST_KERNELS)
    submit_and_wait(device, cb, table)
    for buffer in buffers:
        got = np.frombuffer(device.transfer_d2h(buffer), np.uint8)
        np.testing.assert_array_equal(got, np.frombuffer(memory.read(buffer), np.uint8))
    return memory


def test_transfers_on_host_memory_are_exact(device: hal.Device) -> None:
    a = device.allocate_buffer(32)
    b = device.allocate_buffer(16)
    memory = HostMemory()
    memory.add(a, bytes(range(32)))
    memory.add(b)
    with device.record() as cb:
        cb.fill_buffer(a, 2, 6, 0xBBAA, 2)
        cb.update_buffer(b"xyz", 1, b, 3, 2)
        cb.copy_buffer(a.subspan(8), 1, b, 8, 5)
        cb.execution_barrier()
        cb.fill_buffer(b, 13, 3, b"\x07")
    execute(cb, memory)
    want_a = bytearray(range(32))
    want_a[2:8] = b"\xaa\xbb" * 3
    assert memory.read(a) == bytes(want_a)
    want_b = bytearray(16)
    want_b[3:5] = b"yz"
    want_b[8:13] = bytes(want_a[9:14])
    want_b[13:16] = b"\x07" * 3
    assert memory.read(b) == bytes(want_b)
    assert memory.read(a.subspan(4, 4)) == bytes(want_a[4:8])


def test_mixed_command_buffer_matches_the_gpu(device: hal.Device) -> None:
    xor = device.create_executable(kernel_path("xor_words.wgsl"))
    inplace = device.create_executable(kernel_path("xor_inplace.wgsl"))
    counter = device.create_executable(kernel_path("count_workgroups.wgsl"))
    a, b, c = filled(device, 203, 1), filled(device, 97, 2), filled(device, 64, 3)
    with device.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        cb.fill_buffer(a, 3, 17, 0x5A, 1)
        cb.update_buffer(np.arange(40, dtype=np.uint8), 5, b, 11, 29)
        cb.copy_buffer(a, 1, a, 150, 33)
        cb.execution_barrier()
        cb.dispatch(
            xor, "xor_copy", (1, 1, 1), constants=[0xDEADBEEF],
            bindings=[hal.BufferRef(a, 7, 41), hal.BufferRef(b, 2, 38)],
        )  # fmt: skip
        cb.dispatch(inplace, "xor_inplace", (1, 1, 1), constants=[0x01020304], bindings=[c])
        cb.execution_barrier()
        cb.dispatch(
            counter, "count", (3, 2, 1), bindings=[hal.BufferRef(c, 0, 4), a.subspan(100, 30)]
        )
    gpu_matches_reference(device, cb, [a, b, c])
    # Reusable: a second run from the new state matches again.
    gpu_matches_reference(device, cb, [a, b, c])


def test_slot_references_resolve_like_the_gpu(device: hal.Device) -> None:
    xor = device.create_executable(kernel_path("xor_words.wgsl"))
    a, b = filled(device, 120, 4), filled(device, 80, 5)
    with device.record(binding_capacity=3) as cb:
        cb.fill_buffer(hal.SlotRef(0, 5, 20), 4, 8, 0x11223344)
        cb.copy_buffer(hal.SlotRef(1), 3, hal.SlotRef(2, 2), 0, 9)
        cb.execution_barrier()
        cb.dispatch(
            xor, "xor_copy", (1, 1, 1), constants=[7],
            bindings=[hal.SlotRef(1, 0, 24), hal.SlotRef(0, 40, 16)],
        )  # fmt: skip
    table = [hal.BufferRef(a, 3), b, b.subspan(50, 30)]
    gpu_matches_reference(device, cb, [a, b], table)


def test_indirect_dispatch_reads_counts_from_reference_memory(device: hal.Device) -> None:
    params = device.create_executable(kernel_path("make_params.wgsl"))
    counter = device.create_executable(kernel_path("count_workgroups.wgsl"))
    sizes = device.buffer_from_numpy(np.array([1, 2, 2, 0], np.uint32))
    wg = device.allocate_buffer(16, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    out = device.allocate_buffer(4 + 64)
    with device.record() as cb:
        cb.dispatch(params, "make_params", (1, 1, 1), bindings=[sizes, wg])
        cb.execution_barrier()
        cb.dispatch_indirect(
            counter, "count", wg, bindings=[hal.BufferRef(out, 0, 4), hal.BufferRef(out, 4)]
        )
    memory = gpu_matches_reference(device, cb, [sizes, wg, out])
    assert np.frombuffer(memory.read(out), np.uint32)[0] == 2 * 4 * 2


def test_elementwise_scale_with_exact_values_matches_the_gpu(device: hal.Device) -> None:
    ops = device.create_executable(shader_source("elementwise.wgsl"))
    x = device.buffer_from_numpy(np.arange(100, dtype=np.float32))
    y = device.allocate_buffer(400)
    with device.record() as cb:
        cb.dispatch(ops, "scale", (2, 1, 1), constants=[90, 2.0, 0.5], bindings=[x, y])
        cb.execution_barrier()
        cb.dispatch(ops, "accumulate", (2, 1, 1), constants=[100, 0.0, 0.0], bindings=[x, y])
    memory = gpu_matches_reference(device, cb, [x, y])
    got = np.frombuffer(memory.read(y), np.float32)
    want = np.arange(100, dtype=np.float32)
    want[:90] += np.arange(90) * 2 + 0.5
    np.testing.assert_array_equal(got, want)


def test_word_helpers_pad_and_store_only_bound_bytes() -> None:
    view = np.arange(1, 8, dtype=np.uint8)
    words = load_words(view)
    assert words.tolist() == [0x04030201, 0x00070605]
    backing = np.zeros(10, np.uint8)
    store_words(backing[1:8], np.array([0xFFFFFFFF, 0xFFFFFFFF], np.uint32))
    assert backing.tolist() == [0] + [255] * 7 + [0, 0]


def test_reference_errors(device: hal.Device) -> None:
    a = device.allocate_buffer(16)
    memory = HostMemory()
    memory.add(a)
    cb = device.create_command_buffer()
    cb.begin()
    cb.fill_buffer(a, 0, 4, 1)
    with pytest.raises(hal.FailedPreconditionError):
        execute(cb, memory)
    cb.end()
    with pytest.raises(hal.InvalidArgumentError):
        execute(cb, HostMemory())  # ``a`` not added
    with pytest.raises(hal.InvalidArgumentError):
        memory.add(a, b"short")
    slot_cb = device.create_command_buffer(binding_capacity=2)
    slot_cb.begin()
    slot_cb.fill_buffer(hal.SlotRef(1), 0, 4, 1)
    slot_cb.end()
    with pytest.raises(hal.OutOfRangeError):
        execute(slot_cb, memory, [a])
    xor = device.create_executable(kernel_path("xor_inplace.wgsl"))
    with device.record() as dispatch_cb:
        dispatch_cb.dispatch(xor, "xor_inplace", (1, 1, 1), constants=[1], bindings=[a])
    with pytest.raises(hal.UnimplementedError):
        execute(dispatch_cb, memory, kernels=KernelRegistry())
    assert (xor, "xor_inplace") in TEST_KERNELS
    assert (xor, "nope") not in TEST_KERNELS
