"""Collectives at run time: the split programs, their submission as a chain of GPU
parts and host steps, and the host steps themselves.

A submission of command buffers with collectives becomes a chain of queue work items linked
by a private semaphore: each GPU part is ordinary queue work; each host step is a host call
(hal/runtime/host_call.py) that stages the send ranges out, posts every collective of the
step to MPI non-blocking in program order (each channel's tickets keep submission order
across threads), polls them against ``HAL_COLLECTIVE_TIMEOUT`` and stages the results back.
A failure anywhere fails the rest of the chain and the submission's signal semaphores.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.core.collectives import (
    CollectiveSegment,
    GpuPart,
    HostStep,
    SplitPlan,
    check_aliasing,
    has_collectives,
    split_segments,
)
from hal.core.refs import Ref
from hal.enums import CollectiveKind, CollectiveReduction
from hal.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
)
from hal.runtime.programs import CheckedProgram, Programs
from hal.runtime.queue import Work
from hal.runtime.semaphore import Semaphore

if TYPE_CHECKING:
    from hal.core.plan import Plan
    from hal.core.refs import BufferLike
    from hal.core.slots import SlotRequirements
    from hal.runtime.buffer import Allocation
    from hal.runtime.channel import Channel
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.dispatch_programs import DispatchProgram
    from hal.runtime.host_call import HostCalls
    from hal.runtime.native_programs import NativeProgram
    from hal.runtime.queue import Queue
    from hal.runtime.semaphore import Point
    from hal.runtime.transfers import HostTransfers

__all__ = [
    "Collectives",
    "SplitPrograms",
    "collective_timeout",
    "has_host_steps",
    "make_programs",
    "run_host_step",
]

_log = logging.getLogger("hal")
_DEFAULT_TIMEOUT = 300.0


def collective_timeout() -> float:
    """``HAL_COLLECTIVE_TIMEOUT`` in seconds (default 300). Raises InvalidArgumentError for a
    value that is not a positive number."""
    raw = os.environ.get("HAL_COLLECTIVE_TIMEOUT", "")
    if not raw.strip():
        return _DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidArgumentError(
            f"collective: HAL_COLLECTIVE_TIMEOUT={raw!r} is not a positive number of seconds"
        )
    return value


# -- programs ----------------------------------------------------------------------------------


class SplitPrograms:
    """The programs of an ended command buffer with collectives: one
    :class:`~hal.runtime.programs.Programs` per GPU part, and the host steps between."""

    def __init__(
        self,
        device: Device,
        segments: Sequence[Any],
        views: Sequence[BufferLike],
        slots: SlotRequirements | None,
    ) -> None:
        self._device = device
        self._count = len(segments)
        self._slots = slots
        self.parts: tuple[Programs | HostStep, ...] = tuple(
            Programs(device, part.segments, views, slots) if isinstance(part, GpuPart) else part
            for part in split_segments(segments)
        )

    @property
    def plan(self) -> SplitPlan | None:
        """The split plan (GPU parts of a command buffer with slots: of its latest
        submission); None before the first submission of one with slots."""
        parts: list[Plan | HostStep] = []
        for part in self.parts:
            if isinstance(part, HostStep):
                parts.append(part)
                continue
            plan = part.plan
            if plan is None:
                return None
            parts.append(plan)
        return SplitPlan.of(parts, self._count)

    def prepare(self, table: Sequence[Any] | None) -> CheckedProgram:
        """Not one program: a command buffer with collectives is submitted as a chain
        (:func:`execute_split`). Raises FailedPreconditionError."""
        raise FailedPreconditionError(
            "prepare: a command buffer with collectives runs as GPU parts and host steps"
        )

    def prepare_parts(self, table: Sequence[Any] | None) -> list[CheckedProgram | HostStep]:
        """Each part ready for a submission with ``table``: GPU parts as programs, host steps
        with their slot ranges resolved on the table. Raises what ``Programs.prepare`` raises,
        InvalidArgumentError where resolved send and recv ranges overlap."""
        entries = (
            None
            if self._slots is None
            else self._slots.check_table("queue_execute", table, self._device)
        )
        out: list[CheckedProgram | HostStep] = []
        for part in self.parts:
            if isinstance(part, HostStep):
                out.append(_resolve_step(part, entries))
            else:
                out.append(part.prepare(table))
        return out


def _resolve_step(step: HostStep, entries: list[Any] | None) -> HostStep:
    def at(ref: Ref | None) -> Ref | None:
        if ref is None or ref.slot is None or entries is None:
            return ref
        _, root, base, _ = entries[ref.slot]
        assert ref.length is not None
        return ref.at(root, base + ref.offset, ref.length)

    resolved = []
    for c in step.collectives:
        r = dataclasses.replace(c, send=at(c.send), recv=at(c.recv))
        check_aliasing("queue_execute", r.kind, r.send, r.recv)
        resolved.append(r)
    return HostStep(tuple(resolved))


def make_programs(
    device: Device,
    segments: Sequence[Any],
    views: Sequence[BufferLike],
    slots: SlotRequirements | None,
) -> Programs | SplitPrograms:
    """The programs of an ended command buffer: split where it has collectives."""
    if has_collectives(segments):
        return SplitPrograms(device, segments, views, slots)
    return Programs(device, segments, views, slots)


def has_host_steps(cbs: Sequence[CommandBuffer]) -> bool:
    """Whether any of ``cbs`` has collectives (and must run as a chain)."""
    return any(isinstance(cb.programs, SplitPrograms) for cb in cbs)


def has_host_step(cb: CommandBuffer) -> bool:
    """Whether ``cb`` has collectives (:func:`has_host_steps` of one command buffer, without
    the generator)."""
    return isinstance(cb.programs, SplitPrograms)


# -- submission --------------------------------------------------------------------------------


def _stages(
    cbs: Sequence[CommandBuffer], table: Sequence[Any] | None
) -> list[list[CheckedProgram | NativeProgram | DispatchProgram] | HostStep]:
    """The submission's parts in order, consecutive GPU programs merged into one stage."""
    stages: list[list[CheckedProgram | NativeProgram | DispatchProgram] | HostStep] = []
    for cb in cbs:
        programs = cb.programs
        parts = (
            programs.prepare_parts(table)
            if isinstance(programs, SplitPrograms)
            else [cb.prepare(table)]
        )
        for part in parts:
            if isinstance(part, HostStep):
                stages.append(part)
            elif stages and isinstance(stages[-1], list):
                stages[-1].append(part)
            else:
                stages.append([part])
    return stages


