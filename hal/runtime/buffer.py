"""Buffers, subspans and buffer views. (References, ``BufferRef``/``SlotRef``, and the
checks they share live in :mod:`hal.core.refs` and :mod:`hal.core.checks`.)"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.core.checks import check_buffer_usage, check_dtype, check_int, check_range, host_bytes
from hal.core.refs import BufferLike, BufferRef
from hal.enums import BufferUsage, MemoryAccess, MemoryType, coerce_flags
from hal.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from hal.runtime.device import Device
    from hal.runtime.transfers import HostTransfers

__all__ = ["Buffer", "BufferView", "as_target"]

_HOST_ACCESS = int(MemoryAccess.READ | MemoryAccess.WRITE)


class Allocation:
    """The backend buffer behind a root :class:`Buffer`, and who still needs it.

    ``in_flight`` counts submitted operations that use it; the backend buffer is freed when
    the buffer was released and that count drops to zero. ``host`` does host transfers on it
    (hal/runtime/transfers.py); ``on_release`` runs at release (cached bind groups go) and
    ``on_free`` when the memory is freed.
    """

    __slots__ = (
        "destroyed",
        "handle",
        "host",
        "in_flight",
        "lock",
        "on_free",
        "on_release",
        "released",
        "size",
    )

    def __init__(
        self,
        handle: Any,
        size: int,
        host: HostTransfers,
        on_release: Callable[[Any], None],
        on_free: Callable[[Any], None],
    ) -> None:
        self.handle = handle
        self.size = size
        self.host = host
        self.on_release = on_release
        self.on_free = on_free
        self.released = False
        self.destroyed = False
        self.in_flight = 0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """One more submitted operation uses the allocation."""
        with self.lock:
            self.in_flight += 1

    def retire(self) -> None:
        """An operation that used the allocation finished."""
        with self.lock:
            self.in_flight -= 1
            destroy = self.released and self.in_flight == 0 and not self.destroyed
            if destroy:
                self.destroyed = True
        if destroy:
            self.on_free(self.handle)

    def release(self) -> None:
        """Free the memory once no submitted operation uses it (idempotent)."""
        with self.lock:
            if self.released:
                return
            self.released = True
            # Held while the bind groups are forgotten, so the memory is freed only after:
            # freed first, the free pool could give the handle to a new allocation whose
            # groups a late forget would then drop while its programs still encode them.
            self.in_flight += 1
        try:
            with contextlib.suppress(Exception):
                self.on_release(self.handle)
        finally:
            self.retire()


class Buffer(BufferLike):
    """A range of device memory: either an allocation or a subspan sharing one.

    Attributes: ``byte_length``, ``byte_offset`` (within the allocation), ``memory_type``,
    ``allowed_usage``, ``allowed_access``, ``allocated_buffer`` (the root), ``device``;
    ``permission_bits`` is (usage, access, memory type) as plain ints, for hot paths.
    """

    __slots__ = (
        "__weakref__",
        "_allocation",
        "_allowed_access",
        "_allowed_usage",
        "_memory_type",
        "_released",
        "allocated_buffer",
        "byte_length",
        "byte_offset",
        "device",
        "permission_bits",
    )

    def __init__(
        self,
        device: Device,
        allocation: Allocation,
        root: Buffer | None,
        byte_offset: int,
        byte_length: int,
        memory_type: MemoryType,
        usage: BufferUsage,
        access: MemoryAccess,
    ) -> None:
        self.device = device
        self._allocation = allocation
        self.allocated_buffer: Buffer = root if root is not None else self
        self.byte_offset = byte_offset
        self.byte_length = byte_length
        self._memory_type = memory_type
        self._allowed_usage = usage
        self._allowed_access = access
        self.permission_bits = (int(usage), int(access), int(memory_type))
        self._released = False
        if root is None:
            _release_dropped()
            # A dropped allocation is released like an explicit release() (deferred while
            # submitted work holds it; a submission keeps its plan's buffers referenced).
            # Not at interpreter exit, where the device may already be gone.
            finalizer = weakref.finalize(self, _dropped.append, allocation)
            finalizer.atexit = False

    @property
    def memory_type(self) -> MemoryType:
        """The buffer's MemoryType bits."""
        return self._memory_type

    @memory_type.setter
    def memory_type(self, value: MemoryType) -> None:
        self._memory_type = value
        self.permission_bits = (*self.permission_bits[:2], int(value))

    @property
    def allowed_usage(self) -> BufferUsage:
        """The BufferUsage bits the buffer allows."""
        return self._allowed_usage

    @allowed_usage.setter
    def allowed_usage(self, value: BufferUsage) -> None:
        self._allowed_usage = value
        self.permission_bits = (int(value), *self.permission_bits[1:])

    @property
    def allowed_access(self) -> MemoryAccess:
        """The MemoryAccess bits the buffer allows."""
        return self._allowed_access

    @allowed_access.setter
    def allowed_access(self, value: MemoryAccess) -> None:
        self._allowed_access = value
        usage, _, memory = self.permission_bits
        self.permission_bits = (usage, int(value), memory)

    def __repr__(self) -> str:
        span = "" if self.allocated_buffer is self else f" @{self.byte_offset}"
        return f"<hal.Buffer {self.byte_length} B{span} id={id(self.allocated_buffer):#x}>"

    @property
    def is_released(self) -> bool:
        """True once this buffer, or the allocation it is a subspan of, was released."""
        return self._released or self._allocation.released

    @property
    def allocation(self) -> Allocation:
        """The device memory behind this buffer, shared with its subspans (runtime use)."""
        return self._allocation

    def check_alive(self, what: str, argument: str) -> None:
        """Raise FailedPreconditionError if this buffer was released."""
        if self.is_released:
            raise FailedPreconditionError(f"{what}: {argument} {self!r} was released")

    def subspan(self, offset: int, length: int | None = None) -> Buffer:
        """A buffer sharing this one's storage for ``[offset, offset+length)``.

        Subspans of subspans are re-rooted on the allocation. Raises OutOfRangeError."""
        self.check_alive("subspan", "buffer")
        length = check_range("subspan", "", offset, length, self.byte_length, "buffer")
        offset = int(offset)
        return Buffer(
            self.device,
            self._allocation,
            self.allocated_buffer,
            self.byte_offset + offset,
            length,
            self.memory_type,
            self.allowed_usage,
            self.allowed_access,
        )

    def release(self) -> None:
        """Release the buffer. For an allocation, the memory is freed as soon as no submitted
        work uses it: release while work is in flight (or held back on semaphores) is
        *deferred*, never rejected, and that work still sees the buffer's contents. For a
        subspan only the view ends. Afterwards recording a command on it, or submitting a
        command buffer that references it, raises FailedPreconditionError. Idempotent; never
        raises. Dropping the last reference to an allocation releases it the same way."""
        _release_dropped()
        if self._released:
            return
        self._released = True
        if self.allocated_buffer is self:
            self._allocation.release()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- host access ----------------------------------------------------------------------

    def _map_range(self, what: str, access: MemoryAccess, offset: int, length: int | None) -> int:
        self.check_alive(what, "buffer")
        self.device.check_open(what)
        if not self.allowed_usage & (BufferUsage.MAPPING_SCOPED | BufferUsage.MAPPING_PERSISTENT):
            raise PermissionDeniedError(
                f"{what}: buffer usage {self.allowed_usage!r} lacks MAPPING (host access)"
            )
        check_buffer_usage(what, "buffer", self, 0, int(access) & _HOST_ACCESS)
        return check_range(what, "", offset, length, self.byte_length, "buffer")

    def map_read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``[offset, offset+length)``. Needs MAPPING usage and READ access."""
        length = self._map_range("map_read", MemoryAccess.READ, offset, length)
        return self._allocation.host.read(self, self.byte_offset + offset, length)

    def map_write(self, offset: int, data: Any) -> None:
        """Write host bytes at ``offset``. Needs MAPPING usage and WRITE access."""
        payload = host_bytes(data, "map_write", "data")
        self._map_range("map_write", MemoryAccess.WRITE, offset, len(payload))
        self._allocation.host.write(self, self.byte_offset + offset, payload)

    def map_zero(self, offset: int = 0, length: int | None = None) -> None:
        """Write zeros to ``[offset, offset+length)``."""
        length = self._map_range("map_zero", MemoryAccess.WRITE, offset, length)
        self._allocation.host.write(self, self.byte_offset + offset, bytes(length))

    def map_fill(
        self, offset: int, length: int | None, pattern: Any, pattern_length: int | None = None
    ) -> None:
        """Fill ``[offset, offset+length)`` with a 1/2/4-byte pattern (as ``fill_buffer``).

        Raises InvalidArgumentError for a bad pattern or misaligned range."""
        from hal.core.checks import normalise_pattern

        length = self._map_range("map_fill", MemoryAccess.WRITE, offset, length)
        pattern_bytes = normalise_pattern("map_fill", pattern, pattern_length)
        size = len(pattern_bytes)
        if offset % size or length % size:
            raise InvalidArgumentError(
                f"map_fill: offset {offset} and length {length} must be multiples of "
                f"pattern_length {size}"
            )
        data = pattern_bytes * (length // size)
        self._allocation.host.write(self, self.byte_offset + offset, data)

    @contextlib.contextmanager
    def map_range(
        self, access: MemoryAccess, offset: int = 0, length: int | None = None
    ) -> Iterator[memoryview]:
        """Map ``[offset, offset+length)``; yields a memoryview (writable unless READ-only
        access). Written bytes reach the buffer when the block exits. Raises as the other
        host access methods, and InvalidArgumentError for an ``access`` that is not a
        MemoryAccess."""
        access = coerce_flags("map_range", "access", access, MemoryAccess)
        length = self._map_range("map_range", access, offset, length)
        absolute = self.byte_offset + offset
        if access & MemoryAccess.READ or not access & MemoryAccess.DISCARD:
            staging = bytearray(self._allocation.host.read(self, absolute, length))
        else:
            staging = bytearray(length)
        view = memoryview(staging)
        try:
            yield view if access & MemoryAccess.WRITE else view.toreadonly()
        finally:
            view.release()
        if access & MemoryAccess.WRITE:
            self._allocation.host.write(self, absolute, staging)

    def to_numpy(self, dtype: Any = np.uint8, shape: Any = None, offset: int = 0) -> np.ndarray:
        """A host copy of the buffer's bytes from ``offset`` as an array of ``dtype``
        (``shape`` defaults to 1-D). Raises OutOfRangeError for an offset or shape past the
        end, InvalidArgumentError if the bytes don't divide or for a bad dtype (object-holding
        or empty) or shape, PermissionDeniedError without TRANSFER_SOURCE usage or READ
        access."""
        dtype = check_dtype("to_numpy", "dtype", dtype)
        available = check_range("to_numpy", "", offset, None, self.byte_length, "buffer")
        if shape is not None:
            shape = check_shape("to_numpy", shape)
        if shape is None:
            if available % dtype.itemsize:
                raise InvalidArgumentError(
                    f"to_numpy: {available} bytes from offset {offset} is not a whole number "
                    f"of {dtype} items"
                )
            count = available // dtype.itemsize
            shape = (count,)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        # Validated before allocating; read straight into the array (one copy, not two).
        root, absolute, _ = self._allocation.host.d2h_range("to_numpy", self, offset, nbytes)
        flat = self._allocation.host.read_array(root, absolute, nbytes)
        return flat.view(dtype).reshape(shape)


class BufferView:
    """A buffer range with a shape and a dtype (C order), like IREE's buffer view: the typed
    device array of hal. Accepted wherever a command or queue operation takes a Buffer, where
    it stands for ``BufferRef(view.buffer, 0, view.byte_length)``; ``np.asarray(view)`` and
    ``view.to_numpy()`` read it back with its dtype and shape."""

    __slots__ = ("buffer", "byte_length", "dtype", "ref", "shape")

    def __init__(self, buffer: Buffer, shape: Any, dtype: Any) -> None:
        """Raises InvalidArgumentError (naming ``BufferView`` and the argument) unless
        ``buffer`` is a live Buffer, ``shape`` an int or a sequence of non-negative ints and
        ``dtype`` a numpy dtype of plain bytes; OutOfRangeError when the shape needs more
        bytes than the buffer has; FailedPreconditionError for a released buffer."""
        what = "BufferView"
        if not isinstance(buffer, Buffer):
            raise InvalidArgumentError(
                f"{what}: buffer must be a hal.Buffer, not {type(buffer).__name__}"
            )
        buffer.check_alive(what, "buffer")
        self.shape: tuple[int, ...] = check_shape(what, shape)
        self.dtype: np.dtype[Any] = check_dtype(what, "dtype", dtype)
        need = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if need > buffer.byte_length:
            raise OutOfRangeError(
                f"BufferView: shape {self.shape} of {self.dtype} needs {need} bytes but the "
                f"buffer has {buffer.byte_length}"
            )
        self.buffer = buffer
        self.byte_length = need
        # The range the view stands for in commands and queue operations.
        self.ref = BufferRef(buffer, 0, need)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def to_numpy(self) -> np.ndarray:
        """A host copy of the view's contents with its dtype and shape (after all submitted
        work, as ``Buffer.to_numpy``). Raises PermissionDeniedError without TRANSFER_SOURCE
        usage, FailedPreconditionError for a released buffer, UnavailableError once the
        device is closed."""
        return self.buffer.to_numpy(self.dtype, self.shape)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(view)``: a host copy (always a new array, so ``copy=False`` raises
        ValueError as numpy asks), converted to ``dtype`` when given."""
        if copy is False:
            raise ValueError("BufferView: a device array cannot be viewed without a copy")
        array = self.to_numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d BufferView")
        return self.shape[0]

    def __repr__(self) -> str:
        dims = "x".join(map(str, self.shape)) or "scalar"
        return f"<hal.BufferView {dims} {self.dtype} of {self.buffer!r}>"


def as_target(target: Any) -> Any:
    """A command's or queue operation's target/source with a BufferView replaced by the
    range it stands for (:attr:`BufferView.ref`); anything else unchanged."""
    return target.ref if type(target) is BufferView else target


def check_shape(what: str, shape: Any) -> tuple[int, ...]:
    """``shape`` (a non-negative int or a sequence of them) as a tuple. Raises
    InvalidArgumentError otherwise (bools, floats and strings included)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (int, np.integer, Sequence)):
        raise InvalidArgumentError(f"{what}: shape {shape!r} must be an int or a sequence of ints")
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return tuple(check_int(what, f"shape[{i}]", dim) for i, dim in enumerate(dims))


# Allocations whose root Buffer was garbage-collected. The finaliser only appends here (a
# deque append takes no lock): it may run inside any critical section of the thread that
# triggered the collection, so taking the allocation's or the bind-group cache's lock there
# could deadlock. The next allocation or release() frees them.
_dropped: collections.deque[Allocation] = collections.deque()


def _release_dropped() -> None:
    """Release the allocations of dropped root Buffers: forget their cached bind groups and
    free their memory once no submitted work uses it."""
    while True:
        try:
            allocation = _dropped.popleft()
        except IndexError:
            return
        allocation.release()
