"""The plans and compiled programs of an ended command buffer, and the culprit search.

A command buffer without binding-table slots is lowered once, at ``end()``, and compiled on
its first submission. One that uses slots is checked against each submission's binding
table (:class:`hal.core.slots.SlotRequirements`), then lowered and compiled once per
distinct table (a small cache). When wgpu rejects a program anyway, the error path searches
for the first command wgpu rejects on its own, so the HalError names it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.core.batching import batch_transfers
from hal.core.checks import one_line
from hal.core.lowering import lower
from hal.core.plan import Plan
from hal.core.rebase import (
    Rebase,
    direct_allocations,
    rebase_for,
    rebase_onto,
    rebase_plan,
    table_shape,
)
from hal.core.segments import Segment, TransferRecord, describe_segment
from hal.core.transfer_plans import direct_plan
from hal.errors import (
    FailedPreconditionError,
    HalError,
    InvalidArgumentError,
    ResourceExhaustedError,
)

if TYPE_CHECKING:
    from hal.core.caps import DeviceCaps
    from hal.core.refs import BufferLike
    from hal.core.slots import SlotRequirements
    from hal.runtime.device import Device
    from hal.runtime.encoder import Program

__all__ = ["CheckedProgram", "Programs", "check_plan_limits", "lowered_plan", "wgpu_failure"]

_PROGRAM_CACHE_SIZE = 8
"""Binding tables whose programs a command buffer keeps compiled (oldest evicted first)."""

_WHAT = "queue_execute"


def _plan(segments: Sequence[Segment], caps: DeviceCaps) -> Plan:
    """The plan a submission runs: the lowering, then small transfers batched (made in one
    step for a program of small transfers: :func:`hal.core.transfer_plans.direct_plan`)."""
    plan = direct_plan(segments, caps)
    return batch_transfers(lower(segments, caps), caps) if plan is None else plan


def lowered_plan(segments: Sequence[Segment | TransferRecord], caps: DeviceCaps) -> Plan:
    """The plan of ``segments`` as :class:`Programs` makes it (``segments`` may keep
    recording's :data:`hal.core.segments.TransferRecord` tuples beside commands that direct
    planning declines: the lowering takes them as they are). Raises what lowering raises."""
    return _plan(segments, caps)  # type: ignore[arg-type]


_Template = tuple[
    Plan,
    list[Any],
    "CheckedProgram",
    tuple[Any, ...],
    tuple[int, ...],
    tuple[tuple[int, int, bool], ...],
]
"""A template of a command buffer with slots: the plan lowered for a table, that table's
entries, its program, the plan's allocations no slot moves, the slots whose allocations it
uses, and the table's shape (hal/core/rebase.py)."""

SegmentSource = Sequence[Segment] | Callable[[], Sequence[Segment]]
"""The segments a program was lowered from, or how to get them (only the error path reads
them: a rebased plan's resolved segments are made if wgpu rejects it)."""


def _segments_of(source: SegmentSource) -> Sequence[Segment]:
    return source() if callable(source) else source


def check_plan_limits(what: str, plan: Plan, caps: DeviceCaps) -> None:
    """ResourceExhaustedError where a plan's staging or scratch buffer would exceed
    max-buffer-size: wgpu would refuse to create it when the plan is compiled."""
    limit = caps.max_buffer_size
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