def _hold(buffers: Any, held: list[Allocation]) -> list[Allocation]:
    """Acquire the allocations of ``buffers`` (appended to ``held`` too, for undo)."""
    out = []
    for buffer in buffers:
        allocation = buffer.allocation
        allocation.acquire()
        held.append(allocation)
        out.append(allocation)
        if allocation.released:
            raise FailedPreconditionError(
                "queue_execute: a buffer the command buffer uses was released"
            )
    return out


def _step_buffers(step: HostStep) -> set[Any]:
    return {r.buffer for c in step.collectives for r in (c.send, c.recv) if r is not None}


class Collectives:
    """Runs the submissions of command buffers with collectives, through the device's queue
    (GPU parts), host calls (host steps) and host transfers (staging)."""

    def __init__(self, queue: Queue, host: HostTransfers, host_calls: HostCalls) -> None:
        self._queue = queue
        self._host = host
        self._host_calls = host_calls

    def execute(
        self,
        cbs: Sequence[CommandBuffer],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
        table: Sequence[Any] | None,
    ) -> None:
        """Submit ``cbs`` (some with collectives) as a chain of GPU parts and host steps.
        Raises what claiming and preparing raise; a rejected call queues nothing."""
        claimed: list[CommandBuffer] = []
        held: list[Allocation] = []
        try:
            for cb in cbs:
                cb.claim()
                claimed.append(cb)
            items: list[tuple[Any, list[Allocation]]] = []
            for stage in _stages(cbs, table):
                if isinstance(stage, HostStep):
                    items.append((stage, _hold(_step_buffers(stage), held)))
                else:
                    resources = [b for p in stage for b in p.resources]
                    encoded = [p.encode() for p in stage if p.has_steps]
                    items.append(((encoded, stage), _hold(resources, held)))
        except BaseException:
            for allocation in held:
                allocation.retire()
            for cb in claimed:
                cb.unclaim()
            raise
        self._chain(items, waits, signals)

    def _chain(
        self,
        items: list[tuple[Any, list[Allocation]]],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
    ) -> None:
        """Schedule ``items`` one after the other through a private semaphore. Tickets are
        taken now, in submission order, for every collective."""
        link = Semaphore(0)
        for i, (item, allocations) in enumerate(items):
            stage_waits = waits if i == 0 else ((link, i),)
            stage_signals = signals if i == len(items) - 1 else ((link, i + 1),)
            if isinstance(item, HostStep):
                tickets = [c.channel.take_tickets(1)[0] for c in item.collectives]
                self._host_calls.enqueue(
                    _step_call(self._host, item, tickets, allocations),
                    stage_waits,
                    stage_signals,
                    _skip_call(item, tickets, allocations),
                )
            else:
                encoded, programs = item
                work = Work(encoded, allocations, stage_waits, stage_signals, programs)
                self._queue.schedule(work)


