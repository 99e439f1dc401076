"""Argument checks shared by recording, queue operations and host access.

Every check raises the HalError subclass of API.md's error table, with a message naming the
command, the argument, the value and the rule.
"""

from __future__ import annotations

import re
import struct
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.core.segments import Ref
from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import (
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)
from hal.runtime.buffer import Buffer, BufferRef, SlotRef

if TYPE_CHECKING:
    from hal.runtime.executable import Executable

__all__ = [
    "check_buffer_usage",
    "check_device",
    "check_int",
    "check_range",
    "make_ref",
    "min_binding_sizes",
    "normalise_pattern",
    "one_line",
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


def check_device(what: str, argument: str, buffer: Buffer, device: Any) -> None:
    """InvalidArgumentError unless ``buffer`` was allocated on ``device``: wgpu rejects (at
    submission, fatally) any command that mixes objects of two devices."""
    if buffer.device is not device:
        raise InvalidArgumentError(f"{what}: {argument} {buffer!r} belongs to another device")


def check_buffer_usage(
    what: str,
    argument: str,
    buffer: Buffer,
    usage: BufferUsage,
    access: MemoryAccess = MemoryAccess.NONE,
    memory_type: MemoryType = MemoryType.NONE,
) -> None:
    """PermissionDeniedError unless ``buffer`` allows every bit of ``usage`` and ``access``
    and has every bit of ``memory_type``."""
    # Plain ints: IntFlag arithmetic builds enum members and costs ~1 µs per operation, on
    # the recording hot path.
    missing = int(usage) & ~int(buffer.allowed_usage)
    if missing:
        raise PermissionDeniedError(
            f"{what}: {argument} lacks usage {BufferUsage(missing)!r} "
            f"(allowed: {buffer.allowed_usage!r})"
        )
    missing_access = int(access) & ~int(buffer.allowed_access)
    if missing_access:
        raise PermissionDeniedError(
            f"{what}: {argument} lacks access {MemoryAccess(missing_access)!r} "
            f"(allowed: {buffer.allowed_access!r})"
        )
    missing_type = int(memory_type) & ~int(buffer.memory_type)
    if missing_type:
        raise PermissionDeniedError(
            f"{what}: {argument} lacks memory type {MemoryType(missing_type)!r} "
            f"(has: {buffer.memory_type!r})"
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
    device: Any = None,
) -> Ref:
    """Resolve ``target`` (Buffer, BufferRef or SlotRef) plus a command's ``offset`` and
    ``length`` (None: to the end) into a :class:`Ref`.

    Direct references are range-checked now (OutOfRangeError); slot references are checked
    against ``binding_capacity`` now and against the binding table at submission. With
    ``device``, a buffer of another device raises InvalidArgumentError; a released buffer
    raises FailedPreconditionError."""
    offset = check_int(what, f"{argument} offset", offset)
    if length is not None:
        length = check_int(what, f"{argument} length", length)
    if isinstance(target, Buffer):
        target.check_alive(what, argument)
        if device is not None:
            check_device(what, argument, target, device)
        base, size, root = target.byte_offset, target.byte_length, target.allocated_buffer
    elif isinstance(target, BufferRef):
        buffer = target.buffer
        if not isinstance(buffer, Buffer):
            raise InvalidArgumentError(f"{what}: {argument}.buffer is not a hal.Buffer")
        buffer.check_alive(what, argument)
        if device is not None:
            check_device(what, argument, buffer, device)
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


# -- minimum binding sizes ------------------------------------------------------------------

_VAR = re.compile(
    r"(?P<attrs>(?:@\w+\s*(?:\([^)]*\))?\s*)*)var\s*<(?P<space>[^>]*)>\s*(?P<name>\w+)\s*:"
    r"\s*(?P<type>[^;=]+?)\s*;"
)
_STRUCT = re.compile(r"\bstruct\s+(?P<name>\w+)\s*\{(?P<body>[^}]*)\}")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_SCALAR_SIZES = {"u32": 4, "i32": 4, "f32": 4, "f16": 2, "bool": 4}
_min_sizes: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()


def _layout(text: str, structs: dict[str, str]) -> tuple[int, int]:
    """(minimum size, alignment) of a host-shareable WGSL type under storage/uniform layout
    rules; a runtime-sized array counts one element. ValueError for types it cannot size."""
    t = re.sub(r"\s+", "", text)
    atomic = re.fullmatch(r"atomic<(\w+)>", t)
    if atomic:
        t = atomic.group(1)
    if t in _SCALAR_SIZES:
        return _SCALAR_SIZES[t], _SCALAR_SIZES[t]
    vec = re.fullmatch(r"vec([234])<(\w+)>|vec([234])([fiuh])", t)
    if vec:
        n = int(vec.group(1) or vec.group(3))
        scalar = vec.group(2) or {"f": "f32", "i": "i32", "u": "u32", "h": "f16"}[vec.group(4)]
        size = _SCALAR_SIZES[scalar]
        return size * n, size * (4 if n == 3 else n)
    matrix = re.fullmatch(r"mat([234])x([234])(?:<(\w+)>|([fh]))", t)
    if matrix:
        scalar = matrix.group(3) or {"f": "f32", "h": "f16"}[matrix.group(4)]
        rows = int(matrix.group(2))
        column = _SCALAR_SIZES[scalar] * (4 if rows == 3 else rows)
        return int(matrix.group(1)) * column, column
    array = re.fullmatch(r"array<(.+?)(?:,(\w+))?>", t)
    if array:
        size, align = _layout(array.group(1), structs)
        stride = -(-size // align) * align
        count = int(array.group(2), 0) if array.group(2) else 1
        return stride * count, align
    if t in structs:
        offset, align = 0, 1
        for field in structs[t].split(","):
            if ":" in field:
                size, field_align = _layout(field.split(":", 1)[1], structs)
                offset = -(-offset // field_align) * field_align + size
                align = max(align, field_align)
        return -(-offset // align) * align, align
    raise ValueError(f"cannot size WGSL type {text!r}")


def min_binding_sizes(executable: Executable) -> dict[int, int]:
    """The smallest byte length each ``@group(0)`` binding of ``executable`` can be bound
    with (wgpu rejects a shorter binding only when the command buffer is encoded, far from
    the command that caused it). Bindings of types it cannot size are left out."""
    found = _min_sizes.get(executable)
    if found is not None:
        return found
    text = _COMMENT.sub(" ", executable.source)
    structs = {
        m.group("name"): re.sub(r"@\w+\s*(\([^)]*\))?", "", m.group("body"))
        for m in _STRUCT.finditer(text)
    }
    sizes: dict[int, int] = {}
    for m in _VAR.finditer(text):
        group = re.search(r"@group\s*\(\s*(\d+)\s*\)", m.group("attrs"))
        binding = re.search(r"@binding\s*\(\s*(\d+)\s*\)", m.group("attrs"))
        if group is None or binding is None or int(group.group(1)) != 0:
            continue
        try:
            sizes[int(binding.group(1))] = _layout(m.group("type"), structs)[0]
        except (ValueError, KeyError):
            continue
    _min_sizes[executable] = sizes
    return sizes


def one_line(error: BaseException) -> str:
    """A wgpu error message on one line (wgpu-core's are multi-line chains)."""
    return " ".join(str(error).split())
