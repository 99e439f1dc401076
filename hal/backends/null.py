"""A backend with no GPU: buffers are host bytes, submissions run at once on the host.

It runs hal's queue, semaphore, ordering and transfer logic without a GPU or wgpu: native
copies, clears and buffer writes move real bytes (so host transfers and zero-initialisation
are exact), while dispatches — builtin kernels included — only count. Use it for queue tests
and on machines without an adapter; never for results of kernels.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

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

__all__ = ["NullBackend", "NullBuffer", "null_adapter"]

_LIMITS = {
    "max-buffer-size": 1 << 30,
    "max-storage-buffer-binding-size": 128 << 20,
    "max-uniform-buffer-binding-size": 64 << 10,
    "min-storage-buffer-offset-alignment": 32,
    "min-uniform-buffer-offset-alignment": 32,
    "max-compute-workgroups-per-dimension": 65535,
    "max-immediate-size": 128,
}


def null_adapter() -> AdapterDescription:
    """The one adapter of the null implementation."""
    return AdapterDescription(
        implementation="null",
        name="null",
        backend="null",
        adapter_type="cpu",
        vendor="hal",
        driver="hal null backend (no GPU)",
        summary="null (CPU) via null",
        features=frozenset({"immediates"}),
        limits=dict(_LIMITS),
        handle=None,
    )


class NullBuffer:
    """Host bytes standing for a device buffer."""

    __slots__ = ("__weakref__", "data", "destroyed", "label")

    def __init__(self, size: int, label: str) -> None:
        self.data = bytearray(size)
        self.label = label
        self.destroyed = False

    @property
    def size(self) -> int:
        """Bytes in the buffer."""
        return len(self.data)


def _copy(_: Any, source: NullBuffer, so: int, target: NullBuffer, to: int, n: int) -> None:
    target.data[to : to + n] = source.data[so : so + n]


def _clear(_: Any, buffer: NullBuffer, offset: int, size: int) -> None:
    buffer.data[offset : offset + size] = bytes(size)


def _nothing(_: Any, *args: Any) -> None:
    return


def _dispatch(_: Any, *args: Any) -> None:
    return


class NullBackend(Backend):
    """The null device. ``dispatches`` counts the dispatches that ran."""

    implementation = "null"

    def __init__(self, features: frozenset[str] = frozenset({"immediates"})) -> None:
        super().__init__()
        # Unless a subclass overrides wait(): a test double whose work may never finish
        # keeps bounded host waits on the completion thread.
        self.bounded_waits = type(self).wait is NullBackend.wait
        self.features = features
        self.limits = dict(_LIMITS)
        self.dispatches = 0
        self.submissions = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, adapter: AdapterDescription, features: Sequence[str], label: str) -> Backend:
        """A new null device."""
        return cls(frozenset(features))

    def lose(self, reason: str = "null device lost") -> None:
        """Make the device lost (for tests of device loss): what a GPU reset looks like."""
        self.note_lost(reason)

    def _check(self) -> None:
        if self.lost_reason is not None:
            raise BackendError(self.lost_reason, lost=True)

    # -- resources ------------------------------------------------------------------------

    def create_buffer(self, size: int, *, uniform: bool = False, label: str = "hal") -> Any:
        self._check()
        return NullBuffer(size, label)

    def create_staging_buffer(self, size: int, *, upload: bool) -> Any:
        self._check()
        return NullBuffer(size, "hal.upload" if upload else "hal.readback")

    def destroy_buffer(self, buffer: Any) -> None:
        buffer.destroyed = True

    def write_buffer(self, buffer: Any, offset: int, data: Any) -> None:
        self._check()
        view = memoryview(data).cast("B")
        buffer.data[offset : offset + len(view)] = view

    def create_shader_module(self, code: str, label: str) -> Any:
        self._check()
        return ("module", label)

    def create_bind_group_layout(self, entries: Sequence[LayoutEntry]) -> Any:
        return ("layout", tuple(entries))

    def create_compute_pipeline(
        self,
        module: Any,
        entry_point: str,
        layouts: Sequence[Any],
        immediate_size: int,
        constants: dict[str, Any] | None,
        label: str,
    ) -> Any:
        self._check()
        return ("pipeline", label)

    def create_bind_group(self, layout: Any, entries: Sequence[BindGroupEntry]) -> Any:
        return ("group", tuple(entries))

    # -- recorded calls -------------------------------------------------------------------

    def set_pipeline(self, pipeline: Any) -> Call:
        return _nothing, (pipeline,)

    def set_bind_group(self, index: int, group: Any, offsets: tuple[int, ...] = ()) -> Call:
        return _nothing, (index, group, offsets)

    def set_immediates(self, data: bytes) -> Call:
        return _nothing, (data,)

    def dispatch(self, x: int, y: int, z: int) -> Call:
        return _dispatch, (x, y, z)

    def dispatch_indirect(self, buffer: Any, offset: int) -> Call:
        return _dispatch, (buffer, offset)

    def copy_buffer(
        self, source: Any, source_offset: int, target: Any, target_offset: int, size: int
    ) -> Call:
        return _copy, (source, source_offset, target, target_offset, size)

    def clear_buffer(self, buffer: Any, offset: int, size: int) -> Call:
        return _clear, (buffer, offset, size)

    def is_dispatch(self, call: Call) -> bool:
        return call[0] is _dispatch

    def encode(self, steps: Sequence[Step], label: str = "hal") -> Any:
        self._check()
        return [call for _, calls in steps for call in calls]

    def encode_profiled(self, steps: Sequence[Step], timer: Timer, label: str = "hal") -> Any:
        return self.encode(steps, label)

    # -- timestamps (none) ------------------------------------------------------------------

    def create_query_set(self, count: int) -> Any:
        raise BackendError("the null device has no timestamp queries")

    def write_timestamp(self, target: Any, query_set: Any, index: int) -> None:
        raise BackendError("the null device has no timestamp queries")

    def pass_timestamp_writes(self, query_set: Any, begin: int, end: int) -> Any:
        raise BackendError("the null device has no timestamp queries")

    def resolve_timestamps(self, encoder: Any, query_sets: Sequence[Any], count: int) -> Any:
        raise BackendError("the null device has no timestamp queries")

    def read_timestamps(self, readback: Any, count: int) -> np.ndarray:
        return np.zeros(0, np.uint64)

    # -- submission ----------------------------------------------------------------------------

    def clear_command_buffer(self, buffers: Sequence[tuple[Any, int]]) -> Any:
        return [(_clear, (buffer, offset, buffer.size - offset)) for buffer, offset in buffers]

    def copy_command_buffer(self, copies: Sequence[tuple[Any, int, Any, int, int]]) -> Any:
        return [(_copy, copy) for copy in copies]

    def submit(self, command_buffers: Sequence[Any]) -> int:
        self._check()
        with self._lock:
            for calls in command_buffers:
                for function, args in calls:
                    if function is _dispatch:
                        self.dispatches += 1
                    function(None, *args)
            self.submissions += 1
            return self.submissions

    def completed_ticket(self) -> int:
        self._check()
        return self.submissions  # submissions run at once on the host

    def wait(self, ticket: int) -> None:
        self._check()

    def wait_bounded(self, ticket: int, timeout: float) -> bool:
        self._check()
        return True  # submissions run at once on the host

    def poll(self) -> None:
        return

    # -- mapping ------------------------------------------------------------------------------

    def map_async(self, buffer: Any, size: int, *, write: bool) -> Any:
        return buffer

    def wait_mapped(self, token: Any, timeout: float) -> bool:
        self._check()
        return True

    def mapped_range(self, buffer: Any, size: int, *, writable: bool) -> memoryview:
        view = memoryview(buffer.data)[:size]
        return view if writable else view.toreadonly()

    def unmap(self, buffer: Any) -> None:
        return

    def probe_lost(self) -> str | None:
        return self.lost_reason
