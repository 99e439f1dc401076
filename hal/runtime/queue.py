"""The device queue: submissions ordered by semaphores, completion tracking, host transfers.

Completion is detected by a tracker thread that blocks in ``wgpuDevicePoll(wait=True)``
whenever work is in flight (``queue.on_submitted_work_done*`` is broken in wgpu-py 0.32.0)
and sleeps on a condition variable otherwise, so an idle device costs no CPU. An operation
whose waits are not yet reached is held back and submitted by whichever thread reaches them.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import wgpu

from hal.backends import wgpu_native as native
from hal.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
)
from hal.runtime import loss
from hal.runtime.semaphore import Point, Semaphore, WaitList, normalise_points

if TYPE_CHECKING:
    from hal.runtime.buffer import Buffer, _Allocation
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device
    from hal.runtime.staging import StagingPool

__all__ = ["Queue", "WaitList"]

_CLOSE_TIMEOUT = 10.0


class _Submission:
    """One queue operation: wgpu command buffers (or ``prepare``, which makes them when the
    waits are reached), the allocations it holds alive, ``on_complete`` (run on the host once
    the GPU finished it) and the points it signals after that."""

    __slots__ = (
        "allocations",
        "command_buffers",
        "index",
        "keepalive",
        "on_complete",
        "prepare",
        "signals",
        "token",
        "waits",
    )

    def __init__(
        self,
        command_buffers: list[Any],
        allocations: list[_Allocation],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
        keepalive: Any = None,
        prepare: Callable[[], list[Any]] | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        self.command_buffers = command_buffers
        self.allocations = allocations
        self.waits = waits
        self.signals = signals
        self.keepalive = keepalive
        self.prepare = prepare
        self.on_complete = on_complete
        self.index = 0
        self.token: object | None = None

    def complete(self) -> None:
        if self.on_complete is not None:
            try:
                self.on_complete()
            except Exception as error:
                self.abort(error)
                return
        for allocation in self.allocations:
            allocation.retire()
        self.allocations = []
        for semaphore, value in self.signals:
            semaphore._advance(value)

    def abort(self, error: BaseException) -> None:
        for allocation in self.allocations:
            allocation.retire()
        self.allocations = []
        for semaphore, _ in self.signals:
            semaphore.fail(error)


class Queue:
    """The single wgpu queue of a device, shared by every thread."""

    def __init__(self, device: Device) -> None:
        self._device = device
        self._wgpu = device._wgpu
        self._wgpu_queue = device._wgpu.queue
        self._cond = threading.Condition(threading.Lock())
        self._submit_lock = threading.Lock()
        self._in_flight: list[_Submission] = []
        self._parked: dict[Semaphore, list[tuple[int, int, object, _Submission]]] = {}
        self._parked_count = 0
        self._watched: set[Semaphore] = set()
        self._last_index = 0
        self._closing = False
        self._lost: UnavailableError | None = None  # set once by mark_lost (hal/loss.py)
        self._pending_clears: list[tuple[Any, _Allocation | None]] = []
        self._staging: StagingPool | None = None
        self._tracker = threading.Thread(target=self._track, name="hal-completion", daemon=True)
        self._tracker.start()

    # -- zero-initialisation ----------------------------------------------------------------

    def zero_new_buffer(self, allocation: _Allocation) -> None:
        """Clear a new allocation before anything else touches it (ordered on the queue).

        Clearing also defeats a wgpu-native bug: writes through dynamic-offset bindings to a
        never-initialised buffer are lost."""
        allocation.acquire()
        with self._cond:
            self._pending_clears.append((allocation.wgpu_buffer, allocation))

    def zero_new_wgpu_buffer(self, wgpu_buffer: Any) -> None:
        """Clear an internal wgpu buffer before its first use."""
        with self._cond:
            self._pending_clears.append((wgpu_buffer, None))

    def _take_clears(self) -> tuple[Any, list[_Allocation]]:
        with self._cond:
            pending, self._pending_clears = self._pending_clears, []
        if not pending:
            return None, []
        encoder = self._wgpu.create_command_encoder(label="hal.zero")
        for wgpu_buffer, _ in pending:
            encoder.clear_buffer(wgpu_buffer)
        return encoder.finish(), [a for _, a in pending if a is not None]

    def _flush_clears(self) -> None:
        # Taken and submitted under the submit lock: a clear submitted after another
        # thread's work on the same buffer would wipe it.
        with self._submit_lock:
            command_buffer, allocations = self._take_clears()
            if command_buffer is not None:
                self._wgpu_queue.submit([command_buffer])
        for allocation in allocations:
            allocation.retire()

    # -- host transfers -----------------------------------------------------------------------

    @property
    def staging(self) -> StagingPool:
        """The device's staging buffers (created on first use)."""
        pool = self._staging
        if pool is None:
            from hal.runtime.staging import StagingPool

            with self._cond:
                if self._staging is None:
                    self._staging = StagingPool(self)
                pool = self._staging
        return pool

    def host_write(self, buffer: Buffer, offset: int, data: Any) -> None:
        """Write ``data`` at absolute ``offset`` of ``buffer``'s allocation, ordered after all
        submitted work, through the staging pool (hal/staging.py); unaligned edges change
        only ``data``'s bytes. Returns once ``data`` was copied out."""
        view = memoryview(data).cast("B")
        if len(view) == 0:
            return
        # Held for the whole transfer: a release() from another thread meanwhile is deferred
        # (submitting a copy that uses a destroyed buffer would abort the process).
        allocation = buffer._allocation
        allocation.acquire()
        try:
            self._check_usable(allocation, "host write")
            self.staging.write(buffer, offset, view)
        except wgpu.GPUError as error:
            raise loss.wgpu_failure(self._device, "host write", error) from None
        finally:
            allocation.retire()

    def host_read(self, buffer: Buffer, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at absolute ``offset`` after all submitted work."""
        from hal.runtime.staging import new_bytes

        if length == 0:
            return b""
        result, view = new_bytes(length)
        self.host_read_into(buffer, offset, view)
        view.release()
        return bytes(result) if not isinstance(result, bytes) else result

    def host_read_into(self, buffer: Buffer, offset: int, out: Any) -> None:
        """Read ``len(out)`` bytes at absolute ``offset`` into the writable buffer ``out``
        after all submitted work."""
        from hal.runtime.staging import copy_bytes

        target = memoryview(out).cast("B")
        if len(target) == 0:
            return
        allocation = buffer._allocation
        allocation.acquire()  # as in host_write: a concurrent release() is deferred
        try:
            self._check_usable(allocation, "host read")

            def sink(chunk: memoryview, position: int) -> None:
                copy_bytes(target[position : position + len(chunk)], chunk)

            self.staging.read(buffer, offset, len(target), sink)
        except wgpu.GPUError as error:
            raise loss.wgpu_failure(self._device, "host read", error) from None
        finally:
            allocation.retire()

    def submit_transfer(
        self, command_buffers: list[Any], allocations: Sequence[_Allocation]
    ) -> int:
        """Submit ``command_buffers`` now, after all previously submitted work, holding
        ``allocations`` until they finished; the wgpu submission index (0 where unknown)."""
        for allocation in allocations:
            allocation.acquire()
        submission = _Submission(command_buffers, list(allocations), (), ())
        # Accepted while closing: a queue_write still reads back from work in flight then.
        self._submit(submission, closing_ok=True)
        return submission.index

    def _check_usable(self, allocation: _Allocation, what: str) -> None:
        # Not closed-checked: work in flight at close (a queue_write's read-back) still
        # finishes; public entry points check the device themselves.
        if allocation.released:
            raise FailedPreconditionError(f"{what}: the buffer was released")

    # -- submission ---------------------------------------------------------------------------

    def execute(
        self,
        command_buffers: CommandBuffer | Sequence[CommandBuffer] | None,
        wait: WaitList,
        signal: WaitList,
        binding_table: Sequence[Any] | None,
    ) -> None:
        """Validate, encode and submit (or hold back until ``wait`` is reached)."""
        from hal.enums import CommandBufferMode
        from hal.runtime.command_buffer import CommandBuffer

        what = "queue_execute"
        if command_buffers is None:
            cbs: list[CommandBuffer] = []
        elif isinstance(command_buffers, CommandBuffer):
            cbs = [command_buffers]
        else:
            cbs = list(command_buffers)
        waits = normalise_points(f"{what} wait", wait)
        signals = normalise_points(f"{what} signal", signal)
        for i, cb in enumerate(cbs):
            if not isinstance(cb, CommandBuffer) or cb.device is not self._device:
                raise InvalidArgumentError(
                    f"{what}: command_buffers[{i}] is not a command buffer of this device"
                )
            if cb.mode & CommandBufferMode.ONE_SHOT and cbs.count(cb) > 1:
                raise FailedPreconditionError(
                    f"{what}: ONE_SHOT command buffer listed {cbs.count(cb)} times"
                )
            if cb.mode & CommandBufferMode.ALLOW_INLINE_EXECUTION and waits:
                raise InvalidArgumentError(
                    f"{what}: an inline-execution command buffer cannot wait on semaphores"
                )
        claimed: list[CommandBuffer] = []
        allocations: list[_Allocation] = []
        try:
            for cb in cbs:
                cb.claim()
                claimed.append(cb)
            programs = [cb.prepare(binding_table) for cb in cbs]
            for program in programs:
                for buffer in program.plan.resources:
                    allocation = buffer._allocation
                    allocation.acquire()
                    allocations.append(allocation)
                    if allocation.released:
                        raise FailedPreconditionError(
                            f"{what}: a buffer the command buffer uses was released"
                        )
            # An empty plan has nothing for the GPU: it completes like a queue barrier.
            profiler = self._device._profiler
            if profiler is None:
                encoded = [program.encode(self._wgpu) for program in programs if program.plan.steps]
            else:  # a separate path: timestamps around every command (hal/profiling.py)
                encoded, record = profiler.encode(cbs, programs)
        except BaseException:
            for allocation in allocations:
                allocation.retire()
            for cb in claimed:
                cb.unclaim()
            raise
        submission = _Submission(encoded, allocations, waits, signals, programs)
        if profiler is not None:
            profiler.attach(record, submission)
        self.schedule(submission)

    def operation(
        self,
        wait: WaitList,
        signal: WaitList,
        allocations: Sequence[_Allocation] = (),
        prepare: Callable[[], list[Any]] | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        """Schedule a queue operation built by the caller: ``prepare`` makes its wgpu
        command buffers once ``wait`` is reached; ``on_complete`` runs after the GPU finished
        it and before ``signal``. Holds ``allocations`` alive until then."""
        waits = normalise_points("queue operation wait", wait)
        signals = normalise_points("queue operation signal", signal)
        for allocation in allocations:
            allocation.acquire()
        self.schedule(
            _Submission([], list(allocations), waits, signals, None, prepare, on_complete)
        )

    def schedule(self, submission: _Submission) -> None:
        """Submit ``submission`` now if its waits are reached, drop it (failing its signals)
        if one failed, else park it on the first semaphore it still needs."""
        state = _wait_state(submission.waits)
        if isinstance(state, BaseException):
            # The original failure propagates, so every waiter down a chain sees the same
            # ``__cause__``.
            submission.abort(state)
            return
        if state:
            self._submit(submission)
            return
        # Parked on every semaphore it still needs, so that any of them failing drops it at
        # once; the token makes whichever heap releases it first the only one that counts.
        unreached = [(s, v) for s, v in submission.waits if s._value < v]
        token = object()
        with self._cond:
            closed = self._closing
            if not closed:
                submission.token = token
                for semaphore, value in unreached:
                    self._parked_count += 1
                    heap = self._parked.setdefault(semaphore, [])
                    heapq.heappush(heap, (value, self._parked_count, token, submission))
        if closed:
            submission.abort(UnavailableError("the device was closed before the waits"))
            return
        for semaphore, _ in unreached:
            self._release_ready(semaphore)

    def _semaphore_changed(self, semaphore: Semaphore) -> None:
        with self._cond:
            self._watched.discard(semaphore)
        self._release_ready(semaphore)

    def _release_ready(self, semaphore: Semaphore) -> None:
        """Reschedule the submissions parked on ``semaphore`` whose value is reached (all of
        them if it failed), and keep a watcher on it while others remain. Parked work is a
        heap per semaphore, so a chain of n dependent submissions costs O(n log n)."""
        while True:
            with self._cond:
                heap = self._parked.get(semaphore)
                ready = []
                while heap and (semaphore._failure is not None or heap[0][0] <= semaphore._value):
                    _, _, token, submission = heapq.heappop(heap)
                    if submission.token is token:  # else released through another semaphore
                        submission.token = None
                        ready.append(submission)
                if heap is not None and not heap:
                    del self._parked[semaphore]
                watch = bool(heap) and semaphore not in self._watched
                if watch:
                    self._watched.add(semaphore)
            if watch:
                semaphore._watch(lambda: self._semaphore_changed(semaphore))
            if ready and self._lost is None:
                # Held-back work was encoded before it waited; submitting it to a device lost
                # since then would abort the process, so look first.
                lost = loss.probe(self._wgpu)
                if lost is not None:
                    loss.mark_lost(self._device, f"found before submitting held-back work: {lost}")
            for submission in ready:
                self.schedule(submission)
            if not watch:
                return
            # A change that landed before the watcher was registered is caught by one more
            # pass now that it is in place.

    def _submit(self, submission: _Submission, closing_ok: bool = False) -> None:
        if self._closing and not closing_ok:
            submission.abort(UnavailableError("queue_execute: the device was closed"))
            return
        if self._lost is not None:
            submission.abort(self._lost)
            return
        if submission.prepare is not None:
            try:
                submission.command_buffers = submission.prepare()
            except Exception as error:
                submission.abort(error)
                return
        with self._submit_lock:
            # Clears of new buffers go first in the same submission, taken under the lock so
            # no other thread's work on those buffers can be submitted before them.
            clears, cleared = self._take_clears()
            command_buffers = submission.command_buffers
            if clears is not None:
                command_buffers = [clears, *command_buffers]
            if command_buffers:
                self._last_index = native.submit(self._wgpu_queue, command_buffers)
            submission.command_buffers = []
            with self._cond:
                # An operation without command buffers completes with the work before it.
                submission.index = self._last_index
                self._in_flight.append(submission)
                self._cond.notify_all()
        if submission.index:
            for semaphore, value in submission.signals:
                semaphore._expect(value, self, submission.index)
        for allocation in cleared:
            allocation.retire()

    def wait_for_index(self, index: int) -> None:
        """Block in the device poll until wgpu submission ``index`` finished and complete it
        on this thread: an unbounded host wait saves the tracker's thread wake-up."""
        native.poll(self._wgpu, True, index)
        self._complete_through(index)

    # -- completion -----------------------------------------------------------------------------

    def _complete_through(self, index: int) -> None:
        """Complete every in-flight operation with a wgpu submission index <= ``index``."""
        with self._cond:
            done = [s for s in self._in_flight if s.index <= index]
            if not done:
                return
            self._in_flight = [s for s in self._in_flight if s.index > index]
        for submission in done:
            submission.complete()
        with self._cond:
            self._cond.notify_all()

    def _track(self) -> None:
        while True:
            with self._cond:
                while not self._in_flight and not self._closing:
                    self._cond.wait()
                if not self._in_flight:
                    return
                oldest = self._in_flight[0].index
            try:
                # wgpuDevicePoll's non-blocking "queue empty" result is not reliable (it
                # reported an empty queue with 40 ms of lavapipe work in flight), so completion
                # is only ever taken from a blocking wait on a submission index.
                native.poll(self._wgpu, True, oldest)
                self._complete_through(oldest)
            except Exception:  # a lost device: fail what was in flight instead of hanging
                with self._cond:
                    lost, self._in_flight = self._in_flight, []
                    self._cond.notify_all()
                for submission in lost:
                    submission.abort(UnavailableError("the device was lost"))

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no submitted work is in flight (held-back operations excluded);
        False on timeout."""
        self._flush_clears()
        if timeout is None:
            # Unbounded: block in the device poll on this thread (as Semaphore.wait does),
            # saving the completion thread's wake-up.
            while True:
                with self._cond:
                    if not self._in_flight or self._lost is not None:
                        break
                    last = self._in_flight[-1].index
                if not last:
                    break
                self.wait_for_index(last)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _take_parked(self) -> list[_Submission]:
        """Remove every held-back submission (once each, though parked on several
        semaphores). Call with ``self._cond`` held."""
        taken = []
        for heap in self._parked.values():
            for _, _, token, submission in heap:
                if submission.token is token:
                    submission.token = None
                    taken.append(submission)
        self._parked.clear()
        return taken

    def close(self) -> None:
        """Stop accepting work, fail held-back operations, wait (bounded) for work in
        flight and stop the tracker thread."""
        with self._cond:
            self._closing = True
            deferred = self._take_parked()
            self._cond.notify_all()
        for submission in deferred:
            submission.abort(UnavailableError("the device was closed before the waits"))
        self._tracker.join(_CLOSE_TIMEOUT)

    def mark_lost(self, error: UnavailableError) -> None:
        """The device is lost: fail held-back and in-flight work with ``error`` (their
        semaphores fail; nothing more is submitted). Later calls are no-ops."""
        with self._cond:
            if self._lost is not None:
                return
            self._lost = error
            stranded = self._take_parked()
            stranded += self._in_flight
            self._in_flight = []
            self._cond.notify_all()
        for submission in stranded:
            submission.abort(error)

    @staticmethod
    def shutdown(queue: Queue) -> None:
        """Finaliser: close without raising (used at interpreter exit)."""
        with contextlib.suppress(Exception):
            queue.close()


def _wait_state(waits: tuple[Point, ...]) -> bool | BaseException:
    """True when every wait is reached, the failure when one failed, else False."""
    reached = True
    for semaphore, value in waits:
        if semaphore._failure is not None:
            return semaphore._failure
        if semaphore._value < value:
            reached = False
    return reached
