"""Adapters and devices: choosing an adapter, opening a wgpu device, the device object."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import wgpu

from hal.core.caps import DeviceCaps
from hal.core.cost import load_costs
from hal.enums import BufferUsage, CommandBufferMode, CommandCategory, MemoryType
from hal.errors import DeadlineExceededError, InvalidArgumentError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from hal.core.refs import BufferTarget
    from hal.runtime.allocator import Allocator
    from hal.runtime.buffer import Buffer, BufferView
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.event import Event
    from hal.runtime.executable import Executable
    from hal.runtime.profiling import Profile
    from hal.runtime.queue import Queue, WaitList
    from hal.runtime.semaphore import Semaphore

__all__ = ["AdapterInfo", "Device", "available_adapters", "create_device"]

# Features hal uses when the adapter has them.
_WANTED_FEATURES = (
    "immediates",
    "timestamp-query",
    "timestamp-query-inside-encoders",
    "timestamp-query-inside-passes",
    "shader-f16",
)
_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3}
_BACKEND_RANK = {"vulkan": 0, "metal": 0, "d3d12": 0, "gl": 2}


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """What an adapter is: ``name``, ``backend`` ("vulkan", "metal", "d3d12", "gl"),
    ``adapter_type`` ("discrete", "integrated", "cpu", …) and ``vendor``."""

    name: str
    backend: str
    adapter_type: str
    vendor: str

    def __str__(self) -> str:
        return f"{self.name} ({self.adapter_type}, {self.backend})"


def _normalise_backend(raw: str) -> str:
    raw = raw.lower()
    return {"opengl": "gl", "opengles": "gl", "gles": "gl"}.get(raw, raw)


def _normalise_type(raw: str) -> str:
    raw = raw.lower().replace("gpu", "")
    return {"integrated": "integrated", "discrete": "discrete", "cpu": "cpu"}.get(raw, raw)


def _adapter_info(adapter: Any) -> AdapterInfo:
    info = adapter.info
    return AdapterInfo(
        name=str(info.get("device") or adapter.summary),
        backend=_normalise_backend(str(info.get("backend_type", ""))),
        adapter_type=_normalise_type(str(info.get("adapter_type", ""))),
        vendor=str(info.get("vendor", "")),
    )


def _prepare_environment() -> None:
    # Mesa prints errors on every adapter creation when XDG_RUNTIME_DIR is unset or invalid.
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current):
        return
    private = Path(f"/tmp/hal-runtime-{os.getuid()}") if hasattr(os, "getuid") else None
    if private is None:
        return
    private.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(private)


_adapter_lock = threading.Lock()
_adapters: list[Any] | None = None


def _enumerate() -> list[Any]:
    global _adapters
    with _adapter_lock:
        if _adapters is None:
            _prepare_environment()
            _adapters = list(wgpu.gpu.enumerate_adapters_sync())
        return _adapters


def available_adapters() -> list[AdapterInfo]:
    """List the adapters wgpu can open, in enumeration order. Never raises."""
    try:
        return [_adapter_info(a) for a in _enumerate()]
    except Exception:
        return []


def _pick_adapter(adapter: int | str | None, backend: str | None) -> Any:
    adapters = _enumerate()
    candidates = list(enumerate(adapters))
    if backend is not None:
        want = _normalise_backend(backend)
        candidates = [(i, a) for i, a in candidates if _adapter_info(a).backend == want]
        if not candidates:
            raise UnavailableError(f"create_device: no adapter with backend {backend!r}")
    if isinstance(adapter, int):
        if not 0 <= adapter < len(adapters):
            raise InvalidArgumentError(
                f"create_device: adapter index {adapter} is not in [0, {len(adapters)})"
            )
        return adapters[adapter]
    if isinstance(adapter, str):
        named = [(i, a) for i, a in candidates if adapter.lower() in a.summary.lower()]
        if not named:
            raise UnavailableError(f"create_device: no adapter name contains {adapter!r}")
        candidates = named
    if not candidates:
        raise UnavailableError("create_device: wgpu found no adapter")

    def rank(item: tuple[int, Any]) -> tuple[int, int, int]:
        info = _adapter_info(item[1])
        return (_TYPE_RANK.get(info.adapter_type, 4), _BACKEND_RANK.get(info.backend, 3), item[0])

    return min(candidates, key=rank)[1]


def create_device(
    adapter: int | str | None = None, *, backend: str | None = None, label: str | None = None
) -> Device:
    """Open a device on the best adapter (discrete > integrated > cpu; Vulkan/Metal/D3D12
    before GL), or on ``adapter`` (an index or a name substring) / ``backend``.

    The environment variables ``HAL_ADAPTER`` and ``HAL_BACKEND`` override the defaults;
    ``HAL_DISABLE_FEATURES`` (comma separated, e.g. ``immediates``) hides features, to exercise
    fallbacks. Raises :class:`UnavailableError` when no adapter matches and
    :class:`InvalidArgumentError` for an adapter index out of range.
    """
    if adapter is None and os.environ.get("HAL_ADAPTER"):
        env = os.environ["HAL_ADAPTER"]
        adapter = int(env) if env.isdigit() else env
    if backend is None and os.environ.get("HAL_BACKEND"):
        backend = os.environ["HAL_BACKEND"]
    gpu_adapter = _pick_adapter(adapter, backend)
    disabled = {f.strip() for f in os.environ.get("HAL_DISABLE_FEATURES", "").split(",")}
    features = [f for f in _WANTED_FEATURES if f in gpu_adapter.features and f not in disabled]
    wgpu_device = gpu_adapter.request_device_sync(label=label or "hal", required_features=features)
    return Device(wgpu_device, _adapter_info(gpu_adapter), frozenset(features), label)


class Device:
    """A logical device on one adapter: allocates buffers, compiles executables, records and
    submits work. Use as a context manager or call :meth:`close`.

    Every method raises :class:`UnavailableError` once the device is closed.
    """

    def __init__(
        self, wgpu_device: Any, info: AdapterInfo, features: frozenset[str], label: str | None
    ) -> None:
        from hal.core.builtins import BuiltinKernels
        from hal.runtime.allocator import Allocator
        from hal.runtime.encoder import BindGroupCache
        from hal.runtime.executable import ExecutableCache
        from hal.runtime.queue import Queue

        self._wgpu = wgpu_device
        self.info = info
        self.label = label
        self.features: frozenset[str] = features
        self.limits: dict[str, int] = {k: int(v) for k, v in dict(wgpu_device.limits).items()}
        self.caps = DeviceCaps(
            storage_alignment=self.limits["min-storage-buffer-offset-alignment"],
            uniform_alignment=self.limits["min-uniform-buffer-offset-alignment"],
            immediates="immediates" in features,
            max_immediate_size=self.limits.get("max-immediate-size", 0),
            max_binding_size=self.limits["max-storage-buffer-binding-size"],
            max_uniform_binding_size=self.limits["max-uniform-buffer-binding-size"],
            max_workgroups=self.limits["max-compute-workgroups-per-dimension"],
            max_buffer_size=self.limits["max-buffer-size"],
            costs=load_costs(f"{info.name} {info.backend} {info.vendor} {info.adapter_type}"),
        )
        self._closed = False
        self._lock = threading.RLock()
        self.allocator: Allocator = Allocator(self)
        self._executables = ExecutableCache(self)
        self._bind_groups = BindGroupCache(wgpu_device)
        self._builtins = BuiltinKernels(self)
        self._profiler: Profile | None = None  # the active device.profile(), if any
        self._queue: Queue = Queue(self)
        self._finalizer = weakref.finalize(self, Queue.shutdown, self._queue)

    # -- lifetime -------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise UnavailableError(f"{what}: the device is closed")
        lost = self._queue._lost
        if lost is not None:
            raise UnavailableError(f"{what}: {lost}") from lost

    def close(self) -> None:
        """Wait (bounded) for submitted work, stop the completion thread and close the device.

        Idempotent; never raises for pending work.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.close()
        self._bind_groups.clear()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hal.Device {self.info}{' closed' if self._closed else ''}>"

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every submitted operation finished. Raises DeadlineExceededError."""
        self._check_open("wait_idle")
        if not self._queue.wait_idle(timeout):
            raise DeadlineExceededError(f"wait_idle: work still pending after {timeout} s")

    def profile(self, clock: str = "auto") -> Profile:
        """A context manager that times the work submitted while it is active, per dispatch
        and transfer (``with device.profile() as p: ...``; then ``p.events``,
        ``p.save_chrome_trace(path)``). ``clock``: ``"auto"`` (GPU timestamps where the
        adapter has ``timestamp-query``), ``"gpu"`` or ``"host"``. Raises InvalidArgumentError
        for another ``clock``, UnimplementedError for ``"gpu"`` without timestamps; entering
        it while another profile is active raises FailedPreconditionError."""
        from hal.runtime.profiling import Profile

        self._check_open("profile")
        return Profile(self, clock)

    # -- memory ----------------------------------------------------------------------------

    def allocate_buffer(
        self,
        size: int,
        *,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
        usage: BufferUsage = BufferUsage.DEFAULT,
        access: Any = None,
    ) -> Buffer:
        """Shorthand for ``device.allocator.allocate_buffer`` (same arguments and errors)."""
        from hal.enums import MemoryAccess

        return self.allocator.allocate_buffer(
            size,
            memory_type=memory_type,
            usage=usage,
            access=MemoryAccess.ALL if access is None else access,
        )

    def buffer_from_numpy(
        self,
        array: np.ndarray,
        *,
        usage: BufferUsage = BufferUsage.DEFAULT,
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
    ) -> Buffer:
        """Allocate a buffer holding a copy of ``array``'s bytes (C order)."""
        data = np.ascontiguousarray(array)
        buffer = self.allocate_buffer(
            data.nbytes, memory_type=memory_type, usage=usage | BufferUsage.TRANSFER_TARGET
        )
        self._queue.host_write(buffer, 0, data.reshape(-1).view(np.uint8))
        return buffer

    def buffer_view_from_numpy(self, array: np.ndarray) -> BufferView:
        """A :class:`BufferView` over a new buffer holding a copy of ``array``."""
        from hal.runtime.buffer import BufferView

        data = np.ascontiguousarray(array)
        return BufferView(self.buffer_from_numpy(data), data.shape, data.dtype)

    def transfer_h2d(self, data: Any, target: BufferTarget, target_offset: int = 0) -> None:
        """Copy host bytes into ``target`` at ``target_offset``, ordered after all previously
        submitted work. Raises OutOfRangeError / PermissionDeniedError."""
        from hal.core.checks import check_buffer_usage, check_range, host_bytes, resolve_direct

        self._check_open("transfer_h2d")
        payload = host_bytes(data, "transfer_h2d", "data")
        buffer, base, length = resolve_direct(target, "transfer_h2d", "target", self)
        check_buffer_usage("transfer_h2d", "target", buffer, BufferUsage.TRANSFER_TARGET)
        check_range("transfer_h2d", "target", target_offset, len(payload), length)
        self._queue.host_write(buffer, base + target_offset, payload)

    def transfer_d2h(
        self, source: BufferTarget, source_offset: int = 0, length: int | None = None
    ) -> bytes:
        """Read ``length`` bytes (default: to the end) of ``source`` after all previously
        submitted work finished. Raises OutOfRangeError / PermissionDeniedError."""
        buffer, offset, length = self._d2h_range("transfer_d2h", source, source_offset, length)
        return self._queue.host_read(buffer, offset, length)

    def _d2h_range(
        self, what: str, source: BufferTarget, source_offset: int, length: int | None
    ) -> tuple[Buffer, int, int]:
        """Validate a device-to-host read: (buffer, absolute offset, length). Raises
        UnavailableError, OutOfRangeError, PermissionDeniedError, FailedPreconditionError."""
        from hal.core.checks import check_buffer_usage, check_range, resolve_direct

        self._check_open(what)
        buffer, base, size = resolve_direct(source, what, "source", self)
        check_buffer_usage(what, "source", buffer, BufferUsage.TRANSFER_SOURCE)
        if length is None:
            check_range(what, "source", source_offset, 0, size)
            length = size - source_offset
        check_range(what, "source", source_offset, length, size)
        return buffer, base + source_offset, length

    # -- executables, events, semaphores ------------------------------------------------------

    def create_executable(
        self,
        source: str | os.PathLike[str],
        *,
        constants: dict[str, float | int | bool] | None = None,
        label: str | None = None,
    ) -> Executable:
        """Compile WGSL text (or a ``.wgsl`` path) into an executable; identical sources and
        constants come from an in-process cache. Raises InvalidArgumentError on bad WGSL."""
        self._check_open("create_executable")
        return self._executables.get(source, constants, label)

    def create_event(self) -> Event:
        """A new event for ``signal_event``/``wait_events`` inside command buffers."""
        from hal.runtime.event import Event

        self._check_open("create_event")
        return Event(self)

    def create_semaphore(self, initial_value: int = 0) -> Semaphore:
        """A new timeline semaphore at ``initial_value``."""
        from hal.runtime.semaphore import Semaphore

        self._check_open("create_semaphore")
        return Semaphore(initial_value, device=self)

    def wait_semaphores(
        self, points: WaitList, mode: str = "all", timeout: float | None = None
    ) -> None:
        """Wait until all (or any) of the ``(semaphore, value)`` points are reached.

        Raises DeadlineExceededError on timeout, AbortedError for a failed semaphore and
        InvalidArgumentError for an unknown ``mode``."""
        from hal.runtime.semaphore import wait_points

        wait_points(points, mode, timeout)

    # -- command buffers --------------------------------------------------------------------

    def create_command_buffer(
        self,
        mode: CommandBufferMode = CommandBufferMode.ONE_SHOT,
        categories: CommandCategory = CommandCategory.ANY,
        binding_capacity: int = 0,
    ) -> CommandBuffer:
        """A new command buffer in the initial state (call ``begin()``).

        Raises InvalidArgumentError for inconsistent mode bits or a negative capacity."""
        from hal.runtime.command_buffer import CommandBuffer

        self._check_open("create_command_buffer")
        return CommandBuffer(self, mode, categories, binding_capacity)

    def record(
        self,
        mode: CommandBufferMode = CommandBufferMode.ONE_SHOT,
        categories: CommandCategory = CommandCategory.ANY,
        binding_capacity: int = 0,
    ) -> AbstractContextManager[CommandBuffer]:
        """``with device.record() as cb:`` creates a command buffer, begins it, and ends it
        when the block exits without an exception."""
        from contextlib import contextmanager

        @contextmanager
        def recording() -> Iterator[CommandBuffer]:
            cb = self.create_command_buffer(mode, categories, binding_capacity)
            cb.begin()
            yield cb
            cb.end()

        return recording()

    # -- queue operations -------------------------------------------------------------------

    def queue_execute(
        self,
        command_buffers: CommandBuffer | Sequence[CommandBuffer] | None,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
        binding_table: Sequence[BufferTarget] | None = None,
    ) -> None:
        """Submit command buffers (or none: a pure barrier) once every wait point is reached;
        signal the ``signal`` points when the GPU finished.

        Raises FailedPreconditionError (un-ended or resubmitted ONE_SHOT buffer, released
        buffer), OutOfRangeError (binding table too small or a slot range past its entry)."""
        self._check_open("queue_execute")
        self._queue.execute(command_buffers, wait, signal, binding_table)

    def queue_barrier(self, *, wait: WaitList = (), signal: WaitList = ()) -> None:
        """Signal ``signal`` once ``wait`` is reached and the work submitted before is done."""
        self._check_open("queue_barrier")
        self._queue.execute(None, wait, signal, None)

    def queue_fill(
        self,
        target: BufferTarget,
        offset: int,
        length: int | None,
        pattern: int | bytes,
        pattern_length: int | None = None,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """``fill_buffer`` as a queue operation (same arguments and errors)."""
        from hal.runtime.transfers import queue_transfer

        self._check_open("queue_fill")
        queue_transfer(
            self,
            lambda cb: cb.fill_buffer(target, offset, length, pattern, pattern_length),
            wait,
            signal,
        )

    def queue_update(
        self,
        source: Any,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """``update_buffer`` as a queue operation; ``source`` is captured now (any size and
        alignment)."""
        from hal.runtime.transfers import queue_transfer, queue_update_staged

        self._check_open("queue_update")
        # Large updates are staged through hal's staging buffers (one copy, no lowering).
        if queue_update_staged(
            self, source, source_offset, target, target_offset, length, wait, signal
        ):
            return
        queue_transfer(
            self,
            lambda cb: cb.update_buffer(source, source_offset, target, target_offset, length),
            wait,
            signal,
        )

    def queue_copy(
        self,
        source: BufferTarget,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int | None,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """``copy_buffer`` as a queue operation (same arguments and errors)."""
        from hal.runtime.transfers import queue_transfer

        self._check_open("queue_copy")
        queue_transfer(
            self,
            lambda cb: cb.copy_buffer(source, source_offset, target, target_offset, length),
            wait,
            signal,
        )

    def queue_alloca(
        self,
        size: int,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
        memory_type: MemoryType = MemoryType.DEVICE_LOCAL,
        usage: BufferUsage = BufferUsage.DEFAULT,
    ) -> Buffer:
        """A new buffer usable by queue work ordered after ``signal``."""
        from hal.runtime.transfers import queue_alloca

        self._check_open("queue_alloca")
        return queue_alloca(self, size, wait, signal, memory_type, usage)

    def queue_dealloca(self, buffer: Buffer, *, wait: WaitList = (), signal: WaitList = ()) -> None:
        """Release ``buffer`` once ``wait`` is reached and earlier work finished."""
        from hal.runtime.transfers import queue_dealloca

        self._check_open("queue_dealloca")
        queue_dealloca(self, buffer, wait, signal)

    def queue_read(
        self,
        source_file: Any,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """Copy bytes of a file (path, open binary file or bytes-like) into ``target`` once
        ``wait`` is reached."""
        from hal.runtime.transfers import queue_read

        self._check_open("queue_read")
        queue_read(
            self,
            source_file,
            source_offset,
            target,
            target_offset,
            length,
            wait,
            signal,
        )

    def queue_write(
        self,
        source: BufferTarget,
        source_offset: int,
        target_file: Any,
        target_offset: int,
        length: int,
        *,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """Write bytes of ``source`` into a file (path, open binary file or writable
        bytes-like) once ``wait`` is reached and earlier work finished."""
        from hal.runtime.transfers import queue_write

        self._check_open("queue_write")
        queue_write(
            self,
            source,
            source_offset,
            target_file,
            target_offset,
            length,
            wait,
            signal,
        )
