"""Argument checks shared by recording, queue operations and host access.

Every check raises the HalError subclass of API.md's error table, with a message naming the
command, the argument, the value and the rule. Ranges are checked by one helper,
:func:`check_range`, so every "past the end" message has one format.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.core.refs import BufferHandle, BufferLike, BufferRef, Ref, SlotRef
from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import (
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)

if TYPE_CHECKING:
    from hal.core.caps import DeviceCaps
    from hal.core.layout import BindingLayout

__all__ = [
    "INDIRECT_PARAMS_SIZE",
    "check_binding_length",
    "check_buffer_usage",
    "check_device",
    "check_dtype",
    "check_indirect_length",
    "check_int",
    "check_multiple",
    "check_range",
    "check_sequence",
    "host_bytes",
    "make_ref",
    "normalise_pattern",
    "one_line",
    "pack_constants",
    "pack_scalar",
    "resolve_direct",
    "timeout_seconds",
]

INDIRECT_PARAMS_SIZE = 12
"""Bytes of ``dispatch_indirect``'s workgroup counts (3×u32)."""


def check_int(what: str, argument: str, value: Any) -> int:
    """``value`` as a non-negative int; InvalidArgumentError otherwise (bools included)."""
    if type(value) is int and value >= 0:  # the common case, without an isinstance chain
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgumentError(f"{what}: {argument} {value!r} is not a non-negative integer")
    return int(value)


UNBOUNDED_TIMEOUT = float(1 << 31)
"""Timeouts from this many seconds (68 years) on, ``math.inf`` included, wait forever: the
host's timed waits overflow far below ``1e10`` seconds."""


def timeout_seconds(what: str, timeout: Any) -> float | None:
    """A wait's ``timeout`` as seconds, or None for "wait forever" (None, ``math.inf`` and
    anything from :data:`UNBOUNDED_TIMEOUT` on); 0 polls.

    Raises InvalidArgumentError for a negative or NaN timeout and for anything that is not
    an int or float (bools and strings included)."""
    if timeout is None:
        return None
    kind = type(timeout)
    if (kind is float or kind is int) and 0 <= timeout < UNBOUNDED_TIMEOUT:
        # The common case (NaN and negatives fail the comparison, bools are not int by
        # type): the general checks below give the same result.
        return float(timeout)
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(
        timeout, (int, float, np.integer, np.floating)
    ):
        raise InvalidArgumentError(
            f"{what}: timeout {timeout!r} must be a number of seconds or None"
        )
    try:
        seconds = float(timeout)
    except OverflowError:  # an int past float's range: negative, or "forever"
        seconds = -math.inf if timeout < 0 else math.inf
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(
            f"{what}: timeout {timeout!r} must be a non-negative number of seconds (0 polls, "
            "None waits forever)"
        )
    return None if seconds >= UNBOUNDED_TIMEOUT else seconds


def check_sequence(what: str, argument: str, value: Any, items: str) -> tuple[Any, ...]:
    """``value`` (a list, tuple or other sequence, not a string) as a tuple.

    Raises InvalidArgumentError for anything else, naming ``items`` (what it should hold),
    e.g. a single Event where a sequence of events is expected."""
    kind = type(value)
    if kind is tuple:  # the common cases first: an ABC isinstance check costs ~1 µs
        return value
    if kind is list:
        return tuple(value)
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            f"{what}: {argument} must be a sequence of {items}, not {type(value).__name__}"
        )
    return tuple(value)


def check_dtype(what: str, argument: str, dtype: Any) -> np.dtype[Any]:
    """``dtype`` as a numpy dtype of plain bytes: anything ``np.dtype()`` takes, except
    object-holding dtypes (their bytes are host pointers) and empty ones (itemsize 0).
    Raises InvalidArgumentError otherwise."""
    try:
        result = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as error:
        raise InvalidArgumentError(
            f"{what}: {argument} {dtype!r} is not a numpy dtype ({one_line(error)})"
        ) from None
    if result.hasobject:
        raise InvalidArgumentError(
            f"{what}: {argument} {result} holds Python objects, not plain bytes"
        )
    if result.itemsize == 0:
        raise InvalidArgumentError(f"{what}: {argument} {result} has no bytes (itemsize 0)")
    return result


