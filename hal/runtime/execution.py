"""``queue_execute``: command buffers claimed, prepared and encoded into one queue Work item.

The queue only orders Work; this module is where command buffers meet it. Each command
buffer is claimed (a ONE_SHOT buffer becomes SUBMITTED at once, so two threads can never both
submit it), prepared for the binding table (its program: hal/runtime/programs.py), its
allocations held alive, and encoded — with GPU timestamps while a profile is active.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.errors import FailedPreconditionError, InvalidArgumentError
from hal.runtime.loss import backend_failure
from hal.runtime.queue import Work
from hal.runtime.semaphore import normalise_points

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.buffer import Allocation
    from hal.runtime.collectives import Collectives
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.profiling import ProfilerSlot
    from hal.runtime.queue import Queue
    from hal.runtime.semaphore import WaitList

__all__ = ["Executor"]

_CommandBufferType: list[type] = []
"""hal.runtime.command_buffer.CommandBuffer, once imported (it imports this module's
neighbours, so not at import time)."""


def _command_buffer_type() -> type:
    if not _CommandBufferType:
        from hal.runtime.command_buffer import CommandBuffer

        _CommandBufferType.append(CommandBuffer)
    return _CommandBufferType[0]


class Executor:
    """Submits command buffers of one device through its queue."""

    def __init__(
        self, device: Device, queue: Queue, backend: Backend, profiler: ProfilerSlot
    ) -> None:
        self._device = device
        self._queue = queue
        self._backend = backend
        self._profiler = profiler
        self._collectives: Collectives | None = None
        self._has_host_steps: Callable[[Sequence[CommandBuffer]], bool] | None = None
        self._has_host_step: Callable[[CommandBuffer], bool] | None = None

    @property
    def queue(self) -> Queue:
        """The device's queue (runtime use: the single queue operations' fast lane)."""
        return self._queue

    @property
    def profiler(self) -> ProfilerSlot:
        """The device's profiler slot (runtime use: the fast lane declines while active)."""
        return self._profiler

    def use_collectives(self, collectives: Collectives) -> None:
        """Run command buffers with collectives through ``collectives`` (the device wires it
        once its host transfers exist)."""
        from hal.runtime.collectives import has_host_step, has_host_steps

        self._collectives = collectives
        # Looked up once, not imported on every submission.
        self._has_host_steps = has_host_steps
        self._has_host_step = has_host_step

    def _check(self, what: str, cbs: list[CommandBuffer], has_waits: bool) -> None:
        kind = _command_buffer_type()
        for i, cb in enumerate(cbs):
            if not isinstance(cb, kind) or cb.device is not self._device:
                raise InvalidArgumentError(
                    f"{what}: command_buffers[{i}] is not a command buffer of this device"
                )
            if cb.one_shot and len(cbs) > 1 and cbs.count(cb) > 1:
                raise FailedPreconditionError(
                    f"{what}: ONE_SHOT command buffer listed {cbs.count(cb)} times"
                )
            if cb.inline and has_waits:
                raise InvalidArgumentError(
                    f"{what}: an inline-execution command buffer cannot wait on semaphores"
                )

    def execute(
        self,
        command_buffers: CommandBuffer | Sequence[CommandBuffer] | None,
        wait: WaitList,
        signal: WaitList,
        binding_table: Sequence[Any] | None,
    ) -> None:
        """Validate, encode and submit (or hold back until ``wait`` is reached). Raises
        what claiming and preparing raise (FailedPreconditionError, OutOfRangeError, …);
        a rejected call queues nothing and leaves every command buffer as it was."""
        what = "queue_execute"
        if command_buffers is None:
            cbs: list[CommandBuffer] = []
        elif isinstance(command_buffers, _command_buffer_type()):
            cbs = [command_buffers]  # type: ignore[list-item]
        else:
            cbs = list(command_buffers)  # type: ignore[arg-type]
        # The device's operations pass the tuples they normalised (a rejected call must
        # change nothing, so they check first): not normalised again.
        waits = wait if type(wait) is tuple else normalise_points(f"{what} wait", wait)
        signals = signal if type(signal) is tuple else normalise_points(f"{what} signal", signal)
        self._check(what, cbs, bool(waits))
        if (
            cbs
            and self._collectives is not None
            and self.execute_split(cbs, waits, signals, binding_table)
        ):
            return
        self._submit(what, cbs, waits, signals, binding_table)

    def execute_single(
        self, cb: CommandBuffer, waits: tuple[Any, ...], signals: tuple[Any, ...]
    ) -> None:
        """:meth:`execute` of one user command buffer without a binding table, with the
        ``waits`` and ``signals`` the device normalised: the same checks in the same order
        with the same messages (:meth:`_check` of a one-item list), without the list
        building and the collectives scan of the general path; a command buffer with
        collectives takes that path. Raises what :meth:`execute` raises; a rejected call
        queues nothing and leaves the command buffer as it was."""
        what = "queue_execute"
        if cb.device is not self._device:
            raise InvalidArgumentError(
                f"{what}: command_buffers[0] is not a command buffer of this device"
            )
        if cb.inline and waits:
            raise InvalidArgumentError(
                f"{what}: an inline-execution command buffer cannot wait on semaphores"
            )
        has_host_step = self._has_host_step
        if has_host_step is not None and has_host_step(cb):
            # Collectives: the general path's split.
            if not self.execute_split([cb], waits, signals, None):
                self._submit(what, [cb], waits, signals, None)
            return
        self._submit_single(what, cb, waits, signals)

    def _submit_single(
        self, what: str, cb: CommandBuffer, waits: tuple[Any, ...], signals: tuple[Any, ...]
    ) -> None:
        """:meth:`_submit` of one command buffer without a binding table (no lists of
        claims and programs to build); a rejected call gives back everything it took."""
        claimed = False
        allocations: list[Allocation] = []
        profile = self._profiler.active
        try:
            cb.claim()
            claimed = True
            program = cb.prepare(None)
            _acquire(what, program, allocations)
            if profile is None:
                # An empty plan has nothing for the GPU: it completes like a queue barrier.
                encoded = [program.encode()] if program.has_steps else []
                work = Work(encoded, allocations, waits, signals, program)
            else:
                encoded, record = profile.encode([cb], [program])
                work = Work(encoded, allocations, waits, signals, program)
                profile.attach(record, work)
        except BackendError as error:  # the device was lost (anything else is a HalError)
            self._undo([cb] if claimed else [], allocations)
            raise backend_failure(self._queue, what, error) from None
        except BaseException:
            self._undo([cb] if claimed else [], allocations)
            raise
        self._queue.schedule(work)

    def execute_one(
        self, cb: CommandBuffer, waits: tuple[Any, ...], signals: tuple[Any, ...]
    ) -> None:
        """Submit ``cb``, a ONE_SHOT transfer command buffer hal itself has just recorded and
        ended (a single queue operation: hal/runtime/queue_ops.py), with normalised
        ``waits`` and ``signals``: none of :meth:`execute`'s checks can fail for it and it
        has no collectives. Raises what preparing raises; a rejected call queues nothing."""
        self._submit("queue_execute", [cb], waits, signals, None)

    def _submit(
        self,
        what: str,
        cbs: list[CommandBuffer],
        waits: tuple[Any, ...],
        signals: tuple[Any, ...],
        binding_table: Sequence[Any] | None,
    ) -> None:
        """Claim, prepare and encode ``cbs`` into one Work item and schedule it; a rejected
        call gives back everything it took."""
        claimed: list[CommandBuffer] = []
        allocations: list[Allocation] = []
        profile = self._profiler.active
        try:
            for cb in cbs:
                cb.claim()
                claimed.append(cb)
            programs = [cb.prepare(binding_table) for cb in cbs]
            for program in programs:
                _acquire(what, program, allocations)
            if profile is None:
                # An empty plan has nothing for the GPU: it completes like a queue barrier.
                encoded = [program.encode() for program in programs if program.has_steps]
                work = Work(encoded, allocations, waits, signals, programs)
            else:  # a separate path: timestamps around every command (hal/runtime/profiling.py)
                encoded, record = profile.encode(cbs, programs)
                work = Work(encoded, allocations, waits, signals, programs)
                profile.attach(record, work)
        except BackendError as error:  # the device was lost (anything else is a HalError)
            self._undo(claimed, allocations)
            raise backend_failure(self._queue, what, error) from None
        except BaseException:
            self._undo(claimed, allocations)
            raise
        self._queue.schedule(work)

    def execute_split(
        self,
        cbs: list[CommandBuffer],
        waits: tuple[Any, ...],
        signals: tuple[Any, ...],
        binding_table: Sequence[Any] | None,
    ) -> bool:
        """Submit ``cbs`` as a chain of GPU parts and host steps where one has collectives
        (hal/runtime/collectives.py); False (nothing done) where none has."""
        has_host_steps = self._has_host_steps
        if self._collectives is None or has_host_steps is None or not has_host_steps(cbs):
            return False
        self._collectives.execute(cbs, waits, signals, binding_table)
        return True

    @staticmethod
    def _undo(claimed: list[CommandBuffer], allocations: list[Allocation]) -> None:
        """Give back what a rejected call took: a rejected call changes nothing."""
        for allocation in allocations:
            allocation.retire()
        for cb in claimed:
            cb.unclaim()

    def encode_one(self, cb: CommandBuffer) -> Any:
        """The backend command buffer of an ended internal command buffer without a
        binding table (edge writes of staged transfers); not claimed."""
        return cb.prepare(None).encode()


def _acquire(what: str, program: Any, allocations: list[Allocation]) -> None:
    """Hold ``program``'s allocations for a submission, appending each to ``allocations``
    (the caller gives them back if the submission is rejected). Raises
    FailedPreconditionError where one was released meanwhile."""
    for buffer in program.resources:
        allocation = buffer.allocation
        allocation.acquire()
        allocations.append(allocation)
        if allocation.released:
            raise FailedPreconditionError(f"{what}: a buffer the command buffer uses was released")
