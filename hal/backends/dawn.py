"""Dawn (Chrome's WebGPU) through ``wgpudawn``, the wgpu-py API on Dawn.

:class:`DawnBackend` reuses :class:`~hal.backends.wgpu_py.WgpuPyBackend` (same classes, same
calls) and replaces what differs on Dawn:

- **Threads.** Dawn objects are not thread-safe, and wgpudawn turns Dawn's error callback
  into an exception through one process-wide list of pending errors, so an error raised by
  one thread's call could surface in another thread's call — also another device's call, the
  list being the process's. Every call into Dawn therefore runs under one lock shared by every
  Dawn device of the process (``_dawn``); it is a leaf lock (nothing under it calls
  back into hal), so it cannot deadlock with the runtime's locks. Blocking waits
  (submissions, maps) do not hold it: the device is opened with Dawn's
  ``implicit-device-synchronization`` feature where the adapter has it, under which Dawn
  locks the device inside every entry point, so a thread blocked in ``wgpuInstanceWaitAny``
  and a thread recording are safe together. Without the feature, waits run in 1 ms slices
  under the lock instead (correct, but a waiter delays other threads by up to a slice).
- **Completion.** Each submission registers ``wgpuQueueOnSubmittedWorkDone``; its future is
  waited with a real timeout (``wgpuInstanceWaitAny``, the instance's TimedWaitAny). One
  queue runs in order, so a finished ticket finishes every earlier one.
- **Encoding.** Recorded calls are the raw ``webgpu.h`` functions of wgpudawn's cffi module
  on raw handles (as ``wgpu_native.py`` does for wgpu-native), and submissions register their
  work-done callback directly: wgpudawn's objects and promises cost several µs a call.
- **Errors.** Dawn raises validation errors at the call that caused them (wgpudawn's
  ``GPUError`` classes, not wgpu-py's): they become :class:`BackendError`, ``lost`` when
  the device's lost promise resolved or the message says so.
- **Mapping.** Maps go through wgpudawn's ``map_async`` (so its buffer state is right) and
  are waited with a timeout; mapped bytes are read through ``wgpuBufferGetMappedRange``.
- **Loss.** Dawn's device-lost callback resolves a promise; :meth:`probe_lost` processes
  events and reads it.
- **Host memory.** Where the adapter has ``host-mapped-pointer`` (an experimental feature:
  the instance is created with the ``allow_unsafe_apis`` toggle), :meth:`create_host_buffer`
  wraps new host pages as a COPY_SRC|COPY_DST buffer, so host transfers copy on the GPU
  straight from and into host memory instead of mapping staging buffers
  (hal/runtime/staging.py). wgpudawn's dispose callback holds the pages until Dawn has
  released the buffer (destroyed, its submitted work done, events processed): the memory
  outlives every GPU use. ``HAL_DISABLE_FEATURES=host-mapped-pointer`` keeps the staged path.

wgpudawn is optional (``pip install .[dawn]``): :func:`load` raises BackendError saying so.
"""

from __future__ import annotations

import collections
import functools
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hal.backends.protocol import (
    AdapterDescription,
    Backend,
    BackendError,
    Step,
    waiter_poll_seconds,
)
from hal.backends.raw_calls import RawCalls
from hal.backends.wgpu_py import WgpuPyBackend, describe_adapters, translate

__all__ = ["DawnBackend", "dawn_adapters", "load"]

_IMPLICIT_SYNC = "implicit-device-synchronization"
_SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix"
_F16_ON_NVIDIA = "vulkan_enable_f16_on_nvidia"
_HOST_MEMORY = "host-mapped-pointer"
_HUGE_PAGE = 2 << 20  # host-memory buffers start on a 2 MiB boundary (transparent huge pages)
_SLICE_NS = 1_000_000  # a wait under the lock (no implicit synchronisation) blocks this long
_LONG_SLICE_NS = 100_000_000  # a wait outside the lock wakes up this often to check for loss
_F = TypeVar("_F", bound=Callable[..., Any])

_modules: dict[str, Any] = {}

