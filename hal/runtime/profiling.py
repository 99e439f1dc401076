"""Profiling: GPU timestamps around every dispatch and transfer of submitted work.

``device.profile()`` returns a :class:`Profile`; while it is active, ``queue_execute`` (and
the queue operations built on it: ``queue_fill``/``queue_copy``/small ``queue_update``) encode
each command buffer through ``Program.encode_profiled`` instead of ``Program.encode``, which
writes a timestamp before and after every dispatch (``timestamp-query-inside-passes``) and
every native transfer (``timestamp-query-inside-encoders``), resolves them into a buffer at
the end of the command buffer and copies that into a MAP_READ buffer. Where an adapter has
only ``timestamp-query``, whole compute passes are timed through ``timestamp_writes``. The
normal encode path is untouched: without an active profile, nothing here runs.

Without timestamp queries (or with ``clock="host"``) each submission is timed on the host,
from just before ``queue.submit`` to when hal saw it complete; such events say
``clock="host"``. Host transfers (``transfer_h2d``/``transfer_d2h``, ``to_numpy``, ...) are
always host-timed.

GPU timestamps are read lazily: ``Profile.events`` waits for profiled work that was submitted,
maps the readback buffers and converts ticks to ns (``wgpuQueueGetTimestampPeriod``). GPU
times are then placed on the host clock (``time.perf_counter_ns``): unchanged where every
submission's GPU interval already lies between its host submit and completion times (the
same clock, as on lavapipe), else shifted so that no GPU event starts before its submission
was made.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import Timer
from hal.core.plan import ClearBuffer, ComputePass, CopyBuffer
from hal.errors import DeadlineExceededError, FailedPreconditionError, InvalidArgumentError

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.core.plan import Step
    from hal.runtime.device import Device
    from hal.runtime.queue import Work

__all__ = ["Profile", "ProfileEvent", "ProfilerSlot"]

_MAX_QUERIES = 4096  # wgpu's limit per query set


@dataclass(frozen=True, slots=True)
class ProfileEvent:
    """One timed interval.

    ``kind`` is ``"dispatch"``, ``"transfer"`` (copy_buffer_to_buffer / clear_buffer),
    ``"compute_pass"``, ``"command_buffer"`` (spans its commands), ``"submission"`` (host
    clock) or ``"host_transfer"``; ``clock`` is ``"gpu"`` or ``"host"``. ``submission`` numbers
    the profile's submissions from 0 and ``command_buffer`` is the index inside it (-1 for
    host transfers). ``args`` holds details: workgroups, bytes, builtin, the wgpu submission
    index, the command buffer's id."""

    name: str
    start_ns: int
    end_ns: int
    kind: str
    clock: str
    submission: int
    command_buffer: int
    args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns


