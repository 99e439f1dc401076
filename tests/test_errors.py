"""API.md's error table: every HalError subclass, raised where the contract says.

Recording-time checks are exercised command by command; each rejected command must leave the
command buffer exactly as it was, so that it can still be ended and submitted with correct
results. Queue-time, semaphore and device-lifetime errors use bounded waits only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT, random_bytes, submit_and_wait

import hal
from hal.core.builtins import shader_source

U = hal.BufferUsage

NO_CONSTANTS_WGSL = shader_source("noop.wgsl")  # entry point "touch": binding 0, no constants
ELEMENTWISE_WGSL = shader_source("elementwise.wgsl")  # "scale": 0 read-only, 1 rw, 12 B

# -- helpers --------------------------------------------------------------------------------


def recording(
    device: hal.Device,
    mode: hal.CommandBufferMode = hal.CommandBufferMode.ONE_SHOT,
    categories: hal.CommandCategory = hal.CommandCategory.ANY,
    binding_capacity: int = 0,
) -> hal.CommandBuffer:
    """A new command buffer, already begun."""
    cb = device.create_command_buffer(mode, categories, binding_capacity)
    cb.begin()
    return cb


def filled(device: hal.Device, size: int, seed: int = 0, usage: U = U.DEFAULT) -> hal.Buffer:
    """A buffer of ``size`` non-zero random bytes."""
    buffer = device.allocate_buffer(size, usage=usage)
    device.transfer_h2d(random_bytes(size, seed), buffer)
    return buffer


def contents(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    """The buffer's bytes (after all submitted work)."""
    return np.frombuffer(device.transfer_d2h(buffer), dtype=np.uint8)


def noop(device: hal.Device) -> hal.Executable:
    """``touch``: counter[0] += 1 through read_write binding 0."""
    return device.create_executable(NO_CONSTANTS_WGSL)


def elementwise(device: hal.Device) -> hal.Executable:
    """``scale``/``square``/``accumulate``: 12-byte constants, bindings 0 (ro) and 1 (rw)."""
    return device.create_executable(ELEMENTWISE_WGSL)


def indirect_params(device: hal.Device, counts: tuple[int, int, int] = (1, 1, 1)) -> hal.Buffer:
    """A 16-byte buffer usable as dispatch_indirect parameters, holding ``counts``."""
    buffer = device.allocate_buffer(16, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    device.transfer_h2d(np.array([*counts, 0], dtype=np.uint32), buffer)
    return buffer


# -- the class hierarchy --------------------------------------------------------------------

HIERARCHY = [
    (hal.InvalidArgumentError, ValueError),
    (hal.OutOfRangeError, IndexError),
    (hal.PermissionDeniedError, PermissionError),
    (hal.FailedPreconditionError, RuntimeError),
    (hal.ResourceExhaustedError, MemoryError),
    (hal.DeadlineExceededError, TimeoutError),
    (hal.AbortedError, RuntimeError),
    (hal.UnavailableError, RuntimeError),
    (hal.UnimplementedError, NotImplementedError),
]


@pytest.mark.parametrize(("cls", "builtin"), HIERARCHY, ids=lambda x: x.__name__)
def test_error_classes_derive_from_hal_error_and_their_builtin(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, hal.HalError)
    assert issubclass(cls, builtin)
    assert issubclass(hal.HalError, Exception)
    assert getattr(hal.errors, cls.__name__) is cls
    assert cls.__name__ in hal.__all__
    with pytest.raises(builtin):
        raise cls("x") if cls is not hal.AbortedError else cls("x", None)


# -- InvalidArgumentError -------------------------------------------------------------------


def test_fill_pattern_length_3_is_invalid(device: hal.Device) -> None:
    buffer = device.allocate_buffer(64)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="pattern_length") as info:
        cb.fill_buffer(buffer, 0, 12, 0x010203, pattern_length=3)
    assert isinstance(info.value, ValueError)
    with pytest.raises(hal.InvalidArgumentError, match="pattern"):
        cb.fill_buffer(buffer, 0, 12, 0x01, pattern_length=8)
    assert cb.segments == ()


def test_fill_pattern_bytes_of_length_3_are_invalid(device: hal.Device) -> None:
    buffer = device.allocate_buffer(64)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="pattern"):
        cb.fill_buffer(buffer, 0, 12, b"\x01\x02\x03")
    with pytest.raises(hal.InvalidArgumentError, match="pattern"):
        cb.fill_buffer(buffer, 0, 12, b"")
    assert cb.segments == ()


def test_fill_offset_not_a_multiple_of_pattern_length_names_argument_and_rule(
    device: hal.Device,
) -> None:
    buffer = device.allocate_buffer(64)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError) as info:
        cb.fill_buffer(buffer, 3, 4, 0x0102, pattern_length=2)
    message = str(info.value)
    assert "offset" in message and "pattern_length" in message
    assert "3" in message and "2" in message
    with pytest.raises(hal.InvalidArgumentError, match="pattern_length"):
        cb.fill_buffer(buffer, 2, 4, b"\x01\x02\x03\x04")
    with pytest.raises(hal.InvalidArgumentError) as info:
        cb.fill_buffer(buffer, 4, 6, 7, pattern_length=4)  # length 6 is not a multiple of 4
    assert "length" in str(info.value) and "pattern_length" in str(info.value)
    assert cb.segments == ()


def test_overlapping_copy_in_one_buffer_is_invalid(device: hal.Device) -> None:
    buffer = device.allocate_buffer(256)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(buffer, 0, buffer, 8, 16)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(buffer, 8, buffer, 0, 16)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(buffer, 5, buffer, 5, 1)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(hal.BufferRef(buffer, 0, 64), 0, hal.BufferRef(buffer, 32, 64), 0, 40)
    assert cb.segments == ()
    cb.copy_buffer(buffer, 0, buffer, 16, 16)  # adjacent ranges do not overlap
    assert len(cb.segments) == 1


def test_overlapping_copy_between_subspans_of_one_allocation_is_invalid(
    device: hal.Device,
) -> None:
    buffer = device.allocate_buffer(256)
    first, second = buffer.subspan(0, 64), buffer.subspan(32, 64)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(first, 32, second, 0, 16)  # both are allocation bytes [32, 48)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(second, 0, first, 36, 8)  # [32, 40) and [36, 44)
    nested = second.subspan(8, 8)  # allocation bytes [40, 48)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        cb.copy_buffer(first, 42, nested, 0, 4)  # [42, 46) and [40, 44)
    assert cb.segments == ()
    cb.copy_buffer(first, 0, second, 0, 32)  # allocation [0, 32) -> [32, 64): disjoint
    assert len(cb.segments) == 1


