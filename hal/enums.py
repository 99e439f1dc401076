"""Flag enums with IREE's bit values: memory types, usages, access, modes, stages, scopes."""

from __future__ import annotations

import enum
import functools
from typing import Any, TypeVar

from hal.errors import InvalidArgumentError

__all__ = [
    "AccessScope",
    "BufferUsage",
    "CollectiveKind",
    "CollectiveReduction",
    "CommandBufferMode",
    "CommandCategory",
    "ExecutionStage",
    "MemoryAccess",
    "MemoryType",
    "coerce_flags",
]

_Flag = TypeVar("_Flag", bound=enum.IntFlag)


class CollectiveKind(enum.IntEnum):
    """A collective operation's kind (IREE's ``iree_hal_collective_kind_t`` values)."""

    ALL_GATHER = 0
    ALL_REDUCE = 1
    ALL_TO_ALL = 2
    BROADCAST = 3
    REDUCE = 4
    REDUCE_SCATTER = 5
    SEND = 6
    RECV = 7


class CollectiveReduction(enum.IntEnum):
    """How a reducing collective combines elements (IREE's values; NONE is ``None`` here)."""

    SUM = 1
    PRODUCT = 2
    MINIMUM = 3
    MAXIMUM = 4
    AVERAGE = 5


class MemoryType(enum.IntFlag):
    """Where a buffer's memory lives and how the host may see it."""

    NONE = 0
    OPTIMAL = 1
    HOST_VISIBLE = 2
    HOST_COHERENT = 4
    HOST_CACHED = 8
    DEVICE_VISIBLE = 16
    DEVICE_LOCAL = 48
    HOST_LOCAL = 70
    OPTIMAL_FOR_HOST = 71
    OPTIMAL_FOR_DEVICE = 49


class BufferUsage(enum.IntFlag):
    """What a buffer may be used for; commands check it at record time."""

    NONE = 0
    TRANSFER_SOURCE = 1
    TRANSFER_TARGET = 2
    TRANSFER = 3
    DISPATCH_INDIRECT_PARAMS = 1 << 8
    DISPATCH_UNIFORM_READ = 1 << 9
    DISPATCH_STORAGE_READ = 1 << 10
    DISPATCH_STORAGE_WRITE = 1 << 11
    DISPATCH_STORAGE = 3 << 10
    MAPPING_SCOPED = 1 << 24
    MAPPING_PERSISTENT = 1 << 25
    MAPPING_ACCESS_RANDOM = 1 << 27
    MAPPING = (1 << 24) | (1 << 27)
    DEFAULT = 3 | (3 << 10)


class MemoryAccess(enum.IntFlag):
    """How a buffer's contents may be accessed."""

    NONE = 0
    READ = 1
    WRITE = 2
    DISCARD = 4
    DISCARD_WRITE = 6
    ALL = 7


class CommandBufferMode(enum.IntFlag):
    """How a command buffer may be submitted and validated."""

    DEFAULT = 0
    ONE_SHOT = 1
    ALLOW_INLINE_EXECUTION = 16
    UNVALIDATED = 32


class CommandCategory(enum.IntFlag):
    """Which kinds of commands a command buffer accepts."""

    NONE = 0
    TRANSFER = 1
    DISPATCH = 2
    ANY = 3


class ExecutionStage(enum.IntFlag):
    """Pipeline stages of barriers and events (recorded; the lowering treats them as hints)."""

    NONE = 0
    COMMAND_ISSUE = 1
    COMMAND_PROCESS = 2
    DISPATCH = 4
    TRANSFER = 8
    COMMAND_RETIRE = 16
    HOST = 32
    ALL = 63


class AccessScope(enum.IntFlag):
    """Memory access scopes of barriers (recorded; hints for the lowering)."""

    NONE = 0
    INDIRECT_COMMAND_READ = 1
    CONSTANT_READ = 2
    DISPATCH_READ = 4
    DISPATCH_WRITE = 8
    TRANSFER_READ = 16
    TRANSFER_WRITE = 32
    HOST_READ = 64
    HOST_WRITE = 128
    MEMORY_READ = 256
    MEMORY_WRITE = 512


def coerce_flags(what: str, argument: str, value: Any, cls: type[_Flag]) -> _Flag:
    """``value`` as a member (or combination) of the flag enum ``cls``.

    Accepts a ``cls`` member or a non-negative int (numpy ints included) of bits ``cls``
    defines. Raises InvalidArgumentError, naming ``what`` and ``argument``, for anything else:
    another type (bools, floats and strings included) or an int with unknown bits."""
    if type(value) is cls:  # the common case, without the isinstance chain
        return value
    if isinstance(value, cls):
        return value
    if isinstance(value, bool) or (not isinstance(value, int) and not _is_numpy_int(value)):
        raise InvalidArgumentError(
            f"{what}: {argument} {value!r} is not {cls.__name__} flags (or an int of their bits)"
        )
    bits = int(value)
    known = _known_bits(cls)
    if bits < 0 or bits & ~known:
        raise InvalidArgumentError(
            f"{what}: {argument} {bits:#x} has bits that {cls.__name__} does not define "
            f"(known: {known:#x})"
        )
    return cls(bits)


@functools.cache
def _known_bits(cls: type[enum.IntFlag]) -> int:
    known = 0
    for member in cls.__members__.values():  # aliases too: DEVICE_LOCAL's bit 32 has no name
        known |= int(member)
    return known


def _is_numpy_int(value: Any) -> bool:
    # Without importing numpy here: its integer scalars all expose __index__ and a dtype.
    return hasattr(value, "__index__") and getattr(getattr(value, "dtype", None), "kind", "") in (
        "i",
        "u",
    )