def check_range(
    what: str,
    argument: str,
    offset: Any,
    length: Any,
    size: int,
    within: str = "range",
) -> int:
    """The length of ``[offset, offset+length)`` inside ``size`` bytes (``length`` None: to
    the end). ``argument`` ("" for none) and ``within`` (what the ``size`` bytes are: "range",
    "buffer", "slot range", "table entry", "source") name things in the message.

    Raises InvalidArgumentError for a negative or non-integer offset or length and
    OutOfRangeError for an offset or range past the end."""
    if type(offset) is int and 0 <= offset <= size:  # the common case: no messages built
        if length is None:
            return size - offset
        if type(length) is int and 0 <= length <= size - offset:
            return length
    prefix = f"{argument} " if argument else ""
    offset = check_int(what, f"{prefix}offset", offset)
    if offset > size:
        raise OutOfRangeError(
            f"{what}: {prefix}offset {offset} is past the end of its {size}-byte {within}"
        )
    if length is None:
        return size - offset
    length = check_int(what, f"{prefix}length", length)
    if offset + length > size:
        raise OutOfRangeError(
            f"{what}: {prefix}range [{offset}, {offset + length}) is past the end of its "
            f"{size}-byte {within}"
        )
    return int(length)


def check_device(what: str, argument: str, buffer: BufferLike, device: Any) -> None:
    """InvalidArgumentError unless ``buffer`` was allocated on ``device``: wgpu rejects (at
    submission, fatally) any command that mixes objects of two devices."""
    if buffer.device is not device:
        raise InvalidArgumentError(f"{what}: {argument} {buffer!r} belongs to another device")


def check_buffer_usage(
    what: str,
    argument: str,
    buffer: BufferLike,
    usage: int,
    access: int = 0,
    memory_type: int = 0,
) -> None:
    """PermissionDeniedError unless ``buffer`` allows every bit of ``usage`` and ``access``
    and has every bit of ``memory_type`` (BufferUsage/MemoryAccess/MemoryType bits)."""
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


def check_multiple(what: str, argument: str, value: int, pattern_length: int) -> None:
    """InvalidArgumentError unless ``value`` (a fill offset or length) is a multiple of
    ``pattern_length``."""
    if value % pattern_length:
        raise InvalidArgumentError(
            f"{what}: {argument} {value} is not a multiple of pattern_length {pattern_length}"
        )


def check_indirect_length(what: str, argument: str, length: int) -> None:
    """OutOfRangeError for indirect workgroup counts shorter than 3×u32."""
    if length < INDIRECT_PARAMS_SIZE:
        raise OutOfRangeError(
            f"{what}: {argument} range is {length} bytes; {INDIRECT_PARAMS_SIZE} (3×u32) are "
            "required"
        )


