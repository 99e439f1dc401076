"""The lowering pass: a pure function from recorded segments to a :class:`~hal.core.plan.Plan`.

It works in two steps (see README, "How the lowering works"):

1. **Translate** each segment, in program order, into *items*: dispatches (user kernels and
   builtin fill/copy kernels) and native transfers (``clear_buffer``,
   ``copy_buffer_to_buffer``), each tagged with its barrier region and the byte ranges it
   reads and writes.

   * a fill or copy becomes a native transfer only where wgpu allows one (zero pattern or
     distinct buffers, 4-byte alignment) *and* the adapter's measured cost model
     (:mod:`hal.cost`) says it beats a builtin kernel inside the pass, pass switch included;
     otherwise builtin kernels do it: 16-byte blocks for the aligned body of large transfers,
     word kernels with byte-exact edges for the rest — no byte outside the range changes;
   * update bytes go into the plan's STAGING buffer (uploaded once) and are copied into place
     at the point where ``update_buffer`` was recorded;
   * constants go to immediates, or into the CONSTANTS buffer where there are none;
   * a binding wgpu cannot take as is (offset not a multiple of the binding alignment, length
     not a multiple of 4 or zero, read-only alias of a read-write binding) is shadowed in
     scratch: a builtin copy in before the dispatch, and out after it when writable.

2. **Schedule** the items into compute passes and transfer groups. Dispatches keep their
   program order and share one pass: wgpu synchronises the dispatches of a pass itself, so a
   barrier between dispatches needs no split. Native transfers keep their order among
   themselves and move as far as the barriers allow: a transfer must stay after every item of
   an earlier region it conflicts with (overlapping bytes, one side writing) and before every
   such item of a later region; within a region, order is free (API.md, Semantics). These
   links come from one sweep in program order over per-allocation interval sets
   (:mod:`hal.core.intervals`), O(n log n) in the items whatever their overlap. A greedy
   merge of the two ordered lists then yields the fewest pass switches.

Nothing here touches wgpu.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hal.core.builtins import (
    BuiltinKernel,
    block_grid,
    copy4_params,
    copy_params,
    fill4_params,
    fill_params,
    pads_to_blocks,
    words_touched,
    workgroups_for,
)
from hal.core.caps import DeviceCaps
from hal.core.intervals import PaintedRanges
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
from hal.core.refs import BufferHandle
from hal.core.segments import (
    AdviseSegment,
    BarrierSegment,
    CollectiveSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    Ref,
    ResetEventSegment,
    Segment,
    SignalEventSegment,
    TransferRecord,
    UpdateSegment,
    WaitEventsSegment,
    record_segment,
)
from hal.errors import InvalidArgumentError

_log = logging.getLogger("hal")

__all__ = ["DEFAULT_OPTIONS", "LoweringOptions", "lower"]

_BLOCK_KERNELS = (BuiltinKernel.FILL4, BuiltinKernel.COPY4)

_KERNEL_INFO = {
    id(kernel): (kernel.entry_point, f"builtin.{kernel.entry_point}", kernel in _BLOCK_KERNELS)
    for kernel in BuiltinKernel
}
"""(entry point, label, is a block kernel) of each builtin kernel, by id(kernel)."""

_VECTOR_MIN = 4096
"""Transfers at least this large use 16-byte-block kernels for their aligned body."""


@dataclass(frozen=True, slots=True)
class LoweringOptions:
    """Switches for comparisons and debugging.

    ``naive``: the baseline — program order, one compute pass per dispatch (builtins
    included), native transfers wherever wgpu allows them. ``reorder``: barrier-region
    scheduling of native transfers. ``transfers``: "auto" chooses native transfers vs builtin
    kernels by the adapter's measured costs; "native" uses native ones wherever wgpu allows;
    "kernel" always uses builtin kernels (calibration and benchmarks).
    """

    naive: bool = False
    reorder: bool = True
    transfers: str = "auto"


DEFAULT_OPTIONS = LoweringOptions()
"""The options of every submission's lowering (shared: building one costs as much as a
small transfer's planning)."""

_VERDICTS: dict[tuple[int, int, bool, int, bool], tuple[object, object, tuple[bool, str]]] = {}
"""Cost-model verdicts by (id of the costs, id of the options, has dispatches, size, copy),
with the costs and options themselves (a hit must be the same objects: ids are reused once
one is gone): pure, so shared. Keyed by ids because hashing the two dataclasses costs more
than the lookup saves."""
_VERDICTS_MAX = 4096

_FILL_NOTES: dict[int, str] = {}
"""The note of a pattern fill by size (formatted once per size)."""


def _fill_note(size: int) -> str:
    note = _FILL_NOTES.get(size)
    if note is None:
        if len(_FILL_NOTES) >= _VERDICTS_MAX:
            _FILL_NOTES.clear()
        note = _FILL_NOTES[size] = f"fill {size} B: kernel (pattern or alignment)"
    return note


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(slots=True)
class _Item:
    """A dispatch or native transfer with its barrier region and byte accesses."""

    op: Dispatch | CopyBuffer | ClearBuffer
    region: int
    reads: tuple[Region, ...]
    writes: tuple[Region, ...]
    note: str | None = None
    after: int = -1  # index in the other list of the last item that must precede this one