class Programs:
    """What a submission of one ended command buffer encodes.

    ``segments`` are the recorded segments, ``views`` the subspans they name (releasing one
    must fail later submissions; plans only know allocations), ``slots`` the slot
    requirements (None: no slots, lowered now). ``plan`` is the plan of the latest
    :meth:`prepare` (for a command buffer without slots, the one lowered now, or ``plan``
    when the caller made it; ``segments`` may then be a callable making them). Raises
    ResourceExhaustedError (from ``end()``) when the plan's own buffers exceed the device's
    limits.
    """

    __slots__ = (
        "_cache",
        "_device",
        "_direct",
        "_last_template",
        "_latest",
        "_plan",
        "_segments",
        "_slots",
        "_templates",
        "_views",
    )

    def __init__(
        self,
        device: Device,
        segments: SegmentSource,
        views: Sequence[BufferLike],
        slots: SlotRequirements | None,
        plan: Plan | None = None,
    ) -> None:
        self._device = device
        # How to make the segments, where the plan was made without them (only the error
        # path reads them then); slots need them at once.
        self._segments: SegmentSource = (
            segments if callable(segments) and slots is None else tuple(_segments_of(segments))
        )
        self._views = tuple(views)
        self._slots = slots
        self._cache: dict[tuple[Any, ...], CheckedProgram] = {}
        # Per table shape, a plan and the entries it was lowered for (hal/core/rebase.py).
        # (plan, entries, program, fixed allocations, used slots, shape); the latest used
        # is tried first.
        self._templates: dict[tuple[tuple[int, int, bool], ...], _Template] = {}
        self._last_template: _Template | None = None
        self._direct = (
            frozenset() if slots is None else direct_allocations(_segments_of(self._segments))
        )
        self._plan: Plan | None = None
        self._latest: CheckedProgram | None = None
        if slots is None:
            if plan is None:
                plan = _plan(_segments_of(self._segments), device.caps)
            check_plan_limits("end", plan, device.caps)
            self._plan = plan

    @property
    def plan(self) -> Plan | None:
        """The plan of the latest :meth:`prepare` (for a command buffer without slots, the one
        lowered at ``end()``); None before a command buffer with slots was prepared."""
        if self._slots is None or self._latest is None:
            return self._plan
        return self._latest.full_plan()

    def prepare(self, table: Sequence[Any] | None) -> CheckedProgram:
        """The program to encode for a submission with binding table ``table`` (lowered and
        compiled on first use). Raises FailedPreconditionError (released buffer),
        OutOfRangeError and PermissionDeniedError (binding table), ResourceExhaustedError
        (plan buffers beyond the device limits), InvalidArgumentError (a bad table entry, or
        wgpu rejected a command, named in the message) and UnavailableError (device lost)."""
        slots = self._slots
        if slots is None:
            assert self._plan is not None
            # Released buffers first, compiled or not: wgpu refuses to bind a destroyed one.
            self._check_alive(self._plan.resources)
            program = self._cache.get(())
            if program is None:
                program = self._cache[()] = self._compile(self._plan, self._segments)
            return program
        entries = slots.check_table(_WHAT, table, self._device)
        key = slots.key(entries)
        program = self._cache.get(key)
        if program is None:
            # Checks its plan's buffers (released ones) itself, before encoding anything.
            program = self._table_program(slots, entries)
            if len(self._cache) >= _PROGRAM_CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = program
        else:
            self._check_alive(program.resources)
        self._latest = program
        return program

    def _table_program(self, slots: SlotRequirements, entries: list[Any]) -> CheckedProgram:
        """The program for a new table: the plan of an earlier table of the same shape
        rebased onto these entries (no lowering), else lowered now."""
        caps = self._device.caps
        # The latest template first: a table of its shape is rebased in one pass, without
        # making the shape (hal/core/rebase.py rebase_onto); else the shape picks one.
        template = self._last_template
        if template is not None:
            rebase = rebase_onto(template[1], template[5], entries, caps, self._direct)
            if rebase is not None:
                return self._rebased(template, rebase, slots, entries)
        shape = table_shape(entries, caps, self._direct)
        template = None if shape is None else self._templates.get(shape)
        if template is not None:
            self._last_template = template
            return self._rebased(template, rebase_for(template[1], entries), slots, entries)
        resolved = slots.resolve(_WHAT, _segments_of(self._segments), entries)
        plan = _plan(resolved, caps)
        check_plan_limits(_WHAT, plan, caps)
        self._check_alive(plan.resources)
        program = self._compile(plan, resolved)
        if shape is not None:
            # Per template, what rebasing its resources needs: the allocations no slot
            # moves, and the slots whose allocations the plan uses (table_shape: one
            # allocation per slot, none named directly).
            slot_roots = {id(root): i for i, (_, root, _, _) in enumerate(entries)}
            fixed = tuple(r for r in plan.resources if id(r) not in slot_roots)
            used = tuple(sorted(slot_roots[id(r)] for r in plan.resources if id(r) in slot_roots))
            self._templates[shape] = self._last_template = (
                plan, entries, program, fixed, used, shape,
            )  # fmt: skip
        return program

    def _rebased(
        self, template: _Template, rebase: Rebase, slots: SlotRequirements, entries: list[Any]
    ) -> CheckedProgram:
        """``template``'s program rebased onto ``entries`` by ``rebase`` (no lowering)."""
        old_plan, _, old_program, fixed, used, _ = template
        # What submitting needs is the resources and the template's step structure (no
        # Plan is made: the rebased steps are made only if someone looks, cb.plan, and the
        # resolved segments only if wgpu rejects the program). The resources: the
        # template's own that no slot moves, then the used slots' new allocations.
        resources = frozenset([*fixed, *[entries[i][1] for i in used]])
        self._check_alive(resources)
        return old_program.rebased(
            rebase,
            resources,
            functools.partial(_resolved, self, slots, entries),
            functools.partial(rebase_plan, old_plan, rebase),
        )

    def _check_alive(self, resources: frozenset[Any]) -> None:
        for buffer in resources:
            buffer.check_alive(_WHAT, "a buffer the command buffer uses")
        for buffer in self._views:
            buffer.check_alive(_WHAT, "a buffer the command buffer uses")

    def _compile(self, plan: Plan, segments: SegmentSource) -> CheckedProgram:
        from hal.runtime.encoder import compile_plan

        try:
            program = compile_plan(plan, self._device.encoding)
        except BackendError as error:
            # A buffer released by another thread since _check_alive: say so.
            self._check_alive(plan.resources)
            raise wgpu_failure(self._device, _segments_of(segments), error) from None
        return CheckedProgram(self._device, program, segments, self._views)


