"""Argument checks shared by recording, queue operations and host access.

Every check raises the HalError subclass of API.md's error table, with a message naming the
command, the argument, the value and the rule.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from hal.buffer import Buffer, BufferRef, SlotRef
from hal.enums import BufferUsage, MemoryAccess
from hal.errors import (
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)
from hal.segments import Ref

__all__ = [
    "check_buffer_usage",
    "check_int",
    "check_range",
    "make_ref",
    "normalise_pattern",
    "pack_constants",
]


def check_int(what: str, argument: str, value: Any) -> int:
    """``value`` as a non-negative int, or InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgumentError(f"{what}: {argument} {value!r} is not a non-negative integer")
    return int(value)


def check_range(what: str, argument: str, offset: int, length: int, size: int) -> None:
    """OutOfRangeError unless ``[offset, offset+length)`` lies within ``size`` bytes."""
    check_int(what, f"{argument} offset", offset)
    check_int(what, f"{argument} length", length)
    if offset + length > size:
        raise OutOfRangeError(
            f"{what}: {argument} range [{offset}, {offset + length}) is past the end of "
            f"its {size}-byte range"
        )


def check_buffer_usage(
    what: str,
    argument: str,
    buffer: Buffer,
    usage: BufferUsage,
    access: MemoryAccess = MemoryAccess.NONE,
) -> None:
    """PermissionDeniedError unless ``buffer`` allows every bit of ``usage`` and ``access``."""
    missing = usage & ~buffer.allowed_usage
    if missing:
        raise PermissionDeniedError(
            f"{what}: {argument} lacks usage {BufferUsage(missing)!r} "
            f"(allowed: {buffer.allowed_usage!r})"
        )
    missing_access = access & ~buffer.allowed_access
    if missing_access:
        raise PermissionDeniedError(
            f"{what}: {argument} lacks access {MemoryAccess(missing_access)!r} "
            f"(allowed: {buffer.allowed_access!r})"
        )


def normalise_pattern(what: str, pattern: Any, pattern_length: int | None) -> bytes:
    """The fill pattern as 1, 2 or 4 little-endian bytes.

    ``pattern`` is an int (``pattern_length`` 1, 2 or 4; default 4) or bytes of length 1, 2
    or 4 (``pattern_length``, if given, must match)."""
    if isinstance(pattern, (bytes, bytearray, memoryview)):
        data = bytes(pattern)
        if len(data) not in (1, 2, 4):
            raise InvalidArgumentError(
                f"{what}: pattern of {len(data)} bytes; pattern_length must be 1, 2 or 4"
            )
        if pattern_length is not None and pattern_length != len(data):
            raise InvalidArgumentError(
                f"{what}: pattern_length {pattern_length} does not match the {len(data)}-byte "
                "pattern"
            )
        return data
    if isinstance(pattern, bool) or not isinstance(pattern, (int, np.integer)):
        raise InvalidArgumentError(
            f"{what}: pattern {pattern!r} must be an int or bytes of length 1, 2 or 4"
        )
    size = 4 if pattern_length is None else pattern_length
    if size not in (1, 2, 4):
        raise InvalidArgumentError(f"{what}: pattern_length {size} must be 1, 2 or 4")
    value = int(pattern)
    if not -(1 << (8 * size - 1)) <= value < (1 << (8 * size)):
        raise InvalidArgumentError(
            f"{what}: pattern {value} does not fit in pattern_length {size} bytes"
        )
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def pack_constants(what: str, constants: Any) -> bytes:
    """Dispatch constants as bytes: a bytes-like object or array (4-byte multiple), or a
    sequence of ints (u32, or i32 when negative) and floats (f32)."""
    if isinstance(constants, np.ndarray):
        data = np.ascontiguousarray(constants).tobytes()
    elif isinstance(constants, (bytes, bytearray, memoryview)):
        data = bytes(constants)
    elif isinstance(constants, Sequence):
        parts = []
        for i, value in enumerate(constants):
            if isinstance(value, (bool, np.bool_)):
                parts.append(struct.pack("<I", int(value)))
            elif isinstance(value, (int, np.integer)):
                if not -(1 << 31) <= int(value) < (1 << 32):
                    raise InvalidArgumentError(
                        f"{what}: constants[{i}] = {value} does not fit in 32 bits"
                    )
                parts.append(struct.pack("<i" if value < 0 else "<I", int(value)))
            elif isinstance(value, (float, np.floating)):
                parts.append(struct.pack("<f", float(value)))
            else:
                raise InvalidArgumentError(
                    f"{what}: constants[{i}] = {value!r} is not a 32-bit int or float"
                )
        data = b"".join(parts)
    else:
        raise InvalidArgumentError(
            f"{what}: constants must be a sequence of numbers or bytes, not "
            f"{type(constants).__name__}"
        )
    if len(data) % 4:
        raise InvalidArgumentError(f"{what}: constants are {len(data)} bytes, not a multiple of 4")
    return data


