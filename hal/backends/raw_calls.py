"""Recorded encoder calls as raw ``webgpu.h`` functions: shared by the backends whose cffi
binding exposes the C API (wgpu-native through wgpu-py, Dawn through wgpudawn).

A backend mixes :class:`RawCalls` in before its wgpu-py-object base and provides ``_lib`` and
``_ffi`` (the cffi library and FFI of its implementation); recorded calls then take the raw
handles (``._internal``) of pipelines, bind groups and buffers.
"""

from __future__ import annotations

from typing import Any

from hal.backends.protocol import Call

__all__ = ["RawCalls"]


class RawCalls:
    """The Backend methods that record encoder calls, as raw ``webgpu.h`` functions."""

    _lib: Any
    _ffi: Any

    def _handle(self, obj: Any) -> Any:
        return obj._internal

    def set_pipeline(self, pipeline: Any) -> Call:
        # webgpu.h: wgpuComputePassEncoderSetPipeline(pass, pipeline)
        return self._lib.wgpuComputePassEncoderSetPipeline, (pipeline._internal,)

    def set_bind_group(self, index: int, group: Any, offsets: tuple[int, ...] = ()) -> Call:
        # webgpu.h: wgpuComputePassEncoderSetBindGroup(pass, index, group, count, offsets)
        ffi = self._ffi
        array = ffi.new("uint32_t[]", list(offsets)) if offsets else ffi.NULL
        return self._lib.wgpuComputePassEncoderSetBindGroup, (
            index,
            group._internal,
            len(offsets),
            array,
        )

    def set_immediates(self, data: bytes) -> Call:
        # webgpu.h: wgpuComputePassEncoderSetImmediates(pass, offset, data, size)
        data_array = self._ffi.new("uint8_t[]", data)
        return self._lib.wgpuComputePassEncoderSetImmediates, (0, data_array, len(data))

    def dispatch(self, x: int, y: int, z: int) -> Call:
        # webgpu.h: wgpuComputePassEncoderDispatchWorkgroups(pass, x, y, z)
        return self._lib.wgpuComputePassEncoderDispatchWorkgroups, (x, y, z)

    def dispatch_indirect(self, buffer: Any, offset: int) -> Call:
        # webgpu.h: wgpuComputePassEncoderDispatchWorkgroupsIndirect(pass, buffer, offset)
        return self._lib.wgpuComputePassEncoderDispatchWorkgroupsIndirect, (
            buffer._internal,
            offset,
        )

    def copy_buffer(
        self, source: Any, source_offset: int, target: Any, target_offset: int, size: int
    ) -> Call:
        # webgpu.h: wgpuCommandEncoderCopyBufferToBuffer(encoder, src, src_off, dst, dst_off, n)
        return self._lib.wgpuCommandEncoderCopyBufferToBuffer, (
            source._internal,
            source_offset,
            target._internal,
            target_offset,
            size,
        )

    def clear_buffer(self, buffer: Any, offset: int, size: int) -> Call:
        # webgpu.h: wgpuCommandEncoderClearBuffer(encoder, buffer, offset, size)
        return self._lib.wgpuCommandEncoderClearBuffer, (buffer._internal, offset, size)

    def is_dispatch(self, call: Call) -> bool:
        lib = self._lib
        return (
            call[0] is lib.wgpuComputePassEncoderDispatchWorkgroups
            or call[0] is lib.wgpuComputePassEncoderDispatchWorkgroupsIndirect
        )
