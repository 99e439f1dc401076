"""Per-slot requirements of a command buffer that uses binding-table slots (as IREE's HAL).

While recording, every command that names a :class:`~hal.core.refs.SlotRef` merges what it
needs into that slot's :class:`SlotRequirement`: usage/access/memory-type bits, the smallest
entry length its range fits in, and, for ranges that run "to the end" of the entry, the few
rules that depend on the entry's length (a fill's pattern multiple, a binding's minimum and
maximum size, 12 bytes of indirect parameters). At submission
:meth:`SlotRequirements.check_table` checks each binding-table entry once against its slot's
requirement, and :meth:`SlotRequirements.resolve` substitutes the entries into the segments
without re-validating them command by command.

Pure: buffers are anything :class:`~hal.core.refs.BufferLike`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hal.core.checks import (
    check_binding_length,
    check_buffer_usage,
    check_indirect_length,
    check_multiple,
    check_range,
    resolve_direct,
)
from hal.core.refs import BufferLike, Ref
from hal.core.segments import (
    AdviseSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    Segment,
    UpdateSegment,
)
from hal.errors import InvalidArgumentError, OutOfRangeError

if TYPE_CHECKING:
    from hal.core.caps import DeviceCaps
    from hal.core.layout import BindingLayout

__all__ = [
    "BindingRule",
    "Entry",
    "IndirectRule",
    "LengthRule",
    "PatternRule",
    "SlotRequirement",
    "SlotRequirements",
]

Entry = tuple[BufferLike, BufferLike, int, int]
"""A resolved table entry: (the buffer named, its root allocation, offset in the root,
length)."""


class LengthRule:
    """A rule on the length of a slot range that runs to the end of the table entry, at
    ``offset`` of it; ``argument`` names the command argument for messages."""

    __slots__ = ("argument", "offset")

    def __init__(self, argument: str, offset: int) -> None:
        self.argument = argument
        self.offset = offset

    def check(self, what: str, slot: int, size: int) -> None:
        """Raise the rule's HalError if it fails for a ``size``-byte entry of ``slot``
        (``size`` is at least ``offset``: the entry's range requirement passed)."""
        raise NotImplementedError


class PatternRule(LengthRule):
    """A fill's length must be a multiple of its pattern length (InvalidArgumentError)."""

    __slots__ = ("length", "pattern_length")

    def __init__(self, argument: str, offset: int, length: int | None, pattern_length: int):
        super().__init__(argument, offset)
        self.length = length
        self.pattern_length = pattern_length

    def check(self, what: str, slot: int, size: int) -> None:
        """InvalidArgumentError for a non-empty fill length that is not a multiple."""
        length = size - self.offset if self.length is None else self.length
        if length:
            check_multiple(
                what, f"{self.argument} (slot {slot}) length", length, self.pattern_length
            )


class BindingRule(LengthRule):
    """A dispatch binding's length must fit the adapter's limit and the kernel's declared
    type (:func:`hal.core.checks.check_binding_length`)."""

    __slots__ = ("binding", "caps", "entry_point")

    def __init__(
        self,
        argument: str,
        offset: int,
        binding: BindingLayout,
        entry_point: str,
        caps: DeviceCaps,
    ) -> None:
        super().__init__(argument, offset)
        self.binding = binding
        self.entry_point = entry_point
        self.caps = caps

    def check(self, what: str, slot: int, size: int) -> None:
        """InvalidArgumentError past the adapter's limit, OutOfRangeError below the
        kernel's minimum binding size."""
        check_binding_length(
            what,
            f"{self.argument} (slot {slot})",
            self.binding,
            self.entry_point,
            size - self.offset,
            self.caps,
        )


class IndirectRule(LengthRule):
    """Indirect workgroup counts need 12 bytes (OutOfRangeError)."""

    __slots__ = ()

    def check(self, what: str, slot: int, size: int) -> None:
        """OutOfRangeError for fewer than 12 bytes."""
        check_indirect_length(what, f"{self.argument} (slot {slot})", size - self.offset)


class SlotRequirement:
    """What the recorded commands need of one slot's table entry.

    ``usage``/``access``/``memory_type`` are the union of the bits the commands need (plain
    ints); ``uses`` lists, in recording order, each (argument, usage, access, memory type)
    that added bits, so a failure names the first command that needs what is missing.
    ``end`` is the smallest entry length every recorded range fits in, and ``end_use`` the
    (argument, offset, length) of the range that set it. ``rules`` holds the length rules of
    ranges that run to the entry's end, by a key that removes duplicates.
    """

    __slots__ = ("access", "end", "end_use", "memory_type", "rules", "usage", "uses")

    def __init__(self) -> None:
        self.usage = 0
        self.access = 0
        self.memory_type = 0
        self.uses: list[tuple[str, int, int, int]] = []
        self.end = 0
        self.end_use: tuple[str, int, int | None] | None = None
        self.rules: dict[Hashable, LengthRule] = {}

    def add_rule(self, key: Hashable, rule_type: type[LengthRule], *args: Any) -> None:
        """Add the rule ``rule_type(*args)`` unless one with ``key`` is there (built only
        then: recording is a hot path)."""
        if key not in self.rules:
            self.rules[key] = rule_type(*args)

    def check(self, what: str, slot: int, entry: Entry) -> None:
        """Check a resolved table entry once against everything the commands need.

        Raises OutOfRangeError (a range past the entry's end, or a length rule),
        PermissionDeniedError (usage, access or memory type missing on the entry or its
        allocation) or InvalidArgumentError (a length rule)."""
        holder, root, _, size = entry
        if size < self.end and self.end_use is not None:
            argument, offset, length = self.end_use
            check_range(what, f"{argument} (slot {slot})", offset, length, size, "table entry")
        for buffer in (holder,) if holder is root else (holder, root):
            # A subspan carries its own permissions; one test of the union, then (only on
            # failure) the uses in order, for the message.
            if (
                self.usage & ~int(buffer.allowed_usage)
                or self.access & ~int(buffer.allowed_access)
                or self.memory_type & ~int(buffer.memory_type)
            ):
                for argument, usage, access, memory_type in self.uses:
                    check_buffer_usage(
                        what, f"{argument} (slot {slot})", buffer, usage, access, memory_type
                    )
        for rule in self.rules.values():
            rule.check(what, slot, size)


class SlotRequirements:
    """The requirements of every slot a command buffer's commands name.

    ``count`` is one past the highest slot named (a table must have that many entries);
    ``slots`` maps each slot with requirements to its :class:`SlotRequirement`.
    """

    __slots__ = ("count", "slots")

    def __init__(self) -> None:
        self.count = 0
        self.slots: dict[int, SlotRequirement] = {}

    def name(self, slot: int) -> None:
        """Note that a command names ``slot`` without needing anything of it (a hint)."""
        if slot >= self.count:
            self.count = slot + 1

    def require(
        self, ref: Ref, argument: str, usage: int, access: int, memory_type: int
    ) -> SlotRequirement:
        """Merge what one recorded slot range ``ref`` needs into its slot's requirement and
        return that (for length rules). Call only once the command is recorded: a rejected
        command must leave no requirement behind."""
        slot = ref.slot
        assert slot is not None
        requirement = self.slots.get(slot)
        if requirement is None:
            requirement = self.slots[slot] = SlotRequirement()
            self.name(slot)
        if (
            usage & ~requirement.usage
            or access & ~requirement.access
            or memory_type & ~requirement.memory_type
        ):
            requirement.usage |= usage
            requirement.access |= access
            requirement.memory_type |= memory_type
            requirement.uses.append((argument, usage, access, memory_type))
        length = ref.length
        end = ref.offset if length is None else ref.offset + length
        if end > requirement.end or requirement.end_use is None:
            requirement.end = end
            requirement.end_use = (argument, ref.offset, length)
        return requirement

    def check_table(self, what: str, table: Sequence[Any] | None, device: Any) -> list[Entry]:
        """Resolve the first ``count`` entries of ``table`` and check each once against its
        slot's requirement.

        Raises OutOfRangeError (too few entries, or a range past an entry),
        InvalidArgumentError (an entry that is not a Buffer or BufferRef, of another device,
        or failing a length rule), FailedPreconditionError (a released buffer) and
        PermissionDeniedError (missing usage, access or memory type)."""
        entries = list(table) if table is not None else []
        if len(entries) < self.count:
            raise OutOfRangeError(
                f"{what}: binding table has {len(entries)} entries; the command buffer uses "
                f"slots up to {self.count - 1}"
            )
        resolved: list[Entry] = []
        for i in range(self.count):
            buffer, base, size = resolve_direct(entries[i], what, f"binding_table[{i}]", device)
            resolved.append((buffer, buffer.allocated_buffer, base, size))
        for slot, requirement in sorted(self.slots.items()):
            requirement.check(what, slot, resolved[slot])
        return resolved

    @staticmethod
    def key(entries: Sequence[Entry]) -> tuple[tuple[int, int, int], ...]:
        """What identifies a resolution: equal keys give equal resolved segments (the roots
        are kept alive by the plans cached under their keys, so ids are not reused)."""
        return tuple([(id(root), base, size) for _, root, base, size in entries])

    @staticmethod
    def resolve(what: str, segments: Sequence[Segment], entries: Sequence[Entry]) -> list[Segment]:
        """``segments`` with every slot range substituted by its (checked) table entry;
        advise segments on slots are dropped (they lower to nothing).

        Raises InvalidArgumentError where a copy's source and target overlap once
        resolved (the only rule that depends on two entries)."""
        out: list[Segment] = []
        for segment in segments:
            substitute = _SUBSTITUTE.get(type(segment))
            if substitute is None:
                out.append(segment)
                continue
            resolved = substitute(what, segment, entries)
            if resolved is not None:
                out.append(resolved)
        return out


def _at(ref: Ref, entries: Sequence[Entry]) -> Ref:
    """``ref`` on its table entry (unchanged when it names an allocation)."""
    if ref.slot is None:
        return ref
    _, root, base, size = entries[ref.slot]
    length = size - ref.offset if ref.length is None else ref.length
    return Ref(root, None, base + ref.offset, length)


def _fill_or_update(what: str, segment: Any, entries: Sequence[Entry]) -> Segment:
    if segment.target.slot is None:
        return segment
    return replace(segment, target=_at(segment.target, entries))


def _advise(what: str, segment: Any, entries: Sequence[Entry]) -> Segment | None:
    return None if segment.target.slot is not None else segment


def _copy(what: str, segment: Any, entries: Sequence[Entry]) -> Segment:
    source, target = segment.source, segment.target
    if source.slot is None and target.slot is None:
        return segment
    src, dst = _at(source, entries), _at(target, entries)
    if source.length is None or target.length is None:
        # Recording leaves both lengths open only when both ranges run to their entries'
        # ends: the copy covers what both have.
        length = min(src.length or 0, dst.length or 0)
        src, dst = replace(src, length=length), replace(dst, length=length)
    assert src.length is not None and dst.length is not None
    if (
        src.buffer is dst.buffer
        and src.length
        and src.offset < dst.offset + dst.length
        and dst.offset < src.offset + src.length
    ):
        raise InvalidArgumentError(
            f"{what}: copy_buffer source and target ranges overlap after resolving the "
            "binding table"
        )
    return replace(segment, source=src, target=dst)


def _dispatch(what: str, segment: Any, entries: Sequence[Entry]) -> Segment:
    indirect = segment.indirect
    if indirect is not None and indirect.slot is not None:
        indirect = _at(indirect, entries)
    bindings = tuple(
        ref if ref is None or ref.slot is None else _at(ref, entries) for ref in segment.bindings
    )
    return replace(segment, bindings=bindings, indirect=indirect)


# By exact type, not an isinstance chain: segment classes are final.
_SUBSTITUTE: dict[type, Callable[[str, Any, Sequence[Entry]], Segment | None]] = {
    FillSegment: _fill_or_update,
    UpdateSegment: _fill_or_update,
    AdviseSegment: _advise,
    CopySegment: _copy,
    DispatchSegment: _dispatch,
}
