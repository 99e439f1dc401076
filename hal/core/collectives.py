"""Collective commands as plain data: the segment, its record-time rules, and the split of a
command buffer into GPU parts and host steps.

A command buffer with collectives runs as alternating GPU parts (lowered like any command
buffer) and host steps (each a group of collectives handed to MPI together). The split follows
the barrier rules: the collectives of one barrier region form one host step (posted together,
non-blocking, so a send/recv exchange inside a region cannot deadlock); the region's other
commands recorded before its first collective run before that step, those recorded after it
run after the step. Collectives keep program order among themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hal.core.checks import check_int
from hal.core.plan import Plan, PlanStats
from hal.core.refs import Ref
from hal.enums import CollectiveKind, CollectiveReduction
from hal.errors import InvalidArgumentError

__all__ = [
    "DTYPES",
    "REDUCING",
    "CollectiveSegment",
    "GpuPart",
    "HostStep",
    "SplitPlan",
    "SplitStats",
    "check_aliasing",
    "check_collective",
    "has_collectives",
    "side_lengths",
    "split_segments",
]

DTYPES = frozenset(
    np.dtype(name)
    for name in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
)
"""The element types collectives accept."""

REDUCING = frozenset(
    {CollectiveKind.ALL_REDUCE, CollectiveKind.REDUCE, CollectiveKind.REDUCE_SCATTER}
)
"""The kinds that need a reduction."""

_ROOTED = frozenset(
    {CollectiveKind.BROADCAST, CollectiveKind.REDUCE, CollectiveKind.SEND, CollectiveKind.RECV}
)
"""The kinds whose ``param`` names a rank (the root or the peer)."""

Channel = Any
"""The runtime's channel (core holds it as an opaque object, compared by identity; it has
``rank`` and ``count``)."""


@dataclass(frozen=True, slots=True)
class CollectiveSegment:
    """``collective``: ``kind`` over ``element_count`` elements of ``element_type`` on
    ``channel``. ``send``/``recv`` are None where this rank has no such side."""

    channel: Channel
    kind: CollectiveKind
    reduction: CollectiveReduction | None
    element_type: np.dtype[Any]
    element_count: int
    param: int
    send: Ref | None
    recv: Ref | None

    def describe(self) -> str:
        """One line: kind, reduction, type, count, ranges."""
        reduction = "" if self.reduction is None else f" {self.reduction.name.lower()}"
        rooted = f" rank={self.param}" if self.kind in _ROOTED else ""
        send = "-" if self.send is None else self.send.describe()
        recv = "-" if self.recv is None else self.recv.describe()
        return (
            f"collective {self.kind.name.lower()}{reduction} {self.element_count}x"
            f"{self.element_type.name}{rooted} send={send} recv={recv}"
        )


def check_collective(
    what: str,
    kind: Any,
    reduction: Any,
    element_type: Any,
    element_count: Any,
    param: Any,
    rank: int,
    count: int,
) -> tuple[CollectiveKind, CollectiveReduction | None, np.dtype[Any], int, int]:
    """A collective's kind, reduction, dtype, count and param, checked for a channel of
    ``count`` ranks on which this process is ``rank``. Raises InvalidArgumentError for an
    unknown kind or reduction, a reduction missing (reducing kinds) or misplaced (the others),
    AVERAGE of an integer type, an unsupported element type, a negative count and a rank
    ``param`` outside the channel."""
    try:
        kind = CollectiveKind(kind)
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"{what}: kind {kind!r} is not a CollectiveKind") from None
    if reduction is not None:
        try:
            reduction = CollectiveReduction(reduction)
        except (ValueError, TypeError):
            raise InvalidArgumentError(
                f"{what}: reduction {reduction!r} is not a CollectiveReduction"
            ) from None
    if kind in REDUCING and reduction is None:
        raise InvalidArgumentError(f"{what}: {kind.name} needs a reduction")
    if kind not in REDUCING and reduction is not None:
        raise InvalidArgumentError(
            f"{what}: {kind.name} takes no reduction (got {reduction.name}); only ALL_REDUCE, "
            "REDUCE and REDUCE_SCATTER reduce"
        )
    dtype = _dtype(what, element_type)
    if reduction is CollectiveReduction.AVERAGE and dtype.kind != "f":
        raise InvalidArgumentError(
            f"{what}: AVERAGE is for floating element types, not {dtype.name}"
        )
    element_count = check_int(what, "element_count", element_count)
    param = check_int(what, "param", param)
    if kind in _ROOTED and param >= count:
        role = "root" if kind in (CollectiveKind.BROADCAST, CollectiveKind.REDUCE) else "peer"
        raise InvalidArgumentError(
            f"{what}: param {param} ({role} rank of {kind.name}) is outside the channel's "
            f"{count} ranks"
        )
    return kind, reduction, dtype, element_count, param


def _dtype(what: str, element_type: Any) -> np.dtype[Any]:
    try:
        dtype = np.dtype(element_type)
    except TypeError:
        raise InvalidArgumentError(
            f"{what}: element_type {element_type!r} is not a numpy dtype"
        ) from None
    if dtype not in DTYPES:
        names = ", ".join(sorted(d.name for d in DTYPES))
        raise InvalidArgumentError(
            f"{what}: element_type {dtype.name} is not supported (one of {names})"
        )
    return dtype.newbyteorder("=")


def side_lengths(
    kind: CollectiveKind, element_count: int, itemsize: int, rank: int, count: int, param: int
) -> tuple[int | None, int | None]:
    """The bytes the send and recv ranges need on this rank (MPI's sizes); None where this
    rank has no such side (the root's send of BROADCAST, REDUCE's recv off the root, RECV's
    send, SEND's recv)."""
    one = element_count * itemsize
    every = one * count
    if kind is CollectiveKind.ALL_GATHER:
        return one, every
    if kind is CollectiveKind.ALL_REDUCE:
        return one, one
    if kind is CollectiveKind.ALL_TO_ALL:
        return every, every
    if kind is CollectiveKind.BROADCAST:
        return (one if rank == param else None), one
    if kind is CollectiveKind.REDUCE:
        return one, (one if rank == param else None)
    if kind is CollectiveKind.REDUCE_SCATTER:
        return every, one
    if kind is CollectiveKind.SEND:
        return one, None
    return None, one


def _overlap(a: Ref, b: Ref) -> bool:
    if a.buffer is not b.buffer or a.slot != b.slot:
        return False
    a_end = None if a.length is None else a.offset + a.length
    b_end = None if b.length is None else b.offset + b.length
    return (a_end is None or b.offset < a_end) and (b_end is None or a.offset < b_end)


def check_aliasing(what: str, kind: CollectiveKind, send: Ref | None, recv: Ref | None) -> None:
    """InvalidArgumentError where send and recv overlap, unless they are the same range of an
    ALL_REDUCE (in place). Slot ranges are compared where they name the same slot."""
    if send is None or recv is None or not _overlap(send, recv):
        return
    if kind is CollectiveKind.ALL_REDUCE and send == recv:
        return
    raise InvalidArgumentError(
        f"{what}: send {send.describe()} and recv {recv.describe()} overlap; only ALL_REDUCE "
        "may run in place (the very same range)"
    )


# -- the split -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuPart:
    """Segments lowered and run on the GPU like a command buffer of their own."""

    segments: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class HostStep:
    """Collectives run together on the host (posted in this order)."""

    collectives: tuple[CollectiveSegment, ...]


def has_collectives(segments: Sequence[Any]) -> bool:
    """Whether any segment is a collective."""
    return any(type(s) is CollectiveSegment for s in segments)


def _is_barrier(segment: Any) -> bool:
    from hal.core.segments import BarrierSegment, WaitEventsSegment

    return isinstance(segment, (BarrierSegment, WaitEventsSegment))


def split_segments(segments: Sequence[Any]) -> tuple[GpuPart | HostStep, ...]:
    """``segments`` as alternating GPU parts and host steps (see the module docstring);
    empty GPU parts are left out."""
    parts: list[GpuPart | HostStep] = []
    before: list[Any] = []  # the current GPU part
    after: list[Any] = []  # the region's commands recorded after its first collective
    pending: list[CollectiveSegment] = []

    def flush() -> None:
        nonlocal before, after, pending
        if pending:
            if any(not _is_barrier(s) for s in before):
                parts.append(GpuPart(tuple(before)))
            parts.append(HostStep(tuple(pending)))
            before, after, pending = after, [], []

    for segment in segments:
        if type(segment) is CollectiveSegment:
            pending.append(segment)
        elif _is_barrier(segment):
            flush()
            before.append(segment)
        else:
            (after if pending else before).append(segment)
    flush()
    if any(not _is_barrier(s) for s in before):
        parts.append(GpuPart(tuple(before)))
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class SplitStats(PlanStats):
    """:class:`PlanStats` summed over the GPU parts, plus the host steps and collectives."""

    host_steps: int = 0
    collectives: int = 0
    gpu_parts: int = 0


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """The lowered form of a command buffer with collectives: ``parts`` in order, each the
    :class:`Plan` of a GPU part or a :class:`HostStep`."""

    parts: tuple[Plan | HostStep, ...]
    stats: SplitStats

    @classmethod
    def of(cls, parts: Sequence[Plan | HostStep], segments: int) -> SplitPlan:
        """The plan of ``parts`` with summed statistics (``segments`` recorded in all)."""
        plans = [p for p in parts if isinstance(p, Plan)]
        steps = [p for p in parts if isinstance(p, HostStep)]
        totals = {f.name: sum(getattr(p.stats, f.name) for p in plans) for f in fields(PlanStats)}
        totals["segments"] = segments
        stats = SplitStats(
            **totals,
            host_steps=len(steps),
            collectives=sum(len(s.collectives) for s in steps),
            gpu_parts=len(plans),
        )
        return cls(tuple(parts), stats)

    @property
    def resources(self) -> frozenset[Any]:
        """The allocations the GPU parts and the collectives touch."""
        out: set[Any] = set()
        for part in self.parts:
            if isinstance(part, Plan):
                out |= part.resources
            else:
                for c in part.collectives:
                    out.update(r.buffer for r in (c.send, c.recv) if r is not None and r.buffer)
        return frozenset(out)

    def describe(self) -> str:
        """Human-readable listing: each GPU part's plan, each host step's collectives."""
        lines = []
        for i, part in enumerate(self.parts):
            if isinstance(part, Plan):
                lines.append(f" part {i}: GPU")
                lines.append(part.describe())
            else:
                lines.append(f" part {i}: host step ({len(part.collectives)} collectives)")
                lines.extend(f"        {c.describe()}" for c in part.collectives)
        s = self.stats
        lines.append(
            f"  split: {s.gpu_parts} GPU parts, {s.host_steps} host steps, "
            f"{s.collectives} collectives"
        )
        return "\n".join(lines)
