"""The device allocator: buffer creation and compatibility queries."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import BackendError
from hal.core.builtins import allocation_size
from hal.enums import BufferUsage, MemoryAccess, MemoryType, coerce_flags
from hal.errors import (
    HalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from hal.runtime.buffer import Allocation, Buffer
from hal.runtime.buffer_pool import PoolStatistics
from hal.runtime.loss import backend_failure

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.buffer_pool import BufferPool
    from hal.runtime.device import Device
    from hal.runtime.encoder import BindGroupCache
    from hal.runtime.queue import Queue
    from hal.runtime.transfers import HostTransfers
    from hal.runtime.zeroing import PendingClears

__all__ = ["Allocator", "host_array"]

_KNOWN_USAGE = (
    BufferUsage.TRANSFER
    | BufferUsage.DISPATCH_INDIRECT_PARAMS
    | BufferUsage.DISPATCH_UNIFORM_READ
    | BufferUsage.DISPATCH_STORAGE
    | BufferUsage.MAPPING
    | BufferUsage.MAPPING_PERSISTENT
)


class Allocator:
    """Allocates buffers on one device (``device.allocator``), reusing the backend buffers
    of released allocations through a bounded free pool (hal/runtime/buffer_pool.py;
    ``HAL_BUFFER_POOL_BYTES``)."""

    def __init__(
        self,
        device: Device,
        backend: Backend,
        queue: Queue,
        clears: PendingClears,
        bind_groups: BindGroupCache,
        host: HostTransfers,
        pool: BufferPool,
    ) -> None:
        self._device = device
        self._backend = backend
        self._queue = queue
        self._clears = clears
        self._bind_groups = bind_groups
        self._host = host
        self._pool = pool

    def pool_statistics(self) -> PoolStatistics:
        """What the free pool of released buffers holds and how many allocations it served
        (a snapshot; ``limit`` 0 when ``HAL_BUFFER_POOL_BYTES=0`` turned it off). Never
        raises."""
        return self._pool.statistics()

    def empty_pool(self) -> int:
        """Destroy the idle backend buffers the free pool holds (their memory goes back to
        the driver, as torch's ``empty_cache``); the bytes they held. Buffers released later
        are pooled again. Never raises."""
        return self._pool.clear()

    def query_buffer_compatibility(
        self,
        size: int,
        *,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
        usage: BufferUsage = BufferUsage.DEFAULT,
    ) -> bool:
        """True if :meth:`allocate_buffer` would accept a buffer of ``size`` bytes with this
        memory type and usage (it may still run out of memory). Never raises: False for
        anything ``allocate_buffer`` refuses, a closed device included."""
        try:
            self._device.check_open("query_buffer_compatibility")
            self._request("query_buffer_compatibility", size, memory_type, usage, MemoryAccess.ALL)
        except HalError:
            return False
        return True

    def _limit(self) -> int:
        """The largest ``size`` :meth:`allocate_buffer` accepts: the device's max-buffer-size
        rounded down to whole 4-byte words (allocations are padded to whole words)."""
        return self._device.caps.max_buffer_size & ~3

    def _request(
        self, what: str, size: Any, memory_type: Any, usage: Any, access: Any
    ) -> tuple[int, MemoryType, BufferUsage, MemoryAccess]:
        """The checked arguments of an allocation. Raises InvalidArgumentError (a bad size,
        flags or unknown usage bits) and ResourceExhaustedError (past the device limit)."""
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise InvalidArgumentError(f"{what}: size {size!r} is not a non-negative int")
        size = int(size)
        memory_type = coerce_flags(what, "memory_type", memory_type, MemoryType)
        usage = coerce_flags(what, "usage", usage, BufferUsage)
        access = coerce_flags(what, "access", access, MemoryAccess)
        if int(usage) & ~int(_KNOWN_USAGE):
            raise InvalidArgumentError(f"{what}: usage {usage!r} has unknown bits")
        limit = self._limit()
        if size > limit:
            raise ResourceExhaustedError(
                f"{what}: size {size} exceeds the largest allocation, {limit} bytes (the "
                f"device's max-buffer-size {self._device.caps.max_buffer_size} in whole "
                "4-byte words)"
            )
        return size, memory_type, usage, access

    def allocate_buffer(
        self,
        size: int,
        *,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
        usage: BufferUsage = BufferUsage.DEFAULT,
        access: MemoryAccess = MemoryAccess.ALL,
        what: str = "allocate_buffer",
    ) -> Buffer:
        """A new zero-filled buffer of ``size`` bytes (0 allowed; at most the device's
        max-buffer-size rounded down to whole 4-byte words).

        The result's memory type may have more bits than requested: every buffer is
        DEVICE_VISIBLE, and MAPPING usage adds HOST_VISIBLE. Raises InvalidArgumentError for a
        negative or non-int size, flags that are not of their enum or unknown usage bits,
        ResourceExhaustedError beyond the device limit or out of memory. ``what`` names the
        operation in messages (``queue_alloca`` allocates through here too)."""
        return self._allocate(size, memory_type, usage, access, what, 0)

    def buffer_from_numpy(
        self,
        array: np.ndarray,
        *,
        usage: BufferUsage = BufferUsage.DEFAULT,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
    ) -> Buffer:
        """A new buffer holding a copy of ``array``'s bytes (C order), with TRANSFER_TARGET
        usage added (``device.buffer_from_numpy``). Reused memory is not zeroed under the
        bytes the copy overwrites (only past them). Raises as :meth:`allocate_buffer`, and
        InvalidArgumentError for an array of Python objects or something that is not an
        array; a failed copy releases the buffer."""
        data = host_array("buffer_from_numpy", array)
        usage = coerce_flags("buffer_from_numpy", "usage", usage, BufferUsage)
        buffer = self._allocate(
            data.nbytes,
            memory_type,
            usage | BufferUsage.TRANSFER_TARGET,
            MemoryAccess.ALL,
            "allocate_buffer",
            data.nbytes,
        )
        try:
            self._host.write(buffer, 0, data.reshape(-1).view(np.uint8))
        except BaseException:
            # Never handed out half-written (reused memory holds an earlier buffer's bytes).
            buffer.release()
            raise
        return buffer

    def _allocate(
        self, size: Any, memory_type: Any, usage: Any, access: Any, what: str, written: int
    ) -> Buffer:
        """:meth:`allocate_buffer`; the caller overwrites bytes ``[0, written)`` before any
        other use, so a reused backend buffer is zeroed only past them."""
        device = self._device
        try:
            device.check_open(what)
        except UnavailableError:
            self._pool.clear()  # a closed or lost device's buffers are never used again
            raise
        size, memory_type, usage, access = self._request(what, size, memory_type, usage, access)
        memory_type = memory_type | MemoryType.DEVICE_VISIBLE
        if usage & (BufferUsage.MAPPING_SCOPED | BufferUsage.MAPPING_PERSISTENT):
            memory_type |= MemoryType.HOST_VISIBLE | MemoryType.HOST_COHERENT
        # Whole 16-byte blocks where max-buffer-size allows (the unaligned copy binds 16-byte
        # windows), else whole words (_request keeps size to whole words of the limit).
        padded = allocation_size(size, device.caps.max_buffer_size)
        uniform = bool(usage & BufferUsage.DISPATCH_UNIFORM_READ)
        pool = self._pool
        capacity = pool.capacity(padded, device.caps.max_buffer_size)
        handle = pool.take(capacity, uniform)
        reused = handle is not None
        if handle is None:
            handle = self._create(what, size, capacity, uniform)
        allocation = Allocation(
            handle,
            padded,
            self._host,
            self._bind_groups.forget,
            functools.partial(pool.put, capacity, uniform),
        )
        # New memory is zeroed entirely (that also defeats a wgpu-native bug, see
        # hal/runtime/zeroing.py); reused memory too, except what the caller overwrites at
        # once: from the last whole word it writes (clears take words; the write then
        # rewrites that word's head), padding included, so every byte past it reads zero.
        start = (min(written, size) & ~3) if reused else 0
        if start < capacity:
            self._clears.add(allocation, start)
        return Buffer(device, allocation, None, 0, size, memory_type, usage, access)

    def _create(self, what: str, size: int, capacity: int, uniform: bool) -> Any:
        """A new backend buffer of ``capacity`` bytes; out of memory, the pool's idle
        buffers are destroyed and it is tried once more. Raises ResourceExhaustedError
        (out of memory), UnavailableError (the device was lost)."""
        for attempt in (0, 1):
            try:
                return self._backend.create_buffer(capacity, uniform=uniform, label="hal")
            except BackendError as error:  # out-of-memory surfaces as a backend error
                if error.lost:
                    self._pool.uncount()
                    raise backend_failure(self._queue, what, error) from None
                if attempt or not self._pool.clear():
                    self._pool.uncount()
                    raise ResourceExhaustedError(f"{what}: {size} bytes: {error}") from error
        raise AssertionError("unreachable")  # pragma: no cover


def host_array(what: str, array: Any) -> np.ndarray:
    """``array`` (anything ``np.asarray`` takes) as a C-contiguous array of plain bytes.
    Raises InvalidArgumentError where that would hold Python objects (None, ``object()``,
    ``dtype=object``) or numpy refuses it."""
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{what}: array is not array-like: {error}") from None
    if array.dtype.hasobject:
        raise InvalidArgumentError(
            f"{what}: array of dtype {array.dtype} holds Python objects, not plain bytes"
        )
    return np.ascontiguousarray(array)
