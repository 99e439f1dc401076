"""Plans of transfer-only programs, made in one pass (the eager fills and copies of issue 10).

A one-shot command buffer of small fills or copies lowers to one builtin dispatch or native
transfer each, which batching (:mod:`hal.core.batching`) then takes apart again to fold runs
of them into table dispatches: every transfer costs a Region, a Dispatch and a lowering item
that mostly do not survive. :func:`direct_plan` makes the same plan — equal, field by field,
to ``batch_transfers(lower(segments, caps), caps)`` — straight from the segments, building
step objects only for the transfers that stay on their own.

It covers programs of fills, copies and execution barriers whose transfers are all builtin
(small, single-piece) or all native, on caps with immediates; anything else (dispatches,
updates, events, large or same-allocation transfers, builtin parameters staged in CONSTANTS,
a mix of builtin and native transfers, a reference not resolved to an allocation) it
declines by returning None, for the general path to lower.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from hal.core.batching import (
    BATCH_MAX_BYTES,
    BATCH_MIN_NATIVE,
    BATCH_MIN_RUN,
    _join_passes,
    _runs,
    _stats,
    _table_dispatch,
    _Transfer,
)
from hal.core.builtins import BuiltinKernel
from hal.core.caps import DeviceCaps
from hal.core.lowering import _VECTOR_MIN, LoweringOptions, _fill_note, _PlanBuilder, log_plan
from hal.core.plan import ComputePass, Dispatch, Plan, PlanStats, Step
from hal.core.segments import BarrierSegment, CopySegment, FillSegment, Segment

_log = logging.getLogger("hal")

__all__ = ["direct_plan"]


class _Entry(NamedTuple):
    """One transfer as the lowering would make it: native or builtin, its batching form
    (None where batching leaves it alone), its decision note and its segment."""

    native: bool
    transfer: _Transfer | None
    note: str
    segment: FillSegment | CopySegment


_NOTES: dict[tuple[str, int, str], str] = {}
"""Decision notes by (what, size, verdict): formatted once (cleared when large)."""


def _note(what: str, size: int, why: str) -> str:
    key = (what, size, why)
    note = _NOTES.get(key)
    if note is None:
        if len(_NOTES) >= 4096:
            _NOTES.clear()
        note = _NOTES[key] = f"{what} {size} B: {why}"
    return note


def _fill(builder: _PlanBuilder, segment: FillSegment) -> _Entry | None:
    """What :meth:`_PlanBuilder.fill` makes of ``segment``; None outside the covered cases."""
    ref = segment.target
    buffer, offset, size = ref.buffer, ref.offset, ref.length
    if buffer is None or not size:  # unresolved (the general path raises) or empty
        return None
    pattern = segment.pattern
    end = offset + size
    if not any(pattern) and offset % 4 == 0 and size % 4 == 0:
        native, why = builder.prefer_native(size, copy=False)
        note = _note("fill", size, why)
        if native:
            small = size <= BATCH_MAX_BYTES
            return _Entry(True, _Transfer(buffer, offset, end, 0) if small else None, note, segment)
    else:
        note = _fill_note(size)
    if size >= _VECTOR_MIN or size > builder.chunk:  # block kernels or several pieces
        return None
    shift = -offset % len(pattern)
    word = int.from_bytes((pattern * 4)[shift : shift + 4], "little")
    return _Entry(False, _Transfer(buffer, offset, end, word), note, segment)


def _copy(builder: _PlanBuilder, segment: CopySegment) -> _Entry | None:
    """What :meth:`_PlanBuilder.copy_segment` makes of ``segment``; None outside the covered
    cases."""
    source, target = segment.source, segment.target
    size = target.length
    if source.buffer is None or target.buffer is None or source.length is None or not size:
        return None
    if source.buffer is target.buffer:  # kernels, maybe over one window
        return None
    transfer = _Transfer(
        target.buffer, target.offset, target.offset + size, 0, source.buffer, source.offset
    )
    if source.offset % 4 == 0 and target.offset % 4 == 0 and size % 4 == 0:
        native, why = builder.prefer_native(size, copy=True)
        note = _note("copy", size, why)
        if native:
            return _Entry(True, transfer if size <= BATCH_MAX_BYTES else None, note, segment)
    else:
        note = f"copy {size} B: kernel (unaligned)"
    if size >= _VECTOR_MIN or size > builder.chunk:
        return None
    return _Entry(False, transfer, note, segment)


def _step(builder: _PlanBuilder, entry: _Entry) -> Dispatch | Step:
    """The dispatch or native transfer the lowering makes of ``entry``'s segment."""
    builder.items.clear()
    segment = entry.segment
    if type(segment) is FillSegment:
        builder.fill(segment)
    else:
        builder.copy_segment(segment)  # type: ignore[arg-type]
    (item,) = builder.items
    return item.op