def test_constants_not_a_multiple_of_4_bytes_are_invalid(device: hal.Device) -> None:
    exe = elementwise(device)
    src, dst = device.allocate_buffer(256), device.allocate_buffer(256)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="constants") as info:
        cb.dispatch(exe, "scale", (1, 1, 1), constants=b"\x01" * 6, bindings=[src, dst])
    assert "4" in str(info.value)
    with pytest.raises(hal.InvalidArgumentError, match="constants"):
        cb.dispatch(exe, "scale", (1, 1, 1), constants=b"\x01", bindings=[src, dst])
    assert cb.segments == ()


def test_constants_larger_than_the_immediate_block_are_invalid(device: hal.Device) -> None:
    exe = elementwise(device)
    src, dst = device.allocate_buffer(256), device.allocate_buffer(256)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="constants"):
        cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 2.0, 3.0, 4], bindings=[src, dst])
    with pytest.raises(hal.InvalidArgumentError, match="constants"):
        cb.dispatch(noop(device), "touch", (1, 1, 1), constants=[1], bindings=[dst])
    assert cb.segments == ()
    cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 2.0, 3.0], bindings=[src, dst])
    assert len(cb.segments) == 1


def test_wrong_binding_count_for_the_entry_point_is_invalid(device: hal.Device) -> None:
    exe = elementwise(device)
    a, b, c = (device.allocate_buffer(256) for _ in range(3))
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="binding"):
        cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[a])
    with pytest.raises(hal.InvalidArgumentError, match="binding"):
        cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[a, b, c])
    with pytest.raises(hal.InvalidArgumentError, match="binding"):
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[])
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[a, 42])
    assert cb.segments == ()


def test_bad_wgsl_raises_invalid_argument_with_the_compiler_message(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError) as info:
        device.create_executable("@compute @workgroup_size(1) fn main() { let x: u32 = ; }")
    assert isinstance(info.value, ValueError)
    # naga: "expected expression, found ';'"; Tint (Dawn): "missing initializer ..."
    message = str(info.value)
    assert "expected" in message or "missing" in message, message
    source = (
        "@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n"
        "@compute @workgroup_size(1) fn main() { o[0] = undefined_thing_42; }\n"
    )
    with pytest.raises(hal.InvalidArgumentError, match="undefined_thing_42"):
        device.create_executable(source)


def test_unknown_entry_point_is_invalid(device: hal.Device) -> None:
    exe = noop(device)
    counter = device.allocate_buffer(4)
    cb = recording(device)
    with pytest.raises(hal.InvalidArgumentError, match="no_such_entry"):
        cb.dispatch(exe, "no_such_entry", (1, 1, 1), bindings=[counter])
    with pytest.raises(hal.InvalidArgumentError, match="no_such_entry"):
        cb.dispatch_indirect(exe, "no_such_entry", indirect_params(device), bindings=[counter])
    with pytest.raises(hal.InvalidArgumentError, match="no_such_entry"):
        exe.layout("no_such_entry")
    assert cb.segments == ()


