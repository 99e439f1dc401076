"""The lowering pass: a pure function from recorded segments to a :class:`~hal.plan.Plan`.

Rules of this cut (see README, "How the lowering works"):

* dispatches share the current compute pass; barriers and events do not split it, because
  wgpu already synchronises dispatches inside a pass;
* a zero fill at 4-byte aligned offset/length becomes ``clear_buffer``; any other fill is a
  builtin fill dispatch in the current pass;
* a 4-byte aligned copy between different allocations becomes ``copy_buffer_to_buffer``; any
  other copy is a builtin copy dispatch;
* update bytes are packed into the plan's STAGING buffer and copied into place where the
  update was recorded (native copy when aligned, builtin copy otherwise);
* constants go to immediates, or are staged for a uniform binding where there are none;
* a binding that wgpu cannot take as is (offset not a multiple of the binding alignment,
  length not a multiple of 4 or zero, read-only alias of a read-write binding) is shadowed in
  SCRATCH: a builtin copy in before the dispatch, and out after it when writable.

Native transfers end the current pass; program order is kept, so every barrier is honoured.
Nothing here touches wgpu.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hal.buffer import Buffer
from hal.builtins import BuiltinKernel, copy_params, fill_params, workgroups_for
from hal.caps import DeviceCaps
from hal.plan import (
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
from hal.segments import (
    CopySegment,
    DispatchSegment,
    FillSegment,
    Ref,
    Segment,
    UpdateSegment,
)

__all__ = ["LoweringOptions", "lower"]


@dataclass(frozen=True, slots=True)
class LoweringOptions:
    """``naive``: one compute pass per dispatch (builtin ones included) — the baseline that
    benchmarks compare against."""

    naive: bool = False


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _PlanBuilder:
    def __init__(self, caps: DeviceCaps, options: LoweringOptions) -> None:
        self.caps = caps
        self.options = options
        self.steps: list[Step] = []
        self.current: list[Dispatch] = []
        self.staging = bytearray()
        self.constants_data = bytearray()
        self.scratch_sizes = {AuxBuffer.SCRATCH: 0, AuxBuffer.READ_SCRATCH: 0}
        self.resources: set[Buffer] = set()
        self.builtin_dispatches = 0
        self.shadowed = 0
        # Largest byte range one builtin dispatch handles: its window (range plus alignment
        # slack) must fit one storage binding, and its offsets must fit u32 parameters.
        self.chunk = max(4, (min(caps.max_binding_size, 1 << 30) - caps.storage_alignment) & ~255)

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

    # -- steps --------------------------------------------------------------------------------

    def end_pass(self) -> None:
        if self.current:
            self.steps.append(ComputePass(tuple(self.current)))
            self.current = []

    def add_dispatch(self, dispatch: Dispatch) -> None:
        if self.options.naive:
            self.end_pass()
        self.current.append(dispatch)
        if dispatch.is_builtin:
            self.builtin_dispatches += 1
        if self.options.naive:
            self.end_pass()

    def add_native(self, step: Step) -> None:
        self.end_pass()
        self.steps.append(step)

    def builtin(
        self,
        kernel: BuiltinKernel,
        bindings: tuple[tuple[int, str, Region], ...],
        params: bytes,
        words: int,
    ) -> None:
        constants, offset = self.constants(params)
        self.add_dispatch(
            Dispatch(
                kernel,
                kernel.entry_point,
                bindings,
                constants,
                offset,
                (workgroups_for(words), 1, 1),
                None,
                f"builtin.{kernel.entry_point}",
            )
        )

    def constants(self, data: bytes) -> tuple[bytes, int | None]:
        if not data or self.caps.immediates:
            return data, None
        alignment = max(self.caps.uniform_alignment, self.caps.storage_alignment)
        return b"", self.stage(data, alignment, self.constants_data)

    def builtin_fill(self, target: Region, pattern_word: int) -> None:
        for start in range(0, target.size, self.chunk):
            piece = Region(
                target.resource, target.offset + start, min(self.chunk, target.size - start)
            )
            window, begin = self.window(piece)
            self.builtin(
                BuiltinKernel.FILL,
                ((0, "storage", window),),
                fill_params(begin, piece.size, pattern_word),
                window.size // 4,
            )

    def builtin_copy(self, source: Region, target: Region) -> None:
        for start in range(0, target.size, self.chunk):
            size = min(self.chunk, target.size - start)
            src_window, src_begin = self.window(
                Region(source.resource, source.offset + start, size)
            )
            dst_window, dst_begin = self.window(
                Region(target.resource, target.offset + start, size)
            )
            self.builtin(
                BuiltinKernel.COPY,
                ((0, "storage", src_window), (1, "storage", dst_window)),
                copy_params(src_begin, dst_begin, size),
                dst_window.size // 4,
            )

    def copy(self, source: Region, target: Region) -> None:
        aligned = source.offset % 4 == 0 and target.offset % 4 == 0 and target.size % 4 == 0
        if aligned and source.resource is not target.resource:
            self.add_native(CopyBuffer(source, target))
        else:
            self.builtin_copy(source, target)

    # -- segments -----------------------------------------------------------------------------

    def region(self, ref: Ref) -> Region:
        if ref.buffer is None or ref.length is None:
            raise ValueError(f"lower: unresolved reference {ref.describe()}")
        self.resources.add(ref.buffer)
        return Region(ref.buffer, ref.offset, ref.length)

    def fill(self, segment: FillSegment) -> None:
        target = self.region(segment.target)
        if target.size == 0:
            return
        pattern = segment.pattern
        if not any(pattern) and target.offset % 4 == 0 and target.size % 4 == 0:
            self.add_native(ClearBuffer(target))
            return
        # The pattern repeats from the target offset; bytes of a word are at window positions
        # congruent to 0..3 (windows are word aligned), so rotate the pattern accordingly.
        n = len(pattern)
        word = bytes(pattern[(k - target.offset) % n] for k in range(4))
        self.builtin_fill(target, int.from_bytes(word, "little"))

    def update(self, segment: UpdateSegment) -> None:
        target = self.region(segment.target)
        if target.size == 0:
            return
        offset = self.stage(segment.data, 4)
        self.copy(Region(AuxBuffer.STAGING, offset, target.size), target)

    def copy_segment(self, segment: CopySegment) -> None:
        source, target = self.region(segment.source), self.region(segment.target)
        if target.size:
            self.copy(source, target)

    def dispatch(self, segment: DispatchSegment) -> None:
        layout = segment.layout
        caps = self.caps
        refs = {
            b.binding: self.region(r)
            for b in layout.bindings
            if (r := segment.bindings[b.binding]) is not None
        }
        written = {refs[b.binding].resource for b in layout.bindings if b.writable}
        bindings: list[tuple[int, str, Region]] = []
        copy_back: list[tuple[Region, Region]] = []
        for b in layout.bindings:
            region = refs[b.binding]
            uniform = b.kind == "uniform"
            alignment = caps.uniform_alignment if uniform else caps.storage_alignment
            aliased = not b.writable and region.resource in written
            if region.offset % alignment or region.size % 4 or region.size == 0 or aliased:
                self.shadowed += 1
                shadow = self.scratch(region.size, alignment, b.writable)
                if region.size:
                    self.builtin_copy(region, shadow)
                    if b.writable:
                        copy_back.append((shadow, region))
                region = Region(shadow.resource, shadow.offset, max(4, _round_up(region.size, 4)))
            bindings.append((b.binding, b.kind, region))
        indirect = None
        if segment.indirect is not None:
            indirect = self.region(segment.indirect)
            indirect = Region(indirect.resource, indirect.offset, 12)
            # Indirect parameters are read through INDIRECT usage, which wgpu also refuses
            # beside a read-write binding of the same buffer.
            if indirect.offset % 4 or indirect.resource in written:
                shadow = self.scratch(12, 4, writable=False)
                self.builtin_copy(indirect, shadow)
                indirect = shadow
        padded = segment.constants.ljust(layout.constants_size, b"\0")
        constants, constants_offset = self.constants(padded)
        label = f"{segment.executable.label}:{segment.entry_point}"
        self.add_dispatch(
            Dispatch(
                segment.executable,
                segment.entry_point,
                tuple(bindings),
                constants,
                constants_offset,
                segment.workgroups,
                indirect,
                label,
            )
        )
        for shadow, region in copy_back:
            self.builtin_copy(shadow, region)

    def finish(self, segment_count: int) -> Plan:
        self.end_pass()
        passes = [s for s in self.steps if isinstance(s, ComputePass)]
        stats = PlanStats(
            segments=segment_count,
            compute_passes=len(passes),
            dispatches=sum(len(p.dispatches) for p in passes),
            builtin_dispatches=self.builtin_dispatches,
            native_copies=sum(isinstance(s, CopyBuffer) for s in self.steps),
            native_clears=sum(isinstance(s, ClearBuffer) for s in self.steps),
            staged_bytes=len(self.staging) + len(self.constants_data),
            shadowed_bindings=self.shadowed,
            scratch_bytes=sum(self.scratch_sizes.values()),
        )
        return Plan(
            tuple(self.steps),
            bytes(self.staging),
            bytes(self.constants_data),
            self.scratch_sizes[AuxBuffer.SCRATCH],
            self.scratch_sizes[AuxBuffer.READ_SCRATCH],
            frozenset(self.resources),
            stats,
        )


def lower(
    segments: Sequence[Segment], caps: DeviceCaps, options: LoweringOptions | None = None
) -> Plan:
    """Lower ``segments`` (with every reference resolved to an allocation) into a Plan.

    Pure: reads only the segments and ``caps``. Raises ValueError for a segment whose
    reference is still a binding-table slot.
    """
    builder = _PlanBuilder(caps, options or LoweringOptions())
    for segment in segments:
        if isinstance(segment, DispatchSegment):
            builder.dispatch(segment)
        elif isinstance(segment, FillSegment):
            builder.fill(segment)
        elif isinstance(segment, CopySegment):
            builder.copy_segment(segment)
        elif isinstance(segment, UpdateSegment):
            builder.update(segment)
        # Barriers, events and advice need no wgpu command: program order is kept and wgpu
        # synchronises every dependency inside and between passes.
    return builder.finish(len(segments))
