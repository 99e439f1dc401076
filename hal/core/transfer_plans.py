"""Plans of transfer-only programs, made in one pass (the eager fills and copies of issue 10).

A one-shot command buffer of small fills or copies lowers to one builtin dispatch or native
transfer each, which batching (:mod:`hal.core.batching`) then takes apart again to fold runs
of them into table dispatches: every transfer costs a Region, a Dispatch and a lowering item
that mostly do not survive. :func:`direct_plan` makes the same plan — equal, field by field,
to ``batch_transfers(lower(segments, caps), caps)`` — straight from the segments, building
step objects only for the transfers that stay on their own.

It covers programs of fills, copies and execution barriers whose transfers are all builtin
(small, single-piece) or all native; anything else (dispatches, updates, events, large or
same-allocation transfers, a builtin left out of every table on caps without immediates,
whose parameters the general path stages in CONSTANTS, a mix of builtin and native
transfers, a reference not resolved to an allocation) it declines by returning None, for the
general path to lower. Without immediates, a program whose builtins all went into tables
has only the tables in CONSTANTS, on both paths (:func:`hal.core.batching.batch_transfers`
drops the parameters the batched dispatches no longer read).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from hal.core.batching import (
    BATCH_MAX_BYTES,
    BATCH_MIN_NATIVE,
    BATCH_MIN_RUN,
    TABLE_ENTRY,
    _join_passes,
    _runs,
    _stats,
    _table_dispatch,
    _table_step,
    _Transfer,
    _window,
    batched_note,
)
from hal.core.caps import DeviceCaps
from hal.core.lowering import (
    _VECTOR_MIN,
    DEFAULT_OPTIONS,
    _fill_note,
    _PlanBuilder,
    log_plan,
)
from hal.core.plan import ComputePass, Dispatch, Plan, PlanStats, Step
from hal.core.segments import (
    BarrierSegment,
    CopySegment,
    FillSegment,
    Segment,
    TransferRecord,
)

_log = logging.getLogger("hal")

_TRANSFER_KINDS = (FillSegment, CopySegment, BarrierSegment)

__all__ = ["direct_plan", "record_plan"]


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


def _fill_verdict(builder: _PlanBuilder, size: int, zero: bool) -> tuple[bool, str] | None:
    """(native, decision note) of a fill of ``size`` bytes (``zero``: a zero pattern on a
    4-aligned range), as :meth:`_PlanBuilder.fill` decides it; None outside the covered
    cases (block kernels or several pieces)."""
    if zero:
        native, why = builder.prefer_native(size, copy=False)
        note = _note("fill", size, why)
        if native:
            return True, note
    else:
        note = _fill_note(size)
    if size >= _VECTOR_MIN or size > builder.chunk:
        return None
    return False, note


def _copy_verdict(builder: _PlanBuilder, size: int, aligned: bool) -> tuple[bool, str] | None:
    """(native, decision note) of a copy of ``size`` bytes between distinct allocations
    (``aligned``: both offsets and the size multiples of 4), as
    :meth:`_PlanBuilder.copy_segment` decides it; None outside the covered cases."""
    if aligned:
        native, why = builder.prefer_native(size, copy=True)
        note = _note("copy", size, why)
        if native:
            return True, note
    else:
        note = f"copy {size} B: kernel (unaligned)"
    if size >= _VECTOR_MIN or size > builder.chunk:
        return None
    return False, note


def _fill(builder: _PlanBuilder, segment: FillSegment) -> _Entry | None:
    """What :meth:`_PlanBuilder.fill` makes of ``segment``; None outside the covered cases."""
    ref = segment.target
    buffer, offset, size = ref.buffer, ref.offset, ref.length
    if buffer is None or not size:  # unresolved (the general path raises) or empty
        return None
    pattern = segment.pattern
    end = offset + size
    verdict = _fill_verdict(builder, size, not any(pattern) and offset % 4 == 0 and size % 4 == 0)
    if verdict is None:
        return None
    native, note = verdict
    if native:
        small = size <= BATCH_MAX_BYTES
        return _Entry(True, _Transfer(buffer, offset, end, 0) if small else None, note, segment)
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
    aligned = source.offset % 4 == 0 and target.offset % 4 == 0 and size % 4 == 0
    verdict = _copy_verdict(builder, size, aligned)
    if verdict is None:
        return None
    native, note = verdict
    return _Entry(native, None if native and size > BATCH_MAX_BYTES else transfer, note, segment)


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
    for segment in segments:  # a plan builder costs more than this scan of a dispatch program
        if type(segment) not in _TRANSFER_KINDS:
            return None
    builder = _PlanBuilder(caps, DEFAULT_OPTIONS)
    entries: list[_Entry] = []
    notes: list[str] = []
    seen: dict[tuple[int, str], str] = {}
    resources: set[object] = set()
    region = natives = clears = 0
    for segment in segments:
        kind = type(segment)
        if kind is FillSegment:
            entry = _fill(builder, segment)  # type: ignore[arg-type]
            resources.add(segment.target.buffer)  # type: ignore[union-attr]
            clears += 1
        elif kind is CopySegment:
            entry = _copy(builder, segment)  # type: ignore[arg-type]
            resources.add(segment.source.buffer)  # type: ignore[union-attr]
            resources.add(segment.target.buffer)  # type: ignore[union-attr]
        elif kind is BarrierSegment:
            region += 1
            continue
        else:
            return None
        if entry is None:
            return None
        entries.append(entry)
        natives += entry.native
        key = (region, entry.note)
        note = seen.get(key)
        if note is None:  # programs repeat their notes: each is formatted once
            note = seen[key] = f"region {region}: {entry.note}"
        notes.append(note)
    if not entries or 0 < natives < len(entries):  # the lowering would reorder a mix
        return None
    native = natives > 0
    clears = clears if native else 0
    plan = _finish(builder, entries, clears, len(segments), region + 1, resources, notes)
    if builder.constants_data:
        # Without immediates, a builtin left out of every table stages its parameters in
        # CONSTANTS (before the tables): the general path places those.
        return None
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(len(segments), plan, caps)
    return plan


def _finish(
    builder: _PlanBuilder,
    entries: list[_Entry],
    clears: int,
    segment_count: int,
    regions: int,
    resources: set[object],
    notes: list[str],
) -> Plan:
    """The plan of classified ``entries`` (``clears`` of them native fills): lowered (all
    in one pass, or each native on its own), then batched as
    :func:`hal.core.batching.batch_transfers` would."""
    n = len(entries)
    native = entries[0].native
    stats = _base_stats(native, n, clears, segment_count, regions)
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
    notes.append(batched_note(steps))
    return Plan(tuple(steps), b"", bytes(table), 0, 0, frozen, _stats(stats, steps), tuple(notes))


def _base_stats(native: bool, n: int, clears: int, segment_count: int, regions: int) -> PlanStats:
    """The lowering's statistics of ``n`` transfers (``clears`` of them native fills), all
    native or all builtin, before batching."""
    return PlanStats(
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


def _record_verdict(builder: _PlanBuilder, key: tuple[int, int, bool]) -> tuple[bool, str] | None:
    """(native, the plan's note) of a record kind (0 fill, 1 copy), size and flag (a zero
    fill pattern; an aligned copy); None where :func:`direct_plan` would decline it."""
    kind, size, flag = key
    verdict = (
        _fill_verdict(builder, size, flag) if kind == 0 else _copy_verdict(builder, size, flag)
    )
    if verdict is None or (verdict[0] and size > BATCH_MAX_BYTES):
        return None
    return verdict[0], f"region 0: {verdict[1]}"


def record_plan(records: Sequence[TransferRecord], caps: DeviceCaps) -> Plan | None:
    """The plan :func:`direct_plan` makes of the segments ``records`` stand for (see
    :data:`hal.core.segments.TransferRecord`), made from the records: no Ref, segment or
    transfer object per record. Covers the one-shot program of issue 10 — every transfer
    small, all builtin or all native, in runs that each become one table dispatch, each run's
    targets in ascending order; returns None for anything else (the caller makes the
    segments and takes the general path). Pure; raises nothing of its own."""
    if not records:
        return None
    builder = _PlanBuilder(caps, DEFAULT_OPTIONS)
    runs = _record_runs(builder, records)
    if runs is None:
        return None
    native, notes, bounds = runs
    shortest = BATCH_MIN_NATIVE if native else BATCH_MIN_RUN
    if any(stop - start < shortest for start, stop, *_ in bounds):
        return None  # a short run stays lowered transfer by transfer: the general path
    alignment, workgroups = caps.storage_alignment, caps.table_workgroups
    table = bytearray()
    dispatches = []
    resources: set[object] = set()
    pack = TABLE_ENTRY.pack
    for start, stop, target, source, low, high, source_low, source_high in bounds:
        window = _window(target, low, high, alignment)
        base = window.offset
        resources.add(target)
        if source is None:
            entries = b"".join(
                [
                    pack(r[1] - base, r[1] + r[2] - base, r[3], 0)  # (target, offset, size, word)
                    for r in records[start:stop]
                ]
            )
            dispatches.append(_table_step(window, None, entries, table, alignment, workgroups))
            continue
        resources.add(source)
        source_window = _window(source, source_low, source_high, alignment)
        source_base = source_window.offset
        entries = b"".join(
            [
                pack(r[1] - source_base, r[3] - base, r[4], 0)  # type: ignore[misc]
                for r in records[start:stop]  # (source, source offset, target, offset, size)
            ]
        )
        dispatches.append(_table_step(window, source_window, entries, table, alignment, workgroups))
    n = len(records)
    clears = sum(len(r) == 4 for r in records) if native else 0
    steps: list[Step] = [ComputePass(tuple(dispatches))]
    stats = _stats(_base_stats(native, n, clears, n, 1), steps)
    notes.append(f"batched: {n} small transfers into {len(dispatches)} table dispatch(es)")
    plan = Plan(tuple(steps), b"", bytes(table), 0, 0, frozenset(resources), stats, tuple(notes))
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(n, plan, caps)
    return plan


_Bounds = tuple[int, int, object, object, int, int, int, int]
"""A run of records: [start, stop) indices, target, source (None: fills), the target's
[low, high) bytes and the source's."""


