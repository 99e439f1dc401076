"""The device allocator: buffer creation and compatibility queries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hal.backends.protocol import BackendError
from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import InvalidArgumentError, ResourceExhaustedError
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
        """True if a buffer of ``size`` bytes with this memory type and usage can be
        allocated. Never raises."""
        if not isinstance(size, (int, np.integer)) or size < 0:
            return False
        if size > self._device.caps.max_buffer_size:
            return False
        return not int(usage) & ~int(_KNOWN_USAGE)

    def allocate_buffer(
        self,
        size: int,
        *,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
        usage: BufferUsage = BufferUsage.DEFAULT,
        access: MemoryAccess = MemoryAccess.ALL,
    ) -> Buffer:
        """A new zero-filled buffer of ``size`` bytes (0 allowed).

        The result's memory type may have more bits than requested: every buffer is
        DEVICE_VISIBLE, and MAPPING usage adds HOST_VISIBLE. Raises InvalidArgumentError for a
        negative size or unknown usage bits, ResourceExhaustedError beyond the device limit."""
        device = self._device
        device.check_open("allocate_buffer")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
            raise InvalidArgumentError(f"allocate_buffer: size {size!r} is not a non-negative int")
        size = int(size)
        usage = BufferUsage(usage)
        if int(usage) & ~int(_KNOWN_USAGE):
            raise InvalidArgumentError(f"allocate_buffer: usage {usage!r} has unknown bits")
        if size > device.caps.max_buffer_size:
            raise ResourceExhaustedError(
                f"allocate_buffer: size {size} exceeds the device's max-buffer-size "
                f"{device.caps.max_buffer_size}"
            )
        memory_type = MemoryType(memory_type) | MemoryType.DEVICE_VISIBLE
        if usage & (BufferUsage.MAPPING_SCOPED | BufferUsage.MAPPING_PERSISTENT):
            memory_type |= MemoryType.HOST_VISIBLE | MemoryType.HOST_COHERENT
        # Whole words, so builtin kernels can read-modify-write the last partial word.
        padded = max(4, (size + 3) & ~3)
        try:
            handle = self._backend.create_buffer(
                padded, uniform=bool(usage & BufferUsage.DISPATCH_UNIFORM_READ), label="hal"
            )
        except BackendError as error:  # out-of-memory surfaces as a backend error
            if error.lost:
                raise backend_failure(self._queue, "allocate_buffer", error) from None
            raise ResourceExhaustedError(f"allocate_buffer: {size} bytes: {error}") from error
        allocation = Allocation(
            handle, padded, self._host, self._bind_groups.forget, self._backend.destroy_buffer
        )
        self._clears.add(allocation)
        return Buffer(device, allocation, None, 0, size, memory_type, usage, MemoryAccess(access))
