"""Programs of a command buffer of one fill or copy whose plan is native transfers only (the
eager one-shot round trip of issue 10): encoded straight into backend calls.

A command buffer of one small fill or copy ends with a plan from the one-command template
(hal/core/single_plans.py). Where that plan is nothing but native ``clear_buffer`` /
``copy_buffer`` calls — no dispatch, no buffers of its own — what a submission encodes is
known at ``end()`` from the template's offsets and the buffers' handles. :class:`NativePrograms`
keeps only that: the plan itself (``cb.plan``, ``cb.stats``, ``dump``), the compiled program a
profile needs, and the culprit search of a wgpu rejection are made on first use, equal to
what the general path makes (:class:`hal.runtime.programs.Programs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hal.core.segments import TransferRecord, record_segment
from hal.core.single_plans import NativeStep, single_plan
from hal.runtime.call_programs import CallsProgram
from hal.runtime.programs import Programs

if TYPE_CHECKING:
    from hal.core.plan import Plan
    from hal.core.refs import BufferLike
    from hal.core.segments import Segment
    from hal.runtime.buffer import Buffer
    from hal.runtime.device import Device

__all__ = ["NativeProgram", "NativePrograms"]

_WHAT = "queue_execute"


class NativePrograms:
    """The programs of an ended command buffer holding one record (a TransferRecord in
    ``segments``, a one-element list) whose template plan is ``steps``. Raises nothing at
    construction (the record passed recording's checks; a native plan has no buffers of
    its own, so no device limit applies)."""

    __slots__ = ("_full", "_program", "device", "record", "resources", "steps", "target", "views")

    def __init__(
        self,
        device: Device,
        segments: list[Any],
        views: tuple[BufferLike, ...],
        steps: tuple[NativeStep, ...],
    ) -> None:
        self.device = device
        # The record itself (a tuple: the command buffer may make its list's entries
        # segments for a dump).
        record: TransferRecord = segments[0]
        self.record = record
        # Subspans the commands named (a general-path command that recorded nothing).
        self.views = views
        self.steps = steps
        # The record's buffers by role: 0 the target, 1 the source (a fill's target twice).
        target = record[0] if len(record) == 4 else record[2]
        source = record[0]
        self.target: Buffer = target
        self.resources: tuple[Buffer, ...] = (target,) if target is source else (target, source)
        self._full: Programs | None = None
        self._program: NativeProgram | None = None

    def full(self) -> Programs:
        """The general path's programs of the same command buffer (made once)."""
        full = self._full
        if full is None:
            record = self.record
            plan = single_plan(record, self.device.caps)
            full = self._full = Programs(
                self.device, lambda: [record_segment(record)], self.views, None, plan
            )
        return full

    @property
    def plan(self) -> Plan:
        """The plan, as the general path lowers it (made on first use)."""
        plan = self.full().plan
        assert plan is not None
        return plan

    def culprit_segments(self) -> list[Segment]:
        """The command buffer's one segment (for naming a rejected command)."""
        return [record_segment(self.record)]

    def prepare(self, table: Any) -> NativeProgram:
        """The program to encode (``table`` is ignored: no slots). Raises
        FailedPreconditionError when a buffer the command buffer uses was released."""
        for buffer in self.resources:
            buffer.check_alive(_WHAT, "a buffer the command buffer uses")
        for view in self.views:
            view.check_alive(_WHAT, "a buffer the command buffer uses")
        program = self._program
        if program is None:
            program = self._program = NativeProgram(self)
        return program


class NativeProgram(CallsProgram):
    """A submission's program of :class:`NativePrograms`: ``encode`` records the native
    calls into a new backend command buffer; ``plan`` and ``encode_profiled`` are the
    general path's (made on first use)."""

    __slots__ = ()

    def __init__(self, owner: NativePrograms) -> None:
        backend = owner.device.backend
        handles = [buffer.allocation.handle for buffer in owner.resources]
        if len(handles) == 1:
            handles.append(handles[0])
        calls = []
        for role, offset, other, other_offset, size in owner.steps:
            if other < 0:
                calls.append(backend.clear_buffer(handles[role], offset, size))
            else:
                calls.append(
                    backend.copy_buffer(handles[role], offset, handles[other], other_offset, size)
                )
        super().__init__(owner, [(False, calls)], True)