def test_dispatch_indirect_offset_not_a_multiple_of_4_is_invalid(device: hal.Device) -> None:
    exe = noop(device)
    counter = device.allocate_buffer(4)
    params = device.allocate_buffer(64, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    cb = recording(device)
    for offset in (1, 2, 6):
        with pytest.raises(hal.InvalidArgumentError, match="offset"):
            cb.dispatch_indirect(
                exe, "touch", hal.BufferRef(params, offset, 12), bindings=[counter]
            )
    assert cb.segments == ()
    cb.dispatch_indirect(exe, "touch", hal.BufferRef(params, 8, 12), bindings=[counter])
    assert len(cb.segments) == 1


# -- OutOfRangeError ------------------------------------------------------------------------


def test_fill_past_the_end_is_out_of_range(device: hal.Device) -> None:
    buffer = device.allocate_buffer(64)
    sub = device.allocate_buffer(256).subspan(64, 32)
    cb = recording(device)
    with pytest.raises(hal.OutOfRangeError, match="past the end") as info:
        cb.fill_buffer(buffer, 60, 8, 0)
    assert isinstance(info.value, IndexError)
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(buffer, 68, 4, 0)  # offset itself past the end
    # A subspan: the allocation has room, the subspan does not.
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(sub, 16, 20, 0)
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(sub, 36, None, 0)
    # A BufferRef: the buffer has room, the reference does not.
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(hal.BufferRef(buffer, 0, 16), 8, 12, 0)
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(hal.BufferRef(buffer, 48, None), 12, 8, 0)
    with pytest.raises(hal.OutOfRangeError):  # the reference itself is past the buffer
        cb.fill_buffer(hal.BufferRef(buffer, 32, 64), 0, 4, 0)
    assert cb.segments == ()
    cb.fill_buffer(sub, 16, 16, 0)
    cb.fill_buffer(hal.BufferRef(buffer, 48, None), 12, 4, 0)
    assert len(cb.segments) == 2


def test_copy_past_the_end_is_out_of_range(device: hal.Device) -> None:
    a, b = device.allocate_buffer(64), device.allocate_buffer(64)
    sub = device.allocate_buffer(256).subspan(100, 20)
    cb = recording(device)
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(a, 48, b, 0, 32)  # source past the end
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(a, 0, b, 48, 32)  # target past the end
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(sub, 0, b, 0, 24)  # source past the subspan
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(a, 0, sub, 8, 16)  # target past the subspan
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(hal.BufferRef(a, 8, 8), 0, b, 0, 12)  # past the BufferRef
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(a, 0, hal.BufferRef(b, 60), 0, 8)
    assert cb.segments == ()


def test_update_past_the_end_of_target_or_host_source_is_out_of_range(
    device: hal.Device,
) -> None:
    buffer = device.allocate_buffer(64)
    sub = buffer.subspan(16, 16)
    cb = recording(device)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(b"\x01" * 8, 0, buffer, 60, 8)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(b"\x01" * 8, 0, sub, 12, 8)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(b"\x01" * 8, 0, hal.BufferRef(buffer, 0, 4), 0, 8)
    with pytest.raises(hal.OutOfRangeError, match="source"):
        cb.update_buffer(b"abcd", 1, buffer, 0, 4)  # host source has 3 bytes from 1
    with pytest.raises(hal.OutOfRangeError, match="source"):
        cb.update_buffer(np.zeros(2, dtype=np.uint32), 4, buffer, 0, 8)
    assert cb.segments == ()


def test_slot_at_or_above_binding_capacity_is_out_of_range(device: hal.Device) -> None:
    exe = noop(device)
    buffer = device.allocate_buffer(64)
    cb = recording(device, binding_capacity=2)
    with pytest.raises(hal.OutOfRangeError, match="slot"):
        cb.fill_buffer(hal.SlotRef(2), 0, 4, 0)
    with pytest.raises(hal.OutOfRangeError, match="slot"):
        cb.copy_buffer(buffer, 0, hal.SlotRef(5), 0, 4)
    with pytest.raises(hal.OutOfRangeError, match="slot"):
        cb.dispatch(exe, "touch", (1, 1, 1), bindings=[hal.SlotRef(2)])
    assert cb.segments == ()
    no_slots = recording(device)
    with pytest.raises(hal.OutOfRangeError):
        no_slots.fill_buffer(hal.SlotRef(0), 0, 4, 0)
    cb.fill_buffer(hal.SlotRef(1), 0, 4, 0)
    assert len(cb.segments) == 1


def test_binding_table_too_small_is_out_of_range_and_changes_nothing(
    device: hal.Device,
) -> None:
    a, b = filled(device, 64, seed=1), filled(device, 64, seed=2)
    before_a, before_b = contents(device, a), contents(device, b)
    cb = recording(device, binding_capacity=2)
    cb.fill_buffer(hal.SlotRef(0), 0, 8, 0x11223344)
    cb.fill_buffer(hal.SlotRef(1), 4, 4, b"\x7f")
    cb.end()
    with pytest.raises(hal.OutOfRangeError, match="binding table"):
        device.queue_execute(cb, binding_table=[a])
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=[])
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb)
    with pytest.raises(hal.OutOfRangeError):  # slot 0's range [0, 8) is past a 4-byte entry
        device.queue_execute(cb, binding_table=[hal.BufferRef(a, 0, 4), b])
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, a), before_a)
    np.testing.assert_array_equal(contents(device, b), before_b)
    # The rejected submissions did not consume the ONE_SHOT command buffer.
    submit_and_wait(device, cb, binding_table=[a, b])
    want_a, want_b = before_a.copy(), before_b.copy()
    want_a[:8] = np.frombuffer(b"\x44\x33\x22\x11" * 2, dtype=np.uint8)
    want_b[4:8] = 0x7F
    np.testing.assert_array_equal(contents(device, a), want_a)
    np.testing.assert_array_equal(contents(device, b), want_b)


def test_dispatch_indirect_params_shorter_than_12_bytes_are_out_of_range(
    device: hal.Device,
) -> None:
    exe = noop(device)
    counter = device.allocate_buffer(4)
    params = device.allocate_buffer(64, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    small = device.allocate_buffer(8, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    cb = recording(device)
    with pytest.raises(hal.OutOfRangeError) as info:
        cb.dispatch_indirect(exe, "touch", hal.BufferRef(params, 0, 8), bindings=[counter])
    assert "12" in str(info.value)
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch_indirect(exe, "touch", small, bindings=[counter])
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch_indirect(exe, "touch", hal.BufferRef(params, 56), bindings=[counter])
    assert cb.segments == ()


# -- PermissionDeniedError ------------------------------------------------------------------


def test_fill_without_transfer_target_usage_is_denied(device: hal.Device) -> None:
    buffer = device.allocate_buffer(64, usage=U.TRANSFER_SOURCE | U.DISPATCH_STORAGE)
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="TRANSFER_TARGET") as info:
        cb.fill_buffer(buffer, 0, 16, 0)
    assert isinstance(info.value, PermissionError)
    with pytest.raises(hal.PermissionDeniedError):
        cb.update_buffer(b"abcd", 0, buffer, 0, 4)
    with pytest.raises(hal.PermissionDeniedError):
        cb.copy_buffer(device.allocate_buffer(16), 0, buffer, 0, 16)
    with pytest.raises(hal.PermissionDeniedError):  # a subspan keeps the permissions
        cb.fill_buffer(buffer.subspan(16, 16), 0, 16, 0)
    assert cb.segments == ()


def test_copy_from_a_buffer_without_transfer_source_usage_is_denied(device: hal.Device) -> None:
    source = device.allocate_buffer(64, usage=U.TRANSFER_TARGET | U.DISPATCH_STORAGE)
    target = device.allocate_buffer(64)
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="TRANSFER_SOURCE"):
        cb.copy_buffer(source, 0, target, 0, 16)
    with pytest.raises(hal.PermissionDeniedError):
        cb.copy_buffer(hal.BufferRef(source, 8, 8), 0, target, 0, 8)
    assert cb.segments == ()


def test_dispatch_binding_without_dispatch_storage_usage_is_denied(device: hal.Device) -> None:
    exe = elementwise(device)
    plain = device.allocate_buffer(256)
    transfer_only = device.allocate_buffer(256, usage=U.TRANSFER)
    read_only = device.allocate_buffer(256, usage=U.TRANSFER | U.DISPATCH_STORAGE_READ)
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="DISPATCH_STORAGE"):
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[transfer_only])
    with pytest.raises(hal.PermissionDeniedError):
        cb.dispatch(
            exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[transfer_only, plain]
        )
    with pytest.raises(hal.PermissionDeniedError):  # read_write binding needs STORAGE_WRITE
        cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[plain, read_only])
    assert cb.segments == ()
    # A read-only binding needs only DISPATCH_STORAGE_READ.
    cb.dispatch(exe, "scale", (1, 1, 1), constants=[1, 1.0, 0.0], bindings=[read_only, plain])
    assert len(cb.segments) == 1


