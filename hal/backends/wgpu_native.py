"""wgpu-native through wgpu-py's own cffi handles: the fast paths of the wgpu-py backend.

wgpu-py 0.32 wraps every native call in Python (argument conversion, error capture), about
2 µs per call — more than the GPU needs for a tiny dispatch. :class:`WgpuNativeBackend`
subclasses :class:`~hal.backends.wgpu_py.WgpuPyBackend` and records encoder calls as raw
functions of ``wgpu.h`` / ``wgpu-native``'s ``wgpu.h`` extension header; errors inside a
compute pass surface at ``encoder.finish()`` either way, which still goes through wgpu-py.
It also exposes what wgpu-py drops: submission indices (``wgpuQueueSubmitForIndex``) and a
blocking poll on one of them (``wgpuDevicePoll``), which is how completion is detected
(``queue.on_submitted_work_done*`` is broken in wgpu-py 0.32.0), and maps staging buffers
with ``wgpuBufferMapAsync`` polled on the caller's thread (wgpu-py's ``map_async().sync_wait``
resolves through its poller thread: 0.03-1.4 ms per map on lavapipe against 2 µs here).
Where the cffi handles are missing (another wgpu build), :func:`available` is False and the
device opens as a plain :class:`WgpuPyBackend`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import Any

from hal.backends.protocol import (
    AdapterDescription,
    Backend,
    BackendError,
    Step,
    env_seconds,
    waiter_poll_seconds,
)
from hal.backends.raw_calls import RawCalls
from hal.backends.wgpu_py import WgpuPyBackend, translate

__all__ = ["WgpuNativeBackend", "available"]

try:
    from wgpu.backends.wgpu_native._api import libf as _libf
    from wgpu.backends.wgpu_native._ffi import ffi as _ffi
    from wgpu.backends.wgpu_native._ffi import lib as _lib

    _RAW = all(
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
            "wgpuBufferMapAsync",
            "wgpuBufferGetMappedRange",
            "wgpuBufferGetConstMappedRange",
            "wgpuBufferUnmap",
        )
    )
    _WORK_DONE = hasattr(_lib, "wgpuQueueOnSubmittedWorkDone")
except ImportError:  # pragma: no cover - other wgpu builds
    _RAW = _WORK_DONE = False

_MAP_READ, _MAP_WRITE = 1, 2
_SPIN = 0.0005  # seconds of busy polling before a map wait backs off


def available() -> bool:
    """True when wgpu-py's cffi handles to wgpu-native are usable."""
    return _RAW


class _MapRequest:
    """A pending ``wgpuBufferMapAsync``: its callback (kept alive) and result."""

    __slots__ = ("callback", "event", "info", "status")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.status = -1

        # wgpu.h: void (*WGPUBufferMapCallback)(WGPUMapAsyncStatus, WGPUStringView, void*, void*)
        @_ffi.callback("void(WGPUMapAsyncStatus, WGPUStringView, void *, void *)")
        def callback(status: int, message: Any, userdata1: Any, userdata2: Any) -> None:
            self.status = int(status)
            self.event.set()

        self.callback = callback
        self.info = _ffi.new("WGPUBufferMapCallbackInfo *")
        # Fires inside whichever thread's wgpuDevicePoll processes the map.
        self.info.mode = _lib.WGPUCallbackMode_AllowProcessEvents
        self.info.callback = callback


def _spin_seconds() -> float:
    """The completion tracker's spin, ``HAL_POLL_SPIN_US`` (default 0: never). Measured on
    the H200 with nothing else running: a round trip waited by ``wgpuDevicePoll(wait=True)``
    took 64 µs, by non-blocking polls until ``wgpuQueueOnSubmittedWorkDone`` fired 37 µs
    (benchmarks/wait_strategies.py). On a CPU adapter it would also take the cores that run
    the GPU work."""
    # Off by default: in hal's own round trips on the H200 a spinning tracker slowed the
    # submitting thread (wgpu-core's device locks, the GIL) more than it saved: record +
    # end + queue_execute + wait of one dispatch took 328 µs with a 2 ms spin, 198 without
    # (benchmarks/profile_round_trip.py); only a lone waiter gains (wait_strategies.py).
    return env_seconds("HAL_POLL_SPIN_US", 0.0)


