"""Collectives at run time: recording, the split programs, their submission as a chain of GPU
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
    check_collective,
    has_collectives,
    side_lengths,
    split_segments,
)
from hal.core.refs import Ref
from hal.enums import BufferUsage, CollectiveKind, CollectiveReduction, MemoryAccess
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
    from hal.runtime.semaphore import Point

__all__ = [
    "SplitPrograms",
    "collective_timeout",
    "execute_split",
    "has_host_steps",
    "make_programs",
    "record_collective",
    "run_host_step",
]

_log = logging.getLogger("hal")
_DEFAULT_TIMEOUT = 300.0
_SEND_NEEDS = (int(BufferUsage.TRANSFER_SOURCE), int(MemoryAccess.READ))
_RECV_NEEDS = (int(BufferUsage.TRANSFER_TARGET), int(MemoryAccess.WRITE))


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


# -- recording ---------------------------------------------------------------------------------


def record_collective(
    cb: CommandBuffer,
    what: str,
    channel: Any,
    kind: Any,
    send: Any,
    recv: Any,
    element_count: Any,
    element_type: Any,
    reduction: Any,
    param: Any,
) -> None:
    """Check a collective and append its segment to ``cb`` (see ``CommandBuffer.collective``
    for what it raises); a rejected collective records nothing."""
    from hal.runtime.channel import Channel

    cb._begin_command(what, int(cb.categories.DISPATCH))
    if not isinstance(channel, Channel):
        raise InvalidArgumentError(f"{what}: channel {channel!r} is not a hal.Channel")
    channel.check_usable(what)
    kind, reduction, dtype, count, param = check_collective(
        what, kind, reduction, element_type, element_count, param, channel.rank, channel.count
    )
    send_length, recv_length = side_lengths(
        kind, count, dtype.itemsize, channel.rank, channel.count, param
    )
    send_ref = _side(cb, what, "send", kind, send, send_length, _SEND_NEEDS)
    recv_ref = _side(cb, what, "recv", kind, recv, recv_length, _RECV_NEEDS)
    check_aliasing(what, kind, send_ref, recv_ref)
    cb._segments.append(
        CollectiveSegment(channel, kind, reduction, dtype, count, param, send_ref, recv_ref)
    )
    for ref, argument, needs in ((send_ref, "send", _SEND_NEEDS), (recv_ref, "recv", _RECV_NEEDS)):
        if ref is not None and ref.slot is not None:
            cb._require(ref, f"{what} {argument}", *needs)


def _side(
    cb: CommandBuffer,
    what: str,
    argument: str,
    kind: CollectiveKind,
    target: Any,
    length: int | None,
    needs: tuple[int, int],
) -> Ref | None:
    """The range one side of a collective uses (``length`` bytes from the start of
    ``target``), or None where this rank has no such side (``target`` is then ignored)."""
    from hal.runtime.buffer import BufferView

    if length is None:
        return None
    if target is None:
        raise InvalidArgumentError(f"{what}: {kind.name} needs a {argument} buffer on this rank")
    if isinstance(target, BufferView):
        target = target.buffer
    return cb._ref(what, argument, target, 0, length, *needs)


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
    return any(isinstance(cb._programs, SplitPrograms) for cb in cbs)


# -- submission --------------------------------------------------------------------------------


def _stages(
    cbs: Sequence[CommandBuffer], table: Sequence[Any] | None
) -> list[list[CheckedProgram] | HostStep]:
    """The submission's parts in order, consecutive GPU programs merged into one stage."""
    stages: list[list[CheckedProgram] | HostStep] = []
    for cb in cbs:
        programs = cb._programs
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


def execute_split(
    device: Device,
    cbs: Sequence[CommandBuffer],
    waits: tuple[Point, ...],
    signals: tuple[Point, ...],
    table: Sequence[Any] | None,
) -> None:
    """Submit ``cbs`` (some with collectives) as a chain of GPU parts and host steps. Raises
    what claiming and preparing raise; a rejected call queues nothing."""
    claimed: list[CommandBuffer] = []
    held: list[Allocation] = []
    try:
        for cb in cbs:
            cb.claim()
            claimed.append(cb)
        stages = _stages(cbs, table)
        items: list[tuple[Any, list[Allocation]]] = []
        for stage in stages:
            if isinstance(stage, HostStep):
                items.append((stage, _hold(_step_buffers(stage), held)))
            else:
                resources = [b for p in stage for b in p.plan.resources]
                encoded = [p.encode() for p in stage if p.plan.steps]
                items.append(((encoded, stage), _hold(resources, held)))
    except BaseException:
        for allocation in held:
            allocation.retire()
        for cb in claimed:
            cb.unclaim()
        raise
    _chain(device, items, waits, signals)


def _chain(
    device: Device,
    items: list[tuple[Any, list[Allocation]]],
    waits: tuple[Point, ...],
    signals: tuple[Point, ...],
) -> None:
    """Schedule ``items`` one after the other through a private semaphore. Tickets are taken
    now, in submission order, for every collective."""
    link = Semaphore(0, device=device)
    tickets = [
        [c.channel.take_tickets(1)[0] for c in item.collectives]
        if isinstance(item, HostStep)
        else []
        for item, _ in items
    ]
    for i, (item, allocations) in enumerate(items):
        stage_waits = waits if i == 0 else ((link, i),)
        stage_signals = signals if i == len(items) - 1 else ((link, i + 1),)
        if isinstance(item, HostStep):
            step, numbers = item, tickets[i]
            device._host_calls.enqueue(
                _step_call(device, step, numbers, allocations),
                stage_waits,
                stage_signals,
                _skip_call(step, numbers, allocations),
            )
        else:
            encoded, programs = item
            work = Work(encoded, allocations, stage_waits, stage_signals, programs)
            device._queue.schedule(work)


def _release(allocations: list[Allocation]) -> None:
    for allocation in allocations:
        allocation.retire()
    allocations.clear()


def _step_call(
    device: Device, step: HostStep, tickets: list[int], allocations: list[Allocation]
) -> Callable[[], None]:
    def call() -> None:
        try:
            run_host_step(device, step, tickets)
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


def run_host_step(device: Device, step: HostStep, tickets: list[int]) -> None:
    """Stage out, post every collective of ``step`` to MPI (in order, each on its channel's
    turn), wait for all against ``HAL_COLLECTIVE_TIMEOUT``, stage back. Raises
    DeadlineExceededError on timeout (the channels are then unusable; ``HAL_COLLECTIVE_ABORT=1``
    aborts the job instead), UnavailableError for an unusable channel, and what staging
    raises."""
    host = device._host
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


def _wait_all(mpi: Any, requests: list[Any], deadline: float) -> bool:
    """Poll ``requests`` (Testall drives MPI's progress) until all completed (True) or
    ``deadline`` passed (False): short yields first, then sleeps growing to 1 ms."""
    polls = 0
    pause = 0.0
    while not mpi.Request.Testall(requests):
        if time.monotonic() > deadline:
            return False
        polls += 1
        if polls > 200:
            pause = min(max(pause * 2, 1e-5), 1e-3)
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
