"""The device allocator: buffer creation and compatibility queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import BackendError
from hal.core.builtins import allocation_size
from hal.enums import BufferUsage, MemoryAccess, MemoryType, coerce_flags
from hal.errors import HalError, InvalidArgumentError, ResourceExhaustedError
from hal.runtime.buffer import Allocation, Buffer
from hal.runtime.loss import backend_failure

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.device import Device
    from hal.runtime.encoder import BindGroupCache
    from hal.runtime.queue import Queue
    from hal.runtime.transfers import HostTransfers
    from hal.runtime.zeroing import PendingClears

__all__ = ["Allocator"]

_KNOWN_USAGE = (
    BufferUsage.TRANSFER
    | BufferUsage.DISPATCH_INDIRECT_PARAMS
    | BufferUsage.DISPATCH_UNIFORM_READ
    | BufferUsage.DISPATCH_STORAGE
    | BufferUsage.MAPPING
    | BufferUsage.MAPPING_PERSISTENT
)


class Allocator:
    """Allocates buffers on one device (``device.allocator``)."""

    def __init__(
        self,
        device: Device,
        backend: Backend,
        queue: Queue,
        clears: PendingClears,
        bind_groups: BindGroupCache,
        host: HostTransfers,
    ) -> None:
        self._device = device
        self._backend = backend
        self._queue = queue
        self._clears = clears
        self._bind_groups = bind_groups
        self._host = host

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
        device = self._device
        device.check_open(what)
        size, memory_type, usage, access = self._request(what, size, memory_type, usage, access)
        memory_type = memory_type | MemoryType.DEVICE_VISIBLE
        if usage & (BufferUsage.MAPPING_SCOPED | BufferUsage.MAPPING_PERSISTENT):
            memory_type |= MemoryType.HOST_VISIBLE | MemoryType.HOST_COHERENT
        # Whole 16-byte blocks where max-buffer-size allows (the unaligned copy binds 16-byte
        # windows), else whole words (_request keeps size to whole words of the limit).
        padded = allocation_size(size, device.caps.max_buffer_size)
        try:
            handle = self._backend.create_buffer(
                padded, uniform=bool(usage & BufferUsage.DISPATCH_UNIFORM_READ), label="hal"
            )
        except BackendError as error:  # out-of-memory surfaces as a backend error
            if error.lost:
                raise backend_failure(self._queue, what, error) from None
            raise ResourceExhaustedError(f"{what}: {size} bytes: {error}") from error
        allocation = Allocation(
            handle, padded, self._host, self._bind_groups.forget, self._backend.destroy_buffer
        )
        self._clears.add(allocation)
        return Buffer(device, allocation, None, 0, size, memory_type, usage, access)
