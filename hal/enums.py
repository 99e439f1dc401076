"""Flag enums with IREE's bit values: memory types, usages, access, modes, stages, scopes."""

from __future__ import annotations

import enum

__all__ = [
    "AccessScope",
    "BufferUsage",
    "CommandBufferMode",
    "CommandCategory",
    "ExecutionStage",
    "MemoryAccess",
    "MemoryType",
]


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
