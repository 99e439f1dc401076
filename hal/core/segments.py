"""Recorded commands as plain data. Recording appends these; the lowering reads them.

A :class:`Ref` names a byte range either of an allocation (``buffer`` is the root buffer and
``offset`` is absolute in it) or of a binding-table slot (resolved at submission).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.runtime.buffer import Buffer
    from hal.runtime.event import Event
    from hal.runtime.executable import EntryPointLayout, Executable

__all__ = [
    "AdviseSegment",
    "BarrierSegment",
    "CopySegment",
    "DispatchSegment",
    "FillSegment",
    "Ref",
    "ResetEventSegment",
    "Segment",
    "SignalEventSegment",
    "UpdateSegment",
    "WaitEventsSegment",
]


@dataclass(frozen=True, slots=True)
class Ref:
    """A byte range: of the allocation ``buffer`` (absolute offset) or of table slot ``slot``
    (offset relative to the table entry; ``length`` None = to the entry's end)."""

    buffer: Buffer | None
    slot: int | None
    offset: int
    length: int | None

    def describe(self) -> str:
        """``buf#1a2b[0:64]`` or ``slot3[16:+end]``: for dumps."""
        end = "end" if self.length is None else str(self.offset + self.length)
        if self.buffer is not None:
            return f"buf#{id(self.buffer) & 0xFFFF:04x}[{self.offset}:{end}]"
        return f"slot{self.slot}[{self.offset}:{end}]"

    def at(self, buffer: Buffer, offset: int, length: int) -> Ref:
        """This range resolved onto an allocation."""
        return replace(self, buffer=buffer, slot=None, offset=offset, length=length)


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
)
