"""The device: the composition root that opens a backend and wires every runtime part.

Nothing else constructs runtime collaborators: the device creates the backend, the queue and
its completion, zeroing, the executable and bind group caches, the builtin kernels, the
executor, host transfers, the allocator and the profiler slot, and passes each the parts it
needs. Its methods are the public API (../shared/API.md) and check their arguments before
anything reaches the backend.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends import open_backend
from hal.backends.protocol import Backend, BackendError
from hal.core.builtins import (
    CPU_TABLE_LANES,
    CPU_TABLE_WORKGROUPS,
    CPU_WORD_WORKGROUPS,
    MAX_WORKGROUPS,
    TABLE_LANES,
)
from hal.core.caps import DeviceCaps
from hal.core.checks import check_int
from hal.core.cost import load_costs
from hal.core.profiles import parse_limits, restrict
from hal.enums import (
    BufferUsage,
    CommandBufferMode,
    CommandCategory,
    MemoryAccess,
    MemoryType,
)
from hal.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
)
from hal.runtime.adapters import AdapterInfo, available_adapters, describe, pick_adapter

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from hal.core.refs import BufferTarget
    from hal.runtime.allocator import Allocator
    from hal.runtime.buffer import Buffer, BufferView
    from hal.runtime.channel import Channel
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.event import Event
    from hal.runtime.executable import Executable
    from hal.runtime.profiling import Profile
    from hal.runtime.queue import WaitList
    from hal.runtime.semaphore import Semaphore

__all__ = ["AdapterInfo", "Device", "available_adapters", "create_device"]

# Features hal uses when the adapter has them.
_WANTED_FEATURES = (
    "immediates",
    "timestamp-query",
    "timestamp-query-inside-encoders",
    "timestamp-query-inside-passes",
    "shader-f16",
    "subgroup",
)


class _Recording:
    """What :meth:`Device.record` returns: a class, not a ``contextlib.contextmanager``
    generator (that made a decorated function, a generator and its frames per call: ~4 µs of
    a one-fill round trip's ~23 on the null backend)."""

    __slots__ = ("_args", "_cb", "_device")

    def __init__(
        self,
        device: Device,
        mode: CommandBufferMode,
        categories: CommandCategory,
        binding_capacity: int,
    ) -> None:
        self._device = device
        self._args = (mode, categories, binding_capacity)
        self._cb: CommandBuffer | None = None

    def __enter__(self) -> CommandBuffer:
        """A new command buffer, begun (raises what creating and beginning one raise, and
        FailedPreconditionError when this object's ``with`` block is already running: one
        block at a time, each ``device.record()`` call makes its own)."""
        if self._cb is not None:
            raise FailedPreconditionError(
                "record: this recording's with-block is already running (nested use of one "
                "device.record() object); call device.record() again for another"
            )
        # create_command_buffer's body (one call fewer per round trip).
        device = self._device
        device.check_open("create_command_buffer")
        cb = device._ops.command_buffer(*self._args)
        cb.begin()
        self._cb = cb
        return cb

    def __exit__(self, kind: type[BaseException] | None, error: Any, trace: Any) -> None:
        """End the command buffer unless the block raised (its exception then propagates,
        the command buffer left recording, as before)."""
        cb, self._cb = self._cb, None
        if kind is None and cb is not None:
            cb.end()


def create_device(
    adapter: int | str | None = None,
    *,
    backend: str | None = None,
    label: str | None = None,
    implementation: str | None = None,
) -> Device:
    """Open a device on the best adapter (discrete > integrated > cpu; Vulkan/Metal/D3D12
    before GL), or on ``adapter`` (an index or a name substring) / ``backend``, of the WebGPU
    ``implementation`` ("wgpu-native", the default; "null" runs no GPU work).

    The environment variables ``HAL_ADAPTER``, ``HAL_BACKEND`` and ``HAL_IMPLEMENTATION``
    override the defaults; ``HAL_DISABLE_FEATURES`` (comma separated, e.g. ``immediates``)
    hides features, to exercise fallbacks; ``HAL_ADAPTER_PROFILE`` (``metal`` or ``d3d12``)
    and ``HAL_LIMITS`` (comma separated ``name=value``) impose another platform's limits and
    missing features, only ever lowering what the adapter offers (hal.core.profiles).
    Raises :class:`UnavailableError` when no adapter matches or the implementation is
    unavailable, and :class:`InvalidArgumentError` for an adapter index out of range, an
    argument of the wrong type, an unknown profile or a malformed ``HAL_LIMITS``.
    """
    _check_device_arguments(adapter, backend, label, implementation)
    if adapter is None and os.environ.get("HAL_ADAPTER"):
        env = os.environ["HAL_ADAPTER"]
        adapter = int(env) if env.isdigit() else env
    if backend is None and os.environ.get("HAL_BACKEND"):
        backend = os.environ["HAL_BACKEND"]
    chosen = pick_adapter(adapter, backend, implementation)
    # The profile's limits replace the adapter's in what is requested, so that wgpu itself
    # enforces them; its removed features are never requested.
    limits, offered = restrict(
        chosen.limits,
        chosen.features,
        os.environ.get("HAL_ADAPTER_PROFILE"),
        parse_limits(os.environ.get("HAL_LIMITS", "")),
    )
    chosen = dataclasses.replace(chosen, limits=limits)
    disabled = {f.strip() for f in os.environ.get("HAL_DISABLE_FEATURES", "").split(",")}
    features = [f for f in _WANTED_FEATURES if f in offered and f not in disabled]
    try:
        opened = open_backend(chosen, features, label or "hal")
    except BackendError as error:
        raise UnavailableError(f"create_device: {describe(chosen)}: {error}") from None
    return Device(opened, describe(chosen), label)


def _check_device_arguments(adapter: Any, backend: Any, label: Any, implementation: Any) -> None:
    """InvalidArgumentError unless ``adapter`` is None, a non-negative int or a string and
    the other arguments None or strings."""
    if adapter is not None and not isinstance(adapter, str):
        check_int("create_device", "adapter", adapter)
    for argument, value in (
        ("backend", backend),
        ("label", label),
        ("implementation", implementation),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(
                f"create_device: {argument} {value!r} must be a string or None"
            )


class Device:
    """A logical device on one adapter: allocates buffers, compiles executables, records and
    submits work. Use as a context manager or call :meth:`close`.

    Every method raises :class:`UnavailableError` once the device is closed.
    """

    def __init__(self, backend: Backend, info: AdapterInfo, label: str | None = None) -> None:
        from hal.runtime.allocator import Allocator
        from hal.runtime.buffer_pool import BufferPool, pool_bytes
        from hal.runtime.collectives import Collectives
        from hal.runtime.encoder import BindGroupCache, Encoding
        from hal.runtime.executable import BuiltinKernels, ExecutableCache
        from hal.runtime.execution import Executor
        from hal.runtime.host_call import HostCalls
        from hal.runtime.profiling import ProfilerSlot
        from hal.runtime.queue import Queue
        from hal.runtime.queue_ops import QueueOps
        from hal.runtime.transfers import HostTransfers
        from hal.runtime.zeroing import PendingClears

        self.info = info
        self.label = label
        self.features: frozenset[str] = backend.features
        self.limits: dict[str, int] = dict(backend.limits)
        self.caps = _caps(self.limits, self.features, info)
        self._closed = False
        self._backend = backend
        self._profiler = ProfilerSlot()
        clears = PendingClears(backend)
        self._queue = queue = Queue(backend, clears)
        self._host_calls = HostCalls()
        self._executor = Executor(self, queue, backend, self._profiler)
        self._host = HostTransfers(self, queue, self._executor, backend, self._profiler)
        self._ops = QueueOps(self, self._host, self._executor)
        self._bind_groups = bind_groups = BindGroupCache(backend)
        self._executables = ExecutableCache(self, backend, self.caps.immediates)
        builtins = BuiltinKernels(self._executables, table_grid(info.adapter_type)[0])
        self.encoding = Encoding(backend, bind_groups, builtins, clears)
        # The compiled forms of dispatch-program templates (hal/runtime/dispatch_programs.py).
        self.dispatch_recipes: dict[tuple[Any, ...], Any] = {}
        # Recording's per-(executable, entry point) facts (hal/runtime/command_buffer.py).
        self.dispatch_facts: dict[tuple[int, str], Any] = {}
        self._buffer_pool = BufferPool(backend, pool_bytes(), lambda: queue.is_lost)
        self.allocator: Allocator = Allocator(
            self, backend, queue, clears, bind_groups, self._host, self._buffer_pool
        )
        self._executor.use_collectives(Collectives(queue, self._host, self._host_calls))
        self._finalizer = weakref.finalize(self, Queue.shutdown, queue)

    # -- lifetime -------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The WebGPU implementation's device behind this one (runtime and test use)."""
        return self._backend

    def check_open(self, what: str) -> None:
        """Raise UnavailableError (naming ``what``) once the device is closed or lost."""
        # The open device (every command of a round trip asks, ~5 times): no property call.
        if not self._closed and self._queue._lost is None and self._backend.lost_reason is None:
            return
        if self._closed:
            raise UnavailableError(f"{what}: the device is closed")
        lost = self._queue.lost
        if lost is not None:
            raise UnavailableError(f"{what}: {lost}") from lost

    def close(self) -> None:
        """Wait (bounded) for submitted work, stop the completion thread and close the device.

        Idempotent; never raises for pending work.
        """
        if self._closed:
            return
        self._closed = True
        self._host_calls.close()
        self._queue.close()
        self._host.close()  # caller memory the registration cache pinned is released
        self._buffer_pool.close()  # the allocator's idle buffers are destroyed
        self._bind_groups.clear()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hal.Device {self.info}{' closed' if self._closed else ''}>"

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every submitted operation finished (``timeout`` as in
        ``Semaphore.wait``). Raises DeadlineExceededError, InvalidArgumentError for a bad
        timeout."""
        from hal.core.checks import timeout_seconds

        self.check_open("wait_idle")
        timeout = timeout_seconds("wait_idle", timeout)
        if not (self._queue.wait_idle(timeout) and self._host_calls.wait_idle(timeout)):
            raise DeadlineExceededError(f"wait_idle: work still pending after {timeout} s")

    async def wait_idle_async(self, timeout: float | None = None) -> None:
        """Await every submitted operation finishing without blocking the event loop: unless
        the device is idle already, a ``queue_barrier`` signals a semaphore once the work
        submitted before it finished, and that semaphore is awaited. Raises
        DeadlineExceededError after ``timeout`` seconds, AbortedError if that work failed
        (the device was lost or closed meanwhile), UnavailableError once closed,
        InvalidArgumentError for a bad timeout."""
        from hal.core.checks import timeout_seconds

        self.check_open("wait_idle_async")
        timeout = timeout_seconds("wait_idle_async", timeout)
        if self._queue.wait_idle(0):  # a poll: nothing in flight, nothing to await
            return
        idle = self.create_semaphore()
        self.queue_barrier(signal=[(idle, 1)])
        try:
            await idle.wait_async(1, timeout)
        except DeadlineExceededError:
            raise DeadlineExceededError(
                f"wait_idle_async: work still pending after {timeout} s"
            ) from None

    def profile(self, clock: str = "auto") -> Profile:
        """A context manager that times the work submitted while it is active, per dispatch
        and transfer (``with device.profile() as p: ...``; then ``p.events``,
        ``p.save_chrome_trace(path)``). ``clock``: ``"auto"`` (GPU timestamps where the
        adapter has ``timestamp-query``), ``"gpu"`` or ``"host"``. Raises InvalidArgumentError
        for another ``clock``, UnimplementedError for ``"gpu"`` without timestamps; entering
        it while another profile is active raises FailedPreconditionError."""
        from hal.runtime.profiling import Profile

        self.check_open("profile")
        return Profile(self, self._backend, self._profiler, clock)

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
        """Allocate a buffer holding a copy of ``array``'s bytes (C order). Raises as
        ``allocate_buffer``, and InvalidArgumentError for an array of Python objects or
        something that is not an array."""
        return self.allocator.buffer_from_numpy(array, usage=usage, memory_type=memory_type)

    def buffer_view_from_numpy(self, array: np.ndarray) -> BufferView:
        """A :class:`BufferView` over a new buffer holding a copy of ``array``. Raises as
        :meth:`buffer_from_numpy`."""
        from hal.runtime.allocator import host_array
        from hal.runtime.buffer import BufferView

        data = host_array("buffer_view_from_numpy", array)
        return BufferView(self.buffer_from_numpy(data), data.shape, data.dtype)

    def transfer_h2d(self, data: Any, target: BufferTarget, target_offset: int = 0) -> None:
        """Copy host bytes into ``target`` at ``target_offset``, ordered after all previously
        submitted work. Raises OutOfRangeError, PermissionDeniedError (no TRANSFER_TARGET
        usage or WRITE access), InvalidArgumentError, FailedPreconditionError."""
        from hal.core.checks import check_buffer_usage, check_range, host_bytes, resolve_direct
        from hal.runtime.buffer import as_target

        self.check_open("transfer_h2d")
        payload = host_bytes(data, "transfer_h2d", "data")
        buffer, base, length = resolve_direct(as_target(target), "transfer_h2d", "target", self)
        check_buffer_usage(
            "transfer_h2d", "target", buffer, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE
        )
        check_range("transfer_h2d", "target", target_offset, len(payload), length)
        self._host.write(buffer, base + target_offset, payload)

    def transfer_d2h(
        self, source: BufferTarget, source_offset: int = 0, length: int | None = None
    ) -> bytes:
        """Read ``length`` bytes (default: to the end) of ``source`` after all previously
        submitted work finished. Raises OutOfRangeError, PermissionDeniedError (no
        TRANSFER_SOURCE usage or READ access), InvalidArgumentError, FailedPreconditionError."""
        buffer, offset, length = self._host.d2h_range("transfer_d2h", source, source_offset, length)
        return self._host.read(buffer, offset, length)

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
        self.check_open("create_executable")
        return self._executables.get(source, constants, label)

    def create_event(self) -> Event:
        """A new event for ``signal_event``/``wait_events`` inside command buffers."""
        from hal.runtime.event import Event

        self.check_open("create_event")
        return Event(self)

    def create_semaphore(self, initial_value: int = 0) -> Semaphore:
        """A new timeline semaphore at ``initial_value``."""
        from hal.runtime.semaphore import Semaphore

        self.check_open("create_semaphore")
        return Semaphore(initial_value, device=self, owner=self._queue)

    def wait_semaphores(
        self, points: WaitList, mode: str = "all", timeout: float | None = None
    ) -> None:
        """Wait until all (or any) of the ``(semaphore, value)`` points are reached.

        Raises DeadlineExceededError on timeout, AbortedError for a failed semaphore and
        InvalidArgumentError for an unknown ``mode``, a malformed point or a bad timeout
        (``timeout`` as in ``Semaphore.wait``)."""
        from hal.runtime.semaphore import wait_points

        wait_points(points, mode, timeout, "wait_semaphores")

    # -- command buffers --------------------------------------------------------------------

    def create_command_buffer(
        self,
        mode: CommandBufferMode = CommandBufferMode.ONE_SHOT,
        categories: CommandCategory = CommandCategory.ANY,
        binding_capacity: int = 0,
    ) -> CommandBuffer:
        """A new command buffer in the initial state (call ``begin()``).

        Raises InvalidArgumentError for inconsistent mode bits or a negative capacity."""
        self.check_open("create_command_buffer")
        return self._ops.command_buffer(mode, categories, binding_capacity)

    def record(
        self,
        mode: CommandBufferMode = CommandBufferMode.ONE_SHOT,
        categories: CommandCategory = CommandCategory.ANY,
        binding_capacity: int = 0,
    ) -> AbstractContextManager[CommandBuffer]:
        """``with device.record() as cb:`` creates a command buffer, begins it, and ends it
        when the block exits without an exception. Entering raises what
        :meth:`create_command_buffer` and ``begin()`` raise; leaving raises what ``end()``
        raises."""
        return _Recording(self, mode, categories, binding_capacity)

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
        buffer), OutOfRangeError (binding table too small or a slot range past its entry),
        InvalidArgumentError (not command buffers, a malformed wait/signal list or table)."""
        self.check_open("queue_execute")
        self._ops.execute(command_buffers, wait, signal, binding_table)

    def queue_barrier(self, *, wait: WaitList = (), signal: WaitList = ()) -> None:
        """Signal ``signal`` once ``wait`` is reached and the work submitted before is done.
        Raises InvalidArgumentError for a malformed wait/signal list."""
        self.check_open("queue_barrier")
        self._ops.barrier(wait, signal)

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
        self.check_open("queue_fill")
        self._ops.fill(target, offset, length, pattern, pattern_length, wait, signal)

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
        self.check_open("queue_update")
        self._ops.update(source, source_offset, target, target_offset, length, wait, signal)

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
        """``copy_buffer`` as a queue operation (same arguments and errors). ``source`` may
        be a Buffer or BufferRef of another device of the process: a peer copy staged
        through host memory (hal/runtime/peer.py), which also raises UnavailableError when
        that device is closed or lost."""
        self.check_open("queue_copy")
        self._ops.copy(source, source_offset, target, target_offset, length, wait, signal)

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

        self.check_open("queue_alloca")
        wait, signal = _points("queue_alloca", wait, signal)
        return queue_alloca(self._host, size, wait, signal, memory_type, usage)

    def queue_dealloca(self, buffer: Buffer, *, wait: WaitList = (), signal: WaitList = ()) -> None:
        """Release ``buffer`` once ``wait`` is reached and earlier work finished."""
        from hal.runtime.transfers import queue_dealloca

        self.check_open("queue_dealloca")
        wait, signal = _points("queue_dealloca", wait, signal)
        queue_dealloca(self._host, buffer, wait, signal)

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

        self.check_open("queue_read")
        wait, signal = _points("queue_read", wait, signal)
        queue_read(
            self._host,
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

        self.check_open("queue_write")
        wait, signal = _points("queue_write", wait, signal)
        queue_write(
            self._host,
            source,
            source_offset,
            target_file,
            target_offset,
            length,
            wait,
            signal,
        )

    def queue_host_call(
        self, fn: Callable[[], object], *, wait: WaitList = (), signal: WaitList = ()
    ) -> None:
        """Call ``fn()`` on a host thread once every wait point is reached (ordered, like every
        queue operation, only by semaphores), then signal ``signal``. What ``fn`` raises (any
        BaseException) fails the signal semaphores (waiters see AbortedError, the exception
        as cause); a failed wait fails them without calling ``fn``. Never blocks other queue
        work. Raises InvalidArgumentError when ``fn`` is not callable or for a malformed
        wait/signal list."""
        what = "queue_host_call"
        self.check_open(what)
        if not callable(fn):
            raise InvalidArgumentError(f"{what}: fn {fn!r} is not callable")
        waits, signals = _points(what, wait, signal)
        self._host_calls.enqueue(fn, waits, signals)

    # -- channels and collectives ------------------------------------------------------------

    def create_channel(self, *, group: Any = None) -> Channel:
        """A channel over a duplicate of ``group`` (an mpi4py communicator; default the world).
        Raises UnavailableError without mpi4py (naming the ``mpi`` extra),
        InvalidArgumentError when ``group`` is not an mpi4py intracommunicator."""
        from hal.runtime.channel import create_channel

        self.check_open("create_channel")
        return create_channel(self, group)

    def queue_collective(
        self,
        channel: Channel,
        kind: Any,
        send: BufferTarget | None,
        recv: BufferTarget | None,
        element_count: int,
        *,
        element_type: Any,
        reduction: Any = None,
        param: int = 0,
        wait: WaitList = (),
        signal: WaitList = (),
    ) -> None:
        """``cb.collective`` as a queue operation (same arguments and errors, named
        ``queue_collective``); collectives of one channel reach MPI in submission order."""
        from hal.runtime.command_buffer import record_collective

        what = "queue_collective"
        self.check_open(what)
        waits, signals = _points(what, wait, signal)
        cb = self.create_command_buffer()
        cb.begin()
        record_collective(
            cb, what, channel, kind, send, recv, element_count, element_type, reduction, param
        )
        cb.end()
        self._executor.execute(cb, waits, signals, None)


def _points(what: str, wait: Any, signal: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A queue operation's wait and signal lists, validated before the operation does
    anything (a rejected call changes nothing). Raises InvalidArgumentError, OutOfRangeError."""
    from hal.runtime.semaphore import normalise_points

    return normalise_points(f"{what} wait", wait), normalise_points(f"{what} signal", signal)


def table_grid(adapter_type: str) -> tuple[int, int]:
    """(invocations per workgroup, most workgroups) of the table kernels that batched small
    fills and copies run (hal/core/batching.py) on an adapter of ``adapter_type``: on a GPU
    256 lanes and a workgroup per entry; on a CPU adapter, which runs a workgroup's lanes as
    SIMD loops and pays per workgroup, 8 lanes and 16 workgroups that loop over the entries
    (lavapipe: a thousand 256-byte fills ran 4x faster so, 0.3 ms against 1.2)."""
    if adapter_type == "cpu":
        return CPU_TABLE_LANES, CPU_TABLE_WORKGROUPS
    return TABLE_LANES, MAX_WORKGROUPS


def _caps(limits: dict[str, int], features: frozenset[str], info: AdapterInfo) -> DeviceCaps:
    """The capabilities the lowering needs, from the backend's limits and features."""
    return DeviceCaps(
        storage_alignment=limits["min-storage-buffer-offset-alignment"],
        uniform_alignment=limits["min-uniform-buffer-offset-alignment"],
        immediates="immediates" in features,
        max_immediate_size=limits.get("max-immediate-size", 0),
        max_binding_size=limits["max-storage-buffer-binding-size"],
        max_uniform_binding_size=limits["max-uniform-buffer-binding-size"],
        max_workgroups=limits["max-compute-workgroups-per-dimension"],
        # A CPU adapter pays per workgroup: on lavapipe a 16 MiB unaligned copy took 39 ms on
        # 4096 workgroups and 76 ms on 65535 (a GPU wants the wide grid: 1.7x on the H200).
        word_workgroups=CPU_WORD_WORKGROUPS if info.adapter_type == "cpu" else MAX_WORKGROUPS,
        table_workgroups=table_grid(info.adapter_type)[1],
        max_buffer_size=limits["max-buffer-size"],
        padded_allocations=True,  # Allocator.allocate_buffer pads by allocation_size
        costs=load_costs(
            f"{info.name} {info.backend} {info.vendor} {info.adapter_type}", info.implementation
        ),
    )