def make_ref(
    what: str,
    argument: str,
    target: Any,
    offset: int,
    length: int | None,
    binding_capacity: int,
) -> Ref:
    """Resolve ``target`` (Buffer, BufferRef or SlotRef) plus a command's ``offset`` and
    ``length`` (None: to the end) into a :class:`Ref`.

    Direct references are range-checked now (OutOfRangeError); slot references are checked
    against ``binding_capacity`` now and against the binding table at submission."""
    offset = check_int(what, f"{argument} offset", offset)
    if length is not None:
        length = check_int(what, f"{argument} length", length)
    if isinstance(target, Buffer):
        target.check_alive(what, argument)
        base, size, root = target.byte_offset, target.byte_length, target.allocated_buffer
    elif isinstance(target, BufferRef):
        buffer = target.buffer
        if not isinstance(buffer, Buffer):
            raise InvalidArgumentError(f"{what}: {argument}.buffer is not a hal.Buffer")
        buffer.check_alive(what, argument)
        ref_offset = check_int(what, f"{argument}.offset", target.offset)
        ref_length = (
            buffer.byte_length - ref_offset
            if target.length is None
            else check_int(what, f"{argument}.length", target.length)
        )
        if ref_offset + ref_length > buffer.byte_length:
            raise OutOfRangeError(
                f"{what}: {argument} range [{ref_offset}, {ref_offset + ref_length}) is past "
                f"the end of a {buffer.byte_length}-byte buffer"
            )
        base, size, root = buffer.byte_offset + ref_offset, ref_length, buffer.allocated_buffer
    elif isinstance(target, SlotRef):
        slot = check_int(what, f"{argument}.slot", target.slot)
        if slot >= binding_capacity:
            raise OutOfRangeError(
                f"{what}: {argument} slot {slot} is not below the command buffer's "
                f"binding_capacity {binding_capacity}"
            )
        slot_offset = check_int(what, f"{argument}.offset", target.offset)
        if target.length is not None:
            slot_length = check_int(what, f"{argument}.length", target.length)
            if offset > slot_length:
                raise OutOfRangeError(
                    f"{what}: {argument} offset {offset} is past the end of its "
                    f"{slot_length}-byte slot range"
                )
            if length is None:
                length = slot_length - offset
            elif offset + length > slot_length:
                raise OutOfRangeError(
                    f"{what}: {argument} range [{offset}, {offset + length}) is past the end "
                    f"of its {slot_length}-byte slot range"
                )
        return Ref(None, slot, slot_offset + offset, length)
    else:
        raise InvalidArgumentError(
            f"{what}: {argument} must be a Buffer, BufferRef or SlotRef, not "
            f"{type(target).__name__}"
        )
    if offset > size:
        raise OutOfRangeError(
            f"{what}: {argument} offset {offset} is past the end of its {size}-byte range"
        )
    if length is None:
        length = size - offset
    if offset + length > size:
        raise OutOfRangeError(
            f"{what}: {argument} range [{offset}, {offset + length}) is past the end of its "
            f"{size}-byte range"
        )
    return Ref(root, None, base + offset, length)
