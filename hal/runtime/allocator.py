"""The device allocator: buffer creation and compatibility queries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import wgpu

from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import InvalidArgumentError, ResourceExhaustedError
from hal.runtime import loss
from hal.runtime.buffer import Buffer, _Allocation

if TYPE_CHECKING:
    from hal.runtime.device import Device

__all__ = ["Allocator", "wgpu_usage"]

_KNOWN_USAGE = (
    BufferUsage.TRANSFER
    | BufferUsage.DISPATCH_INDIRECT_PARAMS
    | BufferUsage.DISPATCH_UNIFORM_READ
    | BufferUsage.DISPATCH_STORAGE
    | BufferUsage.MAPPING
    | BufferUsage.MAPPING_PERSISTENT
)


def wgpu_usage(usage: BufferUsage) -> int:
    """The wgpu usage flags for a HAL buffer.

    Every buffer gets STORAGE, COPY_SRC/DST and INDIRECT whatever its HAL usage: the HAL
    checks usage itself at record time, and builtin kernels (fill, copy, binding shadows)
    must be able to touch any buffer a command targets.
    """
    flags = (
        wgpu.BufferUsage.STORAGE
        | wgpu.BufferUsage.COPY_SRC
        | wgpu.BufferUsage.COPY_DST
        | wgpu.BufferUsage.INDIRECT
    )
    if usage & BufferUsage.DISPATCH_UNIFORM_READ:
        flags |= wgpu.BufferUsage.UNIFORM
    return int(flags)


class Allocator:
    """Allocates buffers on one device (``device.allocator``)."""

    def __init__(self, device: Device) -> None:
        self._device = device

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
        device._check_open("allocate_buffer")
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
            wgpu_buffer = device._wgpu.create_buffer(
                size=padded, usage=wgpu_usage(usage), label="hal"
            )
        except Exception as error:  # out-of-memory surfaces as a wgpu error
            if loss.is_lost_error(error):
                raise loss.wgpu_failure(device, "allocate_buffer", error) from None
            raise ResourceExhaustedError(f"allocate_buffer: {size} bytes: {error}") from error
        allocation = _Allocation(wgpu_buffer, padded)
        device._queue.zero_new_buffer(allocation)
        return Buffer(device, allocation, None, 0, size, memory_type, usage, MemoryAccess(access))