def _release(allocations: list[Allocation]) -> None:
    for allocation in allocations:
        allocation.retire()
    allocations.clear()


def _step_call(
    host: HostTransfers, step: HostStep, tickets: list[int], allocations: list[Allocation]
) -> Callable[[], None]:
    def call() -> None:
        try:
            run_host_step(host, step, tickets)
        finally:
            _release(allocations)

    return call


def _skip_call(
    step: HostStep, tickets: list[int], allocations: list[Allocation]
) -> Callable[[BaseException], None]:
    def skip(failure: BaseException) -> None:
        for collective, ticket in zip(step.collectives, tickets, strict=True):
            collective.channel.give_up(ticket)
        _release(allocations)

    return skip


# -- host steps --------------------------------------------------------------------------------


def run_host_step(host: HostTransfers, step: HostStep, tickets: list[int]) -> None:
    """Stage out, post every collective of ``step`` to MPI (in order, each on its channel's
    turn), wait for all against ``HAL_COLLECTIVE_TIMEOUT``, stage back. Raises
    DeadlineExceededError on timeout (the channels are then unusable; ``HAL_COLLECTIVE_ABORT=1``
    aborts the job instead), UnavailableError for an unusable channel, and what staging
    raises."""
    done: set[int] = set()
    try:
        deadline = time.monotonic() + collective_timeout()
        for collective in step.collectives:
            collective.channel.check_usable("collective")
        sends = [_stage_out(host, c.send) for c in step.collectives]
        posted = []
        for index, (collective, ticket) in enumerate(zip(step.collectives, tickets, strict=True)):
            channel = collective.channel
            channel.turn(ticket, deadline)
            try:
                posted.append(_post(channel, collective, sends[index]))
            finally:
                channel.give_up(ticket)
                done.add(index)
        requests = [r for p in posted for r in p[0]]
        if not _wait_all(step.collectives[0].channel.mpi, requests, deadline):
            _timed_out(step)
        for collective, (_, finish) in zip(step.collectives, posted, strict=True):
            result = finish()
            recv = collective.recv
            if result is not None and recv is not None and recv.buffer is not None:
                host.write(recv.buffer, recv.offset, result)
    finally:
        for index, (collective, ticket) in enumerate(zip(step.collectives, tickets, strict=True)):
            if index not in done:
                collective.channel.give_up(ticket)


def _stage_out(host: Any, ref: Ref | None) -> np.ndarray | None:
    if ref is None:
        return None
    assert ref.length is not None
    data = np.empty(ref.length, np.uint8)
    host.read_into(ref.buffer, ref.offset, data)
    return data


def _timed_out(step: HostStep) -> None:
    channels = {id(c.channel): c.channel for c in step.collectives}.values()
    kinds = ", ".join(c.kind.name for c in step.collectives)
    error = DeadlineExceededError(
        f"collective: {kinds} did not complete within HAL_COLLECTIVE_TIMEOUT "
        f"({collective_timeout()} s): a peer failed or never arrived; the channel is now "
        "unusable (MPI cannot cancel a collective)"
    )
    for channel in channels:
        channel.mark_broken(error)
    if os.environ.get("HAL_COLLECTIVE_ABORT") == "1":
        _log.error("%s; HAL_COLLECTIVE_ABORT=1: aborting the MPI job", error)
        next(iter(channels)).comm.Abort(1)
    raise error