class _CommandTimer(Timer):
    """Timestamps for one command buffer while it is encoded (the backend calls
    ``pass_writes``, ``before``, ``after`` and ``close``), then its events."""

    def __init__(
        self, backend: Backend, steps: Sequence[Step], per_command: bool, transfers: bool
    ) -> None:
        self._backend = backend
        self._steps = steps
        self._per_command = per_command
        self._transfers = transfers
        self._sets: list[Any] = []
        self._count = 0
        self._open: tuple[int, str, str, dict[str, Any]] | None = None
        # (begin query, end query, name, kind, args)
        self.spans: list[tuple[int, int, str, str, dict[str, Any]]] = []
        self.readback: Any = None

    def _query(self) -> tuple[Any, int]:
        index = self._count
        if index // _MAX_QUERIES >= len(self._sets):
            self._sets.append(self._backend.create_query_set(_MAX_QUERIES))
        self._count += 1
        return self._sets[index // _MAX_QUERIES], index

    def _write(self, target: Any) -> int:
        query_set, index = self._query()
        self._backend.write_timestamp(target, query_set, index % _MAX_QUERIES)
        return index

    def pass_writes(self, step: int) -> Any:
        """``timestamp_writes`` for a compute pass where dispatches can't be timed one by
        one (only ``timestamp-query``), else None."""
        if self._per_command:
            return None
        # Queries are taken in pairs and a set holds an even number: a pair shares its set.
        query_set, begin = self._query()
        _, end = self._query()
        compute = self._steps[step]
        assert isinstance(compute, ComputePass)
        names = [d.label for d in compute.dispatches]
        self.spans.append((begin, end, "compute_pass", "compute_pass", {"dispatches": names}))
        return self._backend.pass_timestamp_writes(
            query_set, begin % _MAX_QUERIES, end % _MAX_QUERIES
        )

    def before(self, target: Any, step: int, dispatch: int | None) -> None:
        """Called before a dispatch (``target`` is the pass) or a transfer (the encoder)."""
        plan_step = self._steps[step]
        if dispatch is not None:
            if not self._per_command:
                return
            assert isinstance(plan_step, ComputePass)
            d = plan_step.dispatches[dispatch]
            name, kind = d.label, "dispatch"
            args: dict[str, Any] = {"entry_point": d.entry_point, "builtin": d.is_builtin}
            if d.workgroups is not None:
                args["workgroups"] = list(d.workgroups)
            else:
                args["indirect"] = True
        else:
            if not self._transfers:
                return
            if isinstance(plan_step, CopyBuffer):
                name, args = "copy_buffer_to_buffer", {"bytes": plan_step.target.size}
            elif isinstance(plan_step, ClearBuffer):
                name, args = "clear_buffer", {"bytes": plan_step.target.size}
            else:  # pragma: no cover - the encoder only passes transfers here
                return
            kind = "transfer"
        self._open = (self._write(target), name, kind, args)

    def after(self, target: Any) -> None:
        """Called after the command ``before`` announced."""
        if self._open is None:
            return
        begin, name, kind, args = self._open
        self._open = None
        self.spans.append((begin, self._write(target), name, kind, args))

    def close(self, encoder: Any) -> None:
        """Resolve the queries at the end of the command buffer into a readback buffer."""
        if self._count:
            self.readback = self._backend.resolve_timestamps(encoder, self._sets, self._count)

    def ticks(self) -> np.ndarray:
        """The raw timestamps (call once the command buffer completed)."""
        if self.readback is None:
            return np.zeros(0, np.uint64)
        readback, self.readback = self.readback, None
        return self._backend.read_timestamps(readback, self._count)


class ProfilerSlot:
    """The active :class:`Profile` of a device, if any (one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: Profile | None = None

    def enter(self, profile: Profile) -> None:
        """Make ``profile`` the active one. Raises FailedPreconditionError if another is."""
        with self._lock:
            if self.active is not None:
                raise FailedPreconditionError("profile: another profile is already active")
            self.active = profile

    def leave(self, profile: Profile) -> None:
        """``profile`` is no longer active."""
        with self._lock:
            if self.active is profile:
                self.active = None


class _Record:
    """One profiled submission: its command buffers' timers (GPU clock) or command names
    (host clock), and when the host submitted it and saw it complete."""

    def __init__(
        self,
        number: int,
        timers: list[_CommandTimer | None],
        commands: list[list[str]],
        ids: list[tuple[int, int]],
    ) -> None:
        self.number = number
        self.timers = timers
        self.commands = commands
        self.ids = ids  # (index in the submission, id of the CommandBuffer) per timer
        self.submitted_ns = 0
        self.completed_ns = 0
        self.index = 0
        self.done = threading.Event()
        self.events: list[ProfileEvent] | None = None


class Profile:
    """Times the work submitted while it is active (``with device.profile() as p:``).

    ``events`` lists :class:`ProfileEvent` in start order; ``save_chrome_trace(path)`` writes
    the Trace Event Format JSON that chrome://tracing and Perfetto load. ``clock="auto"``
    uses GPU timestamps where the adapter has them, ``"host"`` forces host timing.
    """

    def __init__(
        self, device: Device, backend: Backend, slot: ProfilerSlot, clock: str = "auto"
    ) -> None:
        if clock not in ("auto", "gpu", "host"):
            raise InvalidArgumentError(f"profile: clock {clock!r} is not 'auto', 'gpu' or 'host'")
        features = device.features
        has_gpu = "timestamp-query" in features
        if clock == "gpu" and not has_gpu:
            from hal.errors import UnimplementedError

            raise UnimplementedError("profile: the adapter has no timestamp-query")
        self._device = device
        self._backend = backend
        self._slot = slot
        self.gpu = has_gpu and clock != "host"
        self._per_command = self.gpu and "timestamp-query-inside-passes" in features
        self._transfers = self.gpu and "timestamp-query-inside-encoders" in features
        self._period = backend.timestamp_period() if self.gpu else 1.0
        self._lock = threading.Lock()
        self._records: list[_Record] = []
        self._host_events: list[ProfileEvent] = []
        self._submissions = 0
        self.active = False

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> Profile:
        self._device.check_open("profile")
        self._slot.enter(self)
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._slot.leave(self)
        self.active = False

    # -- hooks used by the queue and the staging pool -------------------------------------

    def encode(
        self, command_buffers: Sequence[Any], programs: Sequence[Any]
    ) -> tuple[list[Any], _Record]:
        """Encode a submission's programs (one per command buffer: a
        ``hal.runtime.encoder.Program`` or a wrapper delegating to one) with timestamps, or
        plainly on the host clock."""
        encoded: list[Any] = []
        timers: list[_CommandTimer | None] = []
        commands: list[list[str]] = []
        ids: list[tuple[int, int]] = []
        for position, (cb, program) in enumerate(zip(command_buffers, programs, strict=True)):
            if not program.plan.steps:
                continue
            ids.append((position, id(cb)))
            commands.append(_command_names(program))
            if self.gpu:
                timer = _CommandTimer(
                    self._backend, program.plan.steps, self._per_command, self._transfers
                )
                encoded.append(program.encode_profiled(timer))
                timers.append(timer)
            else:
                encoded.append(program.encode())
                timers.append(None)
        with self._lock:
            record = _Record(self._submissions, timers, commands, ids)
            self._submissions += 1
            self._records.append(record)
        return encoded, record

    def attach(self, record: _Record, work: Work) -> None:
        """Time ``work`` on the host through the queue's hooks: submitted (``on_submit``) and
        completed (``on_complete``, before the signals), with its backend ticket."""
        previous = work.on_complete

        def submitted() -> None:
            record.submitted_ns = time.perf_counter_ns()

        def complete() -> None:
            record.completed_ns = time.perf_counter_ns()
            record.index = work.ticket
            record.done.set()
            if previous is not None:
                previous()

        work.on_submit = submitted
        work.on_complete = complete

    def host_event(self, name: str, start_ns: int, end_ns: int, args: Mapping[str, Any]) -> None:
        """Record a host-timed transfer."""
        event = ProfileEvent(name, start_ns, end_ns, "host_transfer", "host", -1, -1, dict(args))
        with self._lock:
            self._host_events.append(event)

    # -- results -------------------------------------------------------------------------

    def wait(self, timeout: float | None = 60.0) -> None:
        """Wait until every profiled submission that reached the GPU completed. Raises
        DeadlineExceededError on timeout, InvalidArgumentError for a bad timeout (as in
        ``Semaphore.wait``)."""
        from hal.core.checks import timeout_seconds

        timeout = timeout_seconds("profile.wait", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            records = list(self._records)
        for record in records:
            if not record.submitted_ns:
                continue  # held back on a semaphore: not submitted (yet)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not record.done.wait(remaining):
                raise DeadlineExceededError(
                    f"profile: submitted work still running after {timeout} s"
                )

    @property
    def events(self) -> list[ProfileEvent]:
        """Every event so far, in start order; waits (60 s at most) for profiled work that
        was submitted. Work still held back on semaphores is left out until it ran."""
        self.wait()
        with self._lock:
            records = [r for r in self._records if r.done.is_set()]
            host = list(self._host_events)
        for record in records:
            if record.events is None:
                record.events = self._resolve(record)
        gpu_records = [r for r in records if r.events and r.events[0].clock == "gpu"]
        offset = _clock_offset(gpu_records)
        events = list(host)
        for record in records:
            assert record.events is not None
            for event in record.events:
                if event.clock == "gpu":
                    event = ProfileEvent(
                        event.name,
                        event.start_ns + offset,
                        event.end_ns + offset,
                        event.kind,
                        event.clock,
                        event.submission,
                        event.command_buffer,
                        event.args,
                    )
                events.append(event)
        events.sort(key=lambda e: (e.start_ns, -e.end_ns))
        return events

    def _resolve(self, record: _Record) -> list[ProfileEvent]:
        base = {"wgpu_submission": record.index}
        if not self.gpu:
            names = [name for names in record.commands for name in names]
            args = {**base, "command_buffers": len(record.commands), "commands": names}
            return [
                ProfileEvent(
                    "queue_execute",
                    record.submitted_ns,
                    record.completed_ns,
                    "submission",
                    "host",
                    record.number,
                    -1,
                    args,
                )
            ]
        events: list[ProfileEvent] = []
        for timer, (position, cb_id) in zip(record.timers, record.ids, strict=True):
            if timer is None:
                continue
            ticks = timer.ticks()
            ident = {**base, "command_buffer_id": f"cb#{cb_id:x}"}
            spans: list[ProfileEvent] = []
            for begin, end, name, kind, args in timer.spans:
                start = int(ticks[begin] * self._period)
                stop = int(ticks[end] * self._period)
                spans.append(
                    ProfileEvent(
                        name,
                        start,
                        max(start, stop),
                        kind,
                        "gpu",
                        record.number,
                        position,
                        {**ident, **args},
                    )
                )
            if spans:
                events.append(
                    ProfileEvent(
                        "command_buffer",
                        min(e.start_ns for e in spans),
                        max(e.end_ns for e in spans),
                        "command_buffer",
                        "gpu",
                        record.number,
                        position,
                        {**ident, "commands": len(spans)},
                    )
                )
            events.extend(spans)
        return events

    # -- Chrome trace --------------------------------------------------------------------

    def chrome_trace(self) -> dict[str, Any]:
        """The events as a Trace Event Format object: ``{"traceEvents": [...]}`` of complete
        ("X") events in µs, plus process/thread name metadata ("M") events."""
        events = self.events
        origin = min((e.start_ns for e in events), default=0)
        pid = os.getpid()
        trace: list[dict[str, Any]] = [
            {
                "name": "process_name",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"name": f"hal {self._device.info}"},
            },
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "args": {"name": "GPU queue"}},
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": 2, "args": {"name": "host"}},
        ]
        for event in events:
            trace.append(
                {
                    "name": event.name,
                    "cat": event.kind,
                    "ph": "X",
                    "ts": (event.start_ns - origin) / 1000.0,
                    "dur": event.duration_ns / 1000.0,
                    "pid": pid,
                    "tid": 1 if event.clock == "gpu" or event.kind == "submission" else 2,
                    "args": {
                        "clock": event.clock,
                        "submission": event.submission,
                        "command_buffer": event.command_buffer,
                        **{k: _jsonable(v) for k, v in event.args.items()},
                    },
                }
            )
        return {"traceEvents": trace, "displayTimeUnit": "ns"}

    def save_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`chrome_trace` as JSON to ``path`` (open it in chrome://tracing or
        https://ui.perfetto.dev). Raises OSError when the file can't be written."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.chrome_trace(), handle)


def _command_names(program: Any) -> list[str]:
    names: list[str] = []
    for step in program.plan.steps:
        if isinstance(step, ComputePass):
            names.extend(d.label for d in step.dispatches)
        elif isinstance(step, CopyBuffer):
            names.append("copy_buffer_to_buffer")
        else:
            names.append("clear_buffer")
    return names


def _clock_offset(records: list[_Record]) -> int:
    """ns to add to GPU timestamps to put them on the host clock (module docstring)."""
    bounds = []
    for record in records:
        assert record.events is not None
        first = min(e.start_ns for e in record.events)
        last = max(e.end_ns for e in record.events)
        bounds.append((record.submitted_ns, first, last, record.completed_ns))
    if not bounds or all(s <= f and e <= c for s, f, e, c in bounds):
        return 0
    return max(s - f for s, f, _, _ in bounds)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
