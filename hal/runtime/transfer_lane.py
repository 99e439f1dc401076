"""The fast lane of ``queue_copy`` and ``queue_fill``: one transfer between whole buffers
encoded straight into native calls (issue 10's fixed cost per submission).

The general path of a single queue operation makes a one-shot command buffer, records the
command into it, ends it (a plan from the one-command template, hal/core/single_plans.py),
claims it, compiles the plan into a program and encodes that: ~25 µs of Python for what is,
in the common case, one ``copy_buffer`` or ``clear_buffer`` call of the backend. Where the
operation's template plan is only native transfers (no dispatch, no buffers of its own) and
its arguments pass every check of recording's own fast path, the lane encodes those calls
from the template's offsets and the buffers' handles, and queues the result: no command
buffer, segment, plan, program or bind group. Anything else — views, slots, unaligned or
patterned fills that need a builtin kernel, an active profile, a check that fails, a
backend rejection that is not a loss — declines (returns False, nothing changed), and the
general path runs and raises exactly what it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.core.single_plans import NativeStep, native_steps
from hal.runtime.buffer import Buffer
from hal.runtime.command_buffer import CommandBuffer, fast_copy_ok, fast_fill_ok
from hal.runtime.loss import backend_failure
from hal.runtime.native_programs import NativePrograms
from hal.runtime.queue import Work

if TYPE_CHECKING:
    from hal.runtime.device import Device
    from hal.runtime.execution import Executor
    from hal.runtime.profiling import ProfilerSlot
    from hal.runtime.queue import Queue
    from hal.runtime.semaphore import Point

__all__ = ["TransferLane"]


class TransferLane:
    """The lane of one device (see the module docstring). Its methods return True when
    they queued the operation and False, having changed nothing, when the caller must take
    the general path; they raise only UnavailableError (the device was lost while encoding:
    marked lost, as the general path does)."""

    __slots__ = ("_backend", "_device", "_profiler", "_queue")

    def __init__(self, device: Device, executor: Executor) -> None:
        self._device = device
        self._backend = device.backend
        self._queue: Queue = executor.queue
        self._profiler: ProfilerSlot = executor.profiler

    def copy(
        self,
        source: Any,
        source_offset: Any,
        target: Any,
        target_offset: Any,
        length: Any,
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
    ) -> bool:
        """``queue_copy`` of ``length`` bytes between two whole buffers of this device."""
        if (
            type(source) is not Buffer
            or type(target) is not Buffer
            or type(source_offset) is not int
            or type(target_offset) is not int
            or type(length) is not int
            or length <= 0
            or self._profiler.active is not None
            or not fast_copy_ok(
                self._device, source, source_offset, target, target_offset, length, None, None
            )
        ):
            return False
        record = (source, source_offset, target, target_offset, length)
        steps = native_steps(record, self._device.caps)
        if steps is None:
            return False
        return self._queue_steps("queue_copy", steps, target, source, waits, signals)

    def fill(
        self,
        target: Any,
        offset: Any,
        length: Any,
        pattern: Any,
        pattern_length: Any,
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
    ) -> bool:
        """``queue_fill`` of a 4-byte int ``pattern`` over a range of a whole buffer."""
        if (
            type(target) is not Buffer
            or type(offset) is not int
            or type(length) is not int
            or type(pattern) is not int
            or pattern_length is not None
            or length <= 0
            or (offset | length) & 3
            or not -0x80000000 <= pattern <= 0xFFFFFFFF
            or self._profiler.active is not None
            or not fast_fill_ok(self._device, target, offset, length, None)
        ):
            return False
        steps = native_steps((target, offset, length, pattern & 0xFFFFFFFF), self._device.caps)
        if steps is None:
            return False
        return self._queue_steps("queue_fill", steps, target, target, waits, signals)

    def execute(
        self, cb: CommandBuffer, waits: tuple[Point, ...], signals: tuple[Point, ...]
    ) -> bool:
        """``queue_execute`` of one command buffer of this device without a binding table
        whose program is one native fill or copy (hal/runtime/native_programs.py): claimed,
        its buffers held and its steps encoded into one Work, as ``queue_fill`` is. Declines
        (False, nothing changed) for any other command buffer, an inline one with waits, an
        active profile, a released buffer or a backend rejection that is not a loss; raises
        what claiming raises (FailedPreconditionError: resubmitted ONE_SHOT) and
        UnavailableError (the device was lost while encoding), as the general path does."""
        programs = cb.programs
        if (
            type(programs) is not NativePrograms
            or cb.device is not self._device
            or (waits and cb.inline)
            or self._profiler.active is not None
        ):
            return False
        cb.claim()
        target = programs.target
        source = programs.resources[-1]
        views = programs.views
        # Released meanwhile: the general path names it (after its own claim).
        if (
            target.is_released
            or (source is not target and source.is_released)
            or (views and any(v.is_released for v in views))
        ):
            cb.unclaim()
            return False
        try:
            queued = self._queue_steps(
                "queue_execute", programs.steps, target, source, waits, signals
            )
        except BaseException:
            cb.unclaim()
            raise
        if not queued:
            cb.unclaim()
        return queued

    def _queue_steps(
        self,
        what: str,
        steps: tuple[NativeStep, ...],
        target: Buffer,
        source: Buffer,
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
    ) -> bool:
        """Hold the buffers, encode ``steps`` on their handles and schedule the Work."""
        held = target.allocation
        held.acquire()
        allocations = [held]
        released = held.released
        if source is not target:
            other = source.allocation
            other.acquire()
            allocations.append(other)
            released = released or other.released
        # Released by another thread since the checks: the general path names it.
        if released:
            _retire(allocations)
            return False
        try:
            encoded = self._encode(steps, target, source)
        except BackendError as error:
            _retire(allocations)
            if error.lost:
                raise backend_failure(self._queue, what, error) from None
            return False  # the general path finds and names the command wgpu rejects
        except BaseException:
            _retire(allocations)
            raise
        self._queue.schedule(Work([encoded], allocations, waits, signals))
        return True

    def _encode(self, steps: tuple[NativeStep, ...], target: Buffer, source: Buffer) -> Any:
        backend = self._backend
        handles = (target.allocation.handle, source.allocation.handle)
        calls = []
        for role, offset, other, other_offset, size in steps:
            if other < 0:
                calls.append(backend.clear_buffer(handles[role], offset, size))
            else:
                calls.append(
                    backend.copy_buffer(handles[role], offset, handles[other], other_offset, size)
                )
        return backend.encode([(False, calls)])


def _retire(allocations: list[Any]) -> None:
    for allocation in allocations:
        allocation.retire()
