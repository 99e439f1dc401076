"""Queue operations other than ``queue_execute``: fill, update, copy, alloca/dealloca and
file reads/writes, each ordered only by its wait and signal lists.

Transfers are recorded into a one-shot command buffer at call time (so bad arguments raise at
once and ``queue_update`` captures its source then); file reads happen when the waits are
reached, file writes once the GPU finished everything submitted before them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wgpu

from hal.core.checks import check_buffer_usage, check_int, host_bytes, make_ref
from hal.core.refs import BufferRef, BufferTarget, SlotRef
from hal.core.segments import Ref
from hal.enums import (
    BufferUsage,
    CommandBufferMode,
    CommandCategory,
    MemoryAccess,
    MemoryType,
)
from hal.errors import InvalidArgumentError, OutOfRangeError
from hal.runtime import loss
from hal.runtime.buffer import Buffer
from hal.runtime.semaphore import normalise_points
from hal.runtime.staging import copy_bytes

if TYPE_CHECKING:
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.semaphore import WaitList

__all__ = [
    "STAGED_MIN",
    "queue_alloca",
    "queue_dealloca",
    "queue_read",
    "queue_transfer",
    "queue_update_staged",
    "queue_write",
]

STAGED_MIN = 64 * 1024
"""From this size, ``queue_update``/``queue_read`` stage their bytes in hal's staging buffers
(hal/staging.py) instead of a plan's STAGING bytes (which costs three more copies)."""


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


def queue_update_staged(
    device: Device,
    source: Any,
    source_offset: int,
    target: Any,
    target_offset: int,
    length: Any,
    wait: WaitList,
    signal: WaitList,
) -> bool:
    """``queue_update`` of a large range through staging buffers: the source is copied into
    them now, the GPU copies run once ``wait`` is reached. Returns False (doing nothing)
    where the ordinary path applies: small or invalid arguments, slot targets."""
    what = "queue_update"
    if (
        not isinstance(length, int)
        or length < STAGED_MIN
        or not isinstance(target, (Buffer, BufferRef))
    ):
        return False
    view = host_bytes(source, what, "source")
    source_offset = check_int(what, "source_offset", source_offset)
    if source_offset + length > len(view):
        return False  # the ordinary path raises the error
    ref = make_ref(what, "target", target, target_offset, length, 0, device)
    assert ref.buffer is not None
    check_buffer_usage(what, "target", ref.buffer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE)
    outer = target.buffer if isinstance(target, BufferRef) else target
    if outer is not ref.buffer:  # a subspan carries its own permissions
        check_buffer_usage(what, "target", outer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE)
    data = view[source_offset : source_offset + length]

    def fill(chunk: memoryview, position: int) -> None:
        copy_bytes(chunk, data[position : position + len(chunk)])

    waits = normalise_points(what, wait)
    if all(s._failure is None and s._value >= v for s, v in waits):
        # Nothing to wait for: stream it now through the staging pool (the bytes are copied
        # out before this returns), then signal once the copies submitted before finish.
        # Capturing it all first would hold size/chunk staging buffers at once.
        try:
            device._queue.staging.write(ref.buffer, ref.offset, data)
        except wgpu.GPUError as error:
            raise loss.wgpu_failure(device, what, error) from None
        device._queue.operation((), signal)
        return True
    _queue_staged(device, ref.buffer, ref.offset, length, fill, wait, signal)
    return True


def _queue_staged(
    device: Device,
    root: Buffer,
    offset: int,
    length: int,
    fill: Callable[[memoryview, int], None],
    wait: WaitList,
    signal: WaitList,
) -> None:
    """Stage ``length`` bytes from ``fill`` for absolute ``offset`` of ``root`` now and queue
    their copy (body through staging buffers, edges through an update command buffer)."""
    upload, head, tail = device._queue.staging.capture(root, offset, length, fill)
    edges = _edges(device, root, offset, length, head, tail)

    def prepare() -> list[Any]:
        command_buffers = [] if upload is None else [upload.encode()]
        if edges is not None:
            command_buffers.append(edges.prepare(None).encode(device._wgpu))
        return command_buffers

    device._queue.operation(
        wait,
        signal,
        [root._allocation],
        prepare=prepare,
        on_complete=None if upload is None else upload.release,
    )


def _edges(
    device: Device, root: Buffer, offset: int, length: int, head: bytes, tail: bytes
) -> CommandBuffer | None:
    """An ended command buffer writing the unaligned ``head`` (at ``offset``) and ``tail``
    (ending at ``offset + length``) bytes; builtin kernels touch no other byte. None when
    there are none. UNVALIDATED: the caller validated usage and range."""
    if not head and not tail:
        return None
    cb = device.create_command_buffer(
        CommandBufferMode.ONE_SHOT | CommandBufferMode.UNVALIDATED, CommandCategory.TRANSFER
    )
    cb.begin()
    if head:
        cb.update_buffer(head, 0, root, offset, len(head))
    if tail:
        cb.update_buffer(tail, 0, root, offset + length - len(tail), len(tail))
    cb.end()
    return cb


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