def wgpu_failure(
    device: Device, segments: Sequence[Segment], error: BackendError
) -> HalError | BackendError:
    """The error for a backend error that escaped validation: the BackendError itself if the
    device is lost, also where only the backend's probe knows it (the executor marks it
    lost and raises UnavailableError), else
    InvalidArgumentError naming the first command that wgpu rejects on its own. Only the
    error path pays for the search."""
    from hal.runtime.encoder import compile_plan

    if error.lost:
        return error
    # Dawn reports calls on a device destroyed meanwhile (a reset) as validation errors
    # ("... is lost"): ask the backend before blaming a command.
    reason = device.backend.probe_lost()
    if reason is not None:
        return BackendError(f"{one_line(error)} (the device was lost: {reason})", lost=True)
    for index, segment in enumerate(segments):
        try:
            compile_plan(lower([segment], device.caps), device.encoding).encode()
        except (BackendError, HalError) as single:
            detail = one_line(single)
            return InvalidArgumentError(
                f"{_WHAT}: wgpu rejected command {index} ({describe_segment(segment)}): {detail}"
            )
    return InvalidArgumentError(f"{_WHAT}: wgpu rejected the command buffer: {one_line(error)}")


def _resolved(programs: Programs, slots: SlotRequirements, entries: list[Any]) -> list[Segment]:
    """The segments of ``programs`` resolved onto a table's ``entries`` (a rebased
    program's, made only on the error path)."""
    return slots.resolve(_WHAT, _segments_of(programs._segments), entries)


class CheckedProgram:
    """A compiled program (:class:`hal.runtime.encoder.Program`) whose wgpu errors at encoding
    become HalErrors naming the command that caused them. Everything else is delegated."""

    __slots__ = (
        "_device",
        "_full_plan",
        "_program",
        "_segments",
        "_views",
        "has_steps",
        "plan",
        "resources",
    )

    def __init__(
        self,
        device: Device,
        program: Program,
        segments: SegmentSource,
        views: tuple[BufferLike, ...] = (),
        resources: frozenset[Any] | None = None,
    ) -> None:
        self._device = device
        self._program = program
        self._segments = segments
        self._views = views
        self.plan = program.plan
        # What a submission reads of the plan: the buffers to hold, whether to encode (a
        # rebased program's own buffers: its plan is the template's, see rebased()).
        self.resources = program.plan.resources if resources is None else resources
        self.has_steps = bool(program.plan.steps)
        self._full_plan: Plan | Callable[[], Plan] = program.plan

    def full_plan(self) -> Plan:
        """The plan with every region on this program's buffers (what ``cb.plan`` shows)."""
        plan = self._full_plan
        if callable(plan):
            plan = self._full_plan = plan()
        return plan

    def rebased(
        self,
        rebase: Rebase,
        resources: frozenset[Any],
        segments: Callable[[], Sequence[Segment]],
        plan: Callable[[], Plan],
    ) -> CheckedProgram:
        """This program rebased onto other buffers (see Program.rebased): no compilation.
        ``resources`` are the allocations the rebased program uses (:attr:`resources`);
        its :attr:`plan` stays this one's (the step structure both share; the plan on its
        own buffers is :meth:`full_plan`, made by ``plan`` on first use; ``segments`` makes
        the segments for the error path). Raises as :meth:`encode` does, naming the release
        of a buffer first."""
        try:
            program = self._program.rebased(rebase)
        except BackendError as error:
            raise self._failure(error) from None
        # As the constructor makes it (plan and has_steps are this one's: the same steps).
        checked = _new_checked(CheckedProgram)
        checked._device = self._device
        checked._program = program
        checked._segments = segments
        checked._views = self._views
        checked.plan = self.plan
        checked.resources = resources
        checked.has_steps = self.has_steps
        checked._full_plan = plan
        return checked

    def _failure(self, error: BackendError) -> HalError | BackendError:
        # A buffer released by another thread after the submission's checks comes first:
        # wgpu then rejects it as destroyed, which is the release's doing, not the command's.
        for buffer in (*self.resources, *self._views):
            if buffer.is_released:
                return FailedPreconditionError(
                    f"{_WHAT}: a buffer the command buffer uses was released"
                )
        return wgpu_failure(self._device, _segments_of(self._segments), error)

    def encode(self, label: str = "hal") -> Any:
        """A new wgpu command buffer for one submission. Raises InvalidArgumentError naming
        the rejected command, or BackendError if the device was lost."""
        try:
            return self._program.encode(label)
        except BackendError as error:
            raise self._failure(error) from None

    def encode_profiled(self, timer: Any) -> Any:
        """:meth:`encode` with GPU timestamps (hal/runtime/profiling.py); the same errors."""
        try:
            return self._program.encode_profiled(timer)
        except BackendError as error:
            raise self._failure(error) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._program, name)


_new_checked = object.__new__
