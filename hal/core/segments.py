"""Recorded commands as plain data. Recording appends these; the lowering reads them.

A :class:`~hal.core.refs.Ref` names a byte range either of an allocation (``buffer`` is the
root buffer and ``offset`` is absolute in it) or of a binding-table slot (resolved at
submission).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hal.core.collectives import CollectiveSegment
from hal.core.refs import Ref

if TYPE_CHECKING:
    from hal.core.layout import EntryPointLayout

# The runtime's Event and Executable: core never imports the runtime, so segments hold them
# as opaque objects (compared by identity; executables also give ``label``).
Event = Any
Executable = Any

__all__ = [
    "AdviseSegment",
    "BarrierSegment",
    "CollectiveSegment",
    "CopySegment",
    "DispatchSegment",
    "FillSegment",
    "Ref",
    "ResetEventSegment",
    "Segment",
    "SignalEventSegment",
    "TransferRecord",
    "UpdateSegment",
    "WaitEventsSegment",
    "describe_segment",
    "record_segment",
    "record_segments",
]


@dataclass(frozen=True, slots=True)
class BarrierSegment:
    """``execution_barrier``: everything before is ordered before everything after."""

    source_stage: int
    target_stage: int
    flags: int
    memory_barriers: tuple[Any, ...] = ()
    buffer_barriers: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SignalEventSegment:
    """``signal_event``."""

    event: Event
    source_stage: int


@dataclass(frozen=True, slots=True)
class ResetEventSegment:
    """``reset_event``."""

    event: Event
    source_stage: int


@dataclass(frozen=True, slots=True)
class WaitEventsSegment:
    """``wait_events``: orders like a barrier."""

    events: tuple[Event, ...]
    source_stage: int
    target_stage: int
    memory_barriers: tuple[Any, ...] = ()
    buffer_barriers: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class AdviseSegment:
    """``advise_buffer``/``discard_buffer``: a hint; lowers to nothing."""

    target: Ref
    flags: int


@dataclass(frozen=True, slots=True)
class FillSegment:
    """``fill_buffer``: repeat ``pattern`` (1, 2 or 4 bytes) over ``target``."""

    target: Ref
    pattern: bytes


@dataclass(frozen=True, slots=True)
class UpdateSegment:
    """``update_buffer``: ``data`` (captured at record time) written to ``target``."""

    data: bytes
    target: Ref

    def __repr__(self) -> str:
        return f"UpdateSegment(data=<{len(self.data)} bytes>, target={self.target!r})"


@dataclass(frozen=True, slots=True)
class CopySegment:
    """``copy_buffer``: ``source`` to ``target`` (equal lengths)."""

    source: Ref
    target: Ref


@dataclass(frozen=True, slots=True)
class DispatchSegment:
    """``dispatch``/``dispatch_indirect`` of ``entry_point`` with its bindings and constants.

    ``workgroups`` is the static count, or None when ``indirect`` names the 3×u32 counts.
    ``bindings[i]`` is None where the entry point ignores HAL binding i.
    """

    executable: Executable
    entry_point: str
    layout: EntryPointLayout
    workgroups: tuple[int, int, int] | None
    indirect: Ref | None
    constants: bytes
    bindings: tuple[Ref | None, ...]


Segment = (
    BarrierSegment
    | SignalEventSegment
    | ResetEventSegment
    | WaitEventsSegment
    | AdviseSegment
    | FillSegment
    | UpdateSegment
    | CopySegment
    | DispatchSegment
    | CollectiveSegment
)


TransferRecord = tuple[Any, int, int, int] | tuple[Any, int, Any, int, int]
"""A small transfer as recording's fast paths keep it until a segment is needed: a fill is
``(buffer, offset, length, pattern_word)`` (a 4-byte pattern, offset and length multiples of
4), a copy ``(source, source_offset, target, target_offset, length)``. Buffers are root
allocations, ranges absolute, in range and non-empty, every check already passed. A tuple
costs a tenth of the :class:`Ref` and segment it stands for, which most one-shot programs of
small transfers never need (:func:`hal.core.transfer_plans.record_plan` plans from them)."""


def record_segment(record: TransferRecord) -> FillSegment | CopySegment:
    """The segment a :data:`TransferRecord` stands for (equal to what the general recording
    path would have made). Pure; raises nothing."""
    if len(record) == 4:
        buffer, offset, length, word = record
        return FillSegment(Ref(buffer, None, offset, length), word.to_bytes(4, "little"))
    source, source_offset, target, target_offset, length = record
    return CopySegment(
        Ref(source, None, source_offset, length), Ref(target, None, target_offset, length)
    )


def record_segments(entries: list[Any]) -> list[Any]:
    """``entries`` (segments and :data:`TransferRecord` tuples) with every record replaced
    by its segment, in place; returns the same list. Pure otherwise; raises nothing."""
    for i, entry in enumerate(entries):
        if type(entry) is tuple:
            entries[i] = record_segment(entry)
    return entries


def describe_segment(segment: Segment) -> str:
    """One line naming a segment and its ranges: for dumps and error messages."""
    if isinstance(segment, FillSegment):
        return f"fill {segment.target.describe()} pattern={segment.pattern.hex()}"
    if isinstance(segment, UpdateSegment):
        return f"update {segment.target.describe()} <- {len(segment.data)} host bytes"
    if isinstance(segment, CopySegment):
        return f"copy {segment.source.describe()} -> {segment.target.describe()}"
    if isinstance(segment, DispatchSegment):
        size = (
            segment.workgroups
            if segment.indirect is None
            else (f"indirect {segment.indirect.describe()}")
        )
        binds = ", ".join(r.describe() for r in segment.bindings if r is not None)
        return (
            f"dispatch {segment.executable.label}:{segment.entry_point} {size} "
            f"[{binds}] constants={len(segment.constants)}B"
        )
    if isinstance(segment, BarrierSegment):
        return "execution_barrier"
    if isinstance(segment, WaitEventsSegment):
        return f"wait_events ({len(segment.events)})"
    if isinstance(segment, SignalEventSegment):
        return "signal_event"
    if isinstance(segment, ResetEventSegment):
        return "reset_event"
    if isinstance(segment, CollectiveSegment):
        return segment.describe()
    return f"advise {segment.target.describe()}"