def test_dispatch_indirect_without_indirect_params_usage_is_denied(device: hal.Device) -> None:
    exe = noop(device)
    counter = device.allocate_buffer(4)
    params = device.allocate_buffer(16)  # DEFAULT usage: no DISPATCH_INDIRECT_PARAMS
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="DISPATCH_INDIRECT_PARAMS"):
        cb.dispatch_indirect(exe, "touch", params, bindings=[counter])
    assert cb.segments == ()


def test_map_read_without_mapping_usage_is_denied(device: hal.Device) -> None:
    buffer = device.allocate_buffer(16)
    with pytest.raises(hal.PermissionDeniedError, match="MAPPING"):
        buffer.map_read()
    with pytest.raises(hal.PermissionDeniedError):
        buffer.map_write(0, b"abcd")
    with pytest.raises(hal.PermissionDeniedError), buffer.map_range(hal.MemoryAccess.READ):
        pass
    mappable = device.allocate_buffer(16, usage=U.DEFAULT | U.MAPPING)
    assert mappable.map_read() == bytes(16)


def test_fill_on_a_read_only_access_buffer_is_denied(device: hal.Device) -> None:
    buffer = device.allocate_buffer(64, access=hal.MemoryAccess.READ)
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="WRITE"):
        cb.fill_buffer(buffer, 0, 16, 0)
    with pytest.raises(hal.PermissionDeniedError):
        cb.update_buffer(b"abcd", 0, buffer, 0, 4)
    with pytest.raises(hal.PermissionDeniedError):
        cb.copy_buffer(device.allocate_buffer(16), 0, buffer, 0, 16)
    assert cb.segments == ()
    cb.copy_buffer(buffer, 0, device.allocate_buffer(16), 0, 16)  # reading is allowed
    assert len(cb.segments) == 1


# -- FailedPreconditionError ----------------------------------------------------------------

Command = Callable[[hal.CommandBuffer, hal.Buffer], None]

COMMANDS: dict[str, Command] = {
    "fill": lambda cb, b: cb.fill_buffer(b, 0, 4, 0),
    "update": lambda cb, b: cb.update_buffer(b"abcd", 0, b, 0, 4),
    "copy": lambda cb, b: cb.copy_buffer(b, 0, b, 8, 4),
    "barrier": lambda cb, b: cb.execution_barrier(),
    "advise": lambda cb, b: cb.advise_buffer(b),
    "dispatch": lambda cb, b: cb.dispatch(
        cb.device.create_executable(NO_CONSTANTS_WGSL), "touch", (1, 1, 1), bindings=[b]
    ),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_before_begin_is_a_failed_precondition(device: hal.Device, command: str) -> None:
    buffer = device.allocate_buffer(64)
    cb = device.create_command_buffer()
    with pytest.raises(hal.FailedPreconditionError, match="recording") as info:
        COMMANDS[command](cb, buffer)
    assert isinstance(info.value, RuntimeError)
    assert cb.segments == ()


@pytest.mark.parametrize("command", COMMANDS)
def test_command_after_end_is_a_failed_precondition(device: hal.Device, command: str) -> None:
    buffer = device.allocate_buffer(64)
    cb = recording(device)
    cb.fill_buffer(buffer, 0, 4, 1)
    cb.end()
    with pytest.raises(hal.FailedPreconditionError, match="recording"):
        COMMANDS[command](cb, buffer)
    assert len(cb.segments) == 1


def test_begin_twice_is_a_failed_precondition(device: hal.Device) -> None:
    cb = recording(device)
    with pytest.raises(hal.FailedPreconditionError):
        cb.begin()
    cb.end()  # still recording, so it can end


def test_end_without_begin_is_a_failed_precondition(device: hal.Device) -> None:
    cb = device.create_command_buffer()
    with pytest.raises(hal.FailedPreconditionError):
        cb.end()
    cb.begin()
    cb.end()
    with pytest.raises(hal.FailedPreconditionError):
        cb.end()


@pytest.mark.parametrize(
    "mode", [hal.CommandBufferMode.ONE_SHOT, hal.CommandBufferMode.DEFAULT], ids=str
)
def test_re_recording_after_end_is_a_failed_precondition(
    device: hal.Device, mode: hal.CommandBufferMode
) -> None:
    buffer = device.allocate_buffer(64)
    cb = recording(device, mode=mode)
    cb.fill_buffer(buffer, 0, 4, 1)
    cb.end()
    with pytest.raises(hal.FailedPreconditionError, match="re-record"):
        cb.begin()
    submit_and_wait(device, cb)
    with pytest.raises(hal.FailedPreconditionError):
        cb.begin()
    assert len(cb.segments) == 1


def test_submitting_an_unended_command_buffer_is_a_failed_precondition(
    device: hal.Device,
) -> None:
    buffer = filled(device, 64)
    before = contents(device, buffer)
    never_begun = device.create_command_buffer()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(never_begun)
    cb = recording(device)
    cb.fill_buffer(buffer, 0, 64, 0)
    with pytest.raises(hal.FailedPreconditionError, match="ended"):
        device.queue_execute(cb)
    semaphore = device.create_semaphore()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, signal=[(semaphore, 1)])
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, buffer), before)
    assert semaphore.query() == 0
    cb.end()
    submit_and_wait(device, cb)
    assert not contents(device, buffer).any()


def test_resubmitting_a_one_shot_command_buffer_is_a_failed_precondition(
    device: hal.Device,
) -> None:
    counter = device.allocate_buffer(4)
    cb = recording(device, mode=hal.CommandBufferMode.ONE_SHOT)
    cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    cb.end()
    submit_and_wait(device, cb)
    with pytest.raises(hal.FailedPreconditionError, match="ONE_SHOT"):
        device.queue_execute(cb)
    device.wait_idle(WAIT)
    assert contents(device, counter).view(np.uint32)[0] == 1

    twice = recording(device, mode=hal.CommandBufferMode.ONE_SHOT)
    twice.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    twice.end()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute([twice, twice])
    device.wait_idle(WAIT)
    assert contents(device, counter).view(np.uint32)[0] == 1

    reusable = recording(device, mode=hal.CommandBufferMode.DEFAULT)
    reusable.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    reusable.end()
    submit_and_wait(device, reusable)
    submit_and_wait(device, reusable)  # a reusable command buffer may be submitted again
    assert contents(device, counter).view(np.uint32)[0] == 3


