"""Batched small transfers: a run of small builtin fills or copies becomes one table dispatch.

A one-shot command buffer of a thousand 256-byte fills lowers to a thousand builtin
dispatches, and each costs a ``set_immediates`` + ``dispatch`` (plus wgpu's barrier between
two dispatches writing one buffer): microseconds of host and GPU time for a few hundred bytes.
This pass, run on the finished plan, replaces every run of consecutive small builtin fills
(or copies) of one buffer inside a compute pass with one dispatch of a table kernel
(``builtin_fill_table.wgsl`` / ``builtin_copy_table.wgsl``) over a table of ranges stored in
the plan's CONSTANTS buffer: on a GPU workgroup ``k`` does entry ``k``; where
``DeviceCaps.table_workgroups`` caps the grid (CPU adapters), each workgroup loops over every
``table_workgroups``-th entry. Edge bytes are exact as before (the same read-modify-write of
edge words).

Merging runs the fills of a run concurrently, so it only merges what is independent at word
granularity: no two entries write the same 4-byte word, and no entry reads a word another
writes. Consecutive dispatches in a pass are otherwise ordered by wgpu's barriers, so this is
exactly the condition under which the merged dispatch gives the same bytes. Checked with
sorted interval lists: O(n log n) in the run length.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from hal.core.builtins import BuiltinKernel
from hal.core.caps import DeviceCaps
from hal.core.plan import (
    AuxBuffer,
    ClearBuffer,
    ComputePass,
    CopyBuffer,
    Dispatch,
    Plan,
    PlanStats,
    Region,
    Step,
)

__all__ = [
    "BATCH_MAX_BYTES",
    "BATCH_MIN_RUN",
    "TABLE_ENTRY",
    "batch_transfers",
    "builtin_transfers",
    "table_entries",
]

BATCH_MAX_BYTES = 16 << 10
"""Largest transfer batched: one workgroup does an entry, so a large one would be slow;
transfers this small are bound by per-dispatch cost, not bandwidth."""

BATCH_MIN_RUN = 2
"""Shortest run of builtin transfers (in one pass) worth a table dispatch."""

BATCH_MIN_NATIVE = 8
"""Shortest run of native copies or clears worth replacing by a table dispatch (a pass of
its own, unless it joins a neighbouring one)."""

_FILLS = (BuiltinKernel.FILL, BuiltinKernel.FILL4)
_COPIES = (BuiltinKernel.COPY, BuiltinKernel.COPY4, BuiltinKernel.COPY16)
_TABLES = (BuiltinKernel.FILL_TABLE, BuiltinKernel.COPY_TABLE)
TABLE_ENTRY = struct.Struct("<4I")
"""One table entry of the table kernels: four little-endian u32 (a fill's begin, end, pattern,
0; a copy's source begin, target begin, length, 0)."""


class _Transfer(NamedTuple):
    """One builtin fill or copy as absolute byte ranges (``source`` None for a fill). A
    named tuple: one is made per small transfer, and a frozen dataclass costs several times
    as much to build."""

    target: object
    start: int
    end: int
    pattern: int
    source: object | None = None
    source_start: int = 0


def _params(plan: Plan, d: Dispatch) -> tuple[int, ...]:
    data = d.constants
    if d.constants_offset is not None:  # staged: no immediates on this adapter
        data = plan.constants[d.constants_offset : d.constants_offset + 16]
    return TABLE_ENTRY.unpack(data[:16])


def _transfer(plan: Plan, d: Dispatch) -> _Transfer | None:
    """``d`` as a transfer, or None when it is no small builtin fill or copy."""
    kernel = d.kernel
    if kernel in _FILLS:
        window = d.bindings[0][2]
        a, b, pattern, _ = _params(plan, d)
        start, end = (a, b) if kernel is BuiltinKernel.FILL else (a * 16, (a + b) * 16)
        if end - start > BATCH_MAX_BYTES:
            return None
        return _Transfer(window.resource, window.offset + start, window.offset + end, pattern)
    if kernel in _COPIES:
        source, target = d.bindings[0][2], d.bindings[1][2]
        a, b, n, _ = _params(plan, d)
        if kernel is BuiltinKernel.COPY4:
            a, b, n = a * 16, b * 16, n * 16
        if n > BATCH_MAX_BYTES:
            return None
        start = target.offset + b
        source_start = source.offset + a
        if source.resource is target.resource:
            # A table binds the runs' source and target windows apart: within one buffer
            # they could overlap, which WebGPU forbids for two writable bindings.
            return None
        return _Transfer(target.resource, start, start + n, 0, source.resource, source_start)
    return None


class _WordSets:
    """Disjoint word intervals per buffer, sorted by start (bisect to test a new one).
    Transfers mostly arrive in address order: an interval past every held one is tested
    and added in O(1)."""

    def __init__(self) -> None:
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._high: dict[int, int] = {}  # the largest end word held, per buffer

    def hits(self, resource: object, start: int, end: int) -> bool:
        """Whether ``[start, end)`` bytes share a word with an interval of ``resource``."""
        key = id(resource)
        high = self._high.get(key)
        if high is None or start // 4 >= high:
            return False
        w1 = (end + 3) // 4
        starts = self._starts[key]
        i = bisect.bisect_left(starts, w1)  # intervals starting before w1
        return i > 0 and self._ends[key][i - 1] > start // 4

    def add(self, resource: object, start: int, end: int) -> None:
        """Insert ``[start, end)``, merged with the intervals it overlaps (reads may overlap
        each other), so the held intervals stay disjoint and sorted — what :meth:`hits`
        relies on."""
        key = id(resource)
        w0, w1 = start // 4, (end + 3) // 4
        starts = self._starts.get(key)
        if starts is None:
            self._starts[key], self._ends[key], self._high[key] = [w0], [w1], w1
            return
        ends = self._ends[key]
        high = self._high[key]
        if w0 >= high:
            starts.append(w0)
            ends.append(w1)
            self._high[key] = w1
            return
        i = bisect.bisect_left(starts, w0)
        lo = i
        if i > 0 and ends[i - 1] >= w0:  # overlaps (or touches) the interval before
            lo = i - 1
            w0 = starts[lo]
            w1 = max(w1, ends[lo])
        hi = i
        while hi < len(starts) and starts[hi] <= w1:  # and every one it reaches after
            w1 = max(w1, ends[hi])
            hi += 1
        starts[lo:hi] = [w0]
        ends[lo:hi] = [w1]
        if w1 > high:
            self._high[key] = w1


class _Run:
    """Consecutive transfers of one kind, buffer(s) and binding window budget.

    Only the target's words need tracking: a run's source and target are distinct
    allocations (same-allocation copies are never batched, native copies never share one),
    so no entry can read a word another writes. Transfers mostly arrive in address order:
    one that starts past every word held is accepted without a search."""

    __slots__ = (
        "caps",
        "high",
        "limit",
        "low",
        "source",
        "source_high",
        "source_low",
        "span",
        "target",
        "top",
        "transfers",
        "writes",
    )

    def __init__(self, first: _Transfer, caps: DeviceCaps) -> None:
        self.caps = caps
        self.transfers = [first]
        self.target, self.source = first.target, first.source
        self.span = caps.max_binding_size - caps.storage_alignment - 4
        self.limit = caps.max_workgroups
        self.low, self.high = first.start, first.end
        self.source_low = first.source_start
        self.source_high = first.source_start + (first.end - first.start)
        self.top = (first.end + 3) // 4  # the largest end word written
        self.writes: _WordSets | None = None  # made once a transfer arrives out of order

    def accepts(self, t: _Transfer) -> bool:
        """Whether ``t`` can join the run without changing any byte's result."""
        if t.target is not self.target or t.source is not self.source:
            return False
        if len(self.transfers) >= self.limit:
            return False
        start, end = t.start, t.end
        # Conditionals, not min()/max(): this runs once per transfer.
        high = end if end > self.high else self.high
        if high - (start if start < self.low else self.low) > self.span:
            return False
        if start // 4 < self.top and self._writes().hits(t.target, start, end):
            return False
        if t.source is not None:
            source_start = t.source_start
            source_end = source_start + end - start
            low = source_start if source_start < self.source_low else self.source_low
            high = source_end if source_end > self.source_high else self.source_high
            if high - low > self.span:
                return False
        return True

    def _writes(self) -> _WordSets:
        """The words written so far, as a searchable set (built on first need)."""
        if self.writes is None:
            self.writes = _WordSets()
            for t in self.transfers:
                self.writes.add(t.target, t.start, t.end)
        return self.writes

    def add(self, t: _Transfer) -> None:
        """Append ``t`` (after :meth:`accepts`)."""
        self.transfers.append(t)
        start, end = t.start, t.end
        if self.writes is not None:
            self.writes.add(t.target, start, end)
        top = (end + 3) // 4
        if top > self.top:
            self.top = top
        if start < self.low:
            self.low = start
        if end > self.high:
            self.high = end
        if t.source is not None:
            source_start = t.source_start
            if source_start < self.source_low:
                self.source_low = source_start
            source_end = source_start + end - start
            if source_end > self.source_high:
                self.source_high = source_end


def _window(resource: object, low: int, high: int, alignment: int) -> Region:
    start = low - low % alignment
    return Region(resource, start, -(-high // 4) * 4 - start)


def _table_dispatch(run: _Run, table: bytearray) -> Dispatch:
    """The one dispatch doing every transfer of ``run``, its table appended to ``table``."""
    alignment = run.caps.storage_alignment
    first = run.transfers[0]
    target = _window(first.target, run.low, run.high, alignment)
    pack = TABLE_ENTRY.pack
    base = target.offset
    if first.source is None:
        transfers = run.transfers
        entries = b"".join([pack(t.start - base, t.end - base, t.pattern, 0) for t in transfers])
        return _table_step(target, None, entries, table, alignment, run.caps.table_workgroups)
    source = _window(first.source, run.source_low, run.source_high, alignment)
    source_base = source.offset
    entries = b"".join(
        [
            pack(t.source_start - source_base, t.start - base, t.end - t.start, 0)
            for t in run.transfers
        ]
    )
    return _table_step(target, source, entries, table, alignment, run.caps.table_workgroups)


def _table_step(
    target: Region,
    source: Region | None,
    entries: bytes,
    table: bytearray,
    alignment: int,
    workgroups: int,
) -> Dispatch:
    """The FILL_TABLE (``source`` None) or COPY_TABLE dispatch over binding windows
    ``target`` (and ``source``) whose ``entries`` are packed 16-byte table entries
    (:data:`TABLE_ENTRY`, relative to the windows), appended to ``table`` at an aligned
    offset, on one workgroup per entry up to ``workgroups`` (past it each loops over
    several). Raises nothing."""
    offset = -(-len(table) // alignment) * alignment
    table.extend(bytes(offset - len(table)))
    count = len(entries) // 16
    if source is None:
        kernel = BuiltinKernel.FILL_TABLE
        bindings: tuple[tuple[int, str, Region], ...] = ((0, "storage", target),)
        table_binding = 1
    else:
        kernel = BuiltinKernel.COPY_TABLE
        bindings = ((0, "storage", source), (1, "storage", target))
        table_binding = 2
    table.extend(entries)
    window = Region(AuxBuffer.CONSTANTS, offset, 16 * count)
    return Dispatch(
        kernel,
        kernel.entry_point,
        (*bindings, (table_binding, "read-only-storage", window)),
        b"",
        None,
        (count if count < workgroups else workgroups, 1, 1),
        None,
        f"builtin.{kernel.entry_point}[{count}]",
    )


def _runs(
    pairs: Iterable[tuple[_Transfer | None, Any]], caps: DeviceCaps
) -> Iterator[tuple[_Run | None, list[Any]]]:
    """Consecutive (transfer, item) pairs grouped into maximal runs that :class:`_Run`
    accepts, as (run, its items); an item without a transfer, or a transfer no other
    joined, comes alone, as (None, [item])."""
    run: _Run | None = None
    items: list[Any] = []
    # A transfer that starts a group stays ``lone`` (no _Run) until a second one could join
    # it: most transfers of a program of mixed commands never get company. A lone
    # transfer's group comes as (None, [item]), which no caller batches either way.
    lone: _Transfer | None = None
    for t, item in pairs:
        if t is not None:
            if run is not None and run.accepts(t):
                run.add(t)
                items.append(item)
                continue
            if lone is not None and t.target is lone.target and t.source is lone.source:
                candidate = _Run(lone, caps)
                if candidate.accepts(t):
                    candidate.add(t)
                    run, lone = candidate, None
                    items.append(item)
                    continue
        if items:
            yield run, items
        run = None
        if t is None:
            items, lone = [], None
            yield None, [item]
        else:
            items, lone = [item], t
    if items:
        yield run, items


def _batch_pass(plan: Plan, step: ComputePass, caps: DeviceCaps, table: bytearray) -> ComputePass:
    out: list[Dispatch] = []
    # A plan repeats one dispatch object for an identical transfer: each is read once.
    seen: dict[int, _Transfer | None] = {}

    def transfer(d: Dispatch) -> _Transfer | None:
        key = id(d)
        if key not in seen:
            seen[key] = _transfer(plan, d) if type(d.kernel) is BuiltinKernel else None
        return seen[key]

    pairs = ((transfer(d), d) for d in step.dispatches)
    for run, dispatches in _runs(pairs, caps):
        if run is not None and len(dispatches) >= BATCH_MIN_RUN:
            out.append(_table_dispatch(run, table))
        else:
            out.extend(dispatches)
    return ComputePass(tuple(out))


def _native_transfer(step: Step) -> _Transfer | None:
    """A small native copy or clear as a transfer, or None."""
    if isinstance(step, CopyBuffer):
        t, src = step.target, step.source
        if t.size > BATCH_MAX_BYTES or src.resource is t.resource:  # runs assume distinct
            return None
        return _Transfer(t.resource, t.offset, t.offset + t.size, 0, src.resource, src.offset)
    if isinstance(step, ClearBuffer):
        t = step.target
        if t.size > BATCH_MAX_BYTES:
            return None
        return _Transfer(t.resource, t.offset, t.offset + t.size, 0)
    return None


def _batch_natives(steps: Sequence[Step], caps: DeviceCaps, table: bytearray) -> list[Step]:
    """Runs of at least BATCH_MIN_NATIVE consecutive small native copies (or clears) that
    qualify for one table dispatch become that dispatch: each native transfer costs a
    command of its own (5.5 µs per 256-byte copy_buffer_to_buffer on the H200's host), the
    table dispatch one command for the run."""
    out: list[Step] = []
    for run, natives in _runs(((_native_transfer(s), s) for s in steps), caps):
        if run is not None and len(natives) >= BATCH_MIN_NATIVE:
            out.append(ComputePass((_table_dispatch(run, table),)))
        else:
            out.extend(natives)
    return _join_passes(out)


def _join_passes(steps: list[Step]) -> list[Step]:
    """Adjacent compute passes as one (nothing between them needs a pass boundary)."""
    out: list[Step] = []
    for step in steps:
        if isinstance(step, ComputePass) and out and isinstance(out[-1], ComputePass):
            out[-1] = ComputePass(out[-1].dispatches + step.dispatches)
        else:
            out.append(step)
    return out


def _worth_it(plan: Plan) -> bool:
    natives = 0
    for s in plan.steps:
        if isinstance(s, ComputePass):
            if sum(d.is_builtin for d in s.dispatches) >= BATCH_MIN_RUN:
                return True
            natives = 0
        else:
            natives += 1
            if natives >= BATCH_MIN_NATIVE:
                return True
    return False


def batch_transfers(plan: Plan, caps: DeviceCaps) -> Plan:
    """``plan`` with each run of small, independent builtin fills or copies inside a compute
    pass, and each long run of small native copies or clears, replaced by one table
    dispatch (see the module docstring); the plan itself when there is none. Pure."""
    if not _worth_it(plan):
        return plan
    table = bytearray(plan.constants)
    steps: list[Step] = [
        _batch_pass(plan, s, caps, table) if isinstance(s, ComputePass) else s for s in plan.steps
    ]
    steps = _batch_natives(steps, caps, table)
    if len(table) == len(plan.constants):  # every table dispatch appends its entries
        return plan
    note = batched_note(steps)
    stats = _stats(plan.stats, steps)
    if plan.constants and not _stages_constants(steps):
        # Without immediates every builtin's parameters were staged in CONSTANTS; where all
        # of those dispatches went into tables, those bytes are dead: the tables alone.
        dead = -(-len(plan.constants) // caps.storage_alignment) * caps.storage_alignment
        steps = [_shift_tables(s, dead) for s in steps]
        del table[:dead]
        stats = dataclasses.replace(stats, staged_bytes=stats.staged_bytes - len(plan.constants))
    return dataclasses.replace(
        plan,
        steps=tuple(steps),
        constants=bytes(table),
        stats=stats,
        notes=(*plan.notes, note),
    )


def _stages_constants(steps: Sequence[Step]) -> bool:
    """Whether a dispatch of ``steps`` reads parameters staged in CONSTANTS."""
    return any(
        d.constants_offset is not None
        for s in steps
        if isinstance(s, ComputePass)
        for d in s.dispatches
    )


def _shift_tables(step: Step, dead: int) -> Step:
    """``step`` with its table dispatches' CONSTANTS ranges ``dead`` bytes lower."""
    if not isinstance(step, ComputePass):
        return step
    dispatches = []
    for d in step.dispatches:
        if d.kernel in _TABLES:  # the table is the last binding
            binding, kind, region = d.bindings[-1]
            moved = Region(AuxBuffer.CONSTANTS, region.offset - dead, region.size)
            d = dataclasses.replace(d, bindings=(*d.bindings[:-1], (binding, kind, moved)))
        dispatches.append(d)
    return ComputePass(tuple(dispatches))


def _count(steps: Sequence[Step]) -> tuple[int, int, int, int, int]:
    """(compute passes, dispatches, native copies, native clears, builtin dispatches)."""
    passes = [s for s in steps if isinstance(s, ComputePass)]
    dispatches = [d for p in passes for d in p.dispatches]
    return (
        len(passes),
        len(dispatches),
        sum(isinstance(s, CopyBuffer) for s in steps),
        sum(isinstance(s, ClearBuffer) for s in steps),
        sum(d.is_builtin for d in dispatches),
    )


def _stats(stats: PlanStats, steps: Sequence[Step]) -> PlanStats:
    passes, dispatches, copies, clears, builtins = _count(steps)
    switches = sum(
        isinstance(a, ComputePass) or isinstance(b, ComputePass)
        for a, b in itertools.pairwise(steps)
    )
    return dataclasses.replace(
        stats,
        compute_passes=passes,
        dispatches=dispatches,
        builtin_dispatches=builtins,
        native_copies=copies,
        native_clears=clears,
        pass_switches=switches,
    )


def table_entries(plan: Plan, d: Dispatch) -> list[tuple[int, int, int, int]]:
    """The table of a FILL_TABLE / COPY_TABLE dispatch of ``plan`` (for tests and dumps):
    (begin, end, pattern, 0) or (source begin, target begin, length, 0) per entry, bytes
    relative to the binding windows."""
    region = d.bindings[-1][2]
    data = plan.constants[region.offset : region.offset + region.size]
    return list(TABLE_ENTRY.iter_unpack(data))


def builtin_transfers(plan: Plan) -> int:
    """Builtin fills and copies a plan does, counting each table entry as one."""
    total = 0
    for step in plan.steps:
        if isinstance(step, ComputePass):
            for d in step.dispatches:
                if d.kernel in (BuiltinKernel.FILL_TABLE, BuiltinKernel.COPY_TABLE):
                    total += d.bindings[-1][2].size // 16
                elif d.is_builtin:
                    total += 1
    return total


def batched_note(steps: Sequence[Step]) -> str:
    """The plan note that counts the table dispatches of ``steps`` and their entries (one
    16-byte entry per small transfer)."""
    tables = [
        d
        for s in steps
        if isinstance(s, ComputePass)
        for d in s.dispatches
        if d.kernel is BuiltinKernel.FILL_TABLE or d.kernel is BuiltinKernel.COPY_TABLE
    ]
    entries = sum(d.bindings[-1][2].size // 16 for d in tables)
    return f"batched: {entries} small transfers into {len(tables)} table dispatch(es)"
