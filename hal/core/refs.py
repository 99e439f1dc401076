"""Buffer references as plain data: what commands name, and what recording resolves them to.

:class:`BufferLike` is the nominal base of the device's buffers: core code (checks,
lowering, the reference interpreter, slot requirements) tests ``isinstance(x, BufferLike)``
and reads its attributes, so it runs on stand-in buffers and never imports the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.enums import BufferUsage, MemoryAccess, MemoryType

__all__ = [
    "WHOLE_BUFFER",
    "BufferHandle",
    "BufferLike",
    "BufferRef",
    "BufferTarget",
    "Ref",
    "SlotRef",
]

WHOLE_BUFFER = None
"""``length=WHOLE_BUFFER`` (``None``) means "to the end of the buffer or range"."""


class BufferLike:
    """What core code needs of a buffer (``hal.Buffer`` subclasses it; tests use stand-ins).

    Attributes (set by the subclass): ``allocated_buffer`` (the root allocation, itself for a
    root), ``byte_offset`` (within the allocation), ``byte_length``, ``memory_type``,
    ``allowed_usage``, ``allowed_access`` (enum flags; compared as plain ints), ``device``
    (whatever owns it; compared by identity).
    """

    __slots__ = ()

    allocated_buffer: BufferLike
    byte_offset: int
    byte_length: int
    memory_type: MemoryType
    allowed_usage: BufferUsage
    allowed_access: MemoryAccess
    device: Any

    @property
    def is_released(self) -> bool:
        """True once the buffer (or the allocation it is part of) was released."""
        return False

    def check_alive(self, what: str, argument: str) -> None:
        """Raise FailedPreconditionError if the buffer was released (here: never)."""


BufferHandle = Any
"""A buffer core hands back (in a :class:`Ref`, a plan, a resolved reference): one of the
:class:`BufferLike` objects it was given, the runtime's ``Buffer`` at run time. Typed ``Any``
so the runtime reads back its own type without core importing it."""


@dataclass(frozen=True, slots=True)
class BufferRef:
    """A range ``[offset, offset+length)`` of ``buffer`` (``length=None``: to the end).

    ``buffer`` is a :class:`BufferLike` (checked where the reference is used)."""

    buffer: BufferHandle
    offset: int = 0
    length: int | None = None


@dataclass(frozen=True, slots=True)
class SlotRef:
    """A range of binding-table slot ``slot``; ``offset`` is added to the table entry's."""

    slot: int
    offset: int = 0
    length: int | None = None


BufferTarget = BufferLike | BufferRef | SlotRef
"""What a command's buffer argument may be."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A resolved byte range: of the allocation ``buffer`` (absolute offset) or of table slot
    ``slot`` (offset relative to the table entry; ``length`` None = to the entry's end)."""

    buffer: BufferHandle | None
    slot: int | None
    offset: int
    length: int | None

    def describe(self) -> str:
        """``buf#1a2b[0:64]`` or ``slot3[16:+end]``: for dumps."""
        end = "end" if self.length is None else str(self.offset + self.length)
        if self.buffer is not None:
            return f"buf#{id(self.buffer) & 0xFFFF:04x}[{self.offset}:{end}]"
        return f"slot{self.slot}[{self.offset}:{end}]"

    def at(self, buffer: BufferHandle, offset: int, length: int) -> Ref:
        """This range resolved onto an allocation."""
        return replace(self, buffer=buffer, slot=None, offset=offset, length=length)