def test_dispatch_in_a_transfer_only_command_buffer_is_a_failed_precondition(
    device: hal.Device,
) -> None:
    counter = device.allocate_buffer(4)
    cb = recording(device, categories=hal.CommandCategory.TRANSFER)
    with pytest.raises(hal.FailedPreconditionError, match="categor"):
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    with pytest.raises(hal.FailedPreconditionError):
        cb.dispatch_indirect(noop(device), "touch", indirect_params(device), bindings=[counter])
    assert cb.segments == ()
    cb.execution_barrier()  # barriers need no category
    cb.fill_buffer(counter, 0, 4, 5)
    cb.end()
    submit_and_wait(device, cb)
    assert contents(device, counter).view(np.uint32)[0] == 5


def test_fill_in_a_dispatch_only_command_buffer_is_a_failed_precondition(
    device: hal.Device,
) -> None:
    counter = device.allocate_buffer(4)
    cb = recording(device, categories=hal.CommandCategory.DISPATCH)
    with pytest.raises(hal.FailedPreconditionError, match="categor"):
        cb.fill_buffer(counter, 0, 4, 7)
    with pytest.raises(hal.FailedPreconditionError):
        cb.update_buffer(b"abcd", 0, counter, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        cb.copy_buffer(device.allocate_buffer(4), 0, counter, 0, 4)
    assert cb.segments == ()
    cb.execution_barrier()
    cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    cb.end()
    submit_and_wait(device, cb)
    assert contents(device, counter).view(np.uint32)[0] == 1


def test_recording_with_a_released_buffer_is_a_failed_precondition(device: hal.Device) -> None:
    live = device.allocate_buffer(64)
    released = device.allocate_buffer(64)
    sub = released.subspan(16, 16)
    released.release()
    cb = recording(device)
    with pytest.raises(hal.FailedPreconditionError, match="released"):
        cb.fill_buffer(released, 0, 4, 0)
    with pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(sub, 0, 4, 0)  # a subspan of a released allocation
    with pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(hal.BufferRef(released, 0, 8), 0, 4, 0)
    with pytest.raises(hal.FailedPreconditionError):
        cb.copy_buffer(released, 0, live, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        cb.update_buffer(b"abcd", 0, released, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[released])
    released_sub = live.subspan(0, 16)
    released_sub.release()
    with pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(released_sub, 0, 4, 0)
    assert cb.segments == ()
    cb.fill_buffer(live, 0, 4, 0)  # the allocation of a released subspan stays usable
    assert len(cb.segments) == 1


@pytest.mark.parametrize("use", ["fill", "dispatch"])
def test_submitting_after_a_used_buffer_was_released_is_a_failed_precondition(
    device: hal.Device, use: str
) -> None:
    other = filled(device, 64, seed=3)
    before = contents(device, other)
    doomed = device.allocate_buffer(64)
    cb = recording(device, mode=hal.CommandBufferMode.DEFAULT)
    cb.fill_buffer(other, 0, 16, 0)
    if use == "fill":
        cb.fill_buffer(doomed, 0, 16, 1)
    else:
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[doomed])
    cb.end()
    doomed.release()
    with pytest.raises(hal.FailedPreconditionError, match="released"):
        device.queue_execute(cb)
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, other), before)


def test_submitting_after_a_used_subspan_was_released_is_a_failed_precondition(
    device: hal.Device,
) -> None:
    """API.md: after ``release()`` "submitting a command buffer that references it" raises;
    a subspan is a Buffer too."""
    root = filled(device, 64, seed=4)
    before = contents(device, root)
    sub = root.subspan(16, 16)
    cb = recording(device)
    cb.fill_buffer(sub, 0, 16, 5)
    cb.end()
    sub.release()
    try:
        with pytest.raises(hal.FailedPreconditionError):
            device.queue_execute(cb)
    finally:
        device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, root), before)


def test_a_rejected_submission_of_several_command_buffers_submits_none(
    device: hal.Device,
) -> None:
    buffer = filled(device, 64, seed=7)
    before = contents(device, buffer)
    good = recording(device)
    good.fill_buffer(buffer, 0, 16, 0)
    good.end()
    unended = recording(device)
    unended.fill_buffer(buffer, 16, 16, 0)
    doomed = device.allocate_buffer(16)
    stale = recording(device)
    stale.fill_buffer(doomed, 0, 16, 0)
    stale.end()
    doomed.release()
    semaphore = device.create_semaphore()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute([good, unended], signal=[(semaphore, 1)])
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute([good, stale], signal=[(semaphore, 1)])
    device.wait_idle(WAIT)
    assert semaphore.query() == 0
    np.testing.assert_array_equal(contents(device, buffer), before)
    submit_and_wait(device, good)  # the ONE_SHOT buffer was not consumed by the rejections
    assert not contents(device, buffer)[:16].any()
    np.testing.assert_array_equal(contents(device, buffer)[16:], before[16:])


def test_queue_transfers_raise_at_call_time_and_queue_nothing(device: hal.Device) -> None:
    buffer = filled(device, 64, seed=8)
    before = contents(device, buffer)
    no_target = device.allocate_buffer(64, usage=U.TRANSFER_SOURCE | U.DISPATCH_STORAGE)
    released = device.allocate_buffer(16)
    released.release()
    semaphore = device.create_semaphore()
    signal = [(semaphore, 1)]
    rejected: list[tuple[type[hal.HalError], Callable[[], object]]] = [
        (hal.InvalidArgumentError, lambda: device.queue_fill(buffer, 0, 12, 1, 3, signal=signal)),
        (hal.InvalidArgumentError, lambda: device.queue_fill(buffer, 2, 4, 1, 4, signal=signal)),
        (hal.OutOfRangeError, lambda: device.queue_fill(buffer, 60, 8, 0, signal=signal)),
        (hal.PermissionDeniedError, lambda: device.queue_fill(no_target, 0, 4, 0, signal=signal)),
        (hal.FailedPreconditionError, lambda: device.queue_fill(released, 0, 4, 0, signal=signal)),
        (
            hal.OutOfRangeError,
            lambda: device.queue_update(b"abc", 1, buffer, 0, 3, signal=signal),
        ),
        (
            hal.OutOfRangeError,
            lambda: device.queue_update(b"abcd", 0, buffer, 62, 4, signal=signal),
        ),
        (
            hal.InvalidArgumentError,
            lambda: device.queue_copy(buffer, 0, buffer, 8, 16, signal=signal),
        ),
        (
            hal.PermissionDeniedError,
            lambda: device.queue_copy(buffer, 0, no_target, 0, 16, signal=signal),
        ),
        (
            hal.ResourceExhaustedError,
            lambda: device.queue_alloca(device.limits["max-buffer-size"] + 1, signal=signal),
        ),
    ]
    for error, operation in rejected:
        with pytest.raises(error):
            operation()
    device.wait_idle(WAIT)
    assert semaphore.query() == 0
    np.testing.assert_array_equal(contents(device, buffer), before)


