"""Per-slot requirements (hal.core.slots) and the shared range checks, on stand-in buffers:
no device, no wgpu."""

from __future__ import annotations

from typing import Any

import pytest

from hal.core.caps import DeviceCaps
from hal.core.checks import check_range, make_ref, resolve_direct
from hal.core.layout import BindingLayout, EntryPointLayout
from hal.core.refs import BufferLike, BufferRef, Ref, SlotRef
from hal.core.segments import (
    AdviseSegment,
    BarrierSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    UpdateSegment,
)
from hal.core.slots import BindingRule, IndirectRule, PatternRule, SlotRequirements
from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    OutOfRangeError,
    PermissionDeniedError,
)

U = BufferUsage
ALL_USAGE = U.TRANSFER | U.DISPATCH_STORAGE | U.DISPATCH_UNIFORM_READ | U.DISPATCH_INDIRECT_PARAMS
RW = int(MemoryAccess.READ | MemoryAccess.WRITE)
TT, TS = int(U.TRANSFER_TARGET), int(U.TRANSFER_SOURCE)
READ, WRITE = int(MemoryAccess.READ), int(MemoryAccess.WRITE)
VISIBLE = int(MemoryType.DEVICE_VISIBLE)
DEVICE = object()
WHAT = "queue_execute"


class Stand(BufferLike):
    """A stand-in buffer: a root allocation, or a subspan of ``root``."""

    def __init__(
        self,
        size: int,
        usage: Any = ALL_USAGE,
        access: Any = MemoryAccess.ALL,
        root: Stand | None = None,
        offset: int = 0,
        device: Any = DEVICE,
    ) -> None:
        self.allocated_buffer = root if root is not None else self
        self.byte_offset = offset
        self.byte_length = size
        self.memory_type = MemoryType.DEVICE_LOCAL
        self.allowed_usage = BufferUsage(usage)
        self.allowed_access = MemoryAccess(access)
        self.device = device
        self.released = False

    @property
    def is_released(self) -> bool:
        return self.released

    def check_alive(self, what: str, argument: str) -> None:
        if self.released:
            raise FailedPreconditionError(f"{what}: {argument} was released")

    def __repr__(self) -> str:
        return f"<Stand {self.byte_length}>"


def fill_requirements(
    offset: int, length: int | None, pattern: int = 4
) -> tuple[SlotRequirements, FillSegment]:
    slots = SlotRequirements()
    ref = Ref(None, 0, offset, length)
    requirement = slots.require(ref, "fill_buffer target", TT, WRITE, VISIBLE)
    if length is None:
        requirement.add_rule(
            ("p", offset), PatternRule, "fill_buffer target", offset, None, pattern
        )
    return slots, FillSegment(ref, b"\0" * pattern)


# -- check_range / make_ref ---------------------------------------------------------------------


def test_check_range_returns_the_length_and_has_one_message_format() -> None:
    assert check_range("w", "a", 4, None, 16) == 12
    assert check_range("w", "a", 4, 8, 16) == 8
    assert check_range("w", "a", 16, None, 16) == 0
    with pytest.raises(OutOfRangeError, match=r"^w: a offset 17 is past the end of its 16-byte"):
        check_range("w", "a", 17, None, 16)
    with pytest.raises(OutOfRangeError, match=r"^w: a range \[8, 20\) is past the end of its 16"):
        check_range("w", "a", 8, 12, 16)
    with pytest.raises(OutOfRangeError, match=r"^subspan: offset 5 is past .* 4-byte buffer$"):
        check_range("subspan", "", 5, None, 4, "buffer")
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidArgumentError, match="not a non-negative integer"):
            check_range("w", "a", bad, None, 16)


def test_a_buffer_ref_offset_past_its_buffer_names_the_real_size() -> None:
    """Was: "offset 0 is past the end of its -36-byte range"."""
    buffer = Stand(64)
    with pytest.raises(OutOfRangeError) as info:
        make_ref("fill_buffer", "target", BufferRef(buffer, 100), 0, None, 0)
    assert str(info.value) == (
        "fill_buffer: target offset 100 is past the end of its 64-byte buffer"
    )
    with pytest.raises(OutOfRangeError, match=r"target range \[32, 96\) .* 64-byte buffer"):
        make_ref("fill_buffer", "target", BufferRef(buffer, 32, 64), 0, 4, 0)


