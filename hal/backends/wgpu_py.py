"""A backend on wgpu-py's public API only (``wgpu.GPUDevice`` and friends).

Everything here is the documented wgpu-py API, so any implementation that offers it — Dawn's
``wgpudawn`` packages the same classes — can reuse this module; ``wgpu_native.py``
subclasses it with raw cffi calls on the hot paths. Completion without submission indices:
:meth:`WgpuPyBackend.wait` copies a word into a 4-byte MAP_READ fence buffer and maps it,
which resolves only once every earlier submission finished (one queue runs in order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import wgpu

from hal.backends.protocol import (
    AdapterDescription,
    Backend,
    BackendError,
    BindGroupEntry,
    Call,
    LayoutEntry,
    Step,
    Timer,
)

__all__ = ["WgpuPyBackend", "describe_adapters", "is_lost_message", "translate"]

_LOST_PHRASES = ("device is lost", "device lost", "device was lost", "devicelost", "parent device")
_STORAGE = (
    wgpu.BufferUsage.STORAGE
    | wgpu.BufferUsage.COPY_SRC
    | wgpu.BufferUsage.COPY_DST
    | wgpu.BufferUsage.INDIRECT
)


def is_lost_message(text: str) -> bool:
    """True when a wgpu error message says the device is lost (wgpu-py 0.32 reports loss
    only through messages: there is no lost promise)."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _LOST_PHRASES)


def translate(error: BaseException) -> BackendError:
    """A wgpu exception as a BackendError (``lost`` from its message)."""
    message = " ".join(str(error).split())
    return BackendError(message, lost=is_lost_message(message))


def _normalise_backend(raw: str) -> str:
    raw = raw.lower()
    return {"opengl": "gl", "opengles": "gl", "gles": "gl"}.get(raw, raw)


def _normalise_type(raw: str) -> str:
    raw = raw.lower().replace("gpu", "")
    return {"integrated": "integrated", "discrete": "discrete", "cpu": "cpu"}.get(raw, raw)


def describe_adapters(gpu: Any, implementation: str) -> list[AdapterDescription]:
    """Every adapter ``gpu`` (a ``wgpu.gpu``-like object) enumerates."""
    found = []
    for adapter in gpu.enumerate_adapters_sync():
        info = adapter.info
        found.append(
            AdapterDescription(
                implementation=implementation,
                name=str(info.get("device") or adapter.summary),
                backend=_normalise_backend(str(info.get("backend_type", ""))),
                adapter_type=_normalise_type(str(info.get("adapter_type", ""))),
                vendor=str(info.get("vendor", "")),
                driver=str(info.get("description", "")),
                summary=str(adapter.summary),
                features=frozenset(str(f) for f in adapter.features),
                limits={k: int(v) for k, v in dict(adapter.limits).items()},
                handle=adapter,
            )
        )
    return found


def _pass_call(method: str) -> Callable[..., Any]:
    def call(target: Any, *args: Any) -> Any:
        return getattr(target, method)(*args)

    call.__name__ = method
    return call


_SET_PIPELINE = _pass_call("set_pipeline")
_DISPATCH = _pass_call("dispatch_workgroups")
_DISPATCH_INDIRECT = _pass_call("dispatch_workgroups_indirect")
_COPY = _pass_call("copy_buffer_to_buffer")
_CLEAR = _pass_call("clear_buffer")


def _set_bind_group(target: Any, index: int, group: Any, offsets: list[int]) -> None:
    target.set_bind_group(index, group, offsets)


def _set_immediates(target: Any, data: bytes) -> None:
    target.set_immediates(0, data, 0, len(data))