# -- DeadlineExceededError / AbortedError ---------------------------------------------------


def test_semaphore_wait_timeout_is_deadline_exceeded(device: hal.Device) -> None:
    semaphore = device.create_semaphore()
    start = time.monotonic()
    with pytest.raises(hal.DeadlineExceededError) as info:
        semaphore.wait(1, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(hal.DeadlineExceededError):
        semaphore.wait(1, timeout=0)
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores([(semaphore, 1)], timeout=0.05)
    with pytest.raises(hal.DeadlineExceededError):
        device.wait_semaphores([(semaphore, 1), (device.create_semaphore(), 2)], "any", 0.05)
    with pytest.raises(hal.DeadlineExceededError):
        hal.Fence([(semaphore, 1)]).wait(timeout=0.05)
    assert time.monotonic() - start < 5.0
    semaphore.signal(1)
    semaphore.wait(1, timeout=0)


@pytest.mark.parametrize("failure", ["message", "exception"])
def test_waiting_on_or_querying_a_failed_semaphore_is_aborted(
    device: hal.Device, failure: str
) -> None:
    semaphore = device.create_semaphore()
    original: BaseException = ValueError("kernel exploded")
    semaphore.fail(original if failure == "exception" else "kernel exploded")
    semaphore.fail(KeyError("later failures are ignored"))
    checks: list[Callable[[], object]] = [
        lambda: semaphore.wait(1, timeout=WAIT),
        lambda: semaphore.wait(0, timeout=0),
        semaphore.query,
        lambda: device.wait_semaphores([(semaphore, 1)], timeout=WAIT),
        lambda: hal.Fence([(semaphore, 1)]).wait(timeout=WAIT),
        lambda: hal.Fence([(semaphore, 1)]).is_reached,
    ]
    for check in checks:
        with pytest.raises(hal.AbortedError) as info:
            check()
        error = info.value
        assert isinstance(error, RuntimeError)
        assert error.status is error.__cause__
        if failure == "exception":
            assert error.status is original
        else:
            assert isinstance(error.status, BaseException)
            assert "kernel exploded" in str(error.status)


def test_queue_work_waiting_on_a_failed_semaphore_is_aborted(device: hal.Device) -> None:
    buffer = filled(device, 64, seed=5)
    before = contents(device, buffer)
    wait, signal = device.create_semaphore(), device.create_semaphore()
    cb = recording(device)
    cb.fill_buffer(buffer, 0, 64, 0)
    cb.end()
    device.queue_execute(cb, wait=[(wait, 1)], signal=[(signal, 1)])
    original = RuntimeError("upstream failure")
    wait.fail(original)
    with pytest.raises(hal.AbortedError) as info:
        signal.wait(1, timeout=WAIT)
    chain, error = [], info.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__
    assert original in chain
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, buffer), before)


# -- UnavailableError -----------------------------------------------------------------------


@pytest.fixture
def closed_device() -> Iterator[
    tuple[hal.Device, hal.Buffer, hal.CommandBuffer, hal.CommandBuffer]
]:
    """A private device, closed, with a buffer and an ended and an initial command buffer
    created before closing."""
    own = hal.create_device()
    try:
        buffer = own.allocate_buffer(16, usage=U.DEFAULT | U.MAPPING)
        ended = own.create_command_buffer()
        ended.begin()
        ended.fill_buffer(buffer, 0, 16, 1)
        ended.end()
        initial = own.create_command_buffer()
    finally:
        own.close()
    yield own, buffer, ended, initial
    own.close()


def test_operations_on_a_closed_device_are_unavailable(
    closed_device: tuple[hal.Device, hal.Buffer, hal.CommandBuffer, hal.CommandBuffer],
) -> None:
    own, buffer, ended, initial = closed_device
    operations: dict[str, Callable[[], object]] = {
        "allocate_buffer": lambda: own.allocate_buffer(16),
        "allocator.allocate_buffer": lambda: own.allocator.allocate_buffer(16),
        "buffer_from_numpy": lambda: own.buffer_from_numpy(np.zeros(4, np.float32)),
        "create_command_buffer": lambda: own.create_command_buffer(),
        "record": lambda: own.record().__enter__(),
        "create_executable": lambda: own.create_executable(NO_CONSTANTS_WGSL),
        "create_semaphore": lambda: own.create_semaphore(),
        "create_event": lambda: own.create_event(),
        "queue_execute": lambda: own.queue_execute(ended),
        "queue_execute(None)": lambda: own.queue_execute(None),
        "queue_barrier": lambda: own.queue_barrier(),
        "wait_idle": lambda: own.wait_idle(1.0),
        "transfer_h2d": lambda: own.transfer_h2d(b"abcd", buffer),
        "transfer_d2h": lambda: own.transfer_d2h(buffer),
        "map_read": lambda: buffer.map_read(),
        "map_write": lambda: buffer.map_write(0, b"abcd"),
        "begin": lambda: initial.begin(),
        "queue_fill": lambda: own.queue_fill(buffer, 0, 4, 0),
        "queue_update": lambda: own.queue_update(b"abcd", 0, buffer, 0, 4),
        "queue_copy": lambda: own.queue_copy(buffer, 0, buffer, 8, 4),
        "queue_alloca": lambda: own.queue_alloca(16),
        "queue_dealloca": lambda: own.queue_dealloca(buffer),
    }
    for name, operation in operations.items():
        with pytest.raises(hal.UnavailableError) as info:
            operation()
        assert isinstance(info.value, RuntimeError), name
    own.close()  # idempotent


# -- ResourceExhaustedError -----------------------------------------------------------------


