"""Command buffers: record commands as segments; ended ones are lowered and compiled by
:class:`hal.runtime.programs.Programs`.

Recording validates each command (API.md's error table) and appends a plain segment; nothing
touches wgpu until submission. A command that names a binding-table slot also merges what it
needs into that slot's requirement (:mod:`hal.core.slots`), checked once per table entry at
submission. ``end()`` lowers a command buffer without slots into a plan; one that uses slots
is lowered at submission, once per distinct binding table.
"""

from __future__ import annotations

import enum
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from hal.core.checks import (
    check_binding_length,
    check_buffer_usage,
    check_indirect_length,
    check_int,
    check_multiple,
    check_range,
    check_sequence,
    host_bytes,
    make_ref,
    normalise_pattern,
    pack_constants,
)
from hal.core.collectives import (
    CollectiveSegment,
    check_aliasing,
    check_collective,
    has_collectives,
    side_lengths,
)
from hal.core.dispatch_plans import DispatchTemplate, dispatch_program, dispatch_template
from hal.core.frozen import constructor
from hal.core.lowering import LoweringOptions, lower
from hal.core.refs import BufferLike, BufferRef, BufferTarget, Ref, SlotRef
from hal.core.segments import (
    AdviseSegment,
    BarrierSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    ResetEventSegment,
    Segment,
    SignalEventSegment,
    UpdateSegment,
    WaitEventsSegment,
    describe_segment,
    record_segments,
)
from hal.core.single_plans import native_steps, single_plan
from hal.core.slots import BindingRule, IndirectRule, PatternRule, SlotRequirement, SlotRequirements
from hal.core.transfer_plans import record_plan
from hal.enums import (
    BufferUsage,
    CollectiveKind,
    CommandBufferMode,
    CommandCategory,
    ExecutionStage,
    MemoryAccess,
    MemoryType,
    coerce_flags,
)
from hal.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from hal.runtime.buffer import Buffer, BufferView, as_target
from hal.runtime.collectives import SplitPrograms, make_programs
from hal.runtime.dispatch_programs import DispatchProgram, DispatchPrograms
from hal.runtime.event import Event
from hal.runtime.executable import Executable
from hal.runtime.native_programs import NativeProgram, NativePrograms
from hal.runtime.programs import CheckedProgram, Programs, lowered_plan

if TYPE_CHECKING:
    from hal.core.collectives import SplitPlan
    from hal.core.layout import BindingLayout, EntryPointLayout
    from hal.core.plan import Plan, PlanStats
    from hal.runtime.device import Device

__all__ = ["CommandBuffer", "CommandBufferState", "record_collective"]

# Plain ints throughout recording: IntFlag arithmetic builds enum members and costs ~1 µs
# per operation, on the hot path.
_TRANSFER = int(CommandCategory.TRANSFER)
_DISPATCH = int(CommandCategory.DISPATCH)
_TRANSFER_SOURCE = int(BufferUsage.TRANSFER_SOURCE)
_TRANSFER_TARGET = int(BufferUsage.TRANSFER_TARGET)
_INDIRECT = int(BufferUsage.DISPATCH_INDIRECT_PARAMS)
_READ = int(MemoryAccess.READ)
_WRITE = int(MemoryAccess.WRITE)
_DEVICE_VISIBLE = int(MemoryType.DEVICE_VISIBLE)
_ONE_SHOT_BIT = int(CommandBufferMode.ONE_SHOT)
_INLINE_BIT = int(CommandBufferMode.ALLOW_INLINE_EXECUTION)
_UNVALIDATED_BIT = int(CommandBufferMode.UNVALIDATED)
# (usage, access, memory type) bits a transfer needs of a buffer: the inline fast paths.
_FILL_NEEDS = (_TRANSFER_TARGET, _WRITE, _DEVICE_VISIBLE)
# (usage, access) a binding of each bind-group-layout kind needs.
_BINDING_NEEDS = {
    "storage": (
        int(BufferUsage.DISPATCH_STORAGE_READ | BufferUsage.DISPATCH_STORAGE_WRITE),
        int(MemoryAccess.READ | MemoryAccess.WRITE),
    ),
    "read-only-storage": (int(BufferUsage.DISPATCH_STORAGE_READ), _READ),
    "uniform": (int(BufferUsage.DISPATCH_UNIFORM_READ), _READ),
}
# (usage, access, memory type) bits a binding of each kind needs: the inline fast path.
_BINDING_BITS = {kind: (*needs, _DEVICE_VISIBLE) for kind, needs in _BINDING_NEEDS.items()}
# HAL usage bits that change the wgpu buffer's own usage (Backend.create_buffer's
# ``uniform``): without them wgpu rejects the binding, so they are checked even in UNVALIDATED mode.
_WGPU_USAGE = int(BufferUsage.DISPATCH_UNIFORM_READ)
_BINDING_NAMES = tuple(f"bindings[{i}]" for i in range(32))
_SEND_NEEDS = (_TRANSFER_SOURCE, _READ)
_RECV_NEEDS = (_TRANSFER_TARGET, _WRITE)
"""What a collective needs of its send and recv ranges: they are staged by copies."""
_FULL_BARRIER = BarrierSegment(int(ExecutionStage.ALL), int(ExecutionStage.ALL), 0, (), ())
"""The segment of ``execution_barrier()`` with its defaults (shared: segments are frozen)."""


_log = logging.getLogger("hal")
_warned_no_constants: set[tuple[str, str]] = set()


def _warn_no_constants(what: str, label: str, entry_point: str, size: int) -> None:
    """Warn (once per kernel and entry point) about a dispatch that passes no constants to a
    kernel that declares some: they all read 0, which is rarely what was meant."""
    key = (label, entry_point)
    if key not in _warned_no_constants:
        _warned_no_constants.add(key)
        _log.warning(
            "%s: %r of %r declares %d bytes of dispatch constants (var<immediate>) but the "
            "dispatch passes none: they read 0",
            what,
            entry_point,
            label,
            size,
        )


def _binding_name(index: int) -> str:
    return _BINDING_NAMES[index] if index < len(_BINDING_NAMES) else f"bindings[{index}]"


def _stages(what: str, source_stage: Any, target_stage: Any) -> tuple[int, int]:
    """A barrier's source and target stages as ints of ExecutionStage bits. Raises
    InvalidArgumentError."""
    source = coerce_flags(what, "source_stage", source_stage, ExecutionStage)
    target = coerce_flags(what, "target_stage", target_stage, ExecutionStage)
    return int(source), int(target)