def direct_plan(segments: Sequence[Segment], caps: DeviceCaps) -> Plan | None:
    """The plan ``batch_transfers(lower(segments, caps), caps)`` returns, made directly for
    a transfer-only program (see the module docstring); None for any other program. Pure;
    raises nothing of its own."""
    if not caps.immediates:
        return None
    builder = _PlanBuilder(caps, LoweringOptions())
    entries: list[_Entry] = []
    notes: list[str] = []
    seen: dict[tuple[int, str], str] = {}
    region = 0
    for segment in segments:
        kind = type(segment)
        if kind is FillSegment:
            entry = _fill(builder, segment)  # type: ignore[arg-type]
        elif kind is CopySegment:
            entry = _copy(builder, segment)  # type: ignore[arg-type]
        elif kind is BarrierSegment:
            region += 1
            continue
        else:
            return None
        if entry is None:
            return None
        entries.append(entry)
        key = (region, entry.note)
        note = seen.get(key)
        if note is None:  # programs repeat their notes: each is formatted once
            note = seen[key] = f"region {region}: {entry.note}"
        notes.append(note)
    if not entries:
        return None
    native = entries[0].native
    if any(e.native is not native for e in entries):  # the lowering would reorder them
        return None
    resources: set[object] = set()
    for e in entries:
        s = e.segment
        if type(s) is FillSegment:
            resources.add(s.target.buffer)
        else:
            resources.add(s.source.buffer)  # type: ignore[union-attr]
            resources.add(s.target.buffer)
    plan = _finish(builder, entries, native, len(segments), region + 1, resources, notes)
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(len(segments), plan, caps)
    return plan


def _finish(
    builder: _PlanBuilder,
    entries: list[_Entry],
    native: bool,
    segment_count: int,
    regions: int,
    resources: set[object],
    notes: list[str],
) -> Plan:
    """The plan of classified ``entries``: lowered (all in one pass, or each native on its
    own), then batched as :func:`hal.core.batching.batch_transfers` would."""
    n = len(entries)
    clears = sum(type(e.segment) is FillSegment for e in entries) if native else 0
    stats = PlanStats(
        segments=segment_count,
        compute_passes=0 if native else 1,
        dispatches=0 if native else n,
        builtin_dispatches=0 if native else n,
        native_copies=n - clears if native else 0,
        native_clears=clears,
        staged_bytes=0,
        shadowed_bindings=0,
        scratch_bytes=0,
        pass_switches=0,
        regions=regions,
    )
    frozen = frozenset(resources)
    caps = builder.caps
    table = bytearray()
    steps: list[Step] = []
    if native:
        if n >= BATCH_MIN_NATIVE:
            for run, group in _runs(((e.transfer, e) for e in entries), caps):
                if run is not None and len(group) >= BATCH_MIN_NATIVE:
                    steps.append(ComputePass((_table_dispatch(run, table),)))
                else:
                    steps.extend(_step(builder, e) for e in group)  # type: ignore[misc]
            steps = _join_passes(steps)
    elif n >= BATCH_MIN_RUN:
        dispatches: list[Dispatch] = []
        for run, group in _runs(((e.transfer, e) for e in entries), caps):
            if run is not None and len(group) >= BATCH_MIN_RUN:
                dispatches.append(_table_dispatch(run, table))
            else:
                dispatches.extend(_step(builder, e) for e in group)  # type: ignore[misc]
        steps = [ComputePass(tuple(dispatches))]
    if not table:  # nothing batched: the lowering's own plan
        ops = [_step(builder, e) for e in entries]
        lowered = tuple(ops) if native else (ComputePass(tuple(ops)),)  # type: ignore[arg-type]
        return Plan(lowered, b"", b"", 0, 0, frozen, stats, tuple(notes))  # type: ignore[arg-type]
    tables = [
        d
        for s in steps
        if isinstance(s, ComputePass)
        for d in s.dispatches
        if d.kernel is BuiltinKernel.FILL_TABLE or d.kernel is BuiltinKernel.COPY_TABLE
    ]
    count = sum(d.bindings[-1][2].size // 16 for d in tables)
    notes.append(f"batched: {count} small transfers into {len(tables)} table dispatch(es)")
    return Plan(tuple(steps), b"", bytes(table), 0, 0, frozen, _stats(stats, steps), tuple(notes))