_Bindings = tuple[tuple[int, str, Region], ...]

_MEMO_TRIAL = 256
"""Distinct transfers a lowering memoises before giving up on a program without repeats."""

_NO_SCRATCH = {AuxBuffer.SCRATCH: 0, AuxBuffer.READ_SCRATCH: 0}


class _PlanBuilder:
    def __init__(self, caps: DeviceCaps, options: LoweringOptions) -> None:
        self.caps = caps
        self.options = options
        self.items: list[_Item] = []
        self.region_index = 0
        self.has_dispatches = False
        self.staging = bytearray()
        self.constants_data = bytearray()
        self.scratch_sizes = _NO_SCRATCH.copy()  # a copy rehashes nothing
        self.resources: set[BufferHandle] = set()
        self.builtin_dispatches = 0
        self.shadowed = 0
        self.notes: list[str] = []
        self.verdicts: dict[tuple[int, bool], tuple[bool, str]] = {}
        self.labels: dict[tuple[int, str], str] = {}  # dispatch labels per entry point
        # Dispatches by id(segment) (the segments outlive the lowering, so ids stay unique).
        self.known: dict[int, tuple[Dispatch, tuple[Region, ...], tuple[Region, ...]]] = {}
        # Fills and copies by their ranges (ids of allocations the segments hold): what each
        # emitted and how many builtin dispatches that was.
        self.transfers: dict[tuple[object, ...], tuple[list[_Item], int]] = {}
        self.memo = True  # off once a program's first transfers never repeated
        self.memo_hits = 0
        # Unshadowed dispatch bindings by (id(layout), ids of the binding Refs): the bindings,
        # reads and writes they lower to.
        self.bound: dict[tuple[int, ...], tuple[_Bindings, tuple[Region, ...], tuple[Region, ...]]]
        self.bound = {}
        # Largest byte range one builtin dispatch handles: its window (range plus alignment
        # slack) must fit one storage binding, and its offsets must fit u32 parameters.
        self.chunk = max(256, (min(caps.max_binding_size, 1 << 30) - caps.storage_alignment) & ~255)

    # -- plan memory --------------------------------------------------------------------------

    def stage(self, data: bytes, alignment: int, into: bytearray | None = None) -> int:
        """Append ``data`` at an aligned offset of STAGING (or ``into``); its offset."""
        into = self.staging if into is None else into
        offset = _round_up(len(into), alignment)
        into.extend(bytes(offset - len(into)))
        into.extend(data)
        return offset

    def scratch(self, size: int, alignment: int, writable: bool) -> Region:
        """A fresh ``size``-byte range of SCRATCH (writable shadows) or READ_SCRATCH."""
        kind = AuxBuffer.SCRATCH if writable else AuxBuffer.READ_SCRATCH
        offset = _round_up(self.scratch_sizes[kind], alignment)
        self.scratch_sizes[kind] = offset + _round_up(max(size, 4), 4)
        return Region(kind, offset, size)

    def window(self, region: Region) -> tuple[Region, int]:
        """An aligned binding window covering ``region`` and the region's offset in it."""
        start = region.offset - region.offset % self.caps.storage_alignment
        end = _round_up(region.offset + region.size, 4)
        return Region(region.resource, start, end - start), region.offset - start

    # -- items --------------------------------------------------------------------------------

    def emit(
        self,
        op: Dispatch | CopyBuffer | ClearBuffer,
        reads: tuple[Region, ...],
        writes: tuple[Region, ...],
        note: str | None = None,
    ) -> None:
        self.items.append(_Item(op, self.region_index, reads, writes, note or None))

    def constants(self, data: bytes) -> tuple[bytes, int | None]:
        if not data or self.caps.immediates:
            return data, None
        alignment = max(self.caps.uniform_alignment, self.caps.storage_alignment)
        return b"", self.stage(data, alignment, self.constants_data)

    def builtin(
        self,
        kernel: BuiltinKernel,
        bindings: tuple[tuple[int, str, Region], ...],
        params: bytes,
        units: int,
        reads: tuple[Region, ...],
        writes: tuple[Region, ...],
        note: str | None = None,
    ) -> None:
        if self.caps.immediates:
            constants, offset = params, None
        else:
            constants, offset = self.constants(params)
        self.builtin_dispatches += 1
        # By id: an enum member's hash is a Python-level call.
        entry_point, label, block = _KERNEL_INFO[id(kernel)]
        # Block kernels stream memory: measured on the H100, a grid as wide as the adapter
        # allows beats a 4096-workgroup grid-stride loop by 4-7%.
        limit = self.caps.max_workgroups if block else self.caps.word_workgroups
        if kernel is BuiltinKernel.COPY4:
            # One invocation per block on an exact grid (two dimensions past the limit).
            shape = block_grid(units, limit)
        else:
            shape = (workgroups_for(units, limit), 1, 1)
        dispatch = Dispatch(kernel, entry_point, bindings, constants, offset, shape, None, label)
        self.items.append(_Item(dispatch, self.region_index, reads, writes, note or None))

    def builtin_fill(self, target: Region, pattern_word: int, note: str | None = None) -> None:
        """Fill with kernels: 16-byte blocks for the aligned body of a large range, the word
        kernel (byte-exact edges) for the rest."""
        size = target.size
        if 0 < size < _VECTOR_MIN and size <= self.chunk:
            # One word-kernel piece (what the loops below make of it), without them.
            window, begin = self.window(target)
            self.builtin(
                BuiltinKernel.FILL,
                ((0, "storage", window),),
                fill_params(begin, size, pattern_word),
                window.size // 4,
                (),
                (target,),
                note,
            )
            return
        for offset, size, blocks in _pieces(target.offset, target.size, True):
            for start in range(0, size, self.chunk):
                piece = Region(target.resource, offset + start, min(self.chunk, size - start))
                window, begin = self.window(piece)
                if blocks:
                    self.builtin(
                        BuiltinKernel.FILL4,
                        ((0, "storage", window),),
                        fill4_params(begin // 16, piece.size // 16, pattern_word),
                        piece.size // 16,
                        (),
                        (piece,),
                        note,
                    )
                else:
                    self.builtin(
                        BuiltinKernel.FILL,
                        ((0, "storage", window),),
                        fill_params(begin, piece.size, pattern_word),
                        window.size // 4,
                        (),
                        (piece,),
                        note,
                    )
                note = None

    def builtin_copy(self, source: Region, target: Region, note: str | None = None) -> None:
        """Copy with kernels: 16-byte blocks for the body when both sides agree modulo 16,
        for the rest the 16-byte-access funnel shift (offsets apart modulo 4, windows that
        round up to whole blocks: :meth:`copy16`) or the word kernel (byte-exact edges)."""
        delta = target.offset - source.offset
        same = source.resource is target.resource
        # Within one allocation a piece may need one window over both ranges (below): half
        # pieces keep that window inside one binding.
        chunk = max(256, (self.chunk // 2) & ~255) if same else self.chunk
        if 0 < target.size < _VECTOR_MIN and target.size <= chunk:
            self.copy_piece(source, target, same, False, note)  # one piece: no loops
            return
        for offset, size, blocks in _pieces(target.offset, target.size, delta % 16 == 0):
            for start in range(0, size, chunk):
                length = min(chunk, size - start)
                dst = Region(target.resource, offset + start, length)
                src = Region(source.resource, offset + start - delta, length)
                self.copy_piece(src, dst, same, blocks, note)
                note = None

    def copy_piece(
        self, src: Region, dst: Region, same: bool, blocks: bool, note: str | None
    ) -> None:
        """One piece of :meth:`builtin_copy`: a block, word or same-window kernel."""
        length = dst.size
        src_window, src_begin = self.window(src)
        dst_window, dst_begin = self.window(dst)
        if same and _overlap(src_window, dst_window):
            self.copy_within(src, dst, src_window, dst_window, note)
            return
        if not blocks and (src_begin - dst_begin) % 4 and self.copy16(src, dst, same, note):
            return
        bindings = ((0, "storage", src_window), (1, "storage", dst_window))
        if blocks:
            self.builtin(
                BuiltinKernel.COPY4,
                bindings,
                copy4_params(src_begin // 16, dst_begin // 16, length // 16),
                length // 16,
                (src,),
                (dst,),
                note,
            )
        else:
            self.builtin(
                BuiltinKernel.COPY,
                bindings,
                copy_params(src_begin, dst_begin, length),
                dst_window.size // 4,
                (src,),
                (dst,),
                note,
            )

    def block_window(self, region: Region) -> Region | None:
        """:meth:`window` rounded up to whole 16-byte blocks, or None where the allocation
        may lack the room: a plan's own buffer, stand-ins not padded by ``allocation_size``
        (``caps.padded_allocations`` False), an allocation within 16 bytes of max-buffer-size
        (padded to words only), a window past the binding limit. The test is the allocation's
        padding, not the window's end: a rebased plan (binding tables) shifts the window onto
        another allocation, whose padding the table's shape then matches."""
        caps = self.caps
        resource = region.resource
        if (
            not caps.padded_allocations
            or isinstance(resource, AuxBuffer)
            or not pads_to_blocks(resource.byte_length, caps.max_buffer_size)
        ):
            return None
        start = region.offset - region.offset % caps.storage_alignment
        end = _round_up(region.offset + region.size, 16)
        if end - start > caps.max_binding_size:
            return None
        return Region(region.resource, start, end - start)

    def copy16(self, src: Region, dst: Region, same: bool, note: str | None) -> bool:
        """A copy whose offsets differ modulo 4 by the 16-byte-access kernel, when both
        windows can be whole blocks (and, within one allocation, stay apart); False where
        not (the word kernel does it)."""
        src_window, dst_window = self.block_window(src), self.block_window(dst)
        if src_window is None or dst_window is None or (same and _overlap(src_window, dst_window)):
            return False
        self.builtin(
            BuiltinKernel.COPY16,
            ((0, "storage", src_window), (1, "storage", dst_window)),
            copy_params(src.offset - src_window.offset, dst.offset - dst_window.offset, dst.size),
            dst_window.size // 16,
            (src,),
            (dst,),
            note,
        )
        return True

    def copy_within(
        self, src: Region, dst: Region, src_window: Region, dst_window: Region, note: str | None
    ) -> None:
        """A copy between disjoint ranges of one allocation whose binding windows overlap:
        WebGPU forbids two writable bindings of one buffer with overlapping ranges in a
        dispatch, so one window covers both (the word kernel with a single binding)."""
        start = min(src_window.offset, dst_window.offset)
        end = max(src_window.offset + src_window.size, dst_window.offset + dst_window.size)
        window = Region(src.resource, start, end - start)
        src_begin, dst_begin = src.offset - start, dst.offset - start
        self.builtin(
            BuiltinKernel.COPY_WITHIN,
            ((0, "storage", window),),
            copy_params(src_begin, dst_begin, dst.size),
            words_touched(dst_begin, dst_begin + dst.size),
            (src,),
            (dst,),
            note,
        )

    def prefer_native(self, size: int, copy: bool) -> tuple[bool, str]:
        """Whether a native transfer beats kernels, by the cost model, and why (memoised:
        programs repeat transfer sizes, and the note's formatting is most of the cost)."""
        key = (size, copy)
        verdict = self.verdicts.get(key)
        if verdict is None:
            # Shared by every lowering with the same costs and options: a one-command
            # program would otherwise format its verdict anew at every end().
            costs, options = self.caps.costs, self.options
            shared = (id(costs), id(options), self.has_dispatches, size, copy)
            entry = _VERDICTS.get(shared)
            if entry is not None and entry[0] is costs and entry[1] is options:
                verdict = entry[2]
            else:
                if len(_VERDICTS) >= _VERDICTS_MAX:
                    _VERDICTS.clear()
                verdict = self.judge(size, copy)
                _VERDICTS[shared] = (costs, options, verdict)
            self.verdicts[key] = verdict
        return verdict

    def judge(self, size: int, copy: bool) -> tuple[bool, str]:
        """:meth:`prefer_native` without the memo."""
        options, costs = self.options, self.caps.costs
        if options.naive or options.transfers == "native":
            return True, "native (cost model off)"
        if options.transfers == "kernel":
            return False, "kernel (forced)"
        # A native transfer costs a pass switch only when there is a compute pass to leave.
        switch = costs.pass_switch_us if self.has_dispatches else 0.0
        estimate = costs.copy_us if copy else costs.fill_us
        native = estimate(size, True) - costs.pass_switch_us + switch
        kernel = estimate(size, False)
        verdict = "native" if native <= kernel else "kernel"
        return native <= kernel, (
            f"{verdict}: native {native:.1f} us (pass switch {switch:.0f}) vs kernel "
            f"{kernel:.1f} us [{costs.name}]"
        )

    def copy(self, source: Region, target: Region, what: str) -> None:
        aligned = source.offset % 4 == 0 and target.offset % 4 == 0 and target.size % 4 == 0
        if not aligned or source.resource is target.resource:
            why = "unaligned" if not aligned else "same allocation"
            self.builtin_copy(source, target, f"{what} {target.size} B: kernel ({why})")
            return
        native, why = self.prefer_native(target.size, copy=True)
        if native:
            self.emit(
                CopyBuffer(source, target), (source,), (target,), f"{what} {target.size} B: {why}"
            )
        else:
            self.builtin_copy(source, target, f"{what} {target.size} B: {why}")

    # -- segments -----------------------------------------------------------------------------

    def region(self, ref: Ref) -> Region:
        if ref.buffer is None or ref.length is None:
            raise ValueError(f"lower: unresolved reference {ref.describe()}")
        self.resources.add(ref.buffer)
        return Region(ref.buffer, ref.offset, ref.length)

    def replay(self, memo: tuple[list[_Item], int]) -> None:
        """Emit again what a memoised transfer made (see :meth:`lower_transfer`)."""
        items, builtins = memo
        region = self.region_index
        self.items.extend([_Item(i.op, region, i.reads, i.writes, i.note) for i in items])
        self.builtin_dispatches += builtins

    def lower_transfer(self, key: tuple[object, ...], segment: Any, lower: Any) -> None:
        """``lower(segment)``, remembered under ``key`` for :meth:`replay`: a program repeats
        identical fills and copies, and their lowering depends only on the ranges and this
        lowering's caps and options (not where parameters were staged: those are placed
        anew each time). A program whose transfers never repeat stops paying for the memo
        after :data:`_MEMO_TRIAL` of them."""
        items = self.items
        count, builtins, staged = len(items), self.builtin_dispatches, len(self.constants_data)
        lower(segment)
        if len(self.constants_data) == staged:
            transfers = self.transfers
            transfers[key] = (items[count:], self.builtin_dispatches - builtins)
            if len(transfers) >= _MEMO_TRIAL and not self.memo_hits:
                self.memo = False

    def record(self, record: TransferRecord) -> None:
        """A fill or copy in its recording form (:data:`hal.core.segments.TransferRecord`):
        its segment is made only if the memo does not already hold its lowering."""
        if len(record) == 4:
            buffer, offset, length, word = record
            key: tuple[object, ...] = (id(buffer), offset, length, word.to_bytes(4, "little"))
        else:
            source, source_offset, target, target_offset, length = record
            key = (id(source), source_offset, length, id(target), target_offset, length)
        memo = self.transfers.get(key) if self.memo else None
        if memo is not None:
            self.memo_hits += 1
            self.replay(memo)
            return
        segment = record_segment(record)
        if isinstance(segment, FillSegment):
            self.fill(segment)
        else:
            self.copy_segment(segment)

    def fill(self, segment: FillSegment) -> None:
        if not self.memo:
            self.fill_once(segment)
            return
        ref = segment.target
        key = (id(ref.buffer), ref.offset, ref.length, segment.pattern)
        memo = self.transfers.get(key)
        if memo is None:
            self.lower_transfer(key, segment, self.fill_once)
        else:
            self.memo_hits += 1
            self.replay(memo)

    def fill_once(self, segment: FillSegment) -> None:
        """:meth:`fill` without the memo."""
        target = self.region(segment.target)
        if target.size == 0:
            return
        pattern = segment.pattern
        if not any(pattern) and target.offset % 4 == 0 and target.size % 4 == 0:
            native, why = self.prefer_native(target.size, copy=False)
            if native:
                self.emit(ClearBuffer(target), (), (target,), f"fill {target.size} B: {why}")
                return
            note = f"fill {target.size} B: {why}"
        else:
            note = _fill_note(target.size)
        # The pattern repeats from the target offset; bytes of a word are at window positions
        # congruent to 0..3 (windows are word aligned), so rotate the pattern accordingly.
        n = len(pattern)
        shift = -target.offset % n
        word = (pattern * 4)[shift : shift + 4]
        self.builtin_fill(target, int.from_bytes(word, "little"), note)

    def update(self, segment: UpdateSegment) -> None:
        target = self.region(segment.target)
        if target.size == 0:
            return
        # Staged at the target's offset modulo 16, so block kernels and native copies apply.
        offset = self.stage(b"", 16) + target.offset % 16
        self.staging.extend(bytes(offset - len(self.staging)))
        self.staging.extend(segment.data)
        self.copy(Region(AuxBuffer.STAGING, offset, target.size), target, "update")

    def copy_segment(self, segment: CopySegment) -> None:
        if not self.memo:
            self.copy_once(segment)
            return
        s, t = segment.source, segment.target
        key = (id(s.buffer), s.offset, s.length, id(t.buffer), t.offset, t.length)
        memo = self.transfers.get(key)
        if memo is None:
            self.lower_transfer(key, segment, self.copy_once)
        else:
            self.memo_hits += 1
            self.replay(memo)

    def copy_once(self, segment: CopySegment) -> None:
        """:meth:`copy_segment` without the memo."""
        source, target = self.region(segment.source), self.region(segment.target)
        if target.size:
            self.copy(source, target, "copy")

    def dispatch(self, segment: DispatchSegment) -> None:
        # A segment recorded again (recording shares identical dispatch segments) lowers to
        # the same dispatch when nothing of it went to the plan's own buffers.
        known = self.known.get(id(segment))
        if known is not None:
            self.items.append(_Item(known[0], self.region_index, known[1], known[2]))
            return
        shadowed, count = self.shadowed, len(self.items)
        self.lower_dispatch(segment)
        item = self.items[-1]
        if self.shadowed == shadowed and len(self.items) == count + 1:
            op = item.op
            if op.constants_offset is None:  # type: ignore[union-attr]
                self.known[id(segment)] = (op, item.reads, item.writes)  # type: ignore[assignment]

    def lower_dispatch(self, segment: DispatchSegment) -> None:
        """:meth:`dispatch` without the memo: bindings shadowed where wgpu cannot take them,
        constants placed, the dispatch emitted."""
        if segment.indirect is not None:
            self.lower_bindings(segment)
            return
        # Recording shares one Ref per (buffer, binding), so dispatches that differ only in
        # constants or grid name the same Refs: their bindings lower alike (unless shadowed).
        key = (id(segment.layout), *[id(r) for r in segment.bindings])
        bound = self.bound.get(key)
        if bound is not None:
            self.emit_dispatch(segment, bound[0], None, bound[1], bound[2])
            return
        shadowed, count = self.shadowed, len(self.items)
        self.lower_bindings(segment)
        if self.shadowed == shadowed and len(self.items) == count + 1:
            item = self.items[-1]
            self.bound[key] = (item.op.bindings, item.reads, item.writes)  # type: ignore[union-attr]

    def emit_dispatch(
        self,
        segment: DispatchSegment,
        bindings: _Bindings,
        indirect: Region | None,
        reads: tuple[Region, ...],
        writes: tuple[Region, ...],
    ) -> None:
        """Emit the dispatch of ``segment`` with its final bindings, its constants placed."""
        padded = segment.constants.ljust(segment.layout.constants_size, b"\0")
        constants, constants_offset = self.constants(padded)
        key = (id(segment.executable), segment.entry_point)
        label = self.labels.get(key)
        if label is None:
            label = self.labels[key] = f"{segment.executable.label}:{segment.entry_point}"
        dispatch = Dispatch(
            segment.executable,
            segment.entry_point,
            bindings,
            constants,
            constants_offset,
            segment.workgroups,
            indirect,
            label,
        )
        self.items.append(_Item(dispatch, self.region_index, reads, writes))

    def lower_bindings(self, segment: DispatchSegment) -> None:
        """:meth:`lower_dispatch` without the binding memo."""
        layout = segment.layout
        caps = self.caps
        refs = segment.bindings
        regions = [self.region(refs[b.binding]) for b in layout.bindings]  # type: ignore[arg-type]
        writable = [
            (i, r)
            for i, (b, r) in enumerate(zip(layout.bindings, regions, strict=True))
            if b.writable
        ]
        written = {r.resource for _, r in writable}
        # WebGPU forbids writable bindings whose windows overlap in one dispatch (Dawn
        # enforces it): every such binding after the first is shadowed.
        overlapping = _overlapping_writes(writable) if len(written) < len(writable) else ()
        bindings: list[tuple[int, str, Region]] = []
        copy_back: list[tuple[Region, Region]] = []
        reads: list[Region] = []
        writes: list[Region] = []
        for position, (b, region) in enumerate(zip(layout.bindings, regions, strict=True)):
            (writes if b.writable else reads).append(region)
            uniform = b.kind == "uniform"
            alignment = caps.uniform_alignment if uniform else caps.storage_alignment
            aliased = region.resource in written if not b.writable else position in overlapping
            if region.offset % alignment or region.size % 4 or region.size == 0 or aliased:
                self.shadowed += 1
                shadow = self.scratch(region.size, alignment, b.writable)
                if region.size:
                    self.builtin_copy(region, shadow, f"shadow binding {b.binding} in")
                    if b.writable:
                        copy_back.append((shadow, region))
                region = Region(shadow.resource, shadow.offset, max(4, _round_up(region.size, 4)))
            bindings.append((b.binding, b.kind, region))
        indirect = None
        if segment.indirect is not None:
            indirect = self.region(segment.indirect)
            indirect = Region(indirect.resource, indirect.offset, 12)
            reads.append(indirect)
            # Indirect parameters are read through INDIRECT usage, which wgpu also refuses
            # beside a read-write binding of the same buffer.
            if indirect.offset % 4 or indirect.resource in written:
                shadow = self.scratch(12, 4, writable=False)
                self.builtin_copy(indirect, shadow, "shadow indirect parameters")
                indirect = shadow
        self.emit_dispatch(segment, tuple(bindings), indirect, tuple(reads), tuple(writes))
        for shadow, region in copy_back:
            self.builtin_copy(shadow, region, f"shadow binding out to {region.describe()}")

    # -- scheduling ---------------------------------------------------------------------------

    def schedule(self) -> list[Step]:
        dispatches = [i for i in self.items if isinstance(i.op, Dispatch)]
        natives = [i for i in self.items if not isinstance(i.op, Dispatch)]
        if self.options.naive:
            return [
                ComputePass((i.op,)) if isinstance(i.op, Dispatch) else i.op for i in self.items
            ]
        if not self.options.reorder or not natives or not dispatches:
            return _in_program_order(self.items)
        _link(self.items)
        best: list[Step] | None = None
        for natives_first in (True, False):
            steps = _merge(dispatches, natives, natives_first)
            if best is None or len(steps) < len(best):
                best = steps
        assert best is not None
        return best

    def finish(self, segment_count: int) -> Plan:
        steps = self.schedule()
        # One pass over the steps for the counts (this runs for every end(), tiny ones too).
        passes = dispatches = copies = switches = 0
        previous_pass: bool | None = None
        for step in steps:
            kind = type(step)
            is_pass = kind is ComputePass
            if is_pass:
                passes += 1
                dispatches += len(step.dispatches)  # type: ignore[union-attr]
            elif kind is CopyBuffer:
                copies += 1
            # A pass switch is every boundary that ends or begins a compute pass.
            if previous_pass is not None and (is_pass or previous_pass):
                switches += 1
            previous_pass = is_pass
        notes = [f"region {i.region}: {i.note}" for i in self.items if i.note]
        # Only a plan with both kinds of step can have moved a transfer across a dispatch.
        moved = _moved_transfers(self.items, steps) if passes and passes < len(steps) else 0
        if moved:
            notes.append(
                f"reordered: {moved} native transfer(s) moved across dispatches of "
                "their barrier region or past non-conflicting regions to share passes"
            )
        stats = PlanStats(
            segments=segment_count,
            compute_passes=passes,
            dispatches=dispatches,
            builtin_dispatches=self.builtin_dispatches,
            native_copies=copies,
            native_clears=len(steps) - passes - copies,
            staged_bytes=len(self.staging) + len(self.constants_data),
            shadowed_bindings=self.shadowed,
            scratch_bytes=sum(self.scratch_sizes.values()),
            pass_switches=switches,
            regions=self.region_index + 1,
        )
        return Plan(
            tuple(steps),
            bytes(self.staging),
            bytes(self.constants_data),
            self.scratch_sizes[AuxBuffer.SCRATCH],
            self.scratch_sizes[AuxBuffer.READ_SCRATCH],
            frozenset(self.resources),
            stats,
            tuple([*self.notes, *notes]),
        )


def _link(items: list[_Item]) -> None:
    """Set ``after`` on every item: the index, in the other kind's list (dispatches vs native
    transfers), of the last item of an earlier barrier region that touches overlapping bytes
    with one side writing, or of the previous item's ``after`` if that is later (each list is
    emitted in order, so a running maximum loses nothing). -1 where there is none.

    One sweep in program order. The items of earlier regions are painted, as they are left
    behind, into per-allocation :class:`~hal.core.intervals.PaintedRanges` of their kind's
    writes and reads, valued by list index; an item asks the other kind's write ranges over
    all its ranges and read ranges over its writes. ``take`` drops what it looks at, which
    the running maximum has made irrelevant, so the whole pass is O(n log n) in the items
    and their ranges whatever their overlap. Only ranges the other kind could ask about are
    painted: writes on allocations it touches, reads on allocations it writes.
    """
    touched: tuple[set[int], set[int]] = (set(), set())
    written: tuple[set[int], set[int]] = (set(), set())
    kinds = [0 if type(item.op) is Dispatch else 1 for item in items]
    for item, kind in zip(items, kinds, strict=True):
        for r in item.reads:
            touched[kind].add(id(r.resource))
        for r in item.writes:
            touched[kind].add(id(r.resource))
            written[kind].add(id(r.resource))
    # Of each kind's finished regions, by id(resource): write ranges where the other kind
    # touches the allocation, read ranges where it writes it.
    writes: tuple[_Ranges, _Ranges] = ({}, {})
    reads: tuple[_Ranges, _Ranges] = ({}, {})
    counts = [0, 0]
    running = [-1, -1]
    pending: list[tuple[int, int, _Item]] = []
    region = items[0].region if items else 0
    for item, kind in zip(items, kinds, strict=True):
        if item.region != region:
            _paint(pending, writes, reads, touched, written)
            pending.clear()
            region = item.region
        best = running[kind]
        other_writes, other_reads = writes[1 - kind], reads[1 - kind]
        if other_writes:
            for r in item.reads:
                ranges = other_writes.get(id(r.resource))
                if ranges is not None and ranges.top > best:
                    found = ranges.take(r.offset, r.offset + r.size)
                    if found > best:
                        best = found
        if other_writes or other_reads:
            for r in item.writes:
                key = id(r.resource)
                for table in (other_writes, other_reads):
                    ranges = table.get(key)
                    if ranges is not None and ranges.top > best:
                        found = ranges.take(r.offset, r.offset + r.size)
                        if found > best:
                            best = found
        item.after = running[kind] = best
        pending.append((kind, counts[kind], item))
        counts[kind] += 1


_Ranges = dict[int, PaintedRanges]


def _paint(
    pending: list[tuple[int, int, _Item]],
    writes: tuple[_Ranges, _Ranges],
    reads: tuple[_Ranges, _Ranges],
    touched: tuple[set[int], set[int]],
    written: tuple[set[int], set[int]],
) -> None:
    """Paint the (kind, list index, item) of a finished region: its writes where the other
    kind touches the allocation, its reads where the other kind writes it."""
    for kind, index, item in pending:
        for table, wanted, regions in (
            (writes[kind], touched[1 - kind], item.writes),
            (reads[kind], written[1 - kind], item.reads),
        ):
            for r in regions:
                key = id(r.resource)
                if key in wanted:
                    ranges = table.get(key)
                    if ranges is None:
                        ranges = table[key] = PaintedRanges()
                    ranges.paint(r.offset, r.offset + r.size, index)


def _pieces(offset: int, size: int, blockable: bool) -> list[tuple[int, int, bool]]:
    """Split ``[offset, offset+size)`` into (offset, size, blocks) pieces: the 16-byte
    aligned body of a large ``blockable`` range goes to the block kernels, the edges (or the
    whole range) to the word kernels. Empty edges are kept; the chunk loops skip them."""
    body_start = _round_up(offset, 16)
    body_end = (offset + size) & ~15
    if not blockable or size < _VECTOR_MIN or body_end <= body_start:
        return [(offset, size, False)]
    return [
        (offset, body_start - offset, False),
        (body_start, body_end - body_start, True),
        (body_end, offset + size - body_end, False),
    ]


def _overlap(a: Region, b: Region) -> bool:
    return a.offset < b.offset + b.size and b.offset < a.offset + a.size


def _in_program_order(items: list[_Item]) -> list[Step]:
    """Consecutive dispatches share a pass; native transfers split passes in place."""
    steps: list[Step] = []
    current: list[Dispatch] = []
    for item in items:
        if isinstance(item.op, Dispatch):
            current.append(item.op)
            continue
        if current:
            steps.append(ComputePass(tuple(current)))
            current = []
        steps.append(item.op)
    if current:
        steps.append(ComputePass(tuple(current)))
    return steps


def _merge(dispatches: list[_Item], natives: list[_Item], natives_first: bool) -> list[Step]:
    """Greedy merge of the two ordered lists: emit as many items of the current kind as
    their cross-dependencies allow, then switch. Program order satisfies every dependency,
    so the merge always makes progress."""
    steps: list[Step] = []
    i = j = 0
    use_natives = natives_first
    while i < len(dispatches) or j < len(natives):
        if use_natives:
            while j < len(natives) and natives[j].after < i:
                op = natives[j].op
                assert not isinstance(op, Dispatch)
                steps.append(op)
                j += 1
        else:
            batch: list[Dispatch] = []
            while i < len(dispatches) and dispatches[i].after < j:
                op = dispatches[i].op
                assert isinstance(op, Dispatch)
                batch.append(op)
                i += 1
            if batch:
                steps.append(ComputePass(tuple(batch)))
        use_natives = not use_natives
    return steps


def _moved_transfers(items: list[_Item], steps: list[Step]) -> int:
    """How many native transfers changed position relative to the dispatches."""

    def signature(sequence: list[object]) -> list[int]:
        seen = 0
        out = []
        for entry in sequence:
            if isinstance(entry, Dispatch):
                seen += 1
            else:
                out.append(seen)
        return out

    original = signature([i.op for i in items])
    flat: list[object] = []
    for step in steps:
        flat.extend(step.dispatches if isinstance(step, ComputePass) else [step])
    return sum(a != b for a, b in zip(original, signature(flat), strict=True))


_NO_COMMAND = (SignalEventSegment, ResetEventSegment, AdviseSegment)
"""Segments that lower to no wgpu command."""

_GC_PAUSE_MIN = 4096
"""Programs of at least this many segments lower with the cyclic garbage collector paused:
the plan's objects hold no cycles, and collections triggered by their allocation traverse
every object built so far, which grew the cost per segment with the program's length
(measured: 10 µs at 2.5k segments, 14 µs at 20k)."""


def lower(
    segments: Sequence[Segment], caps: DeviceCaps, options: LoweringOptions | None = None
) -> Plan:
    """Lower ``segments`` (with every reference resolved to an allocation) into a Plan.

    Pure: reads only the segments and ``caps``. Raises ValueError for a segment whose
    reference is still a binding-table slot.
    """
    if not isinstance(caps, DeviceCaps):
        raise InvalidArgumentError(f"lower: caps {caps!r} is not a DeviceCaps (device.caps)")
    if not isinstance(segments, Sequence) or isinstance(segments, (str, bytes)):
        raise InvalidArgumentError(
            f"lower: segments must be a sequence of segments (cb.segments), not "
            f"{type(segments).__name__}"
        )
    if options is not None and not isinstance(options, LoweringOptions):
        raise InvalidArgumentError(f"lower: options {options!r} is not a LoweringOptions")
    if len(segments) < _GC_PAUSE_MIN or not gc.isenabled():
        return _lower(segments, caps, options)
    gc.disable()
    try:
        return _lower(segments, caps, options)
    finally:
        gc.enable()


def _lower(segments: Sequence[Segment], caps: DeviceCaps, options: LoweringOptions | None) -> Plan:
    builder = _PlanBuilder(caps, options or DEFAULT_OPTIONS)
    builder.has_dispatches = any(type(s) is DispatchSegment for s in segments)
    handlers = {
        DispatchSegment: builder.dispatch,
        FillSegment: builder.fill,
        CopySegment: builder.copy_segment,
        UpdateSegment: builder.update,
        tuple: builder.record,  # a fill or copy not yet made a segment (TransferRecord)
    }
    for segment in segments:
        handler = handlers.get(type(segment))
        if handler is not None:
            handler(segment)  # type: ignore[operator]
        elif isinstance(segment, (BarrierSegment, WaitEventsSegment)):
            builder.region_index += 1
        elif type(segment) is CollectiveSegment:
            # Collectives run on the host: the command buffer is split first.
            raise InvalidArgumentError(
                "lower: a collective is lowered by hal.core.collectives.split_segments first"
            )
        elif not isinstance(segment, _NO_COMMAND):
            raise InvalidArgumentError(f"lower: {segment!r} is not a segment")
        # Events are signalled at their position and waited like a barrier; advice needs no
        # wgpu command.
    plan = builder.finish(len(segments))
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(len(segments), plan, caps)
    return plan


def log_plan(segment_count: int, plan: Plan, caps: DeviceCaps) -> None:
    """The one debug record of a lowering: its size, the plan's counts and the cost model."""
    _log.debug("lowering: %d segments -> %s [costs %s]", segment_count, plan.stats, caps.costs.name)


def _overlapping_writes(writable: list[tuple[int, Region]]) -> frozenset[int]:
    """The positions of the writable bindings whose window overlaps that of an earlier,
    unshadowed one of the same resource (few bindings per dispatch: pairwise is cheapest)."""
    found: set[int] = set()
    for i, (position, r) in enumerate(writable):
        for earlier, q in writable[:i]:
            if (
                earlier not in found
                and q.resource == r.resource
                and r.offset < q.offset + q.size
                and q.offset < r.offset + r.size
            ):
                found.add(position)
                break
    return frozenset(found)
