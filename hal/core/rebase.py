"""Rebasing a plan onto other buffers: binding-table replay without lowering again.

A command buffer with binding-table slots is lowered for the buffers of one table. Another
table whose entries have the same *shape* gets the same plan with each slot's allocation
swapped and its offsets shifted (IREE's WebGPU driver splits slots the same way: what the
lowering decided is static, which buffer it runs on is per submission). The shape is what
the lowering's decisions depend on:

- each entry's offset modulo the binding alignments (binding windows, shadowing, 16-byte
  block kernels and native-transfer alignment are then identical, shifted);
- each entry's size (ranges "to the end", window sizes, the cost model's sizes);
- whether each entry's allocation is padded to whole 16-byte blocks (the unaligned copy's
  16-byte windows);
- which entries share an allocation — rebasing requires every slot on an allocation of its
  own that the command buffer does not also name directly, so conflicts and "same buffer"
  rules (native copies, read-write aliasing) are the same for both tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hal.core.builtins import pads_to_blocks
from hal.core.caps import DeviceCaps
from hal.core.plan import ClearBuffer, ComputePass, CopyBuffer, Dispatch, Plan, Region, Step
from hal.core.refs import Ref

__all__ = [
    "Rebase",
    "direct_allocations",
    "rebase_for",
    "rebase_onto",
    "rebase_plan",
    "rebase_region",
    "table_shape",
]

Rebase = dict[int, tuple[Any, int]]
"""id of an allocation the plan names -> (the allocation to use instead, offset shift)."""

Entry = tuple[Any, Any, int, int]
"""A resolved binding-table entry: (buffer, its allocation, offset in it, size)."""


def table_shape(
    entries: Sequence[Entry], caps: DeviceCaps, direct: frozenset[int]
) -> tuple[tuple[int, int, bool], ...] | None:
    """The shape of a resolved table (see the module docstring), or None when the table
    cannot share a plan: two slots on one allocation, or a slot on an allocation whose id is
    in ``direct`` (named by the command buffer itself)."""
    modulus = max(caps.storage_alignment, caps.uniform_alignment, 16)
    roots = [id(root) for _, root, _, _ in entries]
    if (len(roots) > 1 and len(set(roots)) != len(roots)) or not direct.isdisjoint(roots):
        return None
    # Whether each allocation is padded to whole 16-byte blocks: the unaligned copy's
    # 16-byte windows (lowering.copy16) are valid on another allocation only if it is too.
    # (A list, not a generator: this runs once per new table.)
    limit = caps.max_buffer_size
    return tuple(
        [
            (base % modulus, size, pads_to_blocks(root.byte_length, limit))
            for _, root, base, size in entries
        ]
    )


def rebase_for(old: Sequence[Entry], new: Sequence[Entry]) -> Rebase:
    """The rebase taking a plan lowered for table ``old`` to table ``new`` (same shape)."""
    return {
        id(old_root): (new_root, new_base - old_base)
        for (_, old_root, old_base, _), (_, new_root, new_base, _) in zip(old, new, strict=True)
    }


def rebase_onto(
    old: Sequence[Entry],
    shape: tuple[tuple[int, int, bool], ...],
    new: Sequence[Entry],
    caps: DeviceCaps,
    direct: frozenset[int],
) -> Rebase | None:
    """``rebase_for(old, new)`` when ``new`` has ``shape``, the shape of table ``old``
    (``table_shape(new, caps, direct) == shape``), else None: one pass over the entries and
    no shape built (a command buffer's usual new table has the shape of its latest one).
    Pure; raises nothing (the entries passed the table's checks)."""
    modulus = max(caps.storage_alignment, caps.uniform_alignment, 16)
    limit = caps.max_buffer_size
    if len(new) == 1:  # one slot (the usual table): no loop, no duplicates to look for
        ((_, old_root, old_base, _),) = old
        ((remainder, length, pads),) = shape
        _, root, base, size = new[0]
        if (
            size != length
            or base % modulus != remainder
            or pads_to_blocks(root.byte_length, limit) != pads
            or (direct and id(root) in direct)
        ):
            return None
        return {id(old_root): (root, base - old_base)}
    rebase: Rebase = {}
    for (_, old_root, old_base, _), (remainder, length, pads), (_, root, base, size) in zip(
        old, shape, new, strict=True
    ):
        if (
            size != length
            or base % modulus != remainder
            or pads_to_blocks(root.byte_length, limit) != pads
        ):
            return None
        rebase[id(old_root)] = (root, base - old_base)
    if len({id(root) for _, root, _, _ in new}) != len(new):
        return None
    if direct and not direct.isdisjoint([id(root) for _, root, _, _ in new]):
        return None
    return rebase


def rebase_region(region: Region, rebase: Rebase) -> Region:
    """``region`` moved by ``rebase`` (itself when its allocation is not rebased)."""
    moved = rebase.get(id(region.resource))
    if moved is None:
        return region
    return Region(moved[0], region.offset + moved[1], region.size)


def _dispatch(d: Dispatch, rebase: Rebase) -> Dispatch:
    if not any(id(r.resource) in rebase for _, _, r in d.bindings) and (
        d.indirect is None or id(d.indirect.resource) not in rebase
    ):
        return d  # frozen: shared with the template
    bindings = tuple((b, kind, rebase_region(r, rebase)) for b, kind, r in d.bindings)
    indirect = None if d.indirect is None else rebase_region(d.indirect, rebase)
    # The constructor, not dataclasses.replace: this runs per dispatch per new table.
    return Dispatch(
        d.kernel,
        d.entry_point,
        bindings,
        d.constants,
        d.constants_offset,
        d.workgroups,
        indirect,
        d.label,
    )


def _step(step: Step, rebase: Rebase) -> Step:
    if isinstance(step, ComputePass):
        return ComputePass(tuple(_dispatch(d, rebase) for d in step.dispatches))
    if isinstance(step, CopyBuffer):
        return CopyBuffer(rebase_region(step.source, rebase), rebase_region(step.target, rebase))
    assert isinstance(step, ClearBuffer)
    return ClearBuffer(rebase_region(step.target, rebase))


def rebase_plan(plan: Plan, rebase: Rebase) -> Plan:
    """``plan`` with every region on a rebased allocation moved (pure; O(plan size))."""
    resources = frozenset(rebase[id(r)][0] if id(r) in rebase else r for r in plan.resources)
    return dataclasses.replace(
        plan, steps=tuple(_step(s, rebase) for s in plan.steps), resources=resources
    )


def direct_allocations(segments: Sequence[Any]) -> frozenset[int]:
    """ids of the allocations that ``segments`` name directly (not through a slot)."""
    found: set[int] = set()
    for segment in segments:
        for field in dataclasses.fields(segment):
            value = getattr(segment, field.name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Ref) and item.buffer is not None:
                    found.add(id(item.buffer))
    return frozenset(found)