def test_make_ref_resolves_subspans_buffer_refs_and_slots() -> None:
    root = Stand(256)
    sub = Stand(64, root=root, offset=100)
    assert make_ref("w", "a", sub, 8, None, 0) == Ref(root, None, 108, 56)
    assert make_ref("w", "a", BufferRef(sub, 16, 32), 4, 8, 0) == Ref(root, None, 120, 8)
    assert make_ref("w", "a", SlotRef(1, 12), 4, None, 2) == Ref(None, 1, 16, None)
    assert make_ref("w", "a", SlotRef(1, 12, 20), 4, None, 2) == Ref(None, 1, 16, 16)
    with pytest.raises(OutOfRangeError, match="slot range"):
        make_ref("w", "a", SlotRef(1, 12, 20), 4, 20, 2)
    with pytest.raises(OutOfRangeError, match="binding_capacity 2"):
        make_ref("w", "a", SlotRef(2), 0, None, 2)
    with pytest.raises(InvalidArgumentError, match="another device"):
        make_ref("w", "a", Stand(8, device=object()), 0, None, 0, DEVICE)
    with pytest.raises(InvalidArgumentError, match="must be a Buffer, BufferRef or SlotRef"):
        make_ref("w", "a", b"bytes", 0, None, 0)
    with pytest.raises(InvalidArgumentError, match="must be a Buffer or BufferRef, not SlotRef"):
        resolve_direct(SlotRef(0), "w", "a")


# -- requirements and table checks -----------------------------------------------------------


def test_range_requirement_is_the_largest_end() -> None:
    slots = SlotRequirements()
    slots.require(Ref(None, 0, 16, 24), "fill_buffer target", TT, WRITE, VISIBLE)
    slots.require(Ref(None, 0, 0, 8), "update_buffer target", TT, WRITE, VISIBLE)
    slots.require(Ref(None, 0, 30, None), "copy_buffer source", TS, READ, VISIBLE)
    assert slots.count == 1 and slots.slots[0].end == 40
    with pytest.raises(OutOfRangeError) as info:
        slots.check_table(WHAT, [Stand(32)], DEVICE)
    assert str(info.value) == (
        "queue_execute: fill_buffer target (slot 0) range [16, 40) is past the end of its "
        "32-byte table entry"
    )
    assert len(slots.check_table(WHAT, [Stand(40)], DEVICE)) == 1


def test_a_to_the_end_range_needs_its_offset() -> None:
    slots = SlotRequirements()
    slots.require(Ref(None, 1, 48, None), "copy_buffer target", TT, WRITE, VISIBLE)
    assert slots.count == 2
    with pytest.raises(OutOfRangeError, match=r"target \(slot 1\) offset 48 is past the end"):
        slots.check_table(WHAT, [Stand(4), Stand(32)], DEVICE)
    slots.check_table(WHAT, [Stand(4), Stand(48)], DEVICE)


def test_bad_tables() -> None:
    slots = SlotRequirements()
    slots.require(Ref(None, 1, 0, 4), "fill_buffer target", TT, WRITE, VISIBLE)
    with pytest.raises(OutOfRangeError, match="binding table has 1 entries"):
        slots.check_table(WHAT, [Stand(8)], DEVICE)
    with pytest.raises(OutOfRangeError):
        slots.check_table(WHAT, None, DEVICE)
    with pytest.raises(InvalidArgumentError, match=r"binding_table\[0\] must be a Buffer"):
        slots.check_table(WHAT, [None, Stand(8)], DEVICE)
    with pytest.raises(InvalidArgumentError, match=r"binding_table\[1\] .* another device"):
        slots.check_table(WHAT, [Stand(8), Stand(8, device=object())], DEVICE)
    gone = Stand(8)
    gone.released = True
    with pytest.raises(FailedPreconditionError):
        slots.check_table(WHAT, [Stand(8), gone], DEVICE)
    with pytest.raises(OutOfRangeError, match=r"\[4, 12\) is past the end of its 8-byte buffer"):
        slots.check_table(WHAT, [Stand(8), BufferRef(Stand(8), 4, 8)], DEVICE)


def test_usage_failure_names_the_first_command_needing_the_missing_bits() -> None:
    slots = SlotRequirements()
    slots.require(Ref(None, 0, 0, 8), "fill_buffer target", TT, WRITE, VISIBLE)
    slots.require(Ref(None, 0, 0, 8), "update_buffer target", TT, WRITE, VISIBLE)
    slots.require(Ref(None, 0, 0, 8), "copy_buffer source", TS, READ, VISIBLE)
    assert len(slots.slots[0].uses) == 2  # the update added nothing
    with pytest.raises(PermissionDeniedError, match=r"copy_buffer source \(slot 0\) lacks usage"):
        slots.check_table(WHAT, [Stand(8, usage=U.TRANSFER_TARGET)], DEVICE)
    with pytest.raises(PermissionDeniedError, match=r"fill_buffer target \(slot 0\) lacks access"):
        slots.check_table(WHAT, [Stand(8, access=MemoryAccess.READ)], DEVICE)
    root = Stand(64, access=MemoryAccess.READ)
    with pytest.raises(PermissionDeniedError, match="lacks access"):  # the allocation too
        slots.check_table(WHAT, [Stand(8, root=root, offset=8)], DEVICE)
    slots.check_table(WHAT, [Stand(8)], DEVICE)