_TRACKER_POLL_US = 250.0
"""The longest sleep between the tracker's non-blocking polls by default (GPUs)."""


def _tracker_poll_seconds(adapter_type: str) -> float:
    """The longest the completion tracker sleeps between non-blocking polls while submissions
    stream (hal/runtime/completion.py), instead of blocking in ``wgpuDevicePoll(wait =
    true)``: ``HAL_TRACKER_POLL_US``, by default 250 µs on GPUs and 0 (block) on CPU
    adapters. wgpu-core 29 holds the device's fence lock through a blocking poll and
    ``wgpuQueueSubmit`` takes it too (gfx-rs/wgpu#9470, fixed after 29), so while the
    tracker blocked, the next submission from a user thread waited for the GPU to finish the
    previous one: the GPU idled between back-to-back submissions (the 1 GiB copy through
    ``queue_execute`` ran at 1969 GB/s against 2066 submitted raw on the H200). The sleeps
    double from ~20 µs, so short work is seen at once and long work costs a poll every 250
    µs."""
    return env_seconds("HAL_TRACKER_POLL_US", 0.0 if adapter_type == "cpu" else _TRACKER_POLL_US)


class _WorkDone:
    """Which submissions finished, from ``wgpuQueueOnSubmittedWorkDone`` callbacks: one is
    registered after each submission and they fire in submission order, inside whichever
    thread's ``wgpuDevicePoll`` processes them."""

    __slots__ = ("callback", "completed", "info", "pending")

    def __init__(self) -> None:
        self.pending: collections.deque[int] = collections.deque()
        self.completed = 0

        # wgpu.h: void (*WGPUQueueWorkDoneCallback)(WGPUQueueWorkDoneStatus, WGPUStringView,
        #                                             void* userdata1, void* userdata2)
        @_ffi.callback("void(WGPUQueueWorkDoneStatus, WGPUStringView, void *, void *)")
        def callback(status: int, message: Any, userdata1: Any, userdata2: Any) -> None:
            ticket = self.pending.popleft() if self.pending else 0
            if status == _lib.WGPUQueueWorkDoneStatus_Success and ticket > self.completed:
                self.completed = ticket

        self.callback = callback
        self.info = _ffi.new("WGPUQueueWorkDoneCallbackInfo *")
        self.info.mode = _lib.WGPUCallbackMode_AllowProcessEvents
        self.info.callback = callback


class _CommandBuffer:
    """A finished raw command buffer (what :meth:`WgpuNativeBackend.encode` returns): its
    handle as ``_internal``, as wgpu-py's objects have it, released when dropped."""

    __slots__ = ("_internal",)

    def __init__(self, handle: Any) -> None:
        self._internal = handle

    def __del__(self) -> None:
        # wgpu.h: wgpuCommandBufferRelease(commandBuffer)
        _lib.wgpuCommandBufferRelease(self._internal)