def check_binding_length(
    what: str,
    argument: str,
    binding: BindingLayout,
    entry_point: str,
    length: int,
    caps: DeviceCaps,
) -> None:
    """Check a dispatch binding's byte length against the adapter and the kernel.

    Raises InvalidArgumentError past the adapter's max (uniform) binding size and
    OutOfRangeError below ``binding.min_size`` (wgpu would reject either only when the whole
    command buffer is encoded, far from the command). A range that is not a whole number of
    words counts as rounded up: the lowering shadows it into whole words."""
    kind = binding.kind
    limit = caps.max_uniform_binding_size if kind == "uniform" else caps.max_binding_size
    if length > limit:
        raise InvalidArgumentError(
            f"{what}: {argument} is {length} bytes; the adapter binds at most {limit} "
            f"bytes as {kind}"
        )
    need = binding.min_size
    if need > 4 and -(-length // 4) * 4 < need:
        raise OutOfRangeError(
            f"{what}: {argument} is {length} bytes, but {entry_point!r} declares "
            f"{binding.name!r} as a type of at least {need} bytes"
        )


def normalise_pattern(what: str, pattern: Any, pattern_length: int | None) -> bytes:
    """The fill pattern as 1, 2 or 4 little-endian bytes.

    ``pattern`` is an int (``pattern_length`` 1, 2 or 4; default 4) or bytes of length 1, 2
    or 4 (``pattern_length``, if given, must match). Raises InvalidArgumentError."""
    if pattern_length is not None:
        pattern_length = check_int(what, "pattern_length", pattern_length)
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


_INT_RANGES = {"u32": (0, (1 << 32) - 1), "i32": (-(1 << 31), (1 << 31) - 1)}
_FORMATS = {"u32": "<I", "i32": "<i", "f32": "<f", "f16": "<e"}


def pack_scalar(what: str, argument: str, value: Any, scalar: str, field: str = "") -> bytes:
    """``value`` as the little-endian bytes of WGSL ``scalar`` ("u32", "i32", "f32" or
    "f16"), the one conversion of dispatch constants (also used by ``hal run``).

    An int (numpy ints and bools included) fills an integer field if it is in range and
    a float field as its float value; a float fills only a float field, and must be
    representable there (inf and nan are; 1e40 in an f32 is not). Raises
    InvalidArgumentError naming ``what``, ``argument``, the field and the rule."""
    target = f"{scalar} field {field}" if field else scalar
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if scalar in _INT_RANGES:
        if isinstance(value, (float, np.floating)):
            raise InvalidArgumentError(
                f"{what}: {argument} = {value!r} is a float, but it fills the {target} "
                "(pass an int)"
            )
        if not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(
                f"{what}: {argument} = {value!r} is not an int for the {target}"
            )
        lo, hi = _INT_RANGES[scalar]
        if not lo <= int(value) <= hi:
            raise InvalidArgumentError(
                f"{what}: {argument} = {value} does not fit in {target} ({lo}..{hi})"
            )
        return struct.pack(_FORMATS[scalar], int(value))
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(
            f"{what}: {argument} = {value!r} is not a number for the {target}"
        )
    try:
        return struct.pack(_FORMATS[scalar], float(value))
    except (OverflowError, struct.error):
        raise InvalidArgumentError(
            f"{what}: {argument} = {value!r} does not fit in {target} (beyond its finite range)"
        ) from None


def pack_constants(what: str, constants: Any, fields: Sequence[Any] | None = None) -> bytes:
    """Dispatch constants as the bytes of the immediate block.

    A bytes-like object or numeric numpy array is taken as raw bytes (a multiple of 4).
    A sequence of numbers fills ``fields`` (the kernel's flattened immediate fields, each
    with ``name``, ``offset`` and ``scalar``) in order, each value converted to its
    field's type by :func:`pack_scalar`; padding between fields is zero and fields after
    the last value are left out (they read 0). Without ``fields`` a value is typed by
    Python type: an int is u32 (i32 if negative), a float f32, a bool u32. Raises
    InvalidArgumentError for other objects, more values than fields, a value that does
    not fit its field, or raw bytes that are not a multiple of 4."""
    if type(constants) is tuple and not constants:  # no constants: the common case
        return b""
    if isinstance(constants, np.ndarray):
        if constants.dtype.hasobject:
            raise InvalidArgumentError(
                f"{what}: constants is a numpy array of dtype {constants.dtype}; raw "
                "constants need a numeric dtype"
            )
        data = np.ascontiguousarray(constants).tobytes()
    elif isinstance(constants, (bytes, bytearray, memoryview)):
        data = bytes(constants)
    elif isinstance(constants, Sequence) and not isinstance(constants, str):
        if fields is None:
            return _pack_untyped(what, constants)
        return _pack_fields(what, constants, fields)
    else:
        raise InvalidArgumentError(
            f"{what}: constants must be a sequence of numbers or bytes, not "
            f"{type(constants).__name__}"
        )
    if len(data) % 4:
        raise InvalidArgumentError(f"{what}: constants are {len(data)} bytes, not a multiple of 4")
    return data


def _pack_fields(what: str, values: Sequence[Any], fields: Sequence[Any]) -> bytes:
    """``values`` packed into the layout of ``fields``; see :func:`pack_constants`."""
    if len(values) > len(fields):
        raise InvalidArgumentError(
            f"{what}: {len(values)} constants given, but the kernel's immediate block has "
            f"{len(fields)} fields ({', '.join(f.name for f in fields) or 'none'})"
        )
    if not values:
        return b""
    filled = fields[: len(values)]
    end = max(f.offset + (2 if f.scalar == "f16" else 4) for f in filled)
    data = bytearray(-(-end // 4) * 4)
    for i, (value, field) in enumerate(zip(values, filled, strict=True)):
        packed = pack_scalar(what, f"constants[{i}]", value, field.scalar, field.name)
        data[field.offset : field.offset + len(packed)] = packed
    return bytes(data)


def _pack_untyped(what: str, constants: Sequence[Any]) -> bytes:
    """Values packed by Python type, 4 bytes each; see :func:`pack_constants`."""
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
            parts.append(pack_scalar(what, f"constants[{i}]", value, "f32"))
        else:
            raise InvalidArgumentError(
                f"{what}: constants[{i}] = {value!r} is not a 32-bit int or float"
            )
    return b"".join(parts)


def host_bytes(data: Any, what: str, argument: str) -> memoryview:
    """View any bytes-like object or numpy array as flat bytes (no copy when contiguous).

    Raises InvalidArgumentError for objects without the buffer protocol and for arrays of
    Python objects (their bytes are host pointers, meaningless to a device)."""
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise InvalidArgumentError(
                f"{what}: {argument} is an array of dtype {data.dtype}, which holds Python "
                "objects, not plain bytes"
            )
        data = np.ascontiguousarray(data)
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: {argument} of type {type(data).__name__} is not bytes-like"
        ) from None
    if "O" in view.format:
        raise InvalidArgumentError(
            f"{what}: {argument} holds Python objects (format {view.format!r}), not plain bytes"
        )
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _resolve_buffer_ref(
    what: str, argument: str, target: BufferRef, device: Any
) -> tuple[BufferLike, int, int]:
    """(buffer, offset within its allocation, length) of a BufferRef; raises as
    :func:`resolve_direct`."""
    buffer = target.buffer
    if not isinstance(buffer, BufferLike):
        raise InvalidArgumentError(f"{what}: {argument}.buffer is not a hal.Buffer")
    buffer.check_alive(what, argument)
    if device is not None and buffer.device is not device:
        check_device(what, argument, buffer, device)
    offset = target.offset
    if type(offset) is not int or offset < 0:
        offset = check_int(what, f"{argument}.offset", offset)
    length = target.length
    if length is not None and (type(length) is not int or length < 0):
        length = check_int(what, f"{argument}.length", length)
    length = check_range(what, argument, offset, length, buffer.byte_length, "buffer")
    return buffer, buffer.byte_offset + offset, length


def resolve_direct(
    target: Any, what: str, argument: str, device: Any = None
) -> tuple[BufferHandle, int, int]:
    """Resolve a Buffer or BufferRef to (the buffer, offset within its allocation, length).

    Raises InvalidArgumentError for anything else (a SlotRef included) and, with ``device``,
    for a buffer of another device; OutOfRangeError for a BufferRef past its buffer's end;
    FailedPreconditionError for a released buffer."""
    if isinstance(target, BufferLike):
        target.check_alive(what, argument)
        if device is not None:
            check_device(what, argument, target, device)
        return target, target.byte_offset, target.byte_length
    if isinstance(target, BufferRef):
        return _resolve_buffer_ref(what, argument, target, device)
    raise InvalidArgumentError(
        f"{what}: {argument} must be a Buffer or BufferRef, not {type(target).__name__}"
    )


def make_ref(
    what: str,
    argument: str,
    target: Any,
    offset: Any,
    length: Any,
    binding_capacity: int,
    device: Any = None,
) -> Ref:
    """Resolve ``target`` (Buffer, BufferRef or SlotRef) plus a command's ``offset`` and
    ``length`` (None: to the end) into a :class:`Ref`.

    Direct references are range-checked now (OutOfRangeError); slot references are checked
    against ``binding_capacity`` now and against the binding table at submission. With
    ``device``, a buffer of another device raises InvalidArgumentError; a released buffer
    raises FailedPreconditionError; a negative or non-integer offset or length raises
    InvalidArgumentError."""
    # Plain non-negative ints skip the checks (and the argument names they would format).
    if type(offset) is not int or offset < 0:
        offset = check_int(what, f"{argument} offset", offset)
    if length is not None and (type(length) is not int or length < 0):
        length = check_int(what, f"{argument} length", length)
    if isinstance(target, BufferLike):  # the common case first
        target.check_alive(what, argument)
        if device is not None and target.device is not device:
            check_device(what, argument, target, device)
        length = check_range(what, argument, offset, length, target.byte_length)
        return Ref(target.allocated_buffer, None, target.byte_offset + offset, length)
    if isinstance(target, SlotRef):
        return _slot_ref(what, argument, target, offset, length, binding_capacity)
    if isinstance(target, BufferRef):
        buffer, base, size = _resolve_buffer_ref(what, argument, target, device)
        length = check_range(what, argument, offset, length, size)
        return Ref(buffer.allocated_buffer, None, base + offset, length)
    raise InvalidArgumentError(
        f"{what}: {argument} must be a Buffer, BufferRef or SlotRef, not {type(target).__name__}"
    )


def _slot_ref(
    what: str, argument: str, target: SlotRef, offset: int, length: int | None, capacity: int
) -> Ref:
    slot = check_int(what, f"{argument}.slot", target.slot)
    if slot >= capacity:
        raise OutOfRangeError(
            f"{what}: {argument} slot {slot} is not below the command buffer's "
            f"binding_capacity {capacity}"
        )
    slot_offset = check_int(what, f"{argument}.offset", target.offset)
    if target.length is not None:
        slot_length = check_int(what, f"{argument}.length", target.length)
        length = check_range(what, argument, offset, length, slot_length, "slot range")
    return Ref(None, slot, slot_offset + offset, length)


def one_line(error: BaseException) -> str:
    """A wgpu error message on one line (wgpu-core's are multi-line chains)."""
    return " ".join(str(error).split())
