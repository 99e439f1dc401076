"""Queue operations other than ``queue_execute``: fill, update, copy, alloca/dealloca and
file reads/writes, each ordered only by its wait and signal lists.

Transfers are recorded into a one-shot command buffer at call time (so bad arguments raise at
once and ``queue_update`` captures its source then); file reads happen when the waits are
reached, file writes once the GPU finished everything submitted before them.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from hal.buffer import Buffer, BufferRef, SlotRef
from hal.enums import (
    BufferUsage,
    CommandBufferMode,
    CommandCategory,
    MemoryAccess,
    MemoryType,
)
from hal.errors import InvalidArgumentError, OutOfRangeError
from hal.validation import check_buffer_usage, check_int, make_ref

if TYPE_CHECKING:
    from collections.abc import Callable

    from hal.command_buffer import CommandBuffer
    from hal.device import Device
    from hal.semaphore import WaitList

__all__ = [
    "queue_alloca",
    "queue_dealloca",
    "queue_read",
    "queue_transfer",
    "queue_write",
]


def queue_transfer(
    device: Device, record: Callable[[CommandBuffer], None], wait: WaitList, signal: WaitList
) -> None:
    """Record one transfer command with ``record`` into a one-shot command buffer and queue
    it. Recording errors propagate before anything is queued."""
    cb = device.create_command_buffer(CommandBufferMode.ONE_SHOT, CommandCategory.TRANSFER)
    cb.begin()
    record(cb)
    cb.end()
    device._queue.execute(cb, wait, signal, None)


def queue_alloca(
    device: Device,
    size: int,
    wait: WaitList,
    signal: WaitList,
    memory_type: MemoryType,
    usage: BufferUsage,
) -> Buffer:
    """Allocate now; the buffer may be used by queue work ordered after ``signal``, which is
    signalled once ``wait`` is reached."""
    buffer = device.allocator.allocate_buffer(size, memory_type=memory_type, usage=usage)
    device._queue.operation(wait, signal)
    return buffer


def queue_dealloca(device: Device, buffer: Buffer, wait: WaitList, signal: WaitList) -> None:
    """Release ``buffer`` once ``wait`` is reached and the work submitted before finished."""
    if not isinstance(buffer, Buffer) or buffer.device is not device:
        raise InvalidArgumentError(f"queue_dealloca: {buffer!r} is not a buffer of this device")
    buffer.check_alive("queue_dealloca", "buffer")
    if buffer.allocated_buffer is not buffer:
        raise InvalidArgumentError("queue_dealloca: buffer is a subspan, not an allocation")
    device._queue.operation(wait, signal, on_complete=buffer.release)


def _read_source(source: Any, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of a path, an open binary file or a bytes-like object."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
    elif isinstance(source, io.IOBase) or hasattr(source, "read"):
        source.seek(offset)
        data = source.read(length)
    else:
        view = memoryview(source).cast("B")
        data = bytes(view[offset : offset + length])
    if len(data) != length:
        raise OutOfRangeError(
            f"queue_read: source has {len(data)} bytes at offset {offset}; {length} requested"
        )
    return bytes(data)


def _write_target(target: Any, offset: int, data: bytes) -> None:
    if isinstance(target, (str, os.PathLike)):
        mode = "r+b" if os.path.exists(target) else "wb"
        with open(target, mode) as handle:
            handle.seek(offset)
            handle.write(data)
    elif isinstance(target, io.IOBase) or hasattr(target, "write"):
        target.seek(offset)
        target.write(data)
        if hasattr(target, "flush"):
            target.flush()
    else:
        view = memoryview(target).cast("B")
        view[offset : offset + len(data)] = data


def _check_file(what: str, argument: str, file: Any, writable: bool) -> None:
    if isinstance(file, (str, os.PathLike)):
        return
    if hasattr(file, "write" if writable else "read"):
        return
    try:
        view = memoryview(file)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: {argument} must be a path, an open binary file or a bytes-like object"
        ) from None
    if writable and view.readonly:
        raise InvalidArgumentError(f"{what}: {argument} is a read-only bytes-like object")


def queue_read(
    device: Device,
    source_file: Any,
    source_offset: int,
    target: Buffer | BufferRef | SlotRef,
    target_offset: int,
    length: int,
    wait: WaitList,
    signal: WaitList,
) -> None:
    """Copy ``length`` bytes of ``source_file`` (read when the waits are reached) into
    ``target``. A file shorter than the range fails the signal semaphores."""
    what = "queue_read"
    _check_file(what, "source_file", source_file, writable=False)
    source_offset = check_int(what, "source_offset", source_offset)
    length = check_int(what, "length", length)
    if isinstance(target, SlotRef):
        raise InvalidArgumentError(f"{what}: target must be a Buffer or BufferRef")
    ref = make_ref(what, "target", target, target_offset, length, 0)
    assert ref.buffer is not None
    check_buffer_usage(what, "target", ref.buffer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE)

    def prepare() -> list[Any]:
        data = _read_source(source_file, source_offset, length)
        if not data:
            return []
        cb = device.create_command_buffer(CommandBufferMode.ONE_SHOT, CommandCategory.TRANSFER)
        cb.begin()
        cb.update_buffer(data, 0, target, target_offset, length)
        cb.end()
        return [cb._prepare_submission(None).encode(device._wgpu)]

    device._queue.operation(wait, signal, [ref.buffer._allocation], prepare=prepare)


def queue_write(
    device: Device,
    source: Buffer | BufferRef | SlotRef,
    source_offset: int,
    target_file: Any,
    target_offset: int,
    length: int,
    wait: WaitList,
    signal: WaitList,
) -> None:
    """Write ``length`` bytes of ``source`` to ``target_file`` once the waits are reached
    and the work submitted before finished; then signal."""
    what = "queue_write"
    _check_file(what, "target_file", target_file, writable=True)
    target_offset = check_int(what, "target_offset", target_offset)
    length = check_int(what, "length", length)
    if isinstance(source, SlotRef):
        raise InvalidArgumentError(f"{what}: source must be a Buffer or BufferRef")
    ref = make_ref(what, "source", source, source_offset, length, 0)
    assert ref.buffer is not None
    check_buffer_usage(what, "source", ref.buffer, BufferUsage.TRANSFER_SOURCE, MemoryAccess.READ)
    if not isinstance(target_file, (str, os.PathLike)) and not hasattr(target_file, "write"):
        size = memoryview(target_file).nbytes
        if target_offset + length > size:
            raise OutOfRangeError(
                f"{what}: target range [{target_offset}, {target_offset + length}) is past "
                f"the end of the {size}-byte target"
            )
    root = ref.buffer

    def write() -> None:
        data = device._queue.host_read(root, ref.offset, length)
        _write_target(target_file, target_offset, data)

    device._queue.operation(wait, signal, [root._allocation], on_complete=write)
