"""Direct wgpu-native calls for the hot paths, through wgpu-py's own cffi handles.

wgpu-py 0.32.0 wraps every native call in Python (argument conversion, error capture), which
costs about 2 µs per call — more than the GPU needs for a tiny dispatch. The encoder replays
plans through the raw functions here instead; errors inside a compute pass surface at
``encoder.finish()`` either way, and ``finish`` still goes through wgpu-py, which raises them.
``submit``/``poll`` expose submission indices and the queue-empty flag that wgpu-py drops; hal
uses them to detect completion without ``queue.on_submitted_work_done*`` (broken in 0.32.0).
Where the cffi handles are missing (another wgpu build), every helper falls back to the public
wgpu-py methods with the same behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "RAW",
    "Call",
    "clear_buffer",
    "copy_buffer",
    "dispatch",
    "dispatch_indirect",
    "handle",
    "is_dispatch",
    "map_async",
    "map_callback",
    "map_callback_info",
    "mapped_range",
    "poll",
    "set_bind_group",
    "set_immediates",
    "set_pipeline",
    "submit",
    "timestamp_period",
    "unmap",
]

Call = tuple[Callable[..., Any], tuple[Any, ...]]
"""A recorded call: ``function(target, *args)`` where target is a pass or encoder handle."""

try:
    from wgpu.backends.wgpu_native._ffi import ffi as _ffi
    from wgpu.backends.wgpu_native._ffi import lib as _lib

    RAW = all(
        hasattr(_lib, name)
        for name in (
            "wgpuQueueSubmitForIndex",
            "wgpuDevicePoll",
            "wgpuComputePassEncoderSetPipeline",
            "wgpuComputePassEncoderSetBindGroup",
            "wgpuComputePassEncoderSetImmediates",
            "wgpuComputePassEncoderDispatchWorkgroups",
            "wgpuComputePassEncoderDispatchWorkgroupsIndirect",
            "wgpuCommandEncoderCopyBufferToBuffer",
            "wgpuCommandEncoderClearBuffer",
        )
    )
    MAP_RAW = all(
        hasattr(_lib, name)
        for name in (
            "wgpuBufferMapAsync",
            "wgpuBufferGetMappedRange",
            "wgpuBufferGetConstMappedRange",
            "wgpuBufferUnmap",
            "wgpuDevicePoll",
        )
    )
    MAP_SUCCESS = int(_lib.WGPUMapAsyncStatus_Success) if MAP_RAW else 1
except ImportError:  # pragma: no cover - other wgpu backends
    RAW = MAP_RAW = False
    MAP_SUCCESS = 1


def handle(obj: Any) -> Any:
    """What recorded calls take as their target: the native handle, or the object itself."""
    return obj._internal if RAW else obj


def set_pipeline(pipeline: Any) -> Call:
    """Bind a compute pipeline."""
    if RAW:
        return _lib.wgpuComputePassEncoderSetPipeline, (pipeline._internal,)
    return (lambda p, pipe: p.set_pipeline(pipe)), (pipeline,)


def set_bind_group(index: int, group: Any, offsets: tuple[int, ...] = ()) -> Call:
    """Bind ``group`` at ``index`` with dynamic ``offsets``."""
    if RAW:
        array = _ffi.new("uint32_t[]", list(offsets)) if offsets else _ffi.NULL
        return _lib.wgpuComputePassEncoderSetBindGroup, (
            index,
            group._internal,
            len(offsets),
            array,
        )
    return (lambda p, i, g, o: p.set_bind_group(i, g, o)), (index, group, list(offsets))


def set_immediates(data: bytes) -> Call:
    """Set the immediate block from offset 0."""
    if RAW:
        return _lib.wgpuComputePassEncoderSetImmediates, (0, _ffi.new("uint8_t[]", data), len(data))
    return (lambda p, d: p.set_immediates(0, d, 0, len(d))), (data,)


def _dispatch(p: Any, x: int, y: int, z: int) -> None:
    p.dispatch_workgroups(x, y, z)


def _dispatch_indirect(p: Any, buffer: Any, offset: int) -> None:
    p.dispatch_workgroups_indirect(buffer, offset)


def dispatch(x: int, y: int, z: int) -> Call:
    """Dispatch a grid of workgroups."""
    if RAW:
        return _lib.wgpuComputePassEncoderDispatchWorkgroups, (x, y, z)
    return _dispatch, (x, y, z)


def dispatch_indirect(buffer: Any, offset: int) -> Call:
    """Dispatch with counts read from ``buffer`` at ``offset``."""
    if RAW:
        return _lib.wgpuComputePassEncoderDispatchWorkgroupsIndirect, (buffer._internal, offset)
    return _dispatch_indirect, (buffer, offset)


def is_dispatch(call: Call) -> bool:
    """True if ``call`` is a (direct or indirect) dispatch — what the profiler times."""
    function = call[0]
    if RAW:
        return function in (
            _lib.wgpuComputePassEncoderDispatchWorkgroups,
            _lib.wgpuComputePassEncoderDispatchWorkgroupsIndirect,
        )
    return function in (_dispatch, _dispatch_indirect)


def copy_buffer(
    source: Any, source_offset: int, target: Any, target_offset: int, size: int
) -> Call:
    """``copy_buffer_to_buffer`` on an encoder."""
    if RAW:
        return _lib.wgpuCommandEncoderCopyBufferToBuffer, (
            source._internal,
            source_offset,
            target._internal,
            target_offset,
            size,
        )
    return (lambda e, s, so, t, to, n: e.copy_buffer_to_buffer(s, so, t, to, n)), (
        source,
        source_offset,
        target,
        target_offset,
        size,
    )


def clear_buffer(buffer: Any, offset: int, size: int) -> Call:
    """``clear_buffer`` on an encoder."""
    if RAW:
        return _lib.wgpuCommandEncoderClearBuffer, (buffer._internal, offset, size)
    return (lambda e, b, o, n: e.clear_buffer(b, o, n)), (buffer, offset, size)


def submit(queue: Any, command_buffers: list[Any]) -> int:
    """Submit ``command_buffers`` on ``queue``; the submission index (0 if unknown)."""
    if not RAW:
        queue.submit(command_buffers)
        return 0
    handles = _ffi.new("WGPUCommandBuffer[]", [cb._internal for cb in command_buffers])
    return int(_lib.wgpuQueueSubmitForIndex(queue._internal, len(command_buffers), handles))


def poll(device: Any, wait: bool, index: int = 0) -> bool:
    """Process finished work; with ``wait``, block until submission ``index`` (0: all
    submitted work) finished. Returns wgpu-native's "queue empty" flag, which is NOT reliable
    without ``wait`` (seen true with work in flight on lavapipe): don't infer completion from
    it."""
    if not RAW:
        device._poll(wait)
        return wait
    target = _ffi.new("WGPUSubmissionIndex*", index) if wait and index else _ffi.NULL
    return bool(_lib.wgpuDevicePoll(device._internal, wait, target))


# -- buffer mapping (staging buffers only; see hal/staging.py) --------------------------------


def map_callback(on_done: Callable[[int], None]) -> Any:
    """A native map callback that calls ``on_done(status)``; keep it alive while in use."""

    @_ffi.callback("void(WGPUMapAsyncStatus, WGPUStringView, void *, void *)")
    def callback(status: int, message: Any, userdata1: Any, userdata2: Any) -> None:
        on_done(int(status))

    return callback


def map_callback_info(callback: Any) -> Any:
    """The callback-info struct for :func:`map_async` (fires in any thread's device poll)."""
    info = _ffi.new("WGPUBufferMapCallbackInfo *")
    info.mode = _lib.WGPUCallbackMode_AllowProcessEvents
    info.callback = callback
    return info


def map_async(buffer: Any, mode: int, size: int, info: Any) -> None:
    """Request ``[0, size)`` of ``buffer`` mapped with ``mode`` (1 read, 2 write); the
    callback in ``info`` fires from a later device poll once the GPU is done with it."""
    _lib.wgpuBufferMapAsync(buffer._internal, mode, 0, size, info[0])


def mapped_range(buffer: Any, size: int, writable: bool) -> memoryview:
    """The mapped bytes ``[0, size)`` of ``buffer``; invalid once it is unmapped."""
    if writable:
        pointer = _lib.wgpuBufferGetMappedRange(buffer._internal, 0, size)
    else:
        pointer = _lib.wgpuBufferGetConstMappedRange(buffer._internal, 0, size)
    if pointer == _ffi.NULL:
        raise RuntimeError("wgpuBufferGetMappedRange returned NULL")
    view = memoryview(_ffi.buffer(_ffi.cast("uint8_t *", pointer), size))
    return view if writable else view.toreadonly()


def unmap(buffer: Any) -> None:
    """Unmap ``buffer`` (cancels a map still pending)."""
    _lib.wgpuBufferUnmap(buffer._internal)


def timestamp_period(queue: Any) -> float:
    """Nanoseconds per timestamp tick of ``queue``'s device (1.0 where unknown)."""
    try:
        period = float(_lib.wgpuQueueGetTimestampPeriod(queue._internal))
    except (AttributeError, NameError, TypeError):  # pragma: no cover - other backends
        return 1.0
    return period if period > 0 else 1.0