# One lock for every Dawn device: wgpudawn's pending errors are process-wide, so with a lock
# per device a compile error on one device surfaced in a concurrent call on another.
_DAWN_LOCK = threading.RLock()


def load() -> Any:
    """The ``wgpudawn`` module with its Dawn backend loaded (not installed as ``wgpu``).
    BackendError when it is not importable."""
    if "wgpudawn" not in _modules:
        try:
            import wgpudawn
            import wgpudawn.backends.auto  # registers Dawn as wgpudawn.gpu
            from wgpudawn.backends.dawn import _api, _ffi, _helpers, extras
        except ImportError as error:
            raise BackendError(
                f"wgpudawn is not installed ({error}); install it with pip install '.[dawn]'"
            ) from None
        if _helpers._the_instance is None:
            # host-mapped-pointer is experimental: Dawn offers it only on an instance with
            # allow_unsafe_apis (which unlocks experimental features, not weaker validation).
            toggles = ["allow_unsafe_apis"]
            # Dawn leaves shader-f16, and with it the f16 subgroup-matrix shapes, off on
            # NVIDIA's Vulkan driver unless this (adapter) toggle is on; other GPUs ignore it.
            if _F16_ON_NVIDIA in extras.all_toggles():
                toggles.append(_F16_ON_NVIDIA)
            extras.set_instance_extras(enable_toggles=toggles)
        _modules.update(wgpudawn=wgpudawn, ffi=_ffi.ffi, lib=_ffi.lib, libf=_api.libf)
        _modules.update(extras=extras, api=_api)
        _modules.update(callbacks=_ffi.callbacks, c_callback=_ffi.c_callback)
        _modules["instance"] = _helpers.get_wgpu_instance()
    return _modules["wgpudawn"]


def dawn_adapters() -> list[AdapterDescription]:
    """Every adapter Dawn enumerates. BackendError when wgpudawn is missing or fails."""
    wgpudawn = load()
    try:
        return describe_adapters(wgpudawn.gpu, "dawn")
    except Exception as error:
        raise BackendError(f"Dawn could not enumerate adapters: {error}") from None


def _fresh(adapter: AdapterDescription) -> Any:
    """An unused Dawn adapter like ``adapter``: a Dawn adapter is "consumed" by the first
    device made from it, and hal enumerates adapters once per process."""
    wgpudawn = load()
    handle = adapter.handle
    if getattr(handle, "_hal_consumed", False):
        matches = [
            a for a in wgpudawn.gpu.enumerate_adapters_sync() if a.summary == adapter.summary
        ]
        if not matches:
            raise BackendError(f"Dawn no longer enumerates the adapter {adapter.summary!r}")
        handle = matches[0]
    handle._hal_consumed = True
    return handle


class _CommandBuffer:
    """A finished raw command buffer (what :meth:`DawnBackend.encode` returns): its handle as
    ``_internal``, as wgpudawn's objects have it (``queue.submit`` takes it), released by
    :meth:`DawnBackend.submit` once submitted (a command buffer is submitted once), else
    when dropped."""

    __slots__ = ("_internal", "_release")

    def __init__(self, handle: Any, release: Callable[[Any], None]) -> None:
        self._internal = handle
        self._release = release

    def release(self) -> None:
        """Release the handle now (once): ``_internal`` becomes None."""
        handle, self._internal = self._internal, None
        if handle is not None:
            # webgpu.h: wgpuCommandBufferRelease(commandBuffer); safe from any thread under
            # implicit device synchronisation (Dawn's reference counts are atomic).
            self._release(handle)

    def __del__(self) -> None:
        self.release()


def _work_done_callback(backend: Callable[[], DawnBackend | None]) -> Callable[..., None]:
    """The webgpu.h WGPUQueueWorkDoneCallback of one backend (held weakly): its ticket is
    the callback's userdata2."""
    ffi = _modules["ffi"]

    def callback(status: int, message: Any, userdata1: Any, userdata2: Any) -> None:
        owner = backend()
        if owner is not None:
            owner._on_work_done(int(status), int(ffi.cast("uintptr_t", userdata2)))

    return callback