def _barriers(
    what: str, memory_barriers: Any, buffer_barriers: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A barrier's memory and buffer barrier lists (recorded as hints) as tuples. Raises
    InvalidArgumentError for anything that is not a sequence."""
    return (
        check_sequence(what, "memory_barriers", memory_barriers, "memory barriers"),
        check_sequence(what, "buffer_barriers", buffer_barriers, "buffer barriers"),
    )


def _fast_entry(segment: DispatchSegment, executable: Any, bindings: Any) -> tuple[Any, ...]:
    """The dispatch fast path's cache entry for a recorded ``segment`` without slots:
    (segment, the buffers whose release or permission change must send the next repeat down
    the general path, each with its ``permission_bits`` now, and the key's objects, kept
    alive so that their ids stay theirs)."""
    buffers: dict[int, Any] = {}
    for target in bindings:
        target = as_target(target)
        buffer = target.buffer if isinstance(target, BufferRef) else target
        if isinstance(buffer, Buffer):  # a subspan's is_released covers its allocation's
            buffers[id(buffer)] = buffer
    for ref in segment.bindings:
        if ref is not None and ref.buffer is not None:
            buffers[id(ref.buffer)] = ref.buffer
    checks = tuple((buffer, buffer.permission_bits) for buffer in buffers.values())
    return (segment, checks, executable, tuple(bindings))


_FactsEntry = tuple[Any, "EntryPointLayout", int, tuple[Any, ...], tuple[int, ...]]


def dispatch_facts(
    device: Any, executable: Any, entry_point: str
) -> tuple[EntryPointLayout, int, tuple[Any, ...], tuple[int, ...]] | None:
    """What recording's fast path needs of ``entry_point`` of ``executable`` on ``device``,
    computed once per device: (layout, binding count, per used binding (index, needed
    (usage, access, memory) bits, size limit, min size), the unused binding indices below
    the count); None where the fast path does not apply (not an executable of this device,
    no such entry point, an immediate block: the general path decides and raises)."""
    cache: dict[tuple[int, str], _FactsEntry | None] = device.dispatch_facts
    found = cache.get((id(executable), entry_point))
    if found is not None and found[0]() is executable:
        return found[1:]
    if type(executable) is not Executable or executable.device is not device:
        return None
    try:
        layout = executable.layout(entry_point)
    except InvalidArgumentError:
        return None
    if layout.constants_size:
        return None
    caps = device.caps
    specs = tuple(
        (
            b.binding,
            _BINDING_BITS[b.kind],
            caps.max_uniform_binding_size if b.kind == "uniform" else caps.max_binding_size,
            b.min_size,
        )
        for b in layout.bindings
    )
    used = {b.binding for b in layout.bindings}
    unused = tuple(i for i in range(layout.binding_count) if i not in used)
    if len(cache) >= 256:
        cache.clear()
    entry = (weakref.ref(executable), layout, layout.binding_count, specs, unused)
    cache[(id(executable), entry_point)] = entry
    return entry[1:]


def _whole_buffer_ref(
    target: Any,
    device: Any,
    needs: tuple[int, int, int],
    size_limit: int,
    min_size: int,
) -> Ref | None:
    """The ref of a binding that is a whole root buffer of ``device`` or a BufferRef into
    one, when every check of the general path passes (``needs``: the usage, access and
    memory bits; the binding size limit and minimum), built without any message; None sends
    the binding down the general path, which raises the right error."""
    kind = type(target)
    if kind is BufferRef:
        buffer, offset, length = target.buffer, target.offset, target.length
        if type(buffer) is not Buffer or type(offset) is not int:
            return None
        size = buffer.byte_length
        if length is None:
            length = size - offset
        elif type(length) is not int:
            return None
        if not (offset >= 0 and length >= 0 and offset + length <= size):
            return None
    elif kind is Buffer:
        buffer, offset, length = target, 0, target.byte_length
    else:
        return None
    usage, access, memory = buffer.permission_bits
    if (
        buffer.allocated_buffer is not buffer
        or buffer.device is not device
        or usage & needs[0] != needs[0]
        or access & needs[1] != needs[1]
        or memory & needs[2] != needs[2]
        or length > size_limit
        or -(-length // 4) * 4 < min_size
        or buffer.is_released
    ):
        return None
    return _make_ref(buffer, None, offset, length)


# The fast path's objects built without the frozen dataclasses' per-field object.__setattr__.
_make_ref = constructor(Ref)
_make_dispatch = constructor(DispatchSegment)


class CommandBufferState(enum.Enum):
    """Where a command buffer is in its life."""

    INITIAL = "initial"
    RECORDING = "recording"
    EXECUTABLE = "executable"
    SUBMITTED = "submitted"  # a ONE_SHOT buffer after its submission


# The states as module constants: an Enum member looked up on its class costs ~60 ns (the
# metaclass), and recording and submission compare or set the state several times a command.
_INITIAL = CommandBufferState.INITIAL
_RECORDING = CommandBufferState.RECORDING
_EXECUTABLE = CommandBufferState.EXECUTABLE
_SUBMITTED = CommandBufferState.SUBMITTED


class CommandBuffer:
    """A recorded sequence of HAL commands (see API.md, "Command buffers").

    Create with ``device.create_command_buffer`` or ``device.record``. Commands raise the
    HalError subclass of API.md's table when their arguments are invalid; a rejected command
    records nothing (and merges no slot requirement).
    """

    def __init__(
        self,
        device: Device,
        mode: CommandBufferMode,
        categories: CommandCategory,
        binding_capacity: int,
    ) -> None:
        # Members and plain ints (the defaults) pass without the checks' calls.
        if type(mode) is not CommandBufferMode:
            mode = coerce_flags("create_command_buffer", "mode", mode, CommandBufferMode)
        if type(categories) is not CommandCategory:
            categories = coerce_flags(
                "create_command_buffer", "categories", categories, CommandCategory
            )
        if type(binding_capacity) is not int or binding_capacity < 0:
            binding_capacity = check_int(
                "create_command_buffer", "binding_capacity", binding_capacity
            )
        # Plain ints: IntFlag arithmetic (int() included) costs ~0.2-1 µs per operation;
        # a member's ``_value_`` is its int.
        bits: int = mode._value_
        if bits & _INLINE_BIT:
            if not bits & _ONE_SHOT_BIT:
                raise InvalidArgumentError(
                    "create_command_buffer: ALLOW_INLINE_EXECUTION requires ONE_SHOT"
                )
            if binding_capacity:
                raise InvalidArgumentError(
                    "create_command_buffer: inline command buffers cannot have a binding_capacity"
                )
        self._category_bits: int = categories._value_
        if not self._category_bits:
            raise InvalidArgumentError("create_command_buffer: categories must not be empty")
        self.device = device
        self.mode = mode
        # Plain bools for the submission path.
        self.one_shot = bool(bits & _ONE_SHOT_BIT)
        self.inline = bool(bits & _INLINE_BIT)
        self.categories = categories
        self.binding_capacity = binding_capacity
        self.state = _INITIAL
        # Segments, and TransferRecord tuples for the fast paths' fills and copies (made
        # into segments only where needed: :meth:`_recorded`); ``_records`` counts those.
        self._segments: list[Any] = []
        self._records = 0
        self._validate = not bits & _UNVALIDATED_BIT
        # Whether transfer commands pass _begin_command's category check (their fast path).
        self._transfers_ok = not self._validate or bool(self._category_bits & _TRANSFER)
        # Made by the first command that names a slot (:meth:`_slot_requirements`).
        self._slots: SlotRequirements | None = None
        self._programs: Programs | SplitPrograms | NativePrograms | DispatchPrograms | None = None
        self._staged_bytes = 0
        self._submissions = 0
        self._lock = threading.Lock()
        # Subspans the commands name: releasing one must fail later submissions too, and the
        # plan only knows allocations.
        self._views: set[BufferLike] = set()
        # Recording's per-(executable, entry point) facts and per-(binding target, binding)
        # refs, looked up by id with the object kept beside them (ids are reused only once
        # an object is gone): a dispatch repeats both far more often than it varies them.
        self._entries: dict[tuple[int, str], tuple[Any, EntryPointLayout]] = {}
        self._dispatch_cache: dict[tuple[Any, ...], DispatchSegment] = {}
        self._binding_cache: dict[tuple[int, int], tuple[Any, BindingLayout, Ref, Any, Any]] = {}
        # Whether dispatches pass _begin_command's category check (their fast path), and
        # the fast path's repeats: see :meth:`dispatch` and :func:`_fast_entry`.
        self._dispatches_ok = not self._validate or bool(self._category_bits & _DISPATCH)
        self._fast_dispatches: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def __repr__(self) -> str:
        return (
            f"<hal.CommandBuffer {self.state.value} {len(self._segments)} segments "
            f"mode={self.mode!r}>"
        )

    # -- state ----------------------------------------------------------------------------

    def begin(self) -> None:
        """Start recording. Raises FailedPreconditionError unless the buffer is new."""
        if self.state is _RECORDING:
            raise FailedPreconditionError("begin: the command buffer is already recording")
        if self.state is not _INITIAL:
            raise FailedPreconditionError(
                "begin: the command buffer was already recorded; re-recording is not allowed"
            )
        self.device.check_open("begin")
        self.state = _RECORDING

    def end(self) -> None:
        """Finish recording and lower the segments into a plan (at submission instead, per
        binding table, where commands name slots).

        Raises FailedPreconditionError unless recording, UnavailableError once the device is
        closed, ResourceExhaustedError if the plan's own buffers exceed the device limits."""
        if self.state is not _RECORDING:
            raise FailedPreconditionError(
                f"end: the command buffer is not recording (state {self.state.value})"
            )
        self.device.check_open("end")
        segments = self._segments
        records = self._records
        if records == 1 and len(segments) == 1:
            steps = native_steps(segments[0], self.device.caps)
            if steps is not None:
                # One fill or copy of native transfers only: encoded straight into backend
                # calls (hal/runtime/native_programs.py), its plan made if someone looks.
                self._programs = NativePrograms(self.device, segments, tuple(self._views), steps)
                self.state = _EXECUTABLE
                return
        if records and records == len(segments):
            # Only fast-path fills and copies: planned from the records themselves, their
            # segments made only if the error path asks (no slots, no collectives here).
            caps = self.device.caps
            plan = record_plan(segments, caps) if records > 1 else single_plan(segments[0], caps)
            if plan is not None:
                # A closure over the list, not a bound method: no cycle through the command
                # buffer, which must go (and drop its buffers) as soon as it is unreferenced.
                self._programs = Programs(
                    self.device, lambda: record_segments(segments), tuple(self._views), None, plan
                )
                self.state = _EXECUTABLE
                return
        slots = self._slots if self._slots is not None and self._slots.count else None
        if records and slots is None and not has_collectives(segments) and _beyond_direct(segments):
            # Fast-path records beside other commands (direct planning declines those): the
            # lowering takes the records as they are, lowering repeats without a segment.
            plan = lowered_plan(segments, self.device.caps)
            self._programs = Programs(
                self.device, lambda: record_segments(segments), tuple(self._views), None, plan
            )
            self.state = _EXECUTABLE
            return
        if slots is None and not records and dispatch_program(segments):
            # A few dispatches and barriers (the eager kernel call): planned from a template
            # and encoded from the device's recipe of it (hal/runtime/dispatch_programs.py).
            self._programs = self._dispatch_programs(segments)
            self.state = _EXECUTABLE
            return
        self._programs = make_programs(self.device, self._recorded(), tuple(self._views), slots)
        self.state = _EXECUTABLE

    def _dispatch_programs(self, segments: list[Segment]) -> Programs | DispatchPrograms:
        """The programs of a short dispatch program: from its template, or the general
        path's for a shape that is not templated. Raises nothing (a templated plan has no
        buffers of its own, so no device limit applies)."""
        device = self.device
        template = dispatch_template(segments, device.caps)
        views = tuple(self._views)
        if isinstance(template, DispatchTemplate):
            return DispatchPrograms(device, segments, views, template)
        return Programs(device, segments, views, None, template)

    def _recorded(self) -> list[Segment]:
        """The recorded segments, the fast paths' records made into segments (once)."""
        if self._records:
            record_segments(self._segments)
            self._records = 0
        return self._segments

    def _begin_command(self, what: str, category: int) -> None:
        self.device.check_open(what)
        if self.state is not _RECORDING:
            raise FailedPreconditionError(
                f"{what}: the command buffer is not in a recording state "
                f"(state {self.state.value}; call begin() first)"
            )
        if self._validate and category & ~self._category_bits:
            raise FailedPreconditionError(
                f"{what}: requires category {CommandCategory(category)!r} but the command "
                f"buffer allows only {self.categories!r}"
            )

    def _ref(
        self,
        what: str,
        argument: str,
        target: Any,
        offset: Any,
        length: Any,
        usage: int,
        access: int,
    ) -> Ref:
        """``target`` resolved and checked for a command that needs ``usage``/``access`` of
        it. A slot reference is checked at submission: its requirement is merged by
        :meth:`_require` once the command is recorded."""
        target = as_target(target)
        ref = make_ref(what, argument, target, offset, length, self.binding_capacity, self.device)
        root = ref.buffer
        if root is None:
            return ref
        view = target.buffer if isinstance(target, BufferRef) else target
        if self._validate:
            check_buffer_usage(what, argument, root, usage, access, _DEVICE_VISIBLE)
            if view is not root:  # a subspan carries its own permissions
                check_buffer_usage(what, argument, view, usage, access, _DEVICE_VISIBLE)
        else:
            # UNVALIDATED still refuses what wgpu itself would reject at submission.
            check_buffer_usage(what, argument, root, usage & _WGPU_USAGE)
        if view is not root:
            self._views.add(view)
        return ref

    def _require(self, ref: Ref, argument: str, usage: int, access: int) -> SlotRequirement:
        """Merge what a recorded command needs of slot range ``ref`` into its slot."""
        slots = self._slot_requirements()
        if self._validate:
            return slots.require(ref, argument, usage, access, _DEVICE_VISIBLE)
        return slots.require(ref, argument, usage & _WGPU_USAGE, 0, 0)

    def _slot_requirements(self) -> SlotRequirements:
        """The slot requirements, made on first use (most command buffers name no slot)."""
        slots = self._slots
        if slots is None:
            slots = self._slots = SlotRequirements()
        return slots

    # -- commands -------------------------------------------------------------------------

    def execution_barrier(
        self,
        source_stage: int = ExecutionStage.ALL,
        target_stage: int = ExecutionStage.ALL,
        flags: int = 0,
        memory_barriers: Sequence[Any] = (),
        buffer_barriers: Sequence[Any] = (),
    ) -> None:
        """Order every command before the barrier against every command after it. Raises
        InvalidArgumentError for stages that are not ExecutionStage bits, a negative or
        non-int ``flags`` and barrier lists that are not sequences."""
        what = "execution_barrier"
        if self.state is _RECORDING:
            self.device.check_open(what)  # a barrier needs no category
        else:
            self._begin_command(what, 0)  # raises the right error
        if (
            source_stage is ExecutionStage.ALL
            and target_stage is ExecutionStage.ALL
            and flags == 0
            and memory_barriers == ()
            and buffer_barriers == ()
            and type(flags) is int
        ):
            self._segments.append(_FULL_BARRIER)  # the common case: one shared frozen segment
            return
        source, target = _stages(what, source_stage, target_stage)
        flags = check_int(what, "flags", flags)
        barriers = _barriers(what, memory_barriers, buffer_barriers)
        self._segments.append(BarrierSegment(source, target, flags, *barriers))

    def _check_event(self, what: str, event: Any) -> None:
        if not isinstance(event, Event) or event.device is not self.device:
            raise InvalidArgumentError(f"{what}: event {event!r} is not an event of this device")

    def signal_event(self, event: Event, source_stage: int = ExecutionStage.ALL) -> None:
        """Signal ``event`` once the work before it has reached ``source_stage``. Raises
        InvalidArgumentError (not an event of this device, a bad stage)."""
        self._begin_command("signal_event", _DISPATCH)
        self._check_event("signal_event", event)
        stage = coerce_flags("signal_event", "source_stage", source_stage, ExecutionStage)
        self._segments.append(SignalEventSegment(event, int(stage)))

    def reset_event(self, event: Event, source_stage: int = ExecutionStage.ALL) -> None:
        """Reset ``event``. Raises InvalidArgumentError (not an event of this device, a bad
        stage)."""
        self._begin_command("reset_event", _DISPATCH)
        self._check_event("reset_event", event)
        stage = coerce_flags("reset_event", "source_stage", source_stage, ExecutionStage)
        self._segments.append(ResetEventSegment(event, int(stage)))

    def wait_events(
        self,
        events: Sequence[Event],
        source_stage: int = ExecutionStage.ALL,
        target_stage: int = ExecutionStage.ALL,
        memory_barriers: Sequence[Any] = (),
        buffer_barriers: Sequence[Any] = (),
    ) -> None:
        """Wait for ``events`` (a sequence of events of this device): orders like an
        execution barrier. Raises InvalidArgumentError for a single event or anything else
        that is not such a sequence, and as :meth:`execution_barrier` for the rest."""
        what = "wait_events"
        self._begin_command(what, _DISPATCH)
        events = check_sequence(what, "events", events, "Events")
        for event in events:
            self._check_event(what, event)
        source, target = _stages(what, source_stage, target_stage)
        barriers = _barriers(what, memory_barriers, buffer_barriers)
        self._segments.append(WaitEventsSegment(events, source, target, *barriers))

    def advise_buffer(self, target: BufferTarget, flags: int = 0) -> None:
        """A hint about ``target``'s contents; lowers to nothing. Raises as the other
        commands for ``target``, InvalidArgumentError for a negative or non-int ``flags``."""
        self._begin_command("advise_buffer", _TRANSFER)
        ref = self._ref("advise_buffer", "target", target, 0, None, 0, 0)
        flags = check_int("advise_buffer", "flags", flags)
        self._segments.append(AdviseSegment(ref, flags))
        if ref.slot is not None:
            self._slot_requirements().name(ref.slot)

    discard_buffer = advise_buffer

    def fill_buffer(
        self,
        target: BufferTarget,
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
        if self.state is _RECORDING and self._transfers_ok:
            self.device.check_open(what)
        else:
            self._begin_command(what, _TRANSFER)  # raises the right error
        buffer: Any = target
        size = None  # a view's range is its first byte_length bytes
        if type(buffer) is BufferView:
            buffer, size = buffer.buffer, buffer.byte_length
        if (
            type(buffer) is Buffer
            and type(offset) is int
            and type(length) is int
            and type(pattern) is int
            and pattern_length is None
            and not (offset | length) & 3
            and -0x80000000 <= pattern <= 0xFFFFFFFF
            and self._validate  # the range checks of a validated transfer, inline
            and transfer_ok(self.device, buffer, offset, length, _FILL_NEEDS, size)
        ):
            # The common case (a 4-byte int pattern on a whole buffer or a view of one),
            # checked inline and kept as a record (hal.core.segments.TransferRecord).
            if length:
                self._segments.append((buffer, offset, length, pattern & 0xFFFFFFFF))
                self._records += 1
            return
        data = normalise_pattern(what, pattern, pattern_length)
        ref = self._ref(what, "target", target, offset, length, _TRANSFER_TARGET, _WRITE)
        n = len(data)
        if self._validate:
            check_multiple(what, "offset", offset, n)
            if ref.length is not None:
                check_multiple(what, "length", ref.length, n)
        if ref.length == 0:
            return
        self._segments.append(FillSegment(ref, data))
        if ref.slot is not None:
            argument = "fill_buffer target"
            requirement = self._require(ref, argument, _TRANSFER_TARGET, _WRITE)
            if ref.length is None or ref.length % n:  # to the entry's end (or UNVALIDATED)
                key = ("pattern", ref.offset, ref.length, n)
                requirement.add_rule(key, PatternRule, argument, ref.offset, ref.length, n)

    def update_buffer(
        self,
        source: Any,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int,
    ) -> None:
        """Write ``length`` bytes of host ``source`` (from ``source_offset``) into ``target``
        when the command executes. The bytes are captured now. Raises OutOfRangeError (past
        the source or target), PermissionDeniedError, FailedPreconditionError,
        ResourceExhaustedError (staged bytes past the device's max-buffer-size)."""
        what = "update_buffer"
        self._begin_command(what, _TRANSFER)
        view = host_bytes(source, what, "source")
        source_offset = check_int(what, "source_offset", source_offset)
        length = check_int(what, "length", length)
        check_range(what, "source", source_offset, length, len(view), "source")
        ref = self._ref(what, "target", target, target_offset, length, _TRANSFER_TARGET, _WRITE)
        if length == 0:
            return
        limit = self.device.caps.max_buffer_size
        if self._staged_bytes + length > limit:
            raise ResourceExhaustedError(
                f"{what}: length {length} would bring the command buffer's staged update "
                f"bytes to {self._staged_bytes + length}, past the device's max-buffer-size "
                f"{limit}"
            )
        self._segments.append(
            UpdateSegment(bytes(view[source_offset : source_offset + length]), ref)
        )
        self._staged_bytes += length
        if ref.slot is not None:
            self._require(ref, "update_buffer target", _TRANSFER_TARGET, _WRITE)

    def copy_buffer(
        self,
        source: BufferTarget,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int | None,
    ) -> None:
        """Copy ``length`` bytes (None: the rest of the source range) at any alignment.
        Ranges in one allocation must not overlap. Raises InvalidArgumentError (overlap),
        OutOfRangeError, PermissionDeniedError, FailedPreconditionError."""
        what = "copy_buffer"
        if self.state is _RECORDING and self._transfers_ok:
            self.device.check_open(what)
        else:
            self._begin_command(what, _TRANSFER)  # raises the right error
        src_buffer: Any = source
        dst_buffer: Any = target
        src_size = dst_size = None  # a view's range is its first byte_length bytes
        if type(src_buffer) is BufferView:
            src_buffer, src_size = src_buffer.buffer, src_buffer.byte_length
        if type(dst_buffer) is BufferView:
            dst_buffer, dst_size = dst_buffer.buffer, dst_buffer.byte_length
        if (
            type(src_buffer) is Buffer
            and type(dst_buffer) is Buffer
            and type(source_offset) is int
            and type(target_offset) is int
            and type(length) is int
            and self._validate  # every check of a validated copy, in one call, no message
            and fast_copy_ok(
                self.device,
                src_buffer,
                source_offset,
                dst_buffer,
                target_offset,
                length,
                src_size,
                dst_size,
            )
        ):
            # The common case (two whole buffers or views of them, in range, not
            # overlapping), checked inline and kept as a record (TransferRecord).
            if length:
                self._segments.append(
                    (src_buffer, source_offset, dst_buffer, target_offset, length)
                )
                self._records += 1
            return
        src = self._ref(what, "source", source, source_offset, length, _TRANSFER_SOURCE, _READ)
        dst = self._ref(what, "target", target, target_offset, src.length, _TRANSFER_TARGET, _WRITE)
        if src.length is None and dst.length is not None:
            src = Ref(src.buffer, src.slot, src.offset, dst.length)
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
        self._segments.append(CopySegment(src, dst))
        if src.slot is not None:
            self._require(src, "copy_buffer source", _TRANSFER_SOURCE, _READ)
        if dst.slot is not None:
            self._require(dst, "copy_buffer target", _TRANSFER_TARGET, _WRITE)

    def dispatch(
        self,
        executable: Executable,
        entry_point: str,
        workgroup_count: Sequence[int],
        *,
        constants: Any = (),
        bindings: Sequence[BufferTarget | None] = (),
    ) -> None:
        """Dispatch ``entry_point`` over ``workgroup_count`` = (x, y, z) workgroups, with
        ``constants`` (32-bit values or bytes) and ``bindings[i]`` at ``@binding(i)``.
        A count with a zero dimension records nothing. Raises InvalidArgumentError,
        OutOfRangeError, PermissionDeniedError, FailedPreconditionError."""
        what = "dispatch"
        key = None
        if (
            self.state is _RECORDING
            and self._dispatches_ok
            and type(workgroup_count) is tuple
            and type(entry_point) is str
            and type(constants) is tuple
            and not constants
            and (type(bindings) is tuple or type(bindings) is list)
        ):
            self.device.check_open(what)
            # A repeat of a dispatch recorded before: the cached entry holds every object of
            # its key alive, so equal ids are the same objects; what can change since is
            # checked (the grid's types, a release, a permission change).
            key = (id(executable), entry_point, workgroup_count, *map(id, bindings))
            fast = self._fast_dispatches
            hit = fast.get(key) if fast else None  # a new command buffer has no repeats
            if hit is not None:
                # Records the cached segment if the grid is of ints (1.0 == 1 in the key; the
                # key's grid equals the cached 3-tuple) and no buffer of the entry was
                # released or had its permissions changed.
                x, y, z = workgroup_count
                if type(x) is int and type(y) is int and type(z) is int:
                    for buffer, bits in hit[1]:
                        if buffer.permission_bits is not bits or buffer.is_released:
                            break
                    else:
                        self._segments.append(hit[0])
                        return
            if (
                hit is None
                and self._validate
                and len(self._fast_dispatches) < 256
                and self._record_fast(executable, entry_point, workgroup_count, bindings, key)
            ):
                return
        else:
            self._begin_command(what, _DISPATCH)
        grid = self._grid(what, workgroup_count)
        if grid == (0, 0, 0):
            return
        segment, any_slot = self._dispatch_segment(
            what, executable, entry_point, constants, bindings, grid, None
        )
        if 0 in grid:
            return
        self._segments.append(segment)
        if any_slot:
            self._require_bindings(what, segment)
        elif key is not None and len(self._fast_dispatches) < 256:
            self._fast_dispatches[key] = _fast_entry(segment, executable, bindings)

    def _record_fast(
        self,
        executable: Any,
        entry_point: str,
        grid: tuple[Any, ...],
        bindings: Sequence[Any],
        key: tuple[Any, ...],
    ) -> bool:
        """Record a validated dispatch without constants whose bindings are whole root
        buffers or BufferRefs into them, every check of the general path passing, from the
        device's facts of the entry point (:func:`dispatch_facts`), without building any
        message; False records nothing and sends the dispatch down the general path (which
        raises the right error). The segment equals the general path's."""
        facts = dispatch_facts(self.device, executable, entry_point)
        if facts is None or len(bindings) != facts[1]:
            return False
        layout, _, specs, unused = facts
        if len(grid) != 3:
            return False
        x, y, z = grid
        limit = self.device.caps.max_workgroups
        if not (
            type(x) is int
            and type(y) is int
            and type(z) is int
            and 0 < x <= limit
            and 0 < y <= limit
            and 0 < z <= limit
        ):
            return False
        device = self.device
        refs: list[Ref | None] = [None] * len(bindings)
        checks = []
        for index, needs, size_limit, min_size in specs:
            ref = _whole_buffer_ref(bindings[index], device, needs, size_limit, min_size)
            if ref is None:
                return False
            refs[index] = ref
            buffer = cast(Buffer, ref.buffer)
            checks.append((buffer, buffer.permission_bits))
        for index in unused:
            if bindings[index] is not None and type(bindings[index]) not in (Buffer, BufferRef):
                return False
        segment = _make_dispatch(executable, entry_point, layout, grid, None, b"", tuple(refs))
        self._segments.append(segment)
        self._fast_dispatches[key] = (segment, tuple(checks), executable, tuple(bindings))
        return True

    def _grid(self, what: str, workgroup_count: Any) -> tuple[int, int, int]:
        """``workgroup_count`` as a checked (x, y, z). Raises InvalidArgumentError."""
        limit = self.device.caps.max_workgroups
        if type(workgroup_count) is tuple and len(workgroup_count) == 3:
            x, y, z = workgroup_count
            if (
                type(x) is int
                and type(y) is int
                and type(z) is int
                and 0 <= x <= limit
                and 0 <= y <= limit
                and 0 <= z <= limit
            ):
                return workgroup_count
        counts = tuple(workgroup_count) if isinstance(workgroup_count, Sequence) else None
        if counts is None or len(counts) != 3:
            raise InvalidArgumentError(
                f"{what}: workgroup_count {workgroup_count!r} must be a sequence (x, y, z)"
            )
        for axis, count in zip("xyz", counts, strict=False):
            check_int(what, f"workgroup_count.{axis}", count)
            if count > limit:
                raise InvalidArgumentError(
                    f"{what}: workgroup_count.{axis} {count} exceeds the adapter's "
                    f"max-compute-workgroups-per-dimension {limit}"
                )
        return (int(counts[0]), int(counts[1]), int(counts[2]))

    def dispatch_indirect(
        self,
        executable: Executable,
        entry_point: str,
        workgroups: BufferTarget,
        *,
        constants: Any = (),
        bindings: Sequence[BufferTarget | None] = (),
    ) -> None:
        """Dispatch with the (x, y, z) workgroup counts read as 3×u32 from ``workgroups``
        when the dispatch executes (offset a multiple of 4, at least 12 bytes). Raises
        InvalidArgumentError, OutOfRangeError, PermissionDeniedError,
        FailedPreconditionError."""
        what = "dispatch_indirect"
        self._begin_command(what, _DISPATCH)
        ref = self._ref(what, "workgroups", workgroups, 0, None, _INDIRECT, _READ)
        if ref.buffer is not None and ref.offset % 4:
            raise InvalidArgumentError(
                f"{what}: workgroups offset {ref.offset} is not a multiple of 4"
            )
        if isinstance(workgroups, SlotRef) and workgroups.offset % 4:
            raise InvalidArgumentError(
                f"{what}: workgroups offset {workgroups.offset} is not a multiple of 4"
            )
        if ref.length is not None:
            check_indirect_length(what, "workgroups", ref.length)
        segment, any_slot = self._dispatch_segment(
            what, executable, entry_point, constants, bindings, None, ref
        )
        self._segments.append(segment)
        if any_slot:
            self._require_bindings(what, segment)
        if ref.slot is not None:
            argument = "dispatch_indirect workgroups"
            requirement = self._require(ref, argument, _INDIRECT, _READ)
            if ref.length is None:
                requirement.add_rule(("indirect", ref.offset), IndirectRule, argument, ref.offset)

    def _dispatch_segment(
        self,
        what: str,
        executable: Any,
        entry_point: str,
        constants: Any,
        bindings: Any,
        workgroups: tuple[int, int, int] | None,
        indirect: Ref | None,
    ) -> tuple[DispatchSegment, bool]:
        """The checked segment of a dispatch, and whether a binding names a slot."""
        entry = (
            self._entries.get((id(executable), entry_point)) if type(entry_point) is str else None
        )
        if entry is not None and entry[0] is executable:
            layout = entry[1]
        else:
            layout = self._entry_layout(what, executable, entry_point)
        if type(constants) is tuple and not constants:
            data = b""
        else:
            data = pack_constants(what, constants, layout.constants_fields or None)
        if not data and layout.constants_size:
            _warn_no_constants(what, executable.label, entry_point, layout.constants_size)
        if len(data) > layout.constants_size:
            raise InvalidArgumentError(
                f"{what}: {len(data)} bytes of constants, but {entry_point!r} declares "
                f"{layout.constants_size} (its var<immediate> block)"
            )
        if type(bindings) not in (tuple, list) and isinstance(
            bindings, (BufferLike, BufferRef, SlotRef, BufferView)
        ):
            bindings = (bindings,)
        bindings = check_sequence(what, "bindings", bindings, "Buffers, BufferRefs or SlotRefs")
        if len(bindings) != layout.binding_count:
            raise InvalidArgumentError(
                f"{what}: {len(bindings)} bindings given, but {entry_point!r} uses "
                f"{layout.binding_count} (@binding(0..{layout.binding_count - 1}))"
            )
        refs, any_slot = self._binding_refs(what, layout, bindings)
        # An identical dispatch (same refs: remembered bindings) shares its segment, which
        # the lowering then lowers once.
        key = (id(executable), entry_point, workgroups, id(indirect), data, *map(id, refs))
        found = self._dispatch_cache.get(key)
        if found is not None:
            return found, any_slot
        segment = DispatchSegment(
            executable, entry_point, layout, workgroups, indirect, data, tuple(refs)
        )
        if len(self._dispatch_cache) < 256:
            self._dispatch_cache[key] = segment
        return segment, any_slot

    def _entry_layout(self, what: str, executable: Any, entry_point: Any) -> EntryPointLayout:
        """The layout of ``entry_point`` of ``executable``, checked (and remembered by
        :meth:`_dispatch_segment`). Raises InvalidArgumentError."""
        if not isinstance(executable, Executable) or executable.device is not self.device:
            raise InvalidArgumentError(
                f"{what}: executable {executable!r} is not an executable of this device"
            )
        try:
            layout = executable.layout(entry_point)
        except InvalidArgumentError:
            raise InvalidArgumentError(
                f"{what}: entry_point {entry_point!r} is not in {executable.label!r} "
                f"(entry points: {', '.join(executable.entry_points)})"
            ) from None
        if type(entry_point) is str:
            self._entries[(id(executable), entry_point)] = (executable, layout)
        return layout

    def _binding_refs(
        self, what: str, layout: EntryPointLayout, bindings: tuple[Any, ...]
    ) -> tuple[list[Ref | None], bool]:
        """The checked refs of a dispatch's bindings (None where the entry point ignores
        one), and whether one names a slot."""
        caps = self.device.caps
        refs: list[Ref | None] = [None] * len(bindings)
        any_slot = False
        cache = self._binding_cache
        for b in layout.bindings:
            target = bindings[b.binding]
            # A target already checked for this binding: only its release or its
            # permissions (a new permission_bits tuple) can have changed.
            hit = cache.get((id(target), id(b)))
            if (
                hit is not None
                and hit[0] is target
                and hit[1] is b
                and hit[3].permission_bits is hit[4]
                and not hit[3].is_released
            ):
                refs[b.binding] = hit[2]
                continue
            ref = self._fast_binding(target, b, caps)
            if ref is not None:
                if len(cache) < 256:
                    root: Any = ref.buffer  # a fast-path ref's root is always a Buffer
                    cache[(id(target), id(b))] = (target, b, ref, root, root.permission_bits)
                refs[b.binding] = ref
                continue
            argument = _binding_name(b.binding)
            usage, access = _BINDING_NEEDS[b.kind]
            ref = self._ref(what, argument, bindings[b.binding], 0, None, usage, access)
            if ref.length is not None:
                check_binding_length(what, argument, b, layout.name, ref.length, caps)
            if ref.slot is not None:
                any_slot = True
            refs[b.binding] = ref
        for i, binding in enumerate(bindings):
            if (
                refs[i] is None
                and binding is not None
                and not isinstance(binding, (BufferLike, BufferRef, SlotRef, BufferView))
            ):
                raise InvalidArgumentError(
                    f"{what}: bindings[{i}] must be a Buffer, BufferRef, SlotRef or BufferView"
                )
        return refs, any_slot

    def _fast_binding(self, target: Any, binding: BindingLayout, caps: Any) -> Ref | None:
        """The ref of a binding that is a whole root buffer or a BufferRef into one, when
        every check of the general path passes, built without any message; None sends the
        binding down the general path (which raises the right error)."""
        if not self._validate:
            return None
        limit = (
            caps.max_uniform_binding_size if binding.kind == "uniform" else caps.max_binding_size
        )
        needs = _BINDING_BITS[binding.kind]
        return _whole_buffer_ref(target, self.device, needs, limit, binding.min_size)

    def _require_bindings(self, what: str, segment: DispatchSegment) -> None:
        """Merge the slot requirements of a recorded dispatch's bindings."""
        caps = self.device.caps
        for b in segment.layout.bindings:
            ref = segment.bindings[b.binding]
            if ref is None or ref.slot is None:
                continue
            argument = f"{what} {_binding_name(b.binding)}"
            usage, access = _BINDING_NEEDS[b.kind]
            requirement = self._require(ref, argument, usage, access)
            if ref.length is None:  # to the entry's end: sized at submission
                key = ("binding", ref.offset, id(b))
                requirement.add_rule(
                    key, BindingRule, argument, ref.offset, b, segment.entry_point, caps
                )

    def collective(
        self,
        channel: Any,
        kind: Any,
        send: BufferTarget | None,
        recv: BufferTarget | None,
        element_count: int,
        *,
        element_type: Any,
        reduction: Any = None,
        param: int = 0,
    ) -> None:
        """Record a collective on ``channel`` (API.md, "Channels and collectives"): ``kind``
        over ``element_count`` elements of ``element_type`` from ``send`` into ``recv``
        (either None where this rank has no such side); ``param`` is the root or peer rank.
        Raises OutOfRangeError (a range too short for the counts), InvalidArgumentError (a
        missing or misplaced reduction, a bad dtype or rank, overlapping ranges other than an
        in-place ALL_REDUCE), PermissionDeniedError (send without TRANSFER_SOURCE/READ, recv
        without TRANSFER_TARGET/WRITE), FailedPreconditionError (not recording, a closed
        channel) and UnavailableError (a channel broken by a timeout)."""
        record_collective(
            self,
            "collective",
            channel,
            kind,
            send,
            recv,
            element_count,
            element_type,
            reduction,
            param,
        )

    # -- inspection -----------------------------------------------------------------------

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The recorded segments (read-only)."""
        return tuple(self._recorded())

    @property
    def plan(self) -> Plan | SplitPlan | None:
        """The lowered plan: set at ``end()``; for a command buffer using binding-table slots,
        the plan of its latest submission (None before the first). With collectives, a
        :class:`~hal.core.collectives.SplitPlan` of GPU parts and host steps."""
        return None if self._programs is None else self._programs.plan

    @property
    def stats(self) -> PlanStats | None:
        """Counts of the plan (segments, passes, dispatches incl. builtins, native copies and
        clears, staged bytes, shadowed bindings); None while there is no plan."""
        plan = self.plan
        return None if plan is None else plan.stats

    def dump(self) -> str:
        """Human-readable segments and plan."""
        lines = [f"command buffer: {len(self._segments)} segments, state {self.state.value}"]
        for i, segment in enumerate(self._recorded()):
            lines.append(f"  ({i}) {describe_segment(segment)}")
        plan = self.plan
        if plan is None:
            lines.append("plan: (not lowered yet)")
        else:
            lines.append("plan:")
            lines.append(plan.describe())
        return "\n".join(lines)

    def lower_naive(self) -> Plan:
        """The same segments lowered with one compute pass per dispatch (for comparisons).
        Raises FailedPreconditionError if the buffer is not ended or uses slots."""
        if self.state is _INITIAL or self.state is _RECORDING:
            raise FailedPreconditionError("lower_naive: the command buffer is not ended")
        if self._slots is not None and self._slots.count:
            raise FailedPreconditionError("lower_naive: the command buffer uses binding slots")
        return lower(self._recorded(), self.device.caps, LoweringOptions(naive=True))

    # -- submission (called by the queue) ---------------------------------------------------

    def claim(self) -> None:
        """Reserve the buffer for one submission: raises FailedPreconditionError unless it is
        ended and (for ONE_SHOT) not yet submitted; a ONE_SHOT buffer becomes SUBMITTED now,
        so two threads can never both submit it. Undo with :meth:`unclaim`."""
        what = "queue_execute"
        with self._lock:
            state = self.state
            if state is _INITIAL or state is _RECORDING:
                raise FailedPreconditionError(
                    f"{what}: the command buffer has not been ended (state {self.state.value})"
                )
            if state is _SUBMITTED:
                raise FailedPreconditionError(
                    f"{what}: the ONE_SHOT command buffer was already submitted"
                )
            if self.one_shot:
                self.state = _SUBMITTED
            self._submissions += 1

    def unclaim(self) -> None:
        """Give back a claim whose submission failed before reaching the queue."""
        with self._lock:
            self._submissions -= 1
            if self.one_shot:
                self.state = _EXECUTABLE

    @property
    def programs(self) -> Programs | SplitPrograms | NativePrograms | DispatchPrograms | None:
        """The programs of the ended command buffer (runtime use: submission)."""
        return self._programs

    def prepare(
        self, binding_table: Sequence[Any] | None = None
    ) -> CheckedProgram | NativeProgram | DispatchProgram:
        """The program to encode for a submission with ``binding_table`` (see
        :meth:`hal.runtime.programs.Programs.prepare` for what it raises); a command buffer
        that was not ended raises FailedPreconditionError."""
        programs = self._programs
        if programs is None:
            raise FailedPreconditionError(
                f"queue_execute: the command buffer has not been ended (state {self.state.value})"
            )
        return programs.prepare(binding_table)


def transfer_ok(
    device: Device,
    buffer: Buffer,
    offset: int,
    length: int,
    needs: tuple[int, int, int],
    size: int | None = None,
) -> bool:
    """Whether the range ``[offset, offset + length)`` of a root buffer of ``device`` (within
    its first ``size`` bytes where a view's) passes the checks of a validated transfer
    needing ``needs`` (usage, access, memory type bits), without building any message.
    Raises nothing."""

    usage, access, memory = buffer.permission_bits
    return (
        buffer.allocated_buffer is buffer
        and buffer.device is device
        and offset >= 0
        and length >= 0
        and offset + length <= (buffer.byte_length if size is None else size)
        and usage & needs[0] == needs[0]
        and access & needs[1] == needs[1]
        and memory & needs[2] == needs[2]
        and not buffer.is_released
    )


def fast_fill_ok(
    device: Device, buffer: Buffer, offset: int, length: int, size: int | None
) -> bool:
    """:func:`transfer_ok` for a fill's target (what ``fill_buffer``'s fast path checks
    besides the pattern and alignment). Raises nothing."""
    return transfer_ok(device, buffer, offset, length, _FILL_NEEDS, size)


def fast_copy_ok(
    device: Device,
    source: Buffer,
    source_offset: int,
    target: Buffer,
    target_offset: int,
    length: int,
    source_size: int | None,
    target_size: int | None,
) -> bool:
    """Whether a copy between two root buffers of ``device`` (the first ``source_size`` /
    ``target_size`` bytes where a view's) passes every check of a validated ``copy_buffer``:
    in range, usage, access and memory type, not overlapping in one allocation, neither
    released. Builds no message: False sends the command down the checking path, which
    raises the right error. Raises nothing."""

    source_usage, source_access, source_memory = source.permission_bits
    target_usage, target_access, target_memory = target.permission_bits
    return (
        source.allocated_buffer is source
        and target.allocated_buffer is target
        and source.device is device
        and target.device is device
        and source_offset >= 0
        and target_offset >= 0
        and length >= 0
        and source_offset + length <= (source.byte_length if source_size is None else source_size)
        and target_offset + length <= (target.byte_length if target_size is None else target_size)
        and source_usage & _TRANSFER_SOURCE == _TRANSFER_SOURCE
        and source_access & _READ == _READ
        and source_memory & _DEVICE_VISIBLE == _DEVICE_VISIBLE
        and target_usage & _TRANSFER_TARGET == _TRANSFER_TARGET
        and target_access & _WRITE == _WRITE
        and target_memory & _DEVICE_VISIBLE == _DEVICE_VISIBLE
        and (
            source is not target
            or source_offset + length <= target_offset
            or target_offset + length <= source_offset
        )
        and not source.is_released
        and not target.is_released
    )


_DIRECT_KINDS = (tuple, FillSegment, CopySegment, BarrierSegment)


def _beyond_direct(segments: list[Any]) -> bool:
    """Whether ``segments`` hold a command that direct planning
    (:func:`hal.core.transfer_plans.direct_plan`) declines, so that it would decline the
    whole program however its records were made segments."""
    return any(type(s) not in _DIRECT_KINDS for s in segments)


def record_collective(
    cb: CommandBuffer,
    what: str,
    channel: Any,
    kind: Any,
    send: Any,
    recv: Any,
    element_count: Any,
    element_type: Any,
    reduction: Any,
    param: Any,
) -> None:
    """Check a collective and append its segment to ``cb`` (see ``CommandBuffer.collective``
    for what it raises); a rejected collective records nothing."""
    from hal.runtime.channel import Channel

    cb._begin_command(what, _DISPATCH)
    if not isinstance(channel, Channel):
        raise InvalidArgumentError(f"{what}: channel {channel!r} is not a hal.Channel")
    channel.check_usable(what)
    kind, reduction, dtype, count, param = check_collective(
        what, kind, reduction, element_type, element_count, param, channel.rank, channel.count
    )
    send_length, recv_length = side_lengths(
        kind, count, dtype.itemsize, channel.rank, channel.count, param
    )
    send_ref = _side(cb, what, "send", kind, send, send_length, _SEND_NEEDS)
    recv_ref = _side(cb, what, "recv", kind, recv, recv_length, _RECV_NEEDS)
    check_aliasing(what, kind, send_ref, recv_ref)
    cb._segments.append(
        CollectiveSegment(channel, kind, reduction, dtype, count, param, send_ref, recv_ref)
    )
    for ref, argument, needs in ((send_ref, "send", _SEND_NEEDS), (recv_ref, "recv", _RECV_NEEDS)):
        if ref is not None and ref.slot is not None:
            cb._require(ref, f"{what} {argument}", *needs)


def _side(
    cb: CommandBuffer,
    what: str,
    argument: str,
    kind: CollectiveKind,
    target: Any,
    length: int | None,
    needs: tuple[int, int],
) -> Ref | None:
    """The range one side of a collective uses (``length`` bytes from the start of
    ``target``), or None where this rank has no such side (``target`` is then ignored)."""
    if length is None:
        return None
    if target is None:
        raise InvalidArgumentError(f"{what}: {kind.name} needs a {argument} buffer on this rank")
    if isinstance(target, BufferView):
        target = target.buffer
    return cb._ref(what, argument, target, 0, length, *needs)