_SPIN_S = 0.05
"""How long a host step polls MPI without sleeping (only yielding the GIL)."""

_MAX_PAUSE_S = 5e-5
"""The longest sleep between two polls after that."""


def _wait_all(mpi: Any, requests: list[Any], deadline: float) -> bool:
    """Poll ``requests`` until all completed (True) or ``deadline`` passed (False).

    Testall is what drives MPI's progress: Open MPI moves a large message one fragment per
    call, so sleeping 1 ms between polls made a 16 MiB all_reduce 30x slower on the H200.
    Polls only yield for the first ``_SPIN_S`` (what MPI_Wait itself does: it spins), then
    sleep at most ``_MAX_PAUSE_S`` (a poll costs about a microsecond: a few percent of a core
    while a peer is late)."""
    spin_until = time.monotonic() + _SPIN_S
    pause = 0.0
    while not mpi.Request.Testall(requests):
        now = time.monotonic()
        if now > deadline:
            return False
        if now > spin_until:
            pause = min(max(pause * 2, 1e-6), _MAX_PAUSE_S)
        time.sleep(pause)
    return True


_OPS = {
    CollectiveReduction.SUM: "SUM",
    CollectiveReduction.PRODUCT: "PROD",
    CollectiveReduction.MINIMUM: "MIN",
    CollectiveReduction.MAXIMUM: "MAX",
    CollectiveReduction.AVERAGE: "SUM",
}


def _post(
    channel: Channel, c: CollectiveSegment, send: np.ndarray | None
) -> tuple[list[Any], Callable[[], np.ndarray | None]]:
    """Post ``c`` non-blocking; its requests and what makes the bytes to stage back (None:
    nothing for this rank)."""
    comm, kind = channel.comm, c.kind
    recv_bytes = None if c.recv is None else c.recv.length
    if c.reduction is not None:
        return _post_reduction(channel, c, send)
    recv = None if recv_bytes is None else np.empty(recv_bytes, np.uint8)
    if kind is CollectiveKind.ALL_GATHER:
        requests = [comm.Iallgather(send, recv)]
    elif kind is CollectiveKind.ALL_TO_ALL:
        requests = [comm.Ialltoall(send, recv)]
    elif kind is CollectiveKind.BROADCAST:
        if channel.rank == c.param:
            assert send is not None and recv is not None
            recv[:] = send
        requests = [comm.Ibcast(recv, root=c.param)]
    elif kind is CollectiveKind.SEND:
        requests = [comm.Isend(send, dest=c.param)]
    else:
        requests = [comm.Irecv(recv, source=c.param)]
    return requests, lambda: recv


def _post_reduction(
    channel: Channel, c: CollectiveSegment, send: np.ndarray | None
) -> tuple[list[Any], Callable[[], np.ndarray | None]]:
    """Post a reducing collective over typed arrays (float16 reduces in float32)."""
    comm, mpi = channel.comm, channel.mpi
    assert send is not None and c.reduction is not None
    dtype = c.element_type
    work_type = np.dtype(np.float32) if dtype == np.float16 else dtype
    typed = send.view(dtype).astype(work_type, copy=work_type != dtype)
    has_recv = c.recv is not None
    recv = np.empty(c.element_count, work_type) if has_recv else None
    op = getattr(mpi, _OPS[c.reduction])
    if c.kind is CollectiveKind.ALL_REDUCE:
        requests = [comm.Iallreduce(typed, recv, op)]
    elif c.kind is CollectiveKind.REDUCE:
        requests = [comm.Ireduce(typed, recv, op, root=c.param)]
    else:
        requests = [comm.Ireduce_scatter_block(typed, recv, op)]

    def finish() -> np.ndarray | None:
        assert typed is not None  # held until the request completed
        if recv is None:
            return None
        out = recv
        if c.reduction is CollectiveReduction.AVERAGE:
            out = out / np.asarray(channel.count, work_type)
        return np.ascontiguousarray(out.astype(dtype, copy=False)).view(np.uint8)

    return requests, finish