def test_length_rules_of_to_the_end_ranges() -> None:
    slots, _ = fill_requirements(0, None, pattern=4)
    with pytest.raises(InvalidArgumentError, match=r"length 18 is not a multiple of pattern_l"):
        slots.check_table(WHAT, [Stand(18)], DEVICE)
    slots.check_table(WHAT, [Stand(20)], DEVICE)

    caps = DeviceCaps(max_binding_size=64)
    binding = BindingLayout(0, "storage", "data", min_size=16)
    slots = SlotRequirements()
    requirement = slots.require(Ref(None, 0, 8, None), "dispatch bindings[0]", 0, 0, 0)
    for _ in range(2):  # deduplicated by key
        requirement.add_rule(("b", 8), BindingRule, "dispatch bindings[0]", 8, binding, "f", caps)
    requirement.add_rule(("i", 8), IndirectRule, "dispatch_indirect workgroups", 8)
    assert len(requirement.rules) == 2
    with pytest.raises(OutOfRangeError, match="'f' declares 'data' as a type of at least 16"):
        slots.check_table(WHAT, [Stand(8 + 12)], DEVICE)
    with pytest.raises(InvalidArgumentError, match="binds at most 64 bytes as storage"):
        slots.check_table(WHAT, [Stand(8 + 68)], DEVICE)
    slots.check_table(WHAT, [Stand(8 + 13)], DEVICE)  # 13 bytes round up to 16

    slots = SlotRequirements()
    requirement = slots.require(Ref(None, 0, 4, None), "dispatch_indirect workgroups", 0, 0, 0)
    requirement.add_rule(("i", 4), IndirectRule, "dispatch_indirect workgroups", 4)
    with pytest.raises(OutOfRangeError, match=r"workgroups \(slot 0\) range is 8 bytes; 12"):
        slots.check_table(WHAT, [Stand(4 + 8)], DEVICE)
    slots.check_table(WHAT, [Stand(4 + 12)], DEVICE)


# -- resolution ---------------------------------------------------------------------------------


def test_resolve_substitutes_entries_and_drops_slot_advice() -> None:
    a, b = Stand(64), Stand(256)
    sub = Stand(32, root=b, offset=128)
    binding = BindingLayout(0, "storage", "data")
    layout = EntryPointLayout("f", (binding,), 1, 0)
    direct = FillSegment(Ref(a, None, 0, 4), b"\1")
    segments = [
        direct,
        FillSegment(Ref(None, 0, 4, None), b"\1"),
        UpdateSegment(b"xy", Ref(None, 1, 2, 2)),
        AdviseSegment(Ref(None, 1, 0, None), 0),
        BarrierSegment(0, 0, 0),
        CopySegment(Ref(None, 0, 8, None), Ref(None, 1, 20, None)),
        DispatchSegment(
            None, "f", layout, None, Ref(None, 0, 0, None), b"", (Ref(None, 1, 0, 16),)
        ),
    ]
    slots = SlotRequirements()
    slots.require(Ref(None, 1, 0, 32), "x", 0, 0, 0)
    entries = slots.check_table(WHAT, [BufferRef(a, 16), sub], DEVICE)
    assert entries == [(a, a, 16, 48), (sub, b, 128, 32)]
    out = slots.resolve(WHAT, segments, entries)
    assert out[0] is direct
    assert out[1] == FillSegment(Ref(a, None, 20, 44), b"\1")
    assert out[2] == UpdateSegment(b"xy", Ref(b, None, 130, 2))
    assert out[3] == segments[4]
    # Both ranges to their entries' end: the copy covers what both have (40 vs 12 bytes).
    assert out[4] == CopySegment(Ref(a, None, 24, 12), Ref(b, None, 148, 12))
    assert isinstance(out[5], DispatchSegment)
    assert out[5].indirect == Ref(a, None, 16, 48)
    assert out[5].bindings == (Ref(b, None, 128, 16),)
    assert len(out) == 6
    assert slots.key(entries) == slots.key(slots.check_table(WHAT, [BufferRef(a, 16), sub], DEVICE))
    assert slots.key(entries) != slots.key(slots.check_table(WHAT, [a, sub], DEVICE))


def test_copies_that_overlap_once_resolved_are_rejected() -> None:
    a = Stand(64)
    copy = CopySegment(Ref(None, 0, 0, 16), Ref(None, 1, 0, 16))
    slots = SlotRequirements()
    entries = slots.check_table(WHAT, [], DEVICE)
    assert entries == []
    entries = [(a, a, 0, 64), (a, a, 8, 56)]
    with pytest.raises(InvalidArgumentError, match="overlap after resolving the binding table"):
        slots.resolve(WHAT, [copy], entries)
    entries = [(a, a, 0, 64), (a, a, 16, 48)]
    assert slots.resolve(WHAT, [copy], entries) == [
        CopySegment(Ref(a, None, 0, 16), Ref(a, None, 16, 16))
    ]