def _record_runs(
    builder: _PlanBuilder, records: Sequence[TransferRecord]
) -> tuple[bool, list[str], list[_Bounds]] | None:
    """Whether the records are native, their notes and their runs, grouped as
    :class:`hal.core.batching._Run` would group their transfers; None where that needs more
    than this covers (a record direct planning declines, a mix of native and builtin, a
    target range below a word its run already writes: batching would search)."""
    caps = builder.caps
    span = caps.max_binding_size - caps.storage_alignment - 4
    limit = caps.max_workgroups
    verdicts: dict[tuple[int, int, bool], tuple[bool, str]] = {}
    notes: list[str] = []
    bounds: list[_Bounds] = []
    native: bool | None = None
    first = 0
    target: object = None
    source: object = None
    low = high = top = source_low = source_high = 0
    # The verdict of the previous record's (kind, size, flag): most programs repeat one, so
    # the key is compared, not built and looked up, per record.
    kind = size_seen = -1
    flag_seen = False
    note = ""
    for i, record in enumerate(records):
        if len(record) == 4:
            t, start, size, word = record
            s, source_start, flag, this = None, 0, word == 0, 0
        else:
            s, source_start, t, start, size = record
            if s is t:
                return None
            flag, this = not (source_start | start | size) & 3, 1
        if size != size_seen or this != kind or flag is not flag_seen:
            key = (this, size, flag)
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = _record_verdict(builder, key)
                if verdict is None:
                    return None
                verdicts[key] = verdict
            if native is None:
                native = verdict[0]
            elif verdict[0] is not native:
                return None
            kind, size_seen, flag_seen, note = this, size, flag, verdict[1]
        notes.append(note)
        end = start + size
        # _Run.accepts, in its order: a mismatch or a span too wide starts a new run.
        if t is target and s is source and i - first < limit:
            new_high = end if end > high else high
            new_low = start if start < low else low
            if new_high - new_low <= span:
                if start // 4 < top:
                    return None
                if s is None:
                    high, low = new_high, new_low
                    top = (end + 3) // 4
                    if size > source_high:  # a fill's "source" range is [0, size)
                        source_high = size
                    continue
                source_end = source_start + size
                new_source_high = source_end if source_end > source_high else source_high
                new_source_low = source_start if source_start < source_low else source_low
                if new_source_high - new_source_low <= span:
                    high, low = new_high, new_low
                    top = (end + 3) // 4
                    source_low, source_high = new_source_low, new_source_high
                    continue
        if i:
            bounds.append((first, i, target, source, low, high, source_low, source_high))
        first, target, source = i, t, s
        low, high, top = start, end, (end + 3) // 4
        source_low, source_high = source_start, source_start + size
    bounds.append((first, len(records), target, source, low, high, source_low, source_high))
    assert native is not None
    return native, notes, bounds