def _serialised(method: _F) -> _F:
    """``method`` run under the backend's Dawn lock, wgpudawn's errors translated."""

    @functools.wraps(method)
    def call(self: DawnBackend, *args: Any, **kwargs: Any) -> Any:
        with self._dawn:
            try:
                return method(self, *args, **kwargs)
            except BackendError as error:
                raise self._classify(error) from None
            except self._errors as error:
                raise self._classify(translate(error)) from None

    return call  # type: ignore[return-value]


class DawnBackend(RawCalls, WgpuPyBackend):
    """One Dawn device, every call serialised through the process's Dawn lock (module
    docstring)."""

    implementation = "dawn"
    bounded_waits = True  # TimedWaitAny

    def __init__(
        self,
        device: Any,
        features: frozenset[str],
        implicit_sync: bool,
        host_memory: bool = False,
    ) -> None:
        self._dawn = _DAWN_LOCK
        wgpudawn = _modules["wgpudawn"]
        # RuntimeError: wgpudawn's map failures and calls on released objects.
        self._errors: tuple[type[BaseException], ...] = (wgpudawn.GPUError, RuntimeError)
        self._ffi, self._lib, self._libf = _modules["ffi"], _modules["lib"], _modules["libf"]
        self._instance = _modules["instance"]
        self._unmapped = wgpudawn.BufferMapState.unmapped
        self._map_read, self._map_write = int(wgpudawn.MapMode.READ), int(wgpudawn.MapMode.WRITE)
        super().__init__(device, features)
        self.implicit_sync = implicit_sync
        self.host_memory_buffers = host_memory
        self._host_usage = int(wgpudawn.BufferUsage.COPY_SRC | wgpudawn.BufferUsage.COPY_DST)
        self._host_alignment = 0
        # (ticket, work-done future id) of each submission not yet known finished.
        self._pending: collections.deque[tuple[int, int]] = collections.deque()
        # The highest ticket whose work-done callback reported success, and the first one
        # that reported a failure (its ticket and status), both set by _on_work_done.
        self._finished = 0
        self._work_failed: tuple[int, int] | None = None
        # Callbacks fire in ProcessEvents under the lock, but also in a WaitAny made outside
        # it (implicit device synchronisation): the check-then-store of _finished is guarded
        # so that two of them never move it back.
        self._finished_lock = threading.Lock()
        # (ticket, its future's wait info) of the latest poll_ticket: a host wait polls one
        # ticket many times.
        self._polled: tuple[int, Any] | None = None
        self._lost_promise = getattr(device, "_lost_promise", None)
        self._wait_ok = (self._lib.WGPUWaitStatus_Success, self._lib.WGPUWaitStatus_TimedOut)
        self._work_done_ok = int(self._lib.WGPUQueueWorkDoneStatus_Success)
        # One work-done callback for every submission, its ticket in userdata2: no callback
        # registered (nor object made) per submission. wgpudawn's static callback entry
        # dispatches on userdata1 (its callback registry); the registered function holds the
        # backend weakly, and the entry goes with the backend.
        callbacks = _modules["callbacks"]
        userdata = callbacks.register(_work_done_callback(weakref.ref(self)), once=False)
        weakref.finalize(self, callbacks.unregister, userdata)
        self._work_done_info = self._ffi.new("WGPUQueueWorkDoneCallbackInfo *")
        self._work_done_info.mode = self._lib.WGPUCallbackMode_AllowProcessEvents
        self._work_done_info.callback = _modules["c_callback"]("WGPUQueueWorkDoneCallback")
        self._work_done_info.userdata1 = userdata

    @classmethod
    def open(cls, adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
        """Request a Dawn device with ``features`` (plus implicit device synchronisation and
        host-memory buffers where the adapter has them). BackendError on failure."""
        implicit = _IMPLICIT_SYNC in adapter.features
        wanted = [*features, _IMPLICIT_SYNC] if implicit else list(features)
        # Not a hal feature (the runtime never requests it): honour HAL_DISABLE_FEATURES here,
        # so the staged path can be forced where the adapter has host-memory buffers.
        disabled = {f.strip() for f in os.environ.get("HAL_DISABLE_FEATURES", "").split(",")}
        host_memory = _HOST_MEMORY in adapter.features and _HOST_MEMORY not in disabled
        if host_memory:
            wanted.append(_HOST_MEMORY)
        # A kernel feature (f16 matmul on tensor cores): requested and shown in
        # device.features where the adapter has it, unless HAL_DISABLE_FEATURES hides it.
        if _SUBGROUP_MATRIX in adapter.features and _SUBGROUP_MATRIX not in disabled:
            features = [*features, _SUBGROUP_MATRIX]
            wanted.append(_SUBGROUP_MATRIX)
        try:
            # Request the adapter description's limits, as the wgpu-py backend does, so an
            # adapter profile (hal.core.profiles) binds Dawn too.
            device = _fresh(adapter).request_device_sync(
                label=label, required_features=wanted, required_limits=adapter.limits
            )
        except Exception as error:
            raise translate(error) from None
        backend = cls(device, frozenset(features), implicit, host_memory)
        # A host wait polls first on a GPU (protocol.waiter_poll_seconds, poll_ticket): a
        # WaitAny entered while the work still runs wakes ~15 µs after it finished.
        backend.waiter_poll_s = waiter_poll_seconds(adapter.adapter_type)
        # Dawn serialises WaitAny calls on one device (second review: a zero-timeout WaitAny
        # returned only when the completion thread's did, 50 ms later on lavapipe).
        backend.serial_wait_slice_s = (_LONG_SLICE_NS if implicit else _SLICE_NS) * 1e-9
        return backend

    def _classify(self, error: BackendError) -> BackendError:
        """``error``, marked lost (and the loss recorded) when the device is lost."""
        if error.lost:
            self.note_lost(str(error))
            return error
        reason = self._lost_info()
        if reason is None:
            return error
        self.note_lost(reason)
        return BackendError(f"{error} (device lost: {reason})", lost=True)

    def _lost_info(self) -> str | None:
        """Why Dawn's lost promise says the device is lost, or None (events not processed)."""
        promise = self._lost_promise
        if promise is None or promise._state == "pending":
            return None
        try:
            info = promise.sync_wait()
        except Exception as error:
            return str(error)
        return f"Dawn device lost ({info.reason}): {info.message}".strip()

    def _guard_destroy(self, device: Any) -> None:
        # Destroying the device is a Dawn call too: under the Dawn lock, inside the
        # submission lock the parent's wrapper takes (lock order: submission, then Dawn).
        destroy = device.destroy

        def destroy_serialised() -> None:
            with self._dawn:
                destroy()

        device.destroy = destroy_serialised
        super()._guard_destroy(device)

    # -- everything that calls into Dawn, serialised ---------------------------------------

    create_buffer = _serialised(WgpuPyBackend.create_buffer)
    create_staging_buffer = _serialised(WgpuPyBackend.create_staging_buffer)
    destroy_buffer = _serialised(WgpuPyBackend.destroy_buffer)
    write_buffer = _serialised(WgpuPyBackend.write_buffer)
    create_shader_module = _serialised(WgpuPyBackend.create_shader_module)
    create_bind_group_layout = _serialised(WgpuPyBackend.create_bind_group_layout)
    create_compute_pipeline = _serialised(WgpuPyBackend.create_compute_pipeline)
    create_bind_group = _serialised(WgpuPyBackend.create_bind_group)
    encode_profiled = _serialised(WgpuPyBackend.encode_profiled)
    create_query_set = _serialised(WgpuPyBackend.create_query_set)
    resolve_timestamps = _serialised(WgpuPyBackend.resolve_timestamps)
    read_timestamps = _serialised(WgpuPyBackend.read_timestamps)
    clear_command_buffer = _serialised(WgpuPyBackend.clear_command_buffer)
    copy_command_buffer = _serialised(WgpuPyBackend.copy_command_buffer)

    @_serialised
    def create_host_buffer(self, size: int) -> tuple[Any, memoryview]:
        """A COPY_SRC|COPY_DST buffer over new host pages (2 MiB aligned, transparent huge
        pages asked for) and a writable view of its first ``size`` bytes. BackendError when
        Dawn refuses it or the device lacks host-mapped-pointer."""
        if not self.host_memory_buffers:
            raise BackendError("this Dawn device has no host-mapped-pointer feature")
        extras = _modules["extras"]
        step = max(self.host_memory_alignment(), _HUGE_PAGE)
        length = -(-size // step) * step
        # Private anonymous pages (mmap's default is MAP_SHARED: shmem, no huge pages).
        pages = mmap.mmap(-1, length + step, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        address = int(self._ffi.cast("uintptr_t", self._ffi.from_buffer(pages)))
        start = -address % step
        if hasattr(mmap, "MADV_HUGEPAGE"):
            pages.madvise(mmap.MADV_HUGEPAGE, start, length)  # before the first touch
        memory = memoryview(pages)[start : start + length]
        buffer = extras.create_buffer_from_host_memory(
            self.device, memory, usage=self._host_usage, label="hal.host"
        )
        return buffer, memory[:size]

    def host_memory_alignment(self) -> int:
        """The alignment of the address and size of host memory a host-memory buffer may
        wrap (Dawn's ``hostMappedPointerAlignment``, e.g. a 4 KiB page). BackendError when
        the device lacks host-mapped-pointer."""
        if not self.host_memory_buffers:
            raise BackendError("this Dawn device has no host-mapped-pointer feature")
        if not self._host_alignment:
            with self._dawn:
                extras = _modules["extras"]
                self._host_alignment = int(extras.get_host_memory_alignment(self.device))
        return self._host_alignment

    @_serialised
    def wrap_host_memory(self, address: int, size: int, keep: Any) -> Any:
        """A COPY_SRC|COPY_DST buffer over ``size`` bytes of existing host memory at
        ``address`` (both multiples of :meth:`host_memory_alignment`), which ``keep`` (the
        object owning the memory) keeps valid: the buffer's dispose callback holds ``keep``
        until Dawn released the buffer, so the memory outlives every GPU use. Unlike
        wgpudawn's ``create_buffer_from_host_memory`` it takes memory Python calls
        read-only (a ``bytes`` object's heap pages): hal only copies from such buffers.
        BackendError when Dawn refuses the memory."""
        alignment = self.host_memory_alignment()
        if address % alignment or size % alignment or size <= 0:
            raise BackendError(f"host memory at {address:#x}+{size} is not {alignment}-aligned")
        ffi, lib, api = self._ffi, self._lib, _modules["api"]
        # The callback's closure holds ``keep`` until Dawn calls it (once, at disposal).
        userdata = _modules["callbacks"].register(lambda _keep=keep: None)
        chained = api.new_struct_p(
            "WGPUBufferHostMappedPointer *",
            pointer=ffi.cast("void *", address),
            disposeCallback=lib._wgpu_dawn_native_WGPUCallback,
            userdata=userdata,
        )
        chained.chain.sType = lib.WGPUSType_BufferHostMappedPointer
        descriptor = api.new_struct_p(
            "WGPUBufferDescriptor *",
            nextInChain=ffi.cast("WGPUChainedStruct *", chained),
            label=api.to_c_string_view("hal.wrapped"),
            usage=self._host_usage,
            size=size,
            mappedAtCreation=False,
        )
        # webgpu.h: wgpuDeviceCreateBuffer(device, descriptor), error-checked
        handle = self._libf.wgpuDeviceCreateBuffer(self.device._internal, descriptor)
        return api.GPUBuffer(
            "hal.wrapped", handle, self.device, size, self._host_usage, self._unmapped
        )

    # -- recorded encoder calls: raw webgpu.h functions ---------------------------------------
    # wgpudawn's encoder objects cost a Python wrapper (argument conversion, struct building)
    # per call; recorded calls are the raw functions of wgpudawn's cffi module on the raw
    # handles, as WgpuNativeBackend does for wgpu-native. Dawn reports errors of encoder and
    # pass commands at finish(), which goes through wgpudawn's error-raising call.

    @_serialised
    def encode(self, steps: Sequence[Step], label: str = "hal") -> Any:
        """Replay ``steps`` through raw calls into a new command buffer; Dawn's errors
        (raised at finish) become BackendError."""
        lib, ffi = self._lib, self._ffi
        # webgpu.h: wgpuDeviceCreateCommandEncoder(device, descriptor = NULL)
        encoder = self._libf.wgpuDeviceCreateCommandEncoder(self.device._internal, ffi.NULL)
        try:
            for is_pass, calls in steps:
                if not is_pass:
                    for function, args in calls:
                        function(encoder, *args)
                    continue
                # webgpu.h: wgpuCommandEncoderBeginComputePass(encoder, descriptor = NULL)
                compute = lib.wgpuCommandEncoderBeginComputePass(encoder, ffi.NULL)
                try:
                    for function, args in calls:
                        function(compute, *args)
                    lib.wgpuComputePassEncoderEnd(compute)
                finally:
                    lib.wgpuComputePassEncoderRelease(compute)
            # webgpu.h: wgpuCommandEncoderFinish(encoder, descriptor = NULL), error-checked
            finished = self._libf.wgpuCommandEncoderFinish(encoder, ffi.NULL)
            return _CommandBuffer(finished, lib.wgpuCommandBufferRelease)
        finally:
            lib.wgpuCommandEncoderRelease(encoder)

    @_serialised
    def write_timestamp(self, target: Any, query_set: Any, index: int) -> None:
        """A timestamp from a pass or an encoder (Dawn's ``WriteTimestamp``; needs the
        adapter's timestamp-inside-passes/encoders support, which hal checks)."""
        target._write_timestamp(query_set, index)

    # -- submission and completion ----------------------------------------------------------

    @_serialised
    def submit(self, command_buffers: Sequence[Any]) -> int:
        """Submit and register the submission's work-done future; returns its ticket."""
        ffi, lib = self._ffi, self._lib
        handles = ffi.new("WGPUCommandBuffer[]", [cb._internal for cb in command_buffers])
        queue = self.queue._internal
        # webgpu.h: wgpuQueueSubmit(queue, count, commands), error-checked
        self._libf.wgpuQueueSubmit(queue, len(command_buffers), handles)
        # Released here, under the lock, not when the runtime drops them: that would be a
        # C call (the GIL let go) right after the tracker was woken for this submission, and
        # the tracker would run before the host wait that follows could claim the work.
        for cb in command_buffers:
            if type(cb) is _CommandBuffer:
                cb.release()
        ticket = self._submitted = self._submitted + 1
        info = self._work_done_info
        info.userdata2 = ffi.cast("void *", ticket)
        # webgpu.h: WGPUFuture wgpuQueueOnSubmittedWorkDone(queue, callbackInfo)
        self._pending.append((ticket, lib.wgpuQueueOnSubmittedWorkDone(queue, info[0]).id))
        return ticket

    def _on_work_done(self, status: int, ticket: int) -> None:
        """A submission's work-done callback (fires inside WaitAny / ProcessEvents): note
        the ticket finished, or its failure."""
        with self._finished_lock:
            if status == self._work_done_ok:
                if ticket > self._finished:
                    self._finished = ticket
            elif self._work_failed is None:
                self._work_failed = (ticket, status)

    def _settle(self) -> None:
        """Drop the pending submissions up to the newest whose future completed (call
        under the lock). Only a waited future's callback fires in ``WaitAny``, so earlier
        ones may not have reported: one queue runs in order, so they finished too."""
        failed = self._work_failed
        if failed is not None:
            # A work-done future fails only when the device is lost (or torn down).
            pending = self._pending
            while pending and pending[0][0] < failed[0]:
                self._completed = max(self._completed, pending.popleft()[0])
            reason = self._lost_info() or f"submitted work did not complete: {failed[1]}"
            self.note_lost(reason)
            raise BackendError(reason, lost=True)
        finished = self._finished
        if finished > self._completed:
            self._completed = finished
            pending = self._pending
            while pending and pending[0][0] <= finished:
                pending.popleft()

    @_serialised
    def completed_ticket(self) -> int:
        """Process events without blocking; the highest ticket known finished."""
        self._lib.wgpuInstanceProcessEvents(self._instance)
        self._settle()
        return self._completed

    def poll_ticket(self, ticket: int) -> int:
        """The highest ticket known finished, looking at ``ticket``'s submission: a
        zero-timeout ``wgpuInstanceWaitAny`` on its work-done future (outside the lock under
        implicit synchronisation). Not ``wgpuInstanceProcessEvents``, which waits until any
        other thread's WaitAny returns (hal's completion thread of any Dawn device of the
        process waits there in 100 ms slices) and would hold the process's Dawn lock
        meanwhile. The zero-timeout WaitAny does not wait for other devices' waits, but
        Dawn serialises waits on one device: while this device's completion thread waits
        for the same work (it began before the host wait), the poll returns when that wait
        does (review: 50 ms on lavapipe), which is why a bounded host wait with less than
        :attr:`serial_wait_slice_s` left leaves such work to the completion thread
        (hal/runtime/completion.py). A host wait polls one ticket many times: its future's
        wait info is kept, and the lock is taken again only once the future completed.
        BackendError (lost=True) on a lost device."""
        if self._completed >= ticket:
            return self._completed
        polled = self._polled
        if polled is not None and polled[0] == ticket:
            info = polled[1]
        else:
            with self._dawn:
                self._settle()
                if self._completed >= ticket:
                    return self._completed
                future = next((f for t, f in self._pending if t >= ticket), None)
            if future is None:
                return self._completed
            info = self._ffi.new("WGPUFutureWaitInfo *")
            info.future.id = future
            self._polled = (ticket, info)  # one tuple: another poller reads it whole
        wait_any = self._lib.wgpuInstanceWaitAny
        # webgpu.h: WGPUWaitStatus wgpuInstanceWaitAny(instance, count, futures, ns)
        if self.implicit_sync:
            status = wait_any(self._instance, 1, info, 0)
        else:
            with self._dawn:
                status = wait_any(self._instance, 1, info, 0)
        if status not in self._wait_ok:
            raise BackendError(f"wgpuInstanceWaitAny failed with status {int(status)}")
        if not info.completed and self._work_failed is None:
            return self._completed
        with self._dawn:
            self._settle()  # the future's callback fired inside WaitAny
            return self._completed

    @_serialised
    def poll(self) -> None:
        """Fire the callbacks of finished operations (never blocks)."""
        self._lib.wgpuInstanceProcessEvents(self._instance)

    def wait(self, ticket: int) -> None:
        """Block until ``ticket`` finished; BackendError(lost=True) on a lost device."""
        self.wait_bounded(ticket, None)

    def wait_bounded(self, ticket: int, timeout: float | None) -> bool:
        """Block until ``ticket`` finished (True) or ``timeout`` seconds passed (False; None:
        no limit) through TimedWaitAny; BackendError(lost=True) on a lost device."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._dawn:
                self._settle()
                if self._completed >= ticket:
                    return True
                if self.lost_reason is not None:
                    raise BackendError(self.lost_reason, lost=True)
                # The first submission at or after ``ticket`` (``ticket`` itself, but for
                # a ticket some other path completed).
                target, future = next(p for p in self._pending if p[0] >= ticket)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._wait_future(future, remaining, functools.partial(self._finished_through, target))

    def _finished_through(self, ticket: int) -> bool:
        """Whether a work-done callback reported ``ticket`` (or a later one) finished."""
        return self._finished >= ticket

    def _block(self, promise: Any, timeout: float | None) -> bool:
        """Wait for ``promise``'s future (a wgpudawn promise: a map): True once it
        completed, False after ``timeout`` seconds (None: no limit)."""
        return self._wait_future(
            promise._wgpu_future_id, timeout, lambda: promise._state != "pending"
        )

    def _wait_future(self, future: int, timeout: float | None, done: Callable[[], bool]) -> bool:
        """Wait for the future with id ``future`` until ``done()``: True then, False after
        ``timeout`` seconds (None: no limit); also True when the device was found lost (the
        caller finds the loss). Outside the lock under implicit synchronisation, in slices
        that look for a loss."""
        info = self._ffi.new("WGPUFutureWaitInfo *")
        info.future.id = future
        budget = None if timeout is None else max(0, int(timeout * 1e9))
        wait_any = self._lib.wgpuInstanceWaitAny  # raw: wgpudawn's wrapper would raise
        # other threads' pending errors here
        while not done():
            step = _LONG_SLICE_NS if self.implicit_sync else _SLICE_NS
            if budget is not None:
                if budget <= 0:
                    return False
                step = min(step, budget)
                budget -= step
            if self.implicit_sync:
                # webgpu.h: WGPUWaitStatus wgpuInstanceWaitAny(instance, count, futures, ns)
                status = wait_any(self._instance, 1, info, step)
            else:
                with self._dawn:
                    status = wait_any(self._instance, 1, info, step)
            if status not in self._wait_ok:
                raise BackendError(f"wgpuInstanceWaitAny failed with status {int(status)}")
            if info.completed:
                return True
            if self.lost_reason is not None:
                return True  # the caller finds the loss
            if self.probe_lost() is not None:
                return True
        return True

    # -- mapping --------------------------------------------------------------------------

    @_serialised
    def map_async(self, buffer: Any, size: int, *, write: bool) -> Any:
        """Request ``[0, size)`` mapped (wgpudawn's ``map_async``); returns its promise."""
        return buffer.map_async(self._map_write if write else self._map_read, 0, size)

    def wait_mapped(self, token: Any, timeout: float) -> bool:
        """Wait (with a real timeout) for the map of ``token``; BackendError if it failed."""
        if not self._block(token, timeout):
            return False
        with self._dawn:
            if token._state == "pending":  # woken by a loss
                raise self._classify(BackendError("mapping a staging buffer: device lost"))
            try:
                token.sync_wait()  # runs wgpudawn's handler: the buffer's state is mapped
            except Exception as error:
                raise self._classify(
                    BackendError(f"mapping a staging buffer failed: {error}")
                ) from None
        return True

    @_serialised
    def mapped_range(self, buffer: Any, size: int, *, writable: bool) -> memoryview:
        """The mapped bytes ``[0, size)`` (``wgpuBufferGet[Const]MappedRange``)."""
        lib, ffi = self._lib, self._ffi
        if writable:
            pointer = lib.wgpuBufferGetMappedRange(buffer._internal, 0, size)
        else:
            pointer = lib.wgpuBufferGetConstMappedRange(buffer._internal, 0, size)
        if pointer == ffi.NULL:
            raise BackendError("wgpuBufferGetMappedRange returned NULL (buffer not mapped)")
        view = memoryview(ffi.buffer(ffi.cast("uint8_t *", pointer), size))
        return view if writable else view.toreadonly()

    @_serialised
    def unmap(self, buffer: Any) -> None:
        """Unmap ``buffer``, also while its map is pending (which cancels the map)."""
        self._lib.wgpuBufferUnmap(buffer._internal)
        # Keep wgpudawn's view of the buffer in step with Dawn's.
        buffer._map_state = self._unmapped
        buffer._mapped_status = 0, 0, 0
        buffer._release_memoryviews()

    # -- health ---------------------------------------------------------------------------

    def probe_lost(self) -> str | None:
        """Process events, then read Dawn's lost promise (submits nothing)."""
        if self.lost_reason is not None:
            return self.lost_reason
        with self._dawn:
            self._lib.wgpuInstanceProcessEvents(self._instance)
            reason = self._lost_info()
        if reason is not None:
            self.note_lost(reason)
        return self.lost_reason
