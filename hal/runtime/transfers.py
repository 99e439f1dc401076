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

import numpy as np

from hal.backends.protocol import BackendError
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
from hal.errors import FailedPreconditionError, InvalidArgumentError, OutOfRangeError
from hal.runtime.buffer import Buffer, as_target
from hal.runtime.loss import backend_failure
from hal.runtime.semaphore import normalise_points
from hal.runtime.staging import copy_bytes

if TYPE_CHECKING:
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.execution import Executor
    from hal.runtime.profiling import ProfilerSlot
    from hal.runtime.queue import Queue
    from hal.runtime.semaphore import WaitList

__all__ = [
    "STAGED_MIN",
    "HostTransfers",
    "queue_alloca",
    "queue_dealloca",
    "queue_read",
    "queue_update_staged",
    "queue_write",
]

STAGED_MIN = 64 * 1024
"""From this size, ``queue_update``/``queue_read`` stage their bytes in hal's staging buffers
(hal/staging.py) instead of a plan's STAGING bytes (which costs three more copies)."""


def queue_update_staged(
    host: HostTransfers,
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
    target = as_target(target)
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
    ref = make_ref(what, "target", target, target_offset, length, 0, host.device)
    assert ref.buffer is not None
    check_buffer_usage(what, "target", ref.buffer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE)
    outer = target.buffer if isinstance(target, BufferRef) else target
    if outer is not ref.buffer:  # a subspan carries its own permissions
        check_buffer_usage(what, "target", outer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE)
    data = view[source_offset : source_offset + length]

    def fill(chunk: memoryview, position: int) -> None:
        copy_bytes(chunk, data[position : position + len(chunk)])

    waits = normalise_points(what, wait)
    if all(s.failure is None and s.value >= v for s, v in waits):
        # Nothing to wait for: stream it now through the staging pool (the bytes are copied
        # out before this returns), then signal once the copies submitted before finish.
        # Capturing it all first would hold size/chunk staging buffers at once.
        try:
            host.staging.write(ref.buffer, ref.offset, data)
        except BackendError as error:
            raise backend_failure(host.queue, what, error) from None
        host.queue.operation((), signal)
        return True
    _queue_staged(host, ref.buffer, ref.offset, length, fill, wait, signal)
    return True


def _queue_staged(
    host: HostTransfers,
    root: Buffer,
    offset: int,
    length: int,
    fill: Callable[[memoryview, int], None],
    wait: WaitList,
    signal: WaitList,
) -> None:
    """Stage ``length`` bytes from ``fill`` for absolute ``offset`` of ``root`` now and queue
    their copy (body through staging buffers, edges through an update command buffer)."""
    upload, head, tail = host.staging.capture(root, offset, length, fill)
    edges = _edges(host.device, root, offset, head, offset + length - len(tail), tail)

    def prepare() -> list[Any]:
        command_buffers = [] if upload is None else [upload.encode()]
        if edges is not None:
            command_buffers.append(host.executor.encode_one(edges))
        return command_buffers

    host.queue.operation(
        wait,
        signal,
        [root.allocation],
        prepare=prepare,
        on_complete=None if upload is None else upload.release,
    )


def _edges(
    device: Device, root: Buffer, head_offset: int, head: bytes, tail_offset: int, tail: bytes
) -> CommandBuffer | None:
    """An ended command buffer writing the unaligned ``head`` and ``tail`` bytes at their
    absolute offsets in ``root``; builtin kernels touch no other byte. None when there are
    none. UNVALIDATED: the caller validated usage and range."""
    if not head and not tail:
        return None
    cb = device.create_command_buffer(
        CommandBufferMode.ONE_SHOT | CommandBufferMode.UNVALIDATED, CommandCategory.TRANSFER
    )
    cb.begin()
    if head:
        cb.update_buffer(head, 0, root, head_offset, len(head))
    if tail:
        cb.update_buffer(tail, 0, root, tail_offset, len(tail))
    cb.end()
    return cb


def queue_alloca(
    host: HostTransfers,
    size: int,
    wait: WaitList,
    signal: WaitList,
    memory_type: MemoryType,
    usage: BufferUsage,
) -> Buffer:
    """Allocate now; the buffer may be used by queue work ordered after ``signal``, which is
    signalled once ``wait`` is reached."""
    buffer = host.device.allocator.allocate_buffer(
        size, memory_type=memory_type, usage=usage, what="queue_alloca"
    )
    host.queue.operation(wait, signal)
    return buffer


def queue_dealloca(host: HostTransfers, buffer: Buffer, wait: WaitList, signal: WaitList) -> None:
    """Release ``buffer`` once ``wait`` is reached and the work submitted before finished."""
    if not isinstance(buffer, Buffer) or buffer.device is not host.device:
        raise InvalidArgumentError(f"queue_dealloca: {buffer!r} is not a buffer of this device")
    buffer.check_alive("queue_dealloca", "buffer")
    if buffer.allocated_buffer is not buffer:
        raise InvalidArgumentError("queue_dealloca: buffer is a subspan, not an allocation")
    host.queue.operation(wait, signal, on_complete=buffer.release)


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
    target = as_target(target)
    if isinstance(target, SlotRef):
        raise InvalidArgumentError(f"{what}: {argument} must be a Buffer or BufferRef")
    ref = make_ref(what, argument, target, offset, length, 0, device)
    assert ref.buffer is not None
    check_buffer_usage(what, argument, ref.buffer, usage, access)
    return ref, ref.buffer


def queue_read(
    host: HostTransfers,
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
        host.device,
        BufferUsage.TRANSFER_TARGET,
        MemoryAccess.WRITE,
    )

    if length >= STAGED_MIN:
        # Read straight from the file into staging buffers once the waits are reached.
        staged: list[Any] = []  # the Upload, once prepared; released when the copy is done

        def prepare_staged() -> list[Any]:
            with _Source(source_file, source_offset, length) as reader:
                upload, head, tail = host.staging.capture(
                    root, ref.offset, length, reader.read_into
                )
            end = ref.offset + length
            edges = _edges(host.device, root, ref.offset, head, end - len(tail), tail)
            command_buffers = [] if upload is None else [upload.encode()]
            if edges is not None:
                command_buffers.append(host.executor.encode_one(edges))
            staged.append(upload)
            return command_buffers

        def release() -> None:
            for upload in staged:
                if upload is not None:
                    upload.release()

        host.queue.operation(
            wait, signal, [root.allocation], prepare=prepare_staged, on_complete=release
        )
        return

    def prepare() -> list[Any]:
        data = _read_source(source_file, source_offset, length)
        if not data:
            return []
        cb = host.device.create_command_buffer(CommandBufferMode.ONE_SHOT, CommandCategory.TRANSFER)
        cb.begin()
        cb.update_buffer(data, 0, target, target_offset, length)
        cb.end()
        return [host.executor.encode_one(cb)]

    host.queue.operation(wait, signal, [root.allocation], prepare=prepare)


def queue_write(
    host: HostTransfers,
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
        host.device,
        BufferUsage.TRANSFER_SOURCE,
        MemoryAccess.READ,
    )
    if not isinstance(target_file, (str, os.PathLike)) and not hasattr(target_file, "write"):
        size = memoryview(target_file).nbytes
        if target_offset + length > size:
            raise OutOfRangeError(
                f"{what}: target_offset {target_offset} + length {length} is past the end "
                f"of the {size}-byte target_file"
            )

    def write() -> None:
        if not isinstance(target_file, (str, os.PathLike)) and not hasattr(target_file, "write"):
            # Caller memory: read straight into it (the GPU writes its pages directly where
            # they can be wrapped: a registered numpy array, see hal/runtime/host_cache.py).
            view = memoryview(target_file).cast("B")[target_offset : target_offset + length]
            try:
                host.staging.read_into(root, ref.offset, view, target_file)
            except BackendError as error:
                raise backend_failure(host.queue, what, error) from None
            return
        # Straight from the mapped staging buffers into the file, chunk by chunk.
        with _Target(target_file, target_offset) as sink:
            host.staging.read(root, ref.offset, length, sink.write_at)

    host.queue.operation(wait, signal, [root.allocation], on_complete=write)


class HostTransfers:
    """Host transfers of one device (``transfer_h2d``/``d2h``, ``map_*``, ``to_numpy``,
    queue file I/O) and what the queue operations above need: the device (to record
    command buffers), its queue, its executor and its staging pool."""

    def __init__(
        self, device: Device, queue: Queue, executor: Executor, backend: Any, profiler: ProfilerSlot
    ) -> None:
        from hal.runtime.staging import StagingPool

        self.device = device
        self.queue = queue
        self.executor = executor
        discrete = getattr(getattr(device, "info", None), "adapter_type", "") == "discrete"
        self.staging = StagingPool(backend, queue, profiler, self._write_edges, discrete)

    def _write_edges(
        self, root: Buffer, head_offset: int, head: bytes, tail_offset: int, tail: bytes
    ) -> None:
        cb = _edges(self.device, root, head_offset, head, tail_offset, tail)
        if cb is not None:
            self.executor.execute(cb, (), (), None)

    def close(self) -> None:
        """Release the staging pool's registration cache and idle buffers (the device is
        closing). Never raises."""
        self.staging.close()

    def _failure(self, what: str, error: BackendError) -> Exception:
        # A lost device pins no more caller memory: the cache's wraps are released now.
        if error.lost:
            self.staging.cache.clear()
        return backend_failure(self.queue, what, error)

    def write(self, buffer: Buffer, offset: int, data: Any) -> None:
        """Write ``data`` at absolute ``offset`` of ``buffer``'s allocation, ordered after all
        submitted work; unaligned edges change only ``data``'s bytes. Returns once ``data``
        was copied out. Raises FailedPreconditionError (released), UnavailableError."""
        view = memoryview(data).cast("B")
        if len(view) == 0:
            return
        # Held for the whole transfer: a release() from another thread meanwhile is deferred
        # (submitting a copy that uses a destroyed buffer would abort the process).
        allocation = buffer.allocation
        allocation.acquire()
        try:
            _check_usable(allocation, "host write")
            self.staging.write(buffer, offset, view)
        except BackendError as error:
            raise self._failure("host write", error) from None
        finally:
            allocation.retire()

    def read(self, buffer: Buffer, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at absolute ``offset`` after all submitted work."""
        from hal.runtime.staging import new_bytes

        if length == 0:
            return b""
        result, view = new_bytes(length)
        # Large reads land straight in the new object's pages (wrapped as a host-memory
        # buffer where the backend has them); the object owns that memory.
        self.read_into(buffer, offset, view, keep=result)
        view.release()
        return bytes(result) if not isinstance(result, bytes) else result

    def read_array(self, buffer: Buffer, offset: int, length: int) -> np.ndarray:
        """A new flat uint8 array of the ``length`` bytes at absolute ``offset`` after all
        submitted work. Large ones are host pages the GPU copies into directly where the
        backend has host-memory buffers (reused once the array was collected); page
        aligned, so any dtype may view them. Raises as :meth:`read_into`."""
        leased = self.staging.lease_result(length) if offset % 4 == 0 else None
        if leased is None:
            out = np.empty(length, np.uint8)
            self.read_into(buffer, offset, out)
            return out
        array, view = leased
        self.read_into(buffer, offset, view)
        return array

    def read_into(self, buffer: Buffer, offset: int, out: Any, keep: Any = None) -> None:
        """Read ``len(out)`` bytes at absolute ``offset`` into the writable buffer ``out``
        after all submitted work (``keep``, default ``out``: the object owning its memory,
        held while the GPU may write it). Raises FailedPreconditionError (released),
        UnavailableError."""
        target = memoryview(out).cast("B")
        if len(target) == 0:
            return
        allocation = buffer.allocation
        allocation.acquire()  # as in write: a concurrent release() is deferred
        try:
            _check_usable(allocation, "host read")
            self.staging.read_into(buffer, offset, target, out if keep is None else keep)
        except BackendError as error:
            raise self._failure("host read", error) from None
        finally:
            allocation.retire()

    def d2h_range(
        self, what: str, source: Any, source_offset: int, length: int | None
    ) -> tuple[Buffer, int, int]:
        """Validate a device-to-host read: (buffer, absolute offset, length). Raises
        UnavailableError, OutOfRangeError, PermissionDeniedError (no TRANSFER_SOURCE usage or
        READ access, as the queue operations), FailedPreconditionError."""
        from hal.core.checks import check_range, resolve_direct

        self.device.check_open(what)
        buffer, base, size = resolve_direct(as_target(source), what, "source", self.device)
        check_buffer_usage(what, "source", buffer, BufferUsage.TRANSFER_SOURCE, MemoryAccess.READ)
        if length is None:
            check_range(what, "source", source_offset, 0, size)
            length = size - source_offset
        check_range(what, "source", source_offset, length, size)
        return buffer, base + source_offset, length


def _check_usable(allocation: Any, what: str) -> None:
    # Not closed-checked: work in flight at close (a queue_write's read-back) still
    # finishes; public entry points check the device themselves.
    if allocation.released:
        raise FailedPreconditionError(f"{what}: the buffer was released")