class _Source:
    """Reads ``[offset, offset+length)`` of a path, open binary file or bytes-like object
    into given memory (``read_into(view, position)``); a context manager that closes a file
    it opened. A short source raises OutOfRangeError."""

    def __init__(self, source: Any, offset: int, length: int) -> None:
        self._source = source
        self._offset = offset
        self._length = length
        self._handle: Any = None
        self._view: memoryview | None = None

    def __enter__(self) -> _Source:
        source = self._source
        if isinstance(source, (str, os.PathLike)):
            self._handle = open(source, "rb")  # closed in __exit__
        elif isinstance(source, io.IOBase) or hasattr(source, "read"):
            self._handle = source
        else:
            self._view = memoryview(source).cast("B")
            if self._offset + self._length > len(self._view):
                raise OutOfRangeError(
                    f"queue_read: source has {max(0, len(self._view) - self._offset)} bytes at "
                    f"offset {self._offset}; {self._length} requested"
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None and self._handle is not self._source:
            self._handle.close()

    def read_into(self, view: memoryview, position: int) -> None:
        """Fill ``view`` with the source bytes at ``position`` of the range."""
        start = self._offset + position
        if self._view is not None:
            copy_bytes(view, self._view[start : start + len(view)])
            return
        handle = self._handle
        handle.seek(start)
        done = 0
        while done < len(view):
            if hasattr(handle, "readinto"):
                count = handle.readinto(view[done:])
            else:
                data = handle.read(len(view) - done)
                count = len(data)
                view[done : done + count] = data
            if not count:
                raise OutOfRangeError(
                    f"queue_read: source has {position + done} bytes at offset "
                    f"{self._offset}; {self._length} requested"
                )
            done += count


class _Target:
    """Writes chunks at ``offset + position`` of a path, open binary file or writable
    bytes-like object (``write_at(chunk, position)``); closes a file it opened."""

    def __init__(self, target: Any, offset: int) -> None:
        self._target = target
        self._offset = offset
        self._handle: Any = None
        self._view: memoryview | None = None

    def __enter__(self) -> _Target:
        target = self._target
        if isinstance(target, (str, os.PathLike)):
            mode = "r+b" if os.path.exists(target) else "wb"
            self._handle = open(target, mode)  # closed in __exit__
        elif isinstance(target, io.IOBase) or hasattr(target, "write"):
            self._handle = target
        else:
            self._view = memoryview(target).cast("B")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is None:
            return
        if self._handle is self._target:
            if hasattr(self._handle, "flush"):
                self._handle.flush()
        else:
            self._handle.close()

    def write_at(self, chunk: memoryview, position: int) -> None:
        """Write ``chunk`` at ``position`` of the range."""
        start = self._offset + position
        if self._view is not None:
            copy_bytes(self._view[start : start + len(chunk)], chunk)
            return
        self._handle.seek(start)
        self._handle.write(chunk)


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


def _direct_ref(
    what: str,
    argument: str,
    target: Any,
    offset: int,
    length: int,
    device: Device,
    usage: BufferUsage,
    access: MemoryAccess,
) -> tuple[Ref, Buffer]:
    """``target`` + ``offset``/``length`` as a checked reference and its allocation: file
    operations take no binding-table slots."""
    if isinstance(target, SlotRef):
        raise InvalidArgumentError(f"{what}: {argument} must be a Buffer or BufferRef")
    ref = make_ref(what, argument, target, offset, length, 0, device)
    assert ref.buffer is not None
    check_buffer_usage(what, argument, ref.buffer, usage, access)
    return ref, ref.buffer


def queue_read(
    device: Device,
    source_file: Any,
    source_offset: int,
    target: BufferTarget,
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
    ref, root = _direct_ref(
        what,
        "target",
        target,
        target_offset,
        length,
        device,
        BufferUsage.TRANSFER_TARGET,
        MemoryAccess.WRITE,
    )

    if length >= STAGED_MIN:
        # Read straight from the file into staging buffers once the waits are reached.
        staged: list[Any] = []  # the Upload, once prepared; released when the copy is done

        def prepare_staged() -> list[Any]:
            with _Source(source_file, source_offset, length) as reader:
                upload, head, tail = device._queue.staging.capture(
                    root, ref.offset, length, reader.read_into
                )
            edges = _edges(device, root, ref.offset, length, head, tail)
            command_buffers = [] if upload is None else [upload.encode()]
            if edges is not None:
                command_buffers.append(edges.prepare(None).encode(device._wgpu))
            staged.append(upload)
            return command_buffers

        def release() -> None:
            for upload in staged:
                if upload is not None:
                    upload.release()

        device._queue.operation(
            wait, signal, [root._allocation], prepare=prepare_staged, on_complete=release
        )
        return

    def prepare() -> list[Any]:
        data = _read_source(source_file, source_offset, length)
        if not data:
            return []
        cb = device.create_command_buffer(CommandBufferMode.ONE_SHOT, CommandCategory.TRANSFER)
        cb.begin()
        cb.update_buffer(data, 0, target, target_offset, length)
        cb.end()
        return [cb.prepare(None).encode(device._wgpu)]

    device._queue.operation(wait, signal, [root._allocation], prepare=prepare)


def queue_write(
    device: Device,
    source: BufferTarget,
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
    ref, root = _direct_ref(
        what,
        "source",
        source,
        source_offset,
        length,
        device,
        BufferUsage.TRANSFER_SOURCE,
        MemoryAccess.READ,
    )
    if not isinstance(target_file, (str, os.PathLike)) and not hasattr(target_file, "write"):
        size = memoryview(target_file).nbytes
        if target_offset + length > size:
            raise OutOfRangeError(
                f"{what}: target range [{target_offset}, {target_offset + length}) is past "
                f"the end of the {size}-byte target"
            )

    def write() -> None:
        # Straight from the mapped staging buffers into the file, chunk by chunk.
        with _Target(target_file, target_offset) as sink:
            device._queue.staging.read(root, ref.offset, length, sink.write_at)

    device._queue.operation(wait, signal, [root._allocation], on_complete=write)