class WgpuPyBackend(Backend):
    """One wgpu-py device (``adapter.request_device_sync``), through its public API."""

    implementation = "wgpu-py"

    def __init__(self, device: Any, features: frozenset[str]) -> None:
        super().__init__()
        self.device = device
        self._guard_destroy(device)
        self.queue = device.queue
        self.features = features
        self.limits = {k: int(v) for k, v in dict(device.limits).items()}
        self._fence_lock = threading.Lock()
        self._fence: Any = None
        self._fence_source: Any = None
        self._submitted = 0
        self._completed = 0

    def _guard_destroy(self, device: Any) -> None:
        # wgpu-py 0.32 reports no device loss (no lost promise; wgpu-native 29 doesn't call
        # the lost callback on destroy, verified) and a submission to a destroyed device
        # aborts the process. Destroying it through wgpu-py — what a GPU reset looks like to
        # wgpu — therefore waits for a submission in progress and marks the device lost.
        destroy = device.destroy

        def destroy_marking_lost() -> None:
            with self.submission_lock:
                self.note_lost("the wgpu device was destroyed")
                destroy()

        device.destroy = destroy_marking_lost

    @classmethod
    def open(cls, adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
        """Request a device with ``features`` on ``adapter``. BackendError on failure."""
        try:
            # adapter.limits may be lower than the adapter's own (an adapter profile).
            device = adapter.handle.request_device_sync(
                label=label, required_features=list(features), required_limits=adapter.limits
            )
        except Exception as error:
            raise translate(error) from None
        return cls(device, frozenset(features))

    # -- resources ------------------------------------------------------------------------

    def create_buffer(self, size: int, *, uniform: bool = False, label: str = "hal") -> Any:
        usage = _STORAGE | wgpu.BufferUsage.UNIFORM if uniform else _STORAGE
        try:
            return self.device.create_buffer(size=size, usage=usage, label=label)
        except Exception as error:
            raise translate(error) from None

    def create_staging_buffer(self, size: int, *, upload: bool) -> Any:
        usage = (
            wgpu.BufferUsage.MAP_WRITE | wgpu.BufferUsage.COPY_SRC
            if upload
            else wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST
        )
        label = "hal.upload" if upload else "hal.readback"
        try:
            return self.device.create_buffer(size=size, usage=usage, label=label)
        except Exception as error:
            raise translate(error) from None

    def destroy_buffer(self, buffer: Any) -> None:
        buffer.destroy()

    def write_buffer(self, buffer: Any, offset: int, data: Any) -> None:
        try:
            self.queue.write_buffer(buffer, offset, data)
        except Exception as error:
            raise translate(error) from None

    def create_shader_module(self, code: str, label: str) -> Any:
        try:
            return self.device.create_shader_module(label=label, code=code)
        except Exception as error:
            raise translate(error) from None

    def create_bind_group_layout(self, entries: Sequence[LayoutEntry]) -> Any:
        try:
            return self.device.create_bind_group_layout(
                entries=[
                    {
                        "binding": binding,
                        "visibility": wgpu.ShaderStage.COMPUTE,
                        "buffer": {"type": kind, "has_dynamic_offset": dynamic},
                    }
                    for binding, kind, dynamic in entries
                ]
            )
        except Exception as error:
            raise translate(error) from None

    def create_compute_pipeline(
        self,
        module: Any,
        entry_point: str,
        layouts: Sequence[Any],
        immediate_size: int,
        constants: dict[str, Any] | None,
        label: str,
    ) -> Any:
        compute: dict[str, Any] = {"module": module, "entry_point": entry_point}
        if constants:
            compute["constants"] = dict(constants)
        try:
            layout = self.device.create_pipeline_layout(
                bind_group_layouts=list(layouts), immediate_size=immediate_size
            )
            return self.device.create_compute_pipeline(label=label, layout=layout, compute=compute)
        except Exception as error:
            raise translate(error) from None

    def create_bind_group(self, layout: Any, entries: Sequence[BindGroupEntry]) -> Any:
        try:
            return self.device.create_bind_group(
                layout=layout,
                entries=[
                    {"binding": b, "resource": {"buffer": buf, "offset": off, "size": size}}
                    for b, buf, off, size in entries
                ],
            )
        except Exception as error:
            raise translate(error) from None

    # -- recorded encoder calls -----------------------------------------------------------

    def set_pipeline(self, pipeline: Any) -> Call:
        return _SET_PIPELINE, (pipeline,)

    def set_bind_group(self, index: int, group: Any, offsets: tuple[int, ...] = ()) -> Call:
        return _set_bind_group, (index, group, list(offsets))

    def set_immediates(self, data: bytes) -> Call:
        return _set_immediates, (data,)

    def dispatch(self, x: int, y: int, z: int) -> Call:
        return _DISPATCH, (x, y, z)

    def dispatch_indirect(self, buffer: Any, offset: int) -> Call:
        return _DISPATCH_INDIRECT, (buffer, offset)

    def copy_buffer(
        self, source: Any, source_offset: int, target: Any, target_offset: int, size: int
    ) -> Call:
        return _COPY, (source, source_offset, target, target_offset, size)

    def clear_buffer(self, buffer: Any, offset: int, size: int) -> Call:
        return _CLEAR, (buffer, offset, size)

    def is_dispatch(self, call: Call) -> bool:
        return call[0] is _DISPATCH or call[0] is _DISPATCH_INDIRECT

    def _handle(self, obj: Any) -> Any:
        """What recorded calls take as their target (the object itself here)."""
        return obj

    def encode(self, steps: Sequence[Step], label: str = "hal") -> Any:
        try:
            encoder = self.device.create_command_encoder(label=label)
            target = self._handle(encoder)
            for is_pass, calls in steps:
                if is_pass:
                    compute = encoder.begin_compute_pass()
                    inside = self._handle(compute)
                    for function, args in calls:
                        function(inside, *args)
                    compute.end()
                else:
                    for function, args in calls:
                        function(target, *args)
            return encoder.finish()
        except wgpu.GPUError as error:
            raise translate(error) from None

    def encode_profiled(self, steps: Sequence[Step], timer: Timer, label: str = "hal") -> Any:
        try:
            encoder = self.device.create_command_encoder(label=label)
            target = self._handle(encoder)
            for index, (is_pass, calls) in enumerate(steps):
                if not is_pass:
                    timer.before(encoder, index, None)
                    for function, args in calls:
                        function(target, *args)
                    timer.after(encoder)
                    continue
                compute = encoder.begin_compute_pass(timestamp_writes=timer.pass_writes(index))
                inside = self._handle(compute)
                dispatch = 0
                for call in calls:
                    if self.is_dispatch(call):
                        timer.before(compute, index, dispatch)
                        call[0](inside, *call[1])
                        timer.after(compute)
                        dispatch += 1
                    else:
                        call[0](inside, *call[1])
                compute.end()
            timer.close(encoder)
            return encoder.finish()
        except wgpu.GPUError as error:
            raise translate(error) from None

    # -- timestamps -----------------------------------------------------------------------

    def create_query_set(self, count: int) -> Any:
        try:
            return self.device.create_query_set(type="timestamp", count=count, label="hal.profile")
        except Exception as error:
            raise translate(error) from None

    def write_timestamp(self, target: Any, query_set: Any, index: int) -> None:
        # wgpu-py's extension for timestamps inside passes and encoders (not WebGPU API).
        wgpu.backends.wgpu_native.extras.write_timestamp(target, query_set, index)

    def pass_timestamp_writes(self, query_set: Any, begin: int, end: int) -> Any:
        return {
            "query_set": query_set,
            "beginning_of_pass_write_index": begin,
            "end_of_pass_write_index": end,
        }

    def resolve_timestamps(self, encoder: Any, query_sets: Sequence[Any], count: int) -> Any:
        usage = wgpu.BufferUsage
        per_set = query_sets[0].count if query_sets else 0
        size = 8 * per_set * len(query_sets)
        resolved = self.device.create_buffer(
            size=size, usage=usage.QUERY_RESOLVE | usage.COPY_SRC, label="hal.profile"
        )
        readback = self.device.create_buffer(
            size=size, usage=usage.MAP_READ | usage.COPY_DST, label="hal.profile"
        )
        for i, query_set in enumerate(query_sets):
            n = min(per_set, count - i * per_set)
            encoder.resolve_query_set(query_set, 0, n, resolved, 8 * per_set * i)
        encoder.copy_buffer_to_buffer(resolved, 0, readback, 0, 8 * count)
        return (readback, resolved)  # the resolve buffer lives until the readback is read

    def read_timestamps(self, readback: Any, count: int) -> np.ndarray:
        buffer, _ = readback
        try:
            buffer.map_sync(wgpu.MapMode.READ, 0, 8 * count)
            try:
                return np.frombuffer(buffer.read_mapped(0, 8 * count), np.uint64).copy()
            finally:
                buffer.unmap()
                buffer.destroy()
        except wgpu.GPUError as error:
            raise translate(error) from None

    # -- submission and completion ----------------------------------------------------------

    def clear_command_buffer(self, buffers: Sequence[tuple[Any, int]]) -> Any:
        try:
            encoder = self.device.create_command_encoder(label="hal.zero")
            for buffer, offset in buffers:
                if offset:
                    encoder.clear_buffer(buffer, offset)
                else:
                    encoder.clear_buffer(buffer)
            return encoder.finish()
        except wgpu.GPUError as error:
            raise translate(error) from None

    def copy_command_buffer(self, copies: Sequence[tuple[Any, int, Any, int, int]]) -> Any:
        try:
            encoder = self.device.create_command_encoder(label="hal.upload")
            for source, source_offset, target, target_offset, size in copies:
                encoder.copy_buffer_to_buffer(source, source_offset, target, target_offset, size)
            return encoder.finish()
        except wgpu.GPUError as error:
            raise translate(error) from None

    def submit(self, command_buffers: Sequence[Any]) -> int:
        self.queue.submit(list(command_buffers))
        self._submitted += 1
        return self._submitted

    def wait(self, ticket: int) -> None:
        with self._fence_lock:
            if self._completed >= ticket:
                return
            latest = self._submitted
            try:
                if self._fence is None:
                    self._fence = self.create_staging_buffer(4, upload=False)
                    self._fence_source = self.create_buffer(4, label="hal.fence")
                encoder = self.device.create_command_encoder(label="hal.fence")
                encoder.copy_buffer_to_buffer(self._fence_source, 0, self._fence, 0, 4)
                self.queue.submit([encoder.finish()])
                self._fence.map_sync(wgpu.MapMode.READ, 0, 4)
                self._fence.unmap()
            except Exception as error:
                raise translate(error) from None
            self._completed = max(self._completed, latest)

    def poll(self) -> None:
        # No public poll: wgpu-py's own poller thread resolves map promises.
        return

    # -- mapping --------------------------------------------------------------------------

    def map_async(self, buffer: Any, size: int, *, write: bool) -> Any:
        mode = wgpu.MapMode.WRITE if write else wgpu.MapMode.READ
        return buffer.map_async(mode, 0, size)

    def wait_mapped(self, token: Any, timeout: float) -> bool:
        try:
            token.sync_wait()
        except Exception as error:
            raise translate(error) from None
        return True

    def mapped_range(self, buffer: Any, size: int, *, writable: bool) -> memoryview:
        if writable:
            return memoryview(buffer._experimental_get_mapped_range(0, size)).cast("B")
        return memoryview(buffer.read_mapped(0, size, copy=False)).cast("B")

    def unmap(self, buffer: Any) -> None:
        buffer.unmap()

    # -- health ---------------------------------------------------------------------------

    def probe_lost(self) -> str | None:
        if self.lost_reason is not None:
            return self.lost_reason
        try:
            self.device.create_command_encoder(label="hal.probe").finish()
        except wgpu.GPUError as error:
            message = " ".join(str(error).split())
            if is_lost_message(message):
                self.note_lost(message)
        return self.lost_reason

    def close(self) -> None:
        return
