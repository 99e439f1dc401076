"""The backend boundary: what hal's runtime needs from a WebGPU implementation.

The runtime (``hal.runtime``) never imports wgpu: it calls a :class:`Backend`, one per open
device, and handles the opaque objects it returns (buffers, modules, pipelines, bind groups,
command buffers) without looking inside them. Implementations subclass :class:`Backend`:

- ``hal.backends.wgpu_py.WgpuPyBackend`` uses only wgpu-py's public API (what another
  implementation with the wgpu-py API, such as Dawn's ``wgpudawn``, reuses);
- ``hal.backends.wgpu_native.WgpuNativeBackend`` subclasses it with wgpu-native's raw cffi
  calls on the hot paths (recorded encoder calls, submission indices, blocking polls, maps);
- ``hal.backends.null.NullBackend`` runs queue, semaphore and ordering logic with no GPU.

Errors: every failure of the implementation reaches the runtime as a :class:`BackendError`,
whose ``lost`` flag says whether the device is lost. Backends never validate hal's
arguments — the runtime validates before it calls them (API.md: nothing invalid reaches wgpu).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "WAITER_POLL_US",
    "AdapterDescription",
    "Backend",
    "BackendError",
    "BindGroupEntry",
    "Call",
    "LayoutEntry",
    "Step",
    "Timer",
    "env_seconds",
    "waiter_poll_seconds",
]

Call = tuple[Callable[..., Any], tuple[Any, ...]]
"""A recorded encoder call: ``function(target, *args)``, target a pass or an encoder."""

Step = tuple[bool, Sequence[Call]]
"""One step of a compiled program: (inside a compute pass?, its calls)."""

LayoutEntry = tuple[int, str, bool]
"""A bind group layout entry: (binding, "storage" | "read-only-storage" | "uniform",
has a dynamic offset)."""

BindGroupEntry = tuple[int, Any, int, int]
"""A bind group entry: (binding, backend buffer, offset, size)."""


def env_seconds(name: str, default_us: float) -> float:
    """Environment variable ``name`` read as microseconds (``default_us`` when unset or
    malformed), in seconds; negative and NaN read as 0."""
    try:
        value = float(os.environ.get(name, default_us))
    except ValueError:
        value = default_us
    return max(0.0, value) * 1e-6  # max(0.0, nan) is 0.0


WAITER_POLL_US = 2000.0
"""How long a host wait polls without blocking by default (discrete and integrated adapters)."""


def waiter_poll_seconds(adapter_type: str) -> float:
    """:attr:`Backend.waiter_poll_s` for an adapter of ``adapter_type``: how long a host wait
    on one submission polls :meth:`Backend.poll_ticket` on its own thread before
    leaving the work to the tracker or blocking in the backend. ``HAL_WAIT_POLL_US``, by
    default 2000 µs on GPUs and 0 on CPU adapters, where polling would take the cores that
    run the GPU work. Measured on the H200: wgpu-native's blocking poll has no timeout, so
    without polls a bounded wait always paid the tracker's wake-up and hand-off (a one-fill
    round trip took 1.19× its unbounded form); Dawn's ``wgpuInstanceWaitAny`` entered before
    the work finished cost a round trip ~15 µs more than one entered after it
    (benchmarks/dawn_round_trip.py: the ``cffi`` rows against ``raw``). Most small
    submissions finish within the poll."""
    return env_seconds("HAL_WAIT_POLL_US", 0.0 if adapter_type == "cpu" else WAITER_POLL_US)


class BackendError(Exception):
    """A failure reported by the WebGPU implementation; ``lost`` when the device is lost."""

    def __init__(self, message: str, *, lost: bool = False) -> None:
        super().__init__(message)
        self.lost = lost


@dataclass(frozen=True, slots=True)
class AdapterDescription:
    """An adapter as an implementation reports it, before hal normalises the names."""

    implementation: str
    name: str
    backend: str
    adapter_type: str
    vendor: str
    driver: str
    summary: str
    features: frozenset[str]
    limits: dict[str, int]
    handle: Any


class Timer:
    """What profiled encoding calls around each command (hal/runtime/profiling.py)."""

    def pass_writes(self, step: int) -> Any:
        """Timestamp writes for compute pass ``step`` as a whole, or None."""
        return None

    def before(self, target: Any, step: int, dispatch: int | None) -> None:
        """Before dispatch ``dispatch`` of pass ``step`` (target: the pass) or before a
        transfer step (``dispatch`` None, target: the encoder)."""

    def after(self, target: Any) -> None:
        """After the command announced by :meth:`before`."""

    def close(self, encoder: Any) -> None:
        """At the end of the command buffer, before it is finished."""


class Backend:
    """One open device of a WebGPU implementation. Methods raise :class:`BackendError`.

    Subclasses implement every method; this class documents the contract. Buffers are
    created with STORAGE, COPY_SRC, COPY_DST and INDIRECT usage (plus UNIFORM when asked):
    hal checks usage itself, and builtin kernels must reach any buffer a command names.
    """

    implementation: str = "abstract"
    limits: dict[str, int]
    features: frozenset[str]
    #: True where :meth:`create_host_buffer` works: buffers whose memory is host pages, which
    #: the GPU copies straight from and into (Dawn's host-mapped-pointer). Host transfers then
    #: go through them instead of mapping staging buffers (hal/runtime/staging.py).
    host_memory_buffers: bool = False
    #: True where :meth:`wait_bounded` works: a wait on a ticket that returns by a deadline
    #: (Dawn's TimedWaitAny; the null backend). wgpu-native 29's only blocking wait,
    #: ``wgpuDevicePoll``, has no timeout, so a bounded host wait there is left to the
    #: completion tracker.
    bounded_waits: bool = False

    def __init__(self) -> None:
        #: Held around every submission and around the destruction of the device: wgpu-native
        #: aborts the process on a submission to a lost device, so the runtime checks
        #: :attr:`lost_reason` and submits under this lock, and nothing destroys the device
        #: in between. Reentrant: failing work under it may release more work.
        self.submission_lock = threading.RLock()
        #: Why the device is lost, once the backend knows it (:meth:`note_lost`); else None.
        self.lost_reason: str | None = None
        #: Seconds the completion tracker polls :meth:`completed_ticket` without blocking
        #: before it blocks in :meth:`wait` (0: never; where a blocking wait is as fast).
        self.spin_s = 0.0
        #: Seconds a host wait on one ticket may poll :meth:`poll_ticket` without
        #: blocking, on its own thread, before it leaves the work to the tracker or to
        #: :meth:`wait` (0: never). For backends without :attr:`bounded_waits` this is what
        #: lets a bounded wait skip the tracker's hand-off and still return by its deadline.
        self.waiter_poll_s = 0.0
        #: Where > 0, while submissions stream (work submitted behind unfinished work), the
        #: tracker (and a host wait past its ``waiter_poll_s``) does not block in
        #: :meth:`wait`: it polls :meth:`completed_ticket`, sleeping between polls up to
        #: this many seconds. For wgpu-native 29, whose blocking poll holds the device's
        #: fence lock so that a submission from another thread waits until it returns
        #: (gfx-rs/wgpu#9470): the GPU idled between back-to-back submissions.
        self.tracker_poll_s = 0.0
        #: Where the implementation serialises waits on one device (Dawn), the longest the
        #: completion tracker's blocking wait runs before it returns (its slice); 0 where
        #: waits do not serialise. A bounded host wait with less than this left does not
        #: wait in the backend while the tracker does: it would return only with the
        #: tracker's wait, past its deadline.
        self.serial_wait_slice_s = 0.0

    def note_lost(self, reason: str) -> None:
        """Record that the device is lost (the first reason wins)."""
        if self.lost_reason is None:
            self.lost_reason = reason

    # -- resources ----------------------------------------------------------------------

    def create_buffer(self, size: int, *, uniform: bool = False, label: str = "hal") -> Any:
        """A new device buffer of ``size`` bytes (a multiple of 4), contents undefined."""
        raise NotImplementedError

    def create_staging_buffer(self, size: int, *, upload: bool) -> Any:
        """A host-mappable buffer: MAP_WRITE|COPY_SRC (``upload``) or MAP_READ|COPY_DST."""
        raise NotImplementedError

    def create_host_buffer(self, size: int) -> tuple[Any, memoryview]:
        """Only where :attr:`host_memory_buffers`: a COPY_SRC|COPY_DST buffer of at least
        ``size`` bytes whose memory is new host pages, and a writable view of its first
        ``size`` bytes. What the GPU copies into it is visible through the view once that
        submission finished; the view is written only while no submitted work uses the
        buffer. The pages stay alive until the implementation released the buffer (after
        :meth:`destroy_buffer` and the work submitted before it). BackendError on failure."""
        raise BackendError(f"{self.implementation} has no host-memory buffers")

    def host_memory_alignment(self) -> int:
        """Only where :attr:`host_memory_buffers`: the alignment of the address and size of
        host memory :meth:`wrap_host_memory` takes. BackendError elsewhere."""
        raise BackendError(f"{self.implementation} has no host-memory buffers")

    def wrap_host_memory(self, address: int, size: int, keep: Any) -> Any:
        """Only where :attr:`host_memory_buffers`: a COPY_SRC|COPY_DST buffer over ``size``
        bytes of existing host memory at ``address`` (both multiples of
        :meth:`host_memory_alignment`). The backend holds ``keep`` (the memory's owner)
        until the implementation released the buffer, so the memory outlives every GPU use;
        the caller reads or writes the memory only while no submitted work uses the buffer.
        BackendError when the implementation refuses the memory."""
        raise BackendError(f"{self.implementation} has no host-memory buffers")

    def destroy_buffer(self, buffer: Any) -> None:
        """Free ``buffer`` now (the caller knows no submitted work uses it)."""
        raise NotImplementedError

    def write_buffer(self, buffer: Any, offset: int, data: Any) -> None:
        """Queue a write of ``data`` (4-byte multiple) at ``offset``, ordered before the
        next submission."""
        raise NotImplementedError

    def create_shader_module(self, code: str, label: str) -> Any:
        """Compile WGSL ``code``; BackendError with the compiler's message."""
        raise NotImplementedError

    def create_bind_group_layout(self, entries: Sequence[LayoutEntry]) -> Any:
        """A compute-visible bind group layout of buffer entries."""
        raise NotImplementedError

    def create_compute_pipeline(
        self,
        module: Any,
        entry_point: str,
        layouts: Sequence[Any],
        immediate_size: int,
        constants: dict[str, Any] | None,
        label: str,
    ) -> Any:
        """A compute pipeline of ``entry_point`` over bind group ``layouts``."""
        raise NotImplementedError

    def create_bind_group(self, layout: Any, entries: Sequence[BindGroupEntry]) -> Any:
        """A bind group of ``layout`` over buffer ranges."""
        raise NotImplementedError

    # -- recorded encoder calls -----------------------------------------------------------

    def set_pipeline(self, pipeline: Any) -> Call:
        """Bind a compute pipeline (inside a pass)."""
        raise NotImplementedError

    def set_bind_group(self, index: int, group: Any, offsets: tuple[int, ...] = ()) -> Call:
        """Bind ``group`` at ``index`` with dynamic ``offsets`` (inside a pass)."""
        raise NotImplementedError

    def set_immediates(self, data: bytes) -> Call:
        """Set the immediate block from offset 0 (inside a pass)."""
        raise NotImplementedError

    def dispatch(self, x: int, y: int, z: int) -> Call:
        """Dispatch a grid of workgroups (inside a pass)."""
        raise NotImplementedError

    def dispatch_indirect(self, buffer: Any, offset: int) -> Call:
        """Dispatch with counts read from ``buffer`` at ``offset`` (inside a pass)."""
        raise NotImplementedError

    def copy_buffer(
        self, source: Any, source_offset: int, target: Any, target_offset: int, size: int
    ) -> Call:
        """``copy_buffer_to_buffer`` (on the encoder; offsets and size 4-byte multiples)."""
        raise NotImplementedError

    def clear_buffer(self, buffer: Any, offset: int, size: int) -> Call:
        """``clear_buffer`` (on the encoder; offset and size 4-byte multiples, size > 0)."""
        raise NotImplementedError

    def is_dispatch(self, call: Call) -> bool:
        """True for a (direct or indirect) dispatch call: what the profiler times."""
        raise NotImplementedError

    def encode(self, steps: Sequence[Step], label: str = "hal") -> Any:
        """Replay ``steps`` into a new command buffer. BackendError when the
        implementation rejects it (errors inside passes surface here)."""
        raise NotImplementedError

    def encode_profiled(self, steps: Sequence[Step], timer: Timer, label: str = "hal") -> Any:
        """:meth:`encode` with ``timer`` called around every dispatch and transfer."""
        raise NotImplementedError

    # -- timestamps -----------------------------------------------------------------------

    def create_query_set(self, count: int) -> Any:
        """A timestamp query set of ``count`` queries."""
        raise NotImplementedError

    def write_timestamp(self, target: Any, query_set: Any, index: int) -> None:
        """Write a timestamp into ``query_set[index]`` from a pass or an encoder."""
        raise NotImplementedError

    def pass_timestamp_writes(self, query_set: Any, begin: int, end: int) -> Any:
        """The ``timestamp_writes`` of a compute pass timed as a whole."""
        raise NotImplementedError

    def resolve_timestamps(self, encoder: Any, query_sets: Sequence[Any], count: int) -> Any:
        """Resolve the first ``count`` queries (over ``query_sets`` of equal size) into a
        readback buffer at the end of ``encoder``; returns that buffer."""
        raise NotImplementedError

    def read_timestamps(self, readback: Any, count: int) -> np.ndarray:
        """The raw u64 ticks of a readback buffer once its command buffer completed; frees
        the buffer."""
        raise NotImplementedError

    def timestamp_period(self) -> float:
        """Nanoseconds per timestamp tick (1.0 where unknown)."""
        return 1.0

    # -- submission and completion ----------------------------------------------------------

    def clear_command_buffer(self, buffers: Sequence[tuple[Any, int]]) -> Any:
        """A command buffer that zeroes each (buffer, offset) of ``buffers`` from ``offset``
        (a multiple of 4) to its end (offset 0: entirely)."""
        raise NotImplementedError

    def copy_command_buffer(self, copies: Sequence[tuple[Any, int, Any, int, int]]) -> Any:
        """A command buffer of (source, source offset, target, target offset, size) copies."""
        raise NotImplementedError

    def submit(self, command_buffers: Sequence[Any]) -> int:
        """Submit; returns the submission's ticket: positive and increasing. The caller
        guarantees nothing submitted is invalid (submit-time errors abort wgpu-native)."""
        raise NotImplementedError

    def wait(self, ticket: int) -> None:
        """Block until the submission with ``ticket`` (and everything before it) finished.
        BackendError(lost=True) if the device is lost."""
        raise NotImplementedError

    def wait_bounded(self, ticket: int, timeout: float) -> bool:
        """Block until ``ticket`` finished (True) or ``timeout`` seconds passed (False),
        where :attr:`bounded_waits`. BackendError(lost=True) if the device is lost."""
        raise NotImplementedError

    def poll(self) -> None:
        """Process finished work without blocking (fires map callbacks)."""
        raise NotImplementedError

    def completed_ticket(self) -> int:
        """Process finished work without blocking; the highest ticket known finished (every
        earlier one finished too), 0 where the implementation cannot tell."""
        return 0

    def poll_ticket(self, ticket: int) -> int:
        """:meth:`completed_ticket` for a host wait polling for ``ticket`` (submitted): does
        not wait for the work; the highest ticket known finished. The default is
        :meth:`completed_ticket`; Dawn looks at that submission alone (its event processing
        waits for other threads' waits). Raises BackendError."""
        return self.completed_ticket()

    # -- mapping (staging buffers only) -------------------------------------------------------

    def map_async(self, buffer: Any, size: int, *, write: bool) -> Any:
        """Request ``[0, size)`` of a staging buffer mapped once the GPU is done with it;
        returns a token for :meth:`wait_mapped`."""
        raise NotImplementedError

    def wait_mapped(self, token: Any, timeout: float) -> bool:
        """Block until the map of ``token`` finished: True, or False after ``timeout``
        seconds; BackendError when the map failed. Never depends on other threads."""
        raise NotImplementedError

    def mapped_range(self, buffer: Any, size: int, *, writable: bool) -> memoryview:
        """The mapped bytes ``[0, size)``; invalid once unmapped."""
        raise NotImplementedError

    def unmap(self, buffer: Any) -> None:
        """Unmap ``buffer`` (cancels a pending map)."""
        raise NotImplementedError

    # -- health ---------------------------------------------------------------------------

    def probe_lost(self) -> str | None:
        """Why the device is lost, or None: :attr:`lost_reason` if known, else asks the
        implementation (and records a loss it finds); cheap, submits nothing."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device (idempotent)."""
