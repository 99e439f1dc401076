"""Command buffers: record commands as segments, lower them at ``end()``.

Recording validates each command (API.md's error table) and appends a plain segment; nothing
touches wgpu until submission. ``end()`` lowers the segments into a plan; a command buffer that
uses binding-table slots is lowered at submission, once per distinct binding table.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hal.core.checks import (
    check_buffer_usage,
    check_device,
    check_int,
    make_ref,
    min_binding_sizes,
    normalise_pattern,
    one_line,
    pack_constants,
)
from hal.core.lowering import LoweringOptions, lower
from hal.core.segments import (
    AdviseSegment,
    BarrierSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    Ref,
    ResetEventSegment,
    Segment,
    SignalEventSegment,
    UpdateSegment,
    WaitEventsSegment,
)
from hal.enums import (
    BufferUsage,
    CommandBufferMode,
    CommandCategory,
    ExecutionStage,
    MemoryAccess,
    MemoryType,
)
from hal.errors import (
    FailedPreconditionError,
    HalError,
    InvalidArgumentError,
    OutOfRangeError,
    ResourceExhaustedError,
)
from hal.backends.protocol import BackendError
from hal.runtime.buffer import Buffer, BufferRef, SlotRef, host_bytes
from hal.runtime.event import Event
from hal.runtime.executable import BindingLayout, Executable

if TYPE_CHECKING:
    from hal.core.plan import Plan, PlanStats
    from hal.runtime.device import Device
    from hal.runtime.encoder import Program

__all__ = ["CommandBuffer", "CommandBufferState"]

_BINDING_USAGE = {
    "storage": BufferUsage.DISPATCH_STORAGE_READ | BufferUsage.DISPATCH_STORAGE_WRITE,
    "read-only-storage": BufferUsage.DISPATCH_STORAGE_READ,
    "uniform": BufferUsage.DISPATCH_UNIFORM_READ,
}
_BINDING_ACCESS = {
    "storage": MemoryAccess.READ | MemoryAccess.WRITE,
    "read-only-storage": MemoryAccess.READ,
    "uniform": MemoryAccess.READ,
}
_PROGRAM_CACHE_SIZE = 8
# HAL usage bits that change the wgpu buffer's own usage (see allocator.wgpu_usage): without
# them wgpu rejects the binding, so they are checked even in UNVALIDATED mode.
_WGPU_USAGE = BufferUsage.DISPATCH_UNIFORM_READ


class CommandBufferState(enum.Enum):
    """Where a command buffer is in its life."""

    INITIAL = "initial"
    RECORDING = "recording"
    EXECUTABLE = "executable"
    SUBMITTED = "submitted"  # a ONE_SHOT buffer after its submission


class CommandBuffer:
    """A recorded sequence of HAL commands (see API.md, "Command buffers").

    Create with ``device.create_command_buffer`` or ``device.record``. Commands raise the
    HalError subclass of API.md's table when their arguments are invalid; a rejected command
    records nothing.
    """

    def __init__(
        self,
        device: Device,
        mode: CommandBufferMode,
        categories: CommandCategory,
        binding_capacity: int,
    ) -> None:
        mode = CommandBufferMode(mode)
        categories = CommandCategory(categories)
        binding_capacity = check_int("create_command_buffer", "binding_capacity", binding_capacity)
        if mode & CommandBufferMode.ALLOW_INLINE_EXECUTION:
            if not mode & CommandBufferMode.ONE_SHOT:
                raise InvalidArgumentError(
                    "create_command_buffer: ALLOW_INLINE_EXECUTION requires ONE_SHOT"
                )
            if binding_capacity:
                raise InvalidArgumentError(
                    "create_command_buffer: inline command buffers cannot have a binding_capacity"
                )
        if not categories:
            raise InvalidArgumentError("create_command_buffer: categories must not be empty")
        self.device = device
        self.mode = mode
        self.categories = categories
        self._category_bits = int(categories)
        self.binding_capacity = binding_capacity
        self.state = CommandBufferState.INITIAL
        self._segments: list[Segment] = []
        self._validate = not mode & CommandBufferMode.UNVALIDATED
        self._uses_slots = False
        self._slot_count = 0
        self._plan: Plan | None = None
        self._programs: dict[tuple[Any, ...], _CheckedProgram] = {}
        self._staged_bytes = 0
        self._submissions = 0
        self._lock = threading.Lock()
        # Subspans the commands name: releasing one must fail later submissions too, and the
        # plan only knows allocations.
        self._views: set[Buffer] = set()

    def __repr__(self) -> str:
        return (
            f"<hal.CommandBuffer {self.state.value} {len(self._segments)} segments "
            f"mode={self.mode!r}>"
        )

    # -- state ----------------------------------------------------------------------------

    def begin(self) -> None:
        """Start recording. Raises FailedPreconditionError unless the buffer is new."""
        if self.state is CommandBufferState.RECORDING:
            raise FailedPreconditionError("begin: the command buffer is already recording")
        if self.state is not CommandBufferState.INITIAL:
            raise FailedPreconditionError(
                "begin: the command buffer was already recorded; re-recording is not allowed"
            )
        self.device.check_open("begin")
        self.state = CommandBufferState.RECORDING

    def end(self) -> None:
        """Finish recording and lower the segments into a plan.

        Raises FailedPreconditionError unless recording, UnavailableError once the device is
        closed, ResourceExhaustedError if the plan's own buffers exceed the device limits."""
        if self.state is not CommandBufferState.RECORDING:
            raise FailedPreconditionError(
                f"end: the command buffer is not recording (state {self.state.value})"
            )
        self.device.check_open("end")
        if not self._uses_slots:
            plan = lower(self._segments, self.device.caps)
            self._check_plan_limits("end", plan)
            self._plan = plan
        self.state = CommandBufferState.EXECUTABLE

    def _check_plan_limits(self, what: str, plan: Plan) -> None:
        """ResourceExhaustedError where a plan's staging or scratch buffer would exceed
        max-buffer-size: wgpu would refuse to create it when the plan is compiled."""
        limit = self.device.caps.max_buffer_size
        for name, size in (
            ("staged update bytes", len(plan.staging)),
            ("staged constants", len(plan.constants)),
            ("scratch for shadowed bindings", plan.scratch_size),
            ("read-only scratch for shadowed bindings", plan.read_scratch_size),
        ):
            if size > limit:
                raise ResourceExhaustedError(
                    f"{what}: the command buffer needs {size} bytes of {name}; the device's "
                    f"max-buffer-size is {limit}"
                )

    def _begin_command(self, what: str, category: CommandCategory) -> None:
        self.device.check_open(what)
        if self.state is not CommandBufferState.RECORDING:
            raise FailedPreconditionError(
                f"{what}: the command buffer is not in a recording state "
                f"(state {self.state.value}; call begin() first)"
            )
        if self._validate and int(category) & ~self._category_bits:
            raise FailedPreconditionError(
                f"{what}: requires category {CommandCategory(category)!r} but the command "
                f"buffer allows only {self.categories!r}"
            )

    def _ref(
        self,
        what: str,
        argument: str,
        target: Any,
        offset: int,
        length: int | None,
        usage: BufferUsage,
        access: MemoryAccess,
    ) -> Ref:
        ref = make_ref(what, argument, target, offset, length, self.binding_capacity, self.device)
        if ref.buffer is None:
            return ref
        view = target.buffer if isinstance(target, BufferRef) else target
        if self._validate:
            for holder in (ref.buffer, view) if view is not ref.buffer else (view,):
                # A subspan carries its own permissions.
                check_buffer_usage(what, argument, holder, usage, access, MemoryType.DEVICE_VISIBLE)
        else:
            # UNVALIDATED still refuses what wgpu itself would reject at submission.
            check_buffer_usage(what, argument, ref.buffer, usage & _WGPU_USAGE)
        if view is not ref.buffer:
            self._views.add(view)
        return ref

    def _append(self, segment: Segment, refs: Sequence[Ref | None]) -> None:
        for ref in refs:
            if ref is not None and ref.slot is not None:
                self._uses_slots = True
                self._slot_count = max(self._slot_count, ref.slot + 1)
        self._segments.append(segment)

    # -- commands -------------------------------------------------------------------------

    def execution_barrier(
        self,
        source_stage: int = ExecutionStage.ALL,
        target_stage: int = ExecutionStage.ALL,
        flags: int = 0,
        memory_barriers: Sequence[Any] = (),
        buffer_barriers: Sequence[Any] = (),
    ) -> None:
        """Order every command before the barrier against every command after it."""
        self._begin_command("execution_barrier", CommandCategory.NONE)
        self._append(
            BarrierSegment(
                int(source_stage),
                int(target_stage),
                int(flags),
                tuple(memory_barriers),
                tuple(buffer_barriers),
            ),
            (),
        )

    def _check_event(self, what: str, event: Any) -> None:
        if not isinstance(event, Event) or event.device is not self.device:
            raise InvalidArgumentError(f"{what}: event {event!r} is not an event of this device")

    def signal_event(self, event: Event, source_stage: int = ExecutionStage.ALL) -> None:
        """Signal ``event`` once the work before it has reached ``source_stage``."""
        self._begin_command("signal_event", CommandCategory.DISPATCH)
        self._check_event("signal_event", event)
        self._append(SignalEventSegment(event, int(source_stage)), ())

    def reset_event(self, event: Event, source_stage: int = ExecutionStage.ALL) -> None:
        """Reset ``event``."""
        self._begin_command("reset_event", CommandCategory.DISPATCH)
        self._check_event("reset_event", event)
        self._append(ResetEventSegment(event, int(source_stage)), ())

    def wait_events(
        self,
        events: Sequence[Event],
        source_stage: int = ExecutionStage.ALL,
        target_stage: int = ExecutionStage.ALL,
        memory_barriers: Sequence[Any] = (),
        buffer_barriers: Sequence[Any] = (),
    ) -> None:
        """Wait for ``events``: orders like an execution barrier."""
        self._begin_command("wait_events", CommandCategory.DISPATCH)
        events = tuple(events)
        for event in events:
            self._check_event("wait_events", event)
        self._append(
            WaitEventsSegment(
                events,
                int(source_stage),
                int(target_stage),
                tuple(memory_barriers),
                tuple(buffer_barriers),
            ),
            (),
        )

    def advise_buffer(self, target: Buffer | BufferRef | SlotRef, flags: int = 0) -> None:
        """A hint about ``target``'s contents; lowers to nothing."""
        self._begin_command("advise_buffer", CommandCategory.TRANSFER)
        ref = self._ref(
            "advise_buffer", "target", target, 0, None, BufferUsage.NONE, MemoryAccess.NONE
        )
        self._append(AdviseSegment(ref, int(flags)), (ref,))

    discard_buffer = advise_buffer

    def fill_buffer(
        self,
        target: Buffer | BufferRef | SlotRef,
        offset: int,
        length: int | None,
        pattern: int | bytes,
        pattern_length: int | None = None,
    ) -> None:
        """Repeat a 1/2/4-byte ``pattern`` (little-endian) over ``[offset, offset+length)`` of
        ``target``; bytes outside never change. ``offset`` and ``length`` must be multiples of
        ``pattern_length``. Raises InvalidArgumentError, OutOfRangeError,
        PermissionDeniedError, FailedPreconditionError."""
        what = "fill_buffer"
        self._begin_command(what, CommandCategory.TRANSFER)
        data = normalise_pattern(what, pattern, pattern_length)
        ref = self._ref(
            what, "target", target, offset, length, BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE
        )
        n = len(data)
        if self._validate and offset % n:
            raise InvalidArgumentError(
                f"{what}: offset {offset} is not a multiple of pattern_length {n}"
            )
        if self._validate and ref.length is not None and ref.length % n:
            raise InvalidArgumentError(
                f"{what}: length {ref.length} is not a multiple of pattern_length {n}"
            )
        if ref.length == 0:
            return
        self._append(FillSegment(ref, data), (ref,))

    def update_buffer(
        self,
        source: Any,
        source_offset: int,
        target: Buffer | BufferRef | SlotRef,
        target_offset: int,
        length: int,
    ) -> None:
        """Write ``length`` bytes of host ``source`` (from ``source_offset``) into ``target``
        when the command executes. The bytes are captured now. Raises OutOfRangeError (past
        the source or target), PermissionDeniedError, FailedPreconditionError."""
        what = "update_buffer"
        self._begin_command(what, CommandCategory.TRANSFER)
        view = host_bytes(source, what, "source")
        source_offset = check_int(what, "source_offset", source_offset)
        length = check_int(what, "length", length)
        if source_offset + length > len(view):
            raise OutOfRangeError(
                f"{what}: source range [{source_offset}, {source_offset + length}) is past "
                f"the end of the {len(view)}-byte source"
            )
        ref = self._ref(
            what,
            "target",
            target,
            target_offset,
            length,
            BufferUsage.TRANSFER_TARGET,
            MemoryAccess.WRITE,
        )
        if length == 0:
            return
        limit = self.device.caps.max_buffer_size
        if self._staged_bytes + length > limit:
            raise ResourceExhaustedError(
                f"{what}: length {length} would bring the command buffer's staged update "
                f"bytes to {self._staged_bytes + length}, past the device's max-buffer-size "
                f"{limit}"
            )
        self._append(
            UpdateSegment(bytes(view[source_offset : source_offset + length]), ref), (ref,)
        )
        self._staged_bytes += length

    def copy_buffer(
        self,
        source: Buffer | BufferRef | SlotRef,
        source_offset: int,
        target: Buffer | BufferRef | SlotRef,
        target_offset: int,
        length: int | None,
    ) -> None:
        """Copy ``length`` bytes (None: the rest of the source range) at any alignment.
        Ranges in one allocation must not overlap. Raises InvalidArgumentError (overlap),
        OutOfRangeError, PermissionDeniedError, FailedPreconditionError."""
        what = "copy_buffer"
        self._begin_command(what, CommandCategory.TRANSFER)
        src = self._ref(
            what,
            "source",
            source,
            source_offset,
            length,
            BufferUsage.TRANSFER_SOURCE,
            MemoryAccess.READ,
        )
        dst = self._ref(
            what,
            "target",
            target,
            target_offset,
            src.length,
            BufferUsage.TRANSFER_TARGET,
            MemoryAccess.WRITE,
        )
        if src.length is None and dst.length is not None:
            src = replace(src, length=dst.length)
        if (
            self._validate
            and src.buffer is not None
            and src.buffer is dst.buffer
            and src.length
            and src.offset < dst.offset + (dst.length or 0)
            and dst.offset < src.offset + src.length
        ):
            raise InvalidArgumentError(
                f"{what}: source range [{src.offset}, {src.offset + src.length}) and target "
                f"range [{dst.offset}, {dst.offset + src.length}) overlap in one allocation"
            )
        if src.length == 0:
            return
        self._append(CopySegment(src, dst), (src, dst))

    def dispatch(
        self,
        executable: Executable,
        entry_point: str,
        workgroup_count: Sequence[int],
        *,
        constants: Any = (),
        bindings: Sequence[Buffer | BufferRef | SlotRef | None] = (),
    ) -> None:
        """Dispatch ``entry_point`` over ``workgroup_count`` = (x, y, z) workgroups, with
        ``constants`` (32-bit values or bytes) and ``bindings[i]`` at ``@binding(i)``.
        A count with a zero dimension records nothing. Raises InvalidArgumentError,
        OutOfRangeError, PermissionDeniedError, FailedPreconditionError."""
        what = "dispatch"
        self._begin_command(what, CommandCategory.DISPATCH)
        counts = tuple(workgroup_count) if isinstance(workgroup_count, Sequence) else None
        if counts is None or len(counts) != 3:
            raise InvalidArgumentError(
                f"{what}: workgroup_count {workgroup_count!r} must be a sequence (x, y, z)"
            )
        if counts == (0, 0, 0):
            return
        limit = self.device.caps.max_workgroups
        for axis, count in zip("xyz", counts, strict=False):
            check_int(what, f"workgroup_count.{axis}", count)
            if count > limit:
                raise InvalidArgumentError(
                    f"{what}: workgroup_count.{axis} {count} exceeds the adapter's "
                    f"max-compute-workgroups-per-dimension {limit}"
                )
        grid = (int(counts[0]), int(counts[1]), int(counts[2]))
        segment, refs = self._dispatch_segment(
            what, executable, entry_point, constants, bindings, grid, None
        )
        if 0 in counts:
            return
        self._append(segment, refs)

    def dispatch_indirect(
        self,
        executable: Executable,
        entry_point: str,
        workgroups: Buffer | BufferRef | SlotRef,
        *,
        constants: Any = (),
        bindings: Sequence[Buffer | BufferRef | SlotRef | None] = (),
    ) -> None:
        """Dispatch with the (x, y, z) workgroup counts read as 3×u32 from ``workgroups``
        when the dispatch executes (offset a multiple of 4, at least 12 bytes)."""
        what = "dispatch_indirect"
        self._begin_command(what, CommandCategory.DISPATCH)
        ref = self._ref(
            what,
            "workgroups",
            workgroups,
            0,
            None,
            BufferUsage.DISPATCH_INDIRECT_PARAMS,
            MemoryAccess.READ,
        )
        if ref.buffer is not None and ref.offset % 4:
            raise InvalidArgumentError(
                f"{what}: workgroups offset {ref.offset} is not a multiple of 4"
            )
        if isinstance(workgroups, SlotRef) and workgroups.offset % 4:
            raise InvalidArgumentError(
                f"{what}: workgroups offset {workgroups.offset} is not a multiple of 4"
            )
        if ref.length is not None and ref.length < 12:
            raise OutOfRangeError(
                f"{what}: workgroups range is {ref.length} bytes; 12 (3×u32) are required"
            )
        segment, refs = self._dispatch_segment(
            what, executable, entry_point, constants, bindings, None, ref
        )
        self._append(segment, (*refs, ref))

    def _dispatch_segment(
        self,
        what: str,
        executable: Any,
        entry_point: str,
        constants: Any,
        bindings: Sequence[Any],
        workgroups: tuple[int, int, int] | None,
        indirect: Ref | None,
    ) -> tuple[DispatchSegment, tuple[Ref | None, ...]]:
        if not isinstance(executable, Executable) or executable.device is not self.device:
            raise InvalidArgumentError(
                f"{what}: executable {executable!r} is not an executable of this device"
            )
        try:
            layout = executable.layout(entry_point)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(f"{what}: {error}") from None
        data = pack_constants(what, constants)
        if len(data) > layout.constants_size:
            raise InvalidArgumentError(
                f"{what}: {len(data)} bytes of constants, but {entry_point!r} declares "
                f"{layout.constants_size} (its var<immediate> block)"
            )
        if isinstance(bindings, (Buffer, BufferRef, SlotRef)):
            bindings = (bindings,)
        bindings = tuple(bindings)
        if len(bindings) != layout.binding_count:
            raise InvalidArgumentError(
                f"{what}: {len(bindings)} bindings given, but {entry_point!r} uses "
                f"{layout.binding_count} (@binding(0..{layout.binding_count - 1}))"
            )
        refs: list[Ref | None] = [None] * len(bindings)
        for b in layout.bindings:
            argument = f"bindings[{b.binding}]"
            ref = self._ref(
                what,
                argument,
                bindings[b.binding],
                0,
                None,
                _BINDING_USAGE[b.kind],
                _BINDING_ACCESS[b.kind],
            )
            self._check_binding_size(what, argument, b.kind, ref.length)
            self._check_min_size(what, argument, executable, entry_point, b, ref.length)
            refs[b.binding] = ref
        for i, binding in enumerate(bindings):
            if (
                refs[i] is None
                and binding is not None
                and not isinstance(binding, (Buffer, BufferRef, SlotRef))
            ):
                raise InvalidArgumentError(
                    f"{what}: bindings[{i}] must be a Buffer, BufferRef or SlotRef"
                )
        segment = DispatchSegment(
            executable, entry_point, layout, workgroups, indirect, data, tuple(refs)
        )
        return segment, tuple(refs)

    def _check_min_size(
        self,
        what: str,
        argument: str,
        executable: Executable,
        entry_point: str,
        binding: BindingLayout,
        length: int | None,
    ) -> None:
        """OutOfRangeError for a binding shorter than the kernel's declared type (wgpu would
        reject it only when the whole command buffer is encoded). A range that is not a whole
        number of words counts as rounded up: the lowering shadows it into whole words."""
        need = min_binding_sizes(executable).get(binding.binding, 0)
        if length is not None and max(4, -(-length // 4) * 4) < need:
            raise OutOfRangeError(
                f"{what}: {argument} is {length} bytes, but {entry_point!r} declares "
                f"{binding.name!r} as a type of at least {need} bytes"
            )

    def _check_binding_size(self, what: str, argument: str, kind: str, length: int | None) -> None:
        caps = self.device.caps
        limit = caps.max_uniform_binding_size if kind == "uniform" else caps.max_binding_size
        if length is not None and length > limit:
            raise InvalidArgumentError(
                f"{what}: {argument} is {length} bytes; the adapter binds at most {limit} "
                f"bytes as {kind}"
            )

    # -- inspection -----------------------------------------------------------------------

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The recorded segments (read-only)."""
        return tuple(self._segments)

    @property
    def plan(self) -> Plan | None:
        """The lowered plan: set at ``end()``; for a command buffer using binding-table slots,
        the plan of its latest submission (None before the first)."""
        return self._plan

    @property
    def stats(self) -> PlanStats | None:
        """Counts of the plan (segments, passes, dispatches incl. builtins, native copies and
        clears, staged bytes, shadowed bindings); None while there is no plan."""
        return None if self._plan is None else self._plan.stats

    def dump(self) -> str:
        """Human-readable segments and plan."""
        lines = [f"command buffer: {len(self._segments)} segments, state {self.state.value}"]
        for i, segment in enumerate(self._segments):
            lines.append(f"  ({i}) {_describe_segment(segment)}")
        if self._plan is None:
            lines.append("plan: (not lowered yet)")
        else:
            lines.append("plan:")
            lines.append(self._plan.describe())
        return "\n".join(lines)

    def lower_naive(self) -> Plan:
        """The same segments lowered with one compute pass per dispatch (for comparisons).
        Raises FailedPreconditionError if the buffer is not ended or uses slots."""
        if self.state is CommandBufferState.INITIAL or self.state is CommandBufferState.RECORDING:
            raise FailedPreconditionError("lower_naive: the command buffer is not ended")
        if self._uses_slots:
            raise FailedPreconditionError("lower_naive: the command buffer uses binding slots")
        return lower(self._segments, self.device.caps, LoweringOptions(naive=True))

    # -- submission -------------------------------------------------------------------------

    def claim(self) -> None:
        """Reserve the buffer for one submission: raises FailedPreconditionError unless it is
        ended and (for ONE_SHOT) not yet submitted; a ONE_SHOT buffer becomes SUBMITTED now,
        so two threads can never both submit it. Undo with :meth:`unclaim`."""
        what = "queue_execute"
        with self._lock:
            if self.state in (CommandBufferState.INITIAL, CommandBufferState.RECORDING):
                raise FailedPreconditionError(
                    f"{what}: the command buffer has not been ended (state {self.state.value})"
                )
            if self.state is CommandBufferState.SUBMITTED:
                raise FailedPreconditionError(
                    f"{what}: the ONE_SHOT command buffer was already submitted"
                )
            if self.mode & CommandBufferMode.ONE_SHOT:
                self.state = CommandBufferState.SUBMITTED
            self._submissions += 1

    def unclaim(self) -> None:
        """Give back a claim whose submission failed before reaching the queue."""
        with self._lock:
            self._submissions -= 1
            if self.mode & CommandBufferMode.ONE_SHOT:
                self.state = CommandBufferState.EXECUTABLE

    def prepare(self, table: Sequence[Any] | None) -> _CheckedProgram:
        """The program to encode for a submission with ``table`` (lowered and compiled on
        first use). Raises FailedPreconditionError (released buffer), OutOfRangeError and
        PermissionDeniedError (binding table), ResourceExhaustedError (plan buffers beyond the
        device limits), InvalidArgumentError (wgpu rejected a command, named in the message)
        and UnavailableError (the device was lost)."""
        what = "queue_execute"
        if self._uses_slots:
            segments, key = self._resolve_slots(table)
            program = self._programs.get(key)
            if program is None:
                plan = lower(segments, self.device.caps)
                self._check_plan_limits(what, plan)
                self._check_alive(plan)
                program = self._compile(plan, segments)
                if len(self._programs) >= _PROGRAM_CACHE_SIZE:
                    self._programs.pop(next(iter(self._programs)))
                self._programs[key] = program
            self._plan = program.plan
        else:
            assert self._plan is not None
            program = self._programs.get(())
            if program is None:
                # Released buffers first: wgpu refuses to bind a destroyed buffer.
                self._check_alive(self._plan)
                program = self._programs[()] = self._compile(self._plan, self._segments)
        self._check_alive(program.plan)
        return program

    def _check_alive(self, plan: Plan) -> None:
        for buffer in (*plan.resources, *self._views):
            buffer.check_alive("queue_execute", "a buffer the command buffer uses")

    def _compile(self, plan: Plan, segments: Sequence[Segment]) -> _CheckedProgram:
        from hal.runtime.encoder import compile_plan

        try:
            program = compile_plan(plan, self.device.encoding)
        except BackendError as error:
            raise self._wgpu_failure(segments, error) from None
        return _CheckedProgram(self, program, tuple(segments))

    def _wgpu_failure(self, segments: Sequence[Segment], error: BackendError) -> BaseException:
        """The HalError for a wgpu error that escaped validation: UnavailableError if the
        device is lost (which is then failed), else InvalidArgumentError naming the first
        command that wgpu rejects on its own. Only the error path pays for the search."""
        from hal.runtime.encoder import compile_plan

        what = "queue_execute"
        if error.lost:
            return error  # the executor marks the device lost
        for index, segment in enumerate(segments):
            try:
                compile_plan(lower([segment], self.device.caps), self.device.encoding).encode()
            except (BackendError, HalError) as single:
                detail = one_line(single).removeprefix(f"{what}: wgpu rejected the plan: ")
                return InvalidArgumentError(
                    f"{what}: wgpu rejected command {index} "
                    f"({_describe_segment(segment)}): {detail}"
                )
        return InvalidArgumentError(f"{what}: wgpu rejected the command buffer: {one_line(error)}")

    def _resolve_slots(self, table: Sequence[Any] | None) -> tuple[list[Segment], tuple[Any, ...]]:
        what = "queue_execute"
        entries = list(table) if table is not None else []
        if len(entries) < self._slot_count:
            raise OutOfRangeError(
                f"{what}: binding table has {len(entries)} entries; the command buffer uses "
                f"slots up to {self._slot_count - 1}"
            )
        resolved: list[tuple[Buffer, Buffer, int, int]] = []
        for i, entry in enumerate(entries[: self._slot_count]):
            argument = f"binding_table[{i}]"
            if isinstance(entry, Buffer):
                entry.check_alive(what, argument)
                check_device(what, argument, entry, self.device)
                resolved.append(
                    (entry, entry.allocated_buffer, entry.byte_offset, entry.byte_length)
                )
            elif isinstance(entry, BufferRef):
                ref = make_ref(what, argument, entry, 0, None, 0, self.device)
                assert ref.buffer is not None and ref.length is not None
                resolved.append((entry.buffer, ref.buffer, ref.offset, ref.length))
            else:
                raise InvalidArgumentError(
                    f"{what}: {argument} must be a Buffer or BufferRef, not {type(entry).__name__}"
                )

        def resolve(
            ref: Ref | None, argument: str, usage: BufferUsage, access: MemoryAccess
        ) -> Ref | None:
            if ref is None or ref.slot is None:
                return ref
            buffer, root, base, size = resolved[ref.slot]
            length = size - ref.offset if ref.length is None else ref.length
            if ref.offset > size or ref.offset + length > size:
                raise OutOfRangeError(
                    f"{what}: {argument} range [{ref.offset}, {ref.offset + length}) of slot "
                    f"{ref.slot} is past the end of its {size}-byte table entry"
                )
            for holder in {buffer, root}:
                if self._validate:
                    check_buffer_usage(
                        what,
                        f"{argument} (slot {ref.slot})",
                        holder,
                        usage,
                        access,
                        MemoryType.DEVICE_VISIBLE,
                    )
                else:
                    check_buffer_usage(
                        what, f"{argument} (slot {ref.slot})", holder, usage & _WGPU_USAGE
                    )
            return ref.at(root, base + ref.offset, length)

        out: list[Segment] = []
        for segment in self._segments:
            if isinstance(segment, FillSegment):
                target = resolve(
                    segment.target,
                    "fill_buffer target",
                    BufferUsage.TRANSFER_TARGET,
                    MemoryAccess.WRITE,
                )
                assert target is not None
                if target.length and target.length % len(segment.pattern):
                    raise InvalidArgumentError(
                        f"{what}: fill_buffer length {target.length} is not a multiple of "
                        f"pattern_length {len(segment.pattern)}"
                    )
                out.append(replace(segment, target=target))
            elif isinstance(segment, UpdateSegment):
                target = resolve(
                    segment.target,
                    "update_buffer target",
                    BufferUsage.TRANSFER_TARGET,
                    MemoryAccess.WRITE,
                )
                assert target is not None
                out.append(replace(segment, target=target))
            elif isinstance(segment, CopySegment):
                src = resolve(
                    segment.source,
                    "copy_buffer source",
                    BufferUsage.TRANSFER_SOURCE,
                    MemoryAccess.READ,
                )
                dst = resolve(
                    segment.target,
                    "copy_buffer target",
                    BufferUsage.TRANSFER_TARGET,
                    MemoryAccess.WRITE,
                )
                assert src is not None and dst is not None
                if (
                    src.length is not None
                    and dst.length is not None
                    and (segment.source.length is None or segment.target.length is None)
                ):
                    length = (
                        min(src.length, dst.length) if segment.target.length is None else dst.length
                    )
                    src, dst = replace(src, length=length), replace(dst, length=length)
                if src.length != dst.length:
                    raise OutOfRangeError(
                        f"{what}: copy_buffer source is {src.length} bytes but target is "
                        f"{dst.length}"
                    )
                if (
                    src.buffer is dst.buffer
                    and src.length
                    and src.offset < dst.offset + (dst.length or 0)
                    and dst.offset < src.offset + src.length
                ):
                    raise InvalidArgumentError(
                        f"{what}: copy_buffer source and target ranges overlap after "
                        "resolving the binding table"
                    )
                out.append(replace(segment, source=src, target=dst))
            elif isinstance(segment, DispatchSegment):
                bindings: list[Ref | None] = []
                for b_index, binding_ref in enumerate(segment.bindings):
                    b = segment.layout.binding(b_index)
                    if b is None:
                        bindings.append(None)
                        continue
                    resolved_ref = resolve(
                        binding_ref,
                        f"dispatch bindings[{b_index}]",
                        _BINDING_USAGE[b.kind],
                        _BINDING_ACCESS[b.kind],
                    )
                    if resolved_ref is not None:
                        self._check_binding_size(
                            what, f"bindings[{b_index}]", b.kind, resolved_ref.length
                        )
                        self._check_min_size(
                            what,
                            f"dispatch bindings[{b_index}]",
                            segment.executable,
                            segment.entry_point,
                            b,
                            resolved_ref.length,
                        )
                    bindings.append(resolved_ref)
                indirect = resolve(
                    segment.indirect,
                    "dispatch_indirect workgroups",
                    BufferUsage.DISPATCH_INDIRECT_PARAMS,
                    MemoryAccess.READ,
                )
                if indirect is not None and (indirect.length or 0) < 12:
                    raise OutOfRangeError(
                        f"{what}: dispatch_indirect workgroups range is {indirect.length} "
                        "bytes; 12 are required"
                    )
                out.append(replace(segment, bindings=tuple(bindings), indirect=indirect))
            elif isinstance(segment, AdviseSegment):
                continue
            else:
                out.append(segment)
        key = tuple((id(root), base, size) for _, root, base, size in resolved)
        return out, key


class _CheckedProgram:
    """A compiled program (:class:`hal.runtime.encoder.Program`) whose wgpu errors at encoding
    become HalErrors naming the command that caused them. Everything else is delegated."""

    __slots__ = ("_command_buffer", "_program", "_segments", "plan")

    def __init__(
        self, command_buffer: CommandBuffer, program: Program, segments: tuple[Segment, ...]
    ) -> None:
        self._command_buffer = command_buffer
        self._program = program
        self._segments = segments
        self.plan = program.plan

    def encode(self, label: str = "hal") -> Any:
        """A new backend command buffer for one submission. Raises InvalidArgumentError
        naming the rejected command, or BackendError if the device was lost."""
        try:
            return self._program.encode(label)
        except BackendError as error:
            raise self._command_buffer._wgpu_failure(self._segments, error) from None

    def encode_profiled(self, timer: Any) -> Any:
        """:meth:`encode` with GPU timestamps (hal/runtime/profiling.py); the same errors."""
        try:
            return self._program.encode_profiled(timer)
        except BackendError as error:
            raise self._command_buffer._wgpu_failure(self._segments, error) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._program, name)


def _describe_segment(segment: Segment) -> str:

    if isinstance(segment, FillSegment):
        return f"fill {segment.target.describe()} pattern={segment.pattern.hex()}"
    if isinstance(segment, UpdateSegment):
        return f"update {segment.target.describe()} <- {len(segment.data)} host bytes"
    if isinstance(segment, CopySegment):
        return f"copy {segment.source.describe()} -> {segment.target.describe()}"
    if isinstance(segment, DispatchSegment):
        size = (
            segment.workgroups
            if segment.indirect is None
            else (f"indirect {segment.indirect.describe()}")
        )
        binds = ", ".join(r.describe() for r in segment.bindings if r is not None)
        return (
            f"dispatch {segment.executable.label}:{segment.entry_point} {size} "
            f"[{binds}] constants={len(segment.constants)}B"
        )
    if isinstance(segment, BarrierSegment):
        return "execution_barrier"
    if isinstance(segment, WaitEventsSegment):
        return f"wait_events ({len(segment.events)})"
    if isinstance(segment, SignalEventSegment):
        return "signal_event"
    if isinstance(segment, ResetEventSegment):
        return "reset_event"
    return f"advise {segment.target.describe()}"