class WgpuNativeBackend(RawCalls, WgpuPyBackend):
    """A wgpu-py device whose hot paths call wgpu-native directly."""

    implementation = "wgpu-native"
    _work_done: _WorkDone | None = None
    _lib = _lib if _RAW else None  # what RawCalls records
    _ffi = _ffi if _RAW else None

    @classmethod
    def open(cls, adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
        """As :meth:`WgpuPyBackend.open`; a plain WgpuPyBackend without the cffi handles."""
        if not _RAW:  # pragma: no cover - other wgpu builds
            return WgpuPyBackend.open(adapter, features, label)
        backend = super().open(adapter, features, label)
        assert isinstance(backend, WgpuNativeBackend)
        spin = _spin_seconds() if _WORK_DONE else 0.0
        poll = waiter_poll_seconds(adapter.adapter_type) if _WORK_DONE else 0.0
        tracker = _tracker_poll_seconds(adapter.adapter_type) if _WORK_DONE else 0.0
        if spin > 0 or poll > 0 or tracker > 0:
            backend.spin_s = spin
            backend.waiter_poll_s = poll
            backend.tracker_poll_s = tracker
            backend._work_done = _WorkDone()
        return backend

    # -- recorded encoder calls (wgpu.h) --------------------------------------------------

    def encode(self, steps: Sequence[Step], label: str = "hal") -> Any:
        # The encoder, its passes and finish() as raw calls too: through wgpu-py's objects
        # they cost ~7 µs each, a fifth of a one-dispatch round trip. ``_libf`` calls capture
        # wgpu errors (raised as wgpu exceptions, then translated) like wgpu-py's own.
        try:
            # wgpu.h: wgpuDeviceCreateCommandEncoder(device, descriptor = NULL)
            encoder = _libf.wgpuDeviceCreateCommandEncoder(self.device._internal, _ffi.NULL)
            try:
                for is_pass, calls in steps:
                    if is_pass:
                        # wgpu.h: wgpuCommandEncoderBeginComputePass(encoder, descriptor = NULL)
                        compute = _libf.wgpuCommandEncoderBeginComputePass(encoder, _ffi.NULL)
                        try:
                            for function, args in calls:
                                function(compute, *args)
                            # wgpu.h: wgpuComputePassEncoderEnd(computePassEncoder)
                            _libf.wgpuComputePassEncoderEnd(compute)
                        finally:
                            # wgpu.h: wgpuComputePassEncoderRelease(computePassEncoder)
                            _lib.wgpuComputePassEncoderRelease(compute)
                    else:
                        for function, args in calls:
                            function(encoder, *args)
                # wgpu.h: wgpuCommandEncoderFinish(encoder, descriptor = NULL)
                return _CommandBuffer(_libf.wgpuCommandEncoderFinish(encoder, _ffi.NULL))
            finally:
                # wgpu.h: wgpuCommandEncoderRelease(commandEncoder)
                _lib.wgpuCommandEncoderRelease(encoder)
        except Exception as error:
            raise translate(error) from None

    # -- submission and completion (wgpu-native's wgpu.h extensions) -------------------------

    def submit(self, command_buffers: Sequence[Any]) -> int:
        # wgpu-native wgpu.h: WGPUSubmissionIndex wgpuQueueSubmitForIndex(queue, count, cbs)
        handles = _ffi.new("WGPUCommandBuffer[]", [cb._internal for cb in command_buffers])
        ticket = int(
            _lib.wgpuQueueSubmitForIndex(self.queue._internal, len(command_buffers), handles)
        )
        work_done = self._work_done
        if work_done is not None:
            work_done.pending.append(ticket)
            # wgpu.h: WGPUFuture wgpuQueueOnSubmittedWorkDone(queue, callbackInfo)
            _lib.wgpuQueueOnSubmittedWorkDone(self.queue._internal, work_done.info[0])
        return ticket

    def completed_ticket(self) -> int:
        work_done = self._work_done
        if work_done is None:
            return 0
        try:
            # wgpu-native wgpu.h: wgpuDevicePoll(device, wait = false, NULL) fires callbacks
            _lib.wgpuDevicePoll(self.device._internal, False, _ffi.NULL)
        except Exception as error:  # pragma: no cover - a lost device
            failure = translate(error)
            raise BackendError(f"wgpuDevicePoll failed: {failure}", lost=failure.lost) from None
        return work_done.completed

    def wait(self, ticket: int) -> None:
        # wgpu-native wgpu.h: WGPUBool wgpuDevicePoll(device, wait, WGPUSubmissionIndex const*)
        # Only the blocking form is trusted: the non-blocking "queue empty" result reported an
        # empty queue with 40 ms of lavapipe work in flight.
        target = _ffi.new("WGPUSubmissionIndex*", ticket) if ticket else _ffi.NULL
        try:
            _lib.wgpuDevicePoll(self.device._internal, True, target)
        except Exception as error:  # pragma: no cover - a lost device
            failure = translate(error)
            raise BackendError(f"wgpuDevicePoll failed: {failure}", lost=failure.lost) from None

    def poll(self) -> None:
        _lib.wgpuDevicePoll(self.device._internal, False, _ffi.NULL)

    # -- mapping ----------------------------------------------------------------------------

    def map_async(self, buffer: Any, size: int, *, write: bool) -> Any:
        request = _MapRequest()
        # wgpu.h: WGPUFuture wgpuBufferMapAsync(buffer, mode, offset, size, callbackInfo)
        _lib.wgpuBufferMapAsync(
            buffer._internal, _MAP_WRITE if write else _MAP_READ, 0, size, request.info[0]
        )
        return request

    def wait_mapped(self, token: Any, timeout: float) -> bool:
        request: _MapRequest = token
        if not request.event.is_set():
            # Non-blocking polls only: the completion thread already blocks in
            # wgpuDevicePoll while work is in flight, and on the H100 host a second thread
            # blocking in it at the same time stalled both for ~10 ms, where polling without
            # blocking answered in 0.1-0.3 ms. Spin briefly, then back off to 0.2 ms waits.
            start = time.monotonic()
            spin_until, deadline = start + _SPIN, start + timeout
            while not request.event.is_set():
                self.poll()
                now = time.monotonic()
                if now < spin_until:
                    continue
                if request.event.wait(0.0002):
                    break
                if now > deadline:
                    return False
        if request.status != int(_lib.WGPUMapAsyncStatus_Success):
            raise BackendError(f"mapping a staging buffer failed (status {request.status})")
        return True

    def mapped_range(self, buffer: Any, size: int, *, writable: bool) -> memoryview:
        # wgpu.h: void* wgpuBufferGetMappedRange / void const* wgpuBufferGetConstMappedRange
        if writable:
            pointer = _lib.wgpuBufferGetMappedRange(buffer._internal, 0, size)
        else:
            pointer = _lib.wgpuBufferGetConstMappedRange(buffer._internal, 0, size)
        if pointer == _ffi.NULL:
            raise BackendError("wgpuBufferGetMappedRange returned NULL")
        view = memoryview(_ffi.buffer(_ffi.cast("uint8_t *", pointer), size))
        return view if writable else view.toreadonly()

    def unmap(self, buffer: Any) -> None:
        # wgpu.h: void wgpuBufferUnmap(buffer)
        _lib.wgpuBufferUnmap(buffer._internal)

    # -- health -------------------------------------------------------------------------------

    def probe_lost(self) -> str | None:
        if self.lost_reason is not None:
            return self.lost_reason
        # An empty command encoder through wgpu-py's error-capturing native calls (about 3 µs,
        # against 10 µs through the wgpu-py objects); it fails on a lost device.
        try:
            # wgpu.h: wgpuDeviceCreateCommandEncoder(device, descriptor)
            encoder = _libf.wgpuDeviceCreateCommandEncoder(self.device._internal, _ffi.NULL)
            try:
                # wgpu.h: wgpuCommandEncoderFinish(encoder, descriptor)
                _lib.wgpuCommandBufferRelease(_libf.wgpuCommandEncoderFinish(encoder, _ffi.NULL))
            finally:
                _lib.wgpuCommandEncoderRelease(encoder)
        except Exception as error:
            backend_error = translate(error)
            if backend_error.lost:
                self.note_lost(str(backend_error))
        return self.lost_reason

    def timestamp_period(self) -> float:
        # wgpu-native wgpu.h: float wgpuQueueGetTimestampPeriod(queue)
        try:
            period = float(_lib.wgpuQueueGetTimestampPeriod(self.queue._internal))
        except (AttributeError, TypeError):  # pragma: no cover - older builds
            return 1.0
        return period if period > 0 else 1.0