def test_allocation_beyond_max_buffer_size_is_resource_exhausted(device: hal.Device) -> None:
    limit = device.limits["max-buffer-size"]
    with pytest.raises(hal.ResourceExhaustedError) as info:
        device.allocator.allocate_buffer(limit + 1)
    assert isinstance(info.value, MemoryError)
    with pytest.raises(hal.ResourceExhaustedError):
        device.allocate_buffer(limit + 1)
    assert not device.allocator.query_buffer_compatibility(
        limit + 1, memory_type=hal.MemoryType.DEVICE_LOCAL, usage=U.DEFAULT
    )


# -- a rejected command changes nothing -----------------------------------------------------


@dataclass
class Ctx:
    """What the rejecting commands act on."""

    device: hal.Device
    target: hal.Buffer
    no_transfer: hal.Buffer
    transfer_only: hal.Buffer
    released: hal.Buffer
    counter: hal.Buffer


Reject = Callable[[hal.CommandBuffer, Ctx], None]

REJECTED: list[tuple[str, type[hal.HalError], Reject]] = [
    (
        "pattern_length_3",
        hal.InvalidArgumentError,
        lambda cb, c: cb.fill_buffer(c.target, 0, 12, 1, 3),
    ),
    (
        "pattern_bytes_3",
        hal.InvalidArgumentError,
        lambda cb, c: cb.fill_buffer(c.target, 0, 12, b"abc"),
    ),
    (
        "misaligned_fill",
        hal.InvalidArgumentError,
        lambda cb, c: cb.fill_buffer(c.target, 2, 4, 1, 4),
    ),
    (
        "overlapping_copy",
        hal.InvalidArgumentError,
        lambda cb, c: cb.copy_buffer(c.target, 0, c.target, 8, 16),
    ),
    ("fill_past_end", hal.OutOfRangeError, lambda cb, c: cb.fill_buffer(c.target, 252, 8, 0)),
    (
        "copy_past_end",
        hal.OutOfRangeError,
        lambda cb, c: cb.copy_buffer(c.target, 200, c.counter, 0, 8),
    ),
    (
        "update_source_past_end",
        hal.OutOfRangeError,
        lambda cb, c: cb.update_buffer(b"abc", 1, c.target, 0, 3),
    ),
    (
        "update_target_past_end",
        hal.OutOfRangeError,
        lambda cb, c: cb.update_buffer(b"abcd", 0, c.target, 254, 4),
    ),
    (
        "slot_beyond_capacity",
        hal.OutOfRangeError,
        lambda cb, c: cb.fill_buffer(hal.SlotRef(0), 0, 4, 0),
    ),
    (
        "fill_no_transfer_target",
        hal.PermissionDeniedError,
        lambda cb, c: cb.fill_buffer(c.no_transfer, 0, 4, 0),
    ),
    (
        "copy_no_transfer_source",
        hal.PermissionDeniedError,
        lambda cb, c: cb.copy_buffer(c.no_transfer, 0, c.target, 0, 4),
    ),
    (
        "indirect_no_params_usage",
        hal.PermissionDeniedError,
        lambda cb, c: cb.dispatch_indirect(noop(c.device), "touch", c.target, bindings=[c.counter]),
    ),
    (
        "binding_no_storage",
        hal.PermissionDeniedError,
        lambda cb, c: cb.dispatch(noop(c.device), "touch", (1, 1, 1), bindings=[c.transfer_only]),
    ),
    (
        "released_buffer",
        hal.FailedPreconditionError,
        lambda cb, c: cb.fill_buffer(c.released, 0, 4, 0),
    ),
    (
        "wrong_binding_count",
        hal.InvalidArgumentError,
        lambda cb, c: cb.dispatch(
            noop(c.device), "touch", (1, 1, 1), bindings=[c.counter, c.counter]
        ),
    ),
    (
        "constants_too_large",
        hal.InvalidArgumentError,
        lambda cb, c: cb.dispatch(
            noop(c.device), "touch", (1, 1, 1), constants=[1], bindings=[c.counter]
        ),
    ),
    (
        "unknown_entry_point",
        hal.InvalidArgumentError,
        lambda cb, c: cb.dispatch(noop(c.device), "nope", (1, 1, 1), bindings=[c.counter]),
    ),
]


@pytest.mark.parametrize(
    ("error", "reject"), [(e, r) for _, e, r in REJECTED], ids=[n for n, _, _ in REJECTED]
)
def test_a_rejected_command_changes_nothing(
    device: hal.Device, error: type[hal.HalError], reject: Reject
) -> None:
    target = filled(device, 256, seed=6)
    counter = device.allocate_buffer(4)
    released = device.allocate_buffer(16)
    released.release()
    ctx = Ctx(
        device,
        target,
        device.allocate_buffer(64, usage=U.DISPATCH_STORAGE),
        device.allocate_buffer(64, usage=U.TRANSFER),
        released,
        counter,
    )
    want = contents(device, target).copy()

    cb = recording(device)
    cb.fill_buffer(target, 0, 16, 0xAABBCCDD)
    cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    segments = cb.segments
    with pytest.raises(error):
        reject(cb, ctx)
    assert cb.segments == segments
    assert cb.state is hal.CommandBufferState.RECORDING
    cb.update_buffer(b"xyz", 0, target, 17, 3)
    cb.execution_barrier()
    cb.copy_buffer(target, 0, target, 65, 20)
    cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[counter])
    cb.end()
    assert len(cb.segments) == len(segments) + 4
    submit_and_wait(device, cb)

    want[0:16] = np.frombuffer(b"\xdd\xcc\xbb\xaa" * 4, dtype=np.uint8)
    want[17:20] = np.frombuffer(b"xyz", dtype=np.uint8)
    want[65:85] = want[0:20]
    np.testing.assert_array_equal(contents(device, target), want)
    assert contents(device, counter).view(np.uint32)[0] == 2


# -- rules added with issue 5 ("Reliability") -----------------------------------------------

UNIFORM_SCALE = str(Path(__file__).parent / "kernels" / "uniform_scale.wgsl")


def test_a_buffer_of_another_device_is_invalid(
    device: hal.Device, device_no_immediates: hal.Device
) -> None:
    mine, theirs = device.allocate_buffer(64), device_no_immediates.allocate_buffer(64)
    cb = recording(device, binding_capacity=1)
    with pytest.raises(hal.InvalidArgumentError, match=r"copy_buffer: source .* another device"):
        cb.copy_buffer(theirs, 0, mine, 0, 8)
    with pytest.raises(hal.InvalidArgumentError, match=r"bindings\[0\] .* another device"):
        cb.dispatch(noop(device), "touch", (1, 1, 1), bindings=[hal.BufferRef(theirs)])
    cb.fill_buffer(hal.SlotRef(0), 0, 4, 0)
    cb.end()
    with pytest.raises(hal.InvalidArgumentError, match=r"binding_table\[0\] .* another device"):
        device.queue_execute(cb, binding_table=[theirs])


def test_a_binding_shorter_than_the_kernels_declared_type_is_out_of_range(
    device: hal.Device,
) -> None:
    """wgpu would only reject it when the whole command buffer is encoded."""
    kernel = device.create_executable(UNIFORM_SCALE)
    usage = U.DEFAULT | U.DISPATCH_UNIFORM_READ
    coefficients, data = device.allocate_buffer(16, usage=usage), device.allocate_buffer(64)
    cb = recording(device, binding_capacity=1)
    with pytest.raises(hal.OutOfRangeError) as info:
        cb.dispatch(
            kernel, "affine", (1, 1, 1), bindings=[hal.BufferRef(coefficients, 0, 8), data, data]
        )
    assert str(info.value) == (
        "dispatch: bindings[0] is 8 bytes, but 'affine' declares 'coefficients' as a type of "
        "at least 16 bytes"
    )
    cb.dispatch(kernel, "affine", (1, 1, 1), bindings=[hal.SlotRef(0), data, data])
    cb.end()
    with pytest.raises(hal.OutOfRangeError, match="at least 16 bytes"):
        device.queue_execute(cb, binding_table=[hal.BufferRef(coefficients, 4)])
    submit_and_wait(device, cb, [coefficients])


def test_a_buffer_without_device_visible_memory_is_denied(device: hal.Device) -> None:
    buffer = device.allocate_buffer(16)
    buffer.memory_type = hal.MemoryType.HOST_LOCAL  # no such buffer is allocated today
    cb = recording(device)
    with pytest.raises(hal.PermissionDeniedError, match="fill_buffer: target lacks memory type"):
        cb.fill_buffer(buffer, 0, 4, 0)


def test_wgpu_errors_that_escape_validation_name_the_command(device: hal.Device) -> None:
    """A kernel type the validator cannot size (an array count from a builtin it does not
    evaluate) lets a too-short binding reach wgpu; the error is a HalError naming the
    command, and nothing ran."""
    kernel = device.create_executable(
        "const N = u32(sqrt(16.0));\n"
        "@group(0) @binding(0) var<uniform> block: array<vec4<f32>, N>;\n"
        "@group(0) @binding(1) var<storage, read_write> out: array<u32>;\n"
        "@compute @workgroup_size(1) fn f() { out[0] = bitcast<u32>(block[0][0]); }\n"
    )
    usage = U.DEFAULT | U.DISPATCH_UNIFORM_READ
    block, out = device.allocate_buffer(16, usage=usage), filled(device, 16, seed=9)
    before = contents(device, out).copy()
    cb = recording(device)
    cb.fill_buffer(out, 0, 16, 0)
    cb.dispatch(kernel, "f", (1, 1, 1), bindings=[block, out])
    cb.end()
    with pytest.raises(hal.InvalidArgumentError) as info:
        device.queue_execute(cb)
    message = str(info.value)
    assert message.startswith("queue_execute: wgpu rejected command 1 (dispatch "), message
    assert "64" in message, message
    device.wait_idle(WAIT)
    np.testing.assert_array_equal(contents(device, out), before)


def test_staging_beyond_max_buffer_size_is_resource_exhausted() -> None:
    """Checked against a private device whose limit is lowered to 1000 bytes."""
    with hal.create_device() as own:
        own.caps = dataclasses.replace(own.caps, max_buffer_size=1000)
        buffer = own.allocate_buffer(900)
        cb = recording(own)
        cb.update_buffer(bytes(600), 0, buffer, 0, 600)
        with pytest.raises(hal.ResourceExhaustedError, match="update_buffer: length 600"):
            cb.update_buffer(bytes(600), 0, buffer, 300, 600)
        cb.end()
        shadows = recording(own)
        kernel = own.create_executable(NO_CONSTANTS_WGSL)
        for offset in range(1, 13, 4):  # unaligned bindings are shadowed in scratch
            shadows.dispatch(
                kernel, "touch", (1, 1, 1), bindings=[hal.BufferRef(buffer, offset, 400)]
            )
        with pytest.raises(hal.ResourceExhaustedError, match=r"end: .* scratch"):
            shadows.end()


def test_commands_on_a_closed_device_are_unavailable() -> None:
    own = hal.create_device()
    buffer = own.allocate_buffer(16)
    cb = recording(own)
    cb.fill_buffer(buffer, 0, 16, 1)
    own.close()
    for command in (
        lambda: cb.fill_buffer(buffer, 0, 4, 0),
        lambda: cb.update_buffer(b"ab", 0, buffer, 0, 2),
        lambda: cb.copy_buffer(buffer, 0, buffer, 8, 4),
        lambda: cb.execution_barrier(),
        lambda: cb.end(),
    ):
        with pytest.raises(hal.UnavailableError, match="the device is closed"):
            command()
    buffer.release()  # cleanup still works


def test_unvalidated_mode_skips_rules_but_keeps_what_wgpu_needs(device: hal.Device) -> None:
    mode = hal.CommandBufferMode.ONE_SHOT | hal.CommandBufferMode.UNVALIDATED
    storage_only = device.allocate_buffer(16, usage=U.DISPATCH_STORAGE)
    cb = recording(device, mode, hal.CommandCategory.DISPATCH)
    cb.fill_buffer(storage_only, 1, 5, 0xBBAA, 2)  # category, usage and alignment unchecked
    kernel = device.create_executable(UNIFORM_SCALE)
    with pytest.raises(hal.PermissionDeniedError, match="DISPATCH_UNIFORM_READ"):
        cb.dispatch(kernel, "affine", (1, 1, 1), bindings=[storage_only] * 3)
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(storage_only, 12, 8, 0, 1)
    cb.end()
    submit_and_wait(device, cb)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb)
