"""The device queue: operations ordered only by their semaphores.

A queue operation is a :class:`Work` item: backend command buffers (or ``prepare``, which
makes them once the waits are reached), the allocations it holds alive, ``on_complete`` (run
on the host after the GPU finished it) and the points it signals after that. The queue knows
nothing of command buffers: whoever builds a Work item (hal/runtime/execution.py,
hal/runtime/transfers.py) decides what it runs. Work whose waits are not yet reached is held
back, parked on every semaphore it still needs, and submitted by whichever thread reaches
them; completion is :class:`~hal.runtime.completion.Completion`'s.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.errors import AbortedError, UnavailableError
from hal.runtime.completion import Completion
from hal.runtime.semaphore import Point, Semaphore, WaitList, normalise_points

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.buffer import Allocation
    from hal.runtime.zeroing import PendingClears

__all__ = ["Queue", "WaitList", "Work"]

_log = logging.getLogger("hal")


class Work:
    """One queue operation (see the module docstring). ``on_submit`` runs just before its
    command buffers are submitted (the profiler's hook); ``ticket`` is the backend's;
    ``held`` is True once it was parked (its command buffers may predate a device loss);
    ``failure`` is what failed it, if anything did."""

    __slots__ = (
        "allocations",
        "command_buffers",
        "early",
        "failure",
        "held",
        "keepalive",
        "on_complete",
        "on_submit",
        "prepare",
        "signals",
        "started",
        "ticket",
        "token",
        "user_error",
        "waits",
    )

    def __init__(
        self,
        command_buffers: list[Any],
        allocations: list[Allocation],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
        keepalive: Any = None,
        prepare: Callable[[], list[Any]] | None = None,
        on_complete: Callable[[], None] | None = None,
        on_submit: Callable[[], None] | None = None,
    ) -> None:
        self.command_buffers = command_buffers
        self.allocations = allocations
        self.waits = waits
        self.signals = signals
        self.keepalive = keepalive
        self.prepare = prepare
        self.on_complete = on_complete
        self.on_submit = on_submit
        self.ticket = 0
        self.started = False  # schedule() began with it
        self.token: object | None = None
        self.held = False
        # Submitted before its waits were reached (ordered after their signalling work on
        # the same queue): completing it checks that none of them failed meanwhile.
        self.early = False
        self.failure: BaseException | None = None
        self.user_error: BaseException | None = None

    def complete(self) -> None:
        """The GPU finished: run ``on_complete``, free the allocations, signal. Whatever
        ``on_complete`` raises (user files and callables: even KeyboardInterrupt) fails this
        operation's semaphores instead; nothing escapes. Work submitted before its waits
        were reached fails with a wait's failure instead, as it would have been dropped."""
        if self.early:
            for semaphore, _ in self.waits:
                failure = semaphore.failure
                if failure is not None:
                    self.abort(failure)
                    return
        callback = self.on_complete
        if callback is not None:
            self.on_complete = None  # so a completion resumed after an interrupt runs it once
            try:
                callback()
            except BaseException as error:  # user code: it fails only this operation
                self.abort(error)
                return
        # _retire, inlined (the round trip's completion: one call fewer).
        allocations, self.allocations = self.allocations, []
        for allocation in allocations:
            allocation.retire()
        for semaphore, value in self.signals:
            semaphore.advance(value)

    def abort(self, error: BaseException) -> None:
        """Fail the signal semaphores with ``error`` and free the allocations (once)."""
        if self.failure is None:
            self.failure = error
        self._retire()
        for semaphore, _ in self.signals:
            semaphore.fail(error)

    def _retire(self) -> None:
        allocations, self.allocations = self.allocations, []
        for allocation in allocations:
            allocation.retire()


class Queue:
    """The single backend queue of a device, shared by every thread."""

    def __init__(self, backend: Backend, clears: PendingClears) -> None:
        self._backend = backend
        self._clears = clears
        self._lock = threading.Lock()
        # The backend's: a destroy of the device waits for a submission in progress.
        self._submit_lock = backend.submission_lock
        self._parked: dict[Semaphore, list[tuple[int, int, object, Work]]] = {}
        self._parked_count = 0
        self._watched: set[Semaphore] = set()
        self._last_ticket = 0
        self._closing = False
        self._lost: UnavailableError | None = None
        # Queues of other devices with work parked on this device's semaphores.
        self._foreign_waiters: weakref.WeakSet[Queue] = weakref.WeakSet()
        self.completion = Completion(backend, self.mark_lost)

    @property
    def lost(self) -> UnavailableError | None:
        """The error the device was lost with, or None (a loss the backend knows of is
        taken over here: it fails held-back and in-flight work)."""
        if self._lost is None and self._backend.lost_reason is not None:
            return self.mark_lost(self._backend.lost_reason)
        return self._lost

    @property
    def is_lost(self) -> bool:
        """True once the device was found lost, here or by the backend. Unlike :attr:`lost`
        it takes nothing over (fails no work), so it is safe on any thread, the completion
        thread's retirements included."""
        return self._lost is not None or self._backend.lost_reason is not None

    # -- building work ---------------------------------------------------------------------

    def operation(
        self,
        wait: WaitList,
        signal: WaitList,
        allocations: Sequence[Allocation] = (),
        prepare: Callable[[], list[Any]] | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        """Schedule an operation: ``prepare`` makes its command buffers once ``wait`` is
        reached; ``on_complete`` runs after the GPU finished it and before ``signal``.
        Holds ``allocations`` alive until then. Raises InvalidArgumentError for bad lists.

        What ``prepare`` or ``on_complete`` raise fails the operation's signal semaphores
        (the error is their failure's ``__cause__``). A KeyboardInterrupt or SystemExit
        raised by ``prepare`` on this very call (its waits were already reached) also
        reaches the caller, after the operation was failed."""
        waits = normalise_points("queue operation wait", wait)
        signals = normalise_points("queue operation signal", signal)
        for allocation in allocations:
            allocation.acquire()
        work = Work([], list(allocations), waits, signals, None, prepare, on_complete)
        self.schedule(work)
        interrupt = work.user_error
        if interrupt is not None and not isinstance(interrupt, Exception) and not work.held:
            raise interrupt

    def submit_now(self, command_buffers: list[Any], allocations: Sequence[Allocation]) -> int:
        """Submit ``command_buffers`` now, after all previously submitted work, holding
        ``allocations`` until they finished; the backend ticket. Raises UnavailableError
        if the device is lost."""
        for allocation in allocations:
            allocation.acquire()
        work = Work(command_buffers, list(allocations), (), ())
        # Accepted while closing: a queue_write still reads back from work in flight then.
        self._submit(work, closing_ok=True)
        if work.failure is not None:
            raise work.failure
        return work.ticket

    def flush_clears(self) -> None:
        """Submit the pending clears of new buffers now (before a direct buffer write).
        Raises UnavailableError if the device is lost."""
        with self._submit_lock:
            if self._lost is not None:
                raise self._lost
            command_buffer, cleared = self._take_clears()
            if command_buffer is not None:
                self._backend_submit([command_buffer], probe=False)
        for allocation in cleared:
            allocation.retire()

    # -- ordering ----------------------------------------------------------------------------

    def schedule(self, work: Work) -> None:
        """Submit ``work`` now if its waits are reached, drop it (failing its signals) if one
        failed, else park it on every semaphore it still needs. Never raises: a failure
        fails the work's signals."""
        work.started = True
        waits = work.waits
        if not waits:  # nothing to wait for (the eager round trip): submitted now
            self._submit(work)
            return
        state = _wait_state(waits)
        if isinstance(state, BaseException):
            # The original failure propagates, so every waiter down a chain sees the same
            # ``__cause__``.
            work.abort(state)
            return
        if state or self._ordered(work):
            self._submit(work)
            return
        # Parked on every semaphore it still needs, so that any of them failing drops it at
        # once; the token makes whichever heap releases it first the only one that counts.
        unreached = [(s, v) for s, v in work.waits if s.value < v]
        token = object()
        with self._lock:
            closed = self._closing
            if not closed:
                work.token = token
                work.held = True
                for semaphore, value in unreached:
                    self._parked_count += 1
                    heap = self._parked.setdefault(semaphore, [])
                    heapq.heappush(heap, (value, self._parked_count, token, work))
        if closed:
            work.abort(UnavailableError("the device was closed before the waits"))
            return
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("queue: submission held back on %s", ", ".join(map(repr, unreached)))
        self._note_foreign_waits(unreached)
        for semaphore, _ in unreached:
            self._release_ready(semaphore)

    def _schedule_released(self, ready: list[Work]) -> None:
        """Schedule released work, every item of it even when a KeyboardInterrupt or
        SystemExit lands meanwhile (this thread's: raised afterwards). Work it stopped before
        ``schedule`` touched it is scheduled again; work it stopped midway, neither
        submitted, failed nor parked, is failed with AbortedError (its state is unknown, and
        a second submission could reach wgpu twice)."""
        stop: BaseException | None = None
        for work in ready:
            while True:
                work.started = False
                try:
                    self.schedule(work)
                    break
                except (KeyboardInterrupt, SystemExit) as interrupt:
                    stop = stop or interrupt
                    if not work.started:
                        continue
                    if not (work.ticket or work.failure or work.token):
                        work.abort(AbortedError("queue operation: interrupted while released"))
                    break
        if stop is not None:
            raise stop

    def _ordered(self, work: Work) -> bool:
        """Whether every wait of ``work`` not yet reached is signalled by plain work already
        submitted to this queue (a chain link): WebGPU's queue order then orders ``work``
        after it, so it is submitted now, without a hop through the completion thread
        (marked ``early``: its completion checks the waits did not fail). Never raises."""
        if work.prepare is not None or work.on_submit is not None:
            return False
        completion = self.completion
        for semaphore, value in work.waits:
            if semaphore.value < value and not semaphore._queued_by(value, completion):
                return False
        work.early = True
        return True

    def _semaphore_changed(self, semaphore: Semaphore) -> None:
        with self._lock:
            self._watched.discard(semaphore)
        self._release_ready(semaphore)

    def _take_ready(self, semaphore: Semaphore) -> tuple[list[Work], bool, int]:
        """Pop the work parked on ``semaphore`` that is ready; whether a watcher is needed,
        and the value the check saw."""
        with self._lock:
            heap = self._parked.get(semaphore)
            ready = []
            seen = semaphore.value
            while heap and (semaphore.failure is not None or heap[0][0] <= seen):
                _, _, token, work = heapq.heappop(heap)
                if work.token is token:  # else released through another semaphore
                    work.token = None
                    ready.append(work)
            if heap is not None and not heap:
                del self._parked[semaphore]
            watch = bool(heap) and semaphore not in self._watched
            if watch:
                self._watched.add(semaphore)
        return ready, watch, seen

    def _release_ready(self, semaphore: Semaphore) -> None:
        """Reschedule the work parked on ``semaphore`` whose value is reached (all of it if
        it failed), and keep a watcher on it while others remain. Parked work is a heap per
        semaphore, so a chain of n dependent submissions costs O(n log n). Each released
        operation succeeds or fails on its own (``schedule`` never raises)."""
        while True:
            ready, watch, seen = self._take_ready(semaphore)
            if watch:
                semaphore.watch(lambda: self._semaphore_changed(semaphore))
                # The watcher catches every change from its registration on (watch and a
                # signal take the same lock); one before it shows as a different value.
                unchanged = semaphore.value == seen and semaphore.failure is None
            else:
                unchanged = True
            if ready and _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "queue: %d held-back submission(s) released by %r", len(ready), semaphore
                )
            self._schedule_released(ready)
            if not watch or unchanged:
                return
            # A change that landed before the watcher was registered is caught by one more
            # pass now that it is in place.

    # -- submission -----------------------------------------------------------------------------

    def _take_clears(self) -> tuple[Any, list[Allocation]]:
        """The pending clears' command buffer (call with the submit lock held). Encoding it
        fails when the device was destroyed meanwhile: raises UnavailableError (and marks the
        device lost) instead of the backend's error."""
        try:
            return self._clears.take()
        except BackendError as error:
            raise self.mark_lost(f"clearing new buffers: {error}") from None

    def _backend_submit(self, command_buffers: list[Any], *, probe: bool) -> None:
        """Submit to the backend (call with the submit lock held). wgpu-native aborts the
        process on a submission to a lost device: the backend's known loss is checked under
        the same lock that a destroy of the device takes, and the implementation is asked
        when the command buffers may predate a loss it has not reported (``probe``:
        held-back work). Raises UnavailableError (and marks the device lost) instead."""
        backend = self._backend
        reason = backend.probe_lost() if probe else backend.lost_reason
        if reason is not None:
            raise self.mark_lost(f"found before submitting: {reason}")
        try:
            self._last_ticket = self._backend.submit(command_buffers)
        except BackendError as error:  # pragma: no cover - wgpu-native aborts instead
            raise self.mark_lost(f"submit: {error}") from None

    def _prepare(self, work: Work) -> bool:
        """Make ``work``'s command buffers (user code may run: a file read); False, with
        the work failed, when that raised."""
        if work.prepare is not None:
            try:
                work.command_buffers = work.prepare()
            except BaseException as error:  # user code: it fails only this operation
                work.user_error = error
                work.abort(error)
                return False
        if work.on_submit is not None:
            try:
                work.on_submit()
            except BaseException as error:
                work.abort(error)
                return False
        return True

    def _submit(self, work: Work, closing_ok: bool = False) -> None:
        """Submit ``work`` (its waits are reached) and hand it to the completion tracker;
        fails it instead when the device is closed or lost. Never raises."""
        if self._lost is not None:
            work.abort(self._lost)
            return
        if (work.prepare is not None or work.on_submit is not None) and not self._prepare(work):
            return
        completion = self.completion
        with self._submit_lock:
            # Checked under the lock that close() takes: an operation is either refused here
            # or submitted and tracked before close() stops the tracker.
            if self._closing and not closing_ok:
                work.abort(UnavailableError("queue operation: the device was closed"))
                return
            if self._lost is not None:
                work.abort(self._lost)
                return
            # Clears of new buffers go first in the same submission, taken under the lock so
            # no other thread's work on those buffers can be submitted before them.
            try:  # _take_clears, one call fewer
                clears, cleared = self._clears.take()
            except BackendError as error:
                work.abort(self.mark_lost(f"clearing new buffers: {error}"))
                return
            command_buffers = work.command_buffers
            if clears is not None:
                command_buffers = [clears, *command_buffers]
            stop: BaseException | None = None
            if command_buffers:
                if completion._in_flight:  # Completion.note_submission, without its call
                    completion.note_submission()
                before = self._last_ticket
                try:
                    self._backend_submit(command_buffers, probe=work.held)
                except UnavailableError as error:
                    work.abort(error)
                    for allocation in cleared:
                        allocation.retire()
                    return
                except (KeyboardInterrupt, SystemExit) as interrupt:
                    if self._last_ticket == before:  # it stopped the submission itself
                        work.abort(AbortedError("queue operation: interrupted in its submission"))
                        for allocation in cleared:
                            allocation.retire()
                        raise
                    stop = interrupt  # submitted: tracked below, then raised
            tracked, interrupted = self._track_submitted(work, completion)
            stop = stop or interrupted
        for allocation in cleared:
            allocation.retire()
        if not tracked:
            # The tracker already stopped (a submission accepted while closing): complete
            # it on this thread.
            completion.wait_for(work.ticket)
        if stop is not None:
            raise stop

    def _track_submitted(
        self, work: Work, completion: Completion
    ) -> tuple[bool, BaseException | None]:
        """Hand submitted ``work`` to the completion tracker: whether it took it, and a
        KeyboardInterrupt or SystemExit that landed meanwhile (resumed, so submitted work is
        always tracked; a second ``add`` after an interrupt at its return is harmless, as
        completing work twice is). Call with the submit lock held."""
        stop: BaseException | None = None
        box: list[bool] = []
        while not box:
            try:
                work.command_buffers = []
                # An operation without command buffers completes with the work before it.
                ticket = work.ticket = self._last_ticket
                # Quiet: only a host wait that completes it itself may want it (no host code
                # at completion, nothing watching or asleep on its semaphores): a standing-by
                # tracker is not woken for it (hal/runtime/completion.py).
                quiet = plain = work.on_complete is None
                if ticket:
                    # Noted before the tracker is woken (add), so that this thread does not
                    # contend with it for the semaphores' lock right after waking it. A
                    # waiter that finds the ticket before the work is tracked completes
                    # nothing of it and falls back to waiting for the tracker's signal.
                    # ``expect`` tells whether the semaphore is awaited (read under its lock).
                    for semaphore, value in work.signals:
                        if semaphore.expect(value, completion, ticket, plain):
                            quiet = False
                else:
                    for semaphore, _ in work.signals if quiet else ():
                        if semaphore.awaited:
                            quiet = False
                            break
                with completion.lock:  # the condition's lock (add notifies under it)
                    box.append(completion.add(work, quiet))
            except (KeyboardInterrupt, SystemExit) as interrupt:
                stop = stop or interrupt
        return box[0], stop

    # -- shutdown and loss ------------------------------------------------------------------------

    def _take_parked(self) -> list[Work]:
        """Remove every held-back operation (once each, though parked on several
        semaphores). Call with the lock held."""
        taken = []
        for heap in self._parked.values():
            for _, _, token, work in heap:
                if work.token is token:
                    work.token = None
                    taken.append(work)
        self._parked.clear()
        return taken

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no submitted work is in flight (held-back operations excluded);
        False on timeout."""
        self.flush_clears()
        return self.completion.wait_idle(timeout)

    def close(self) -> None:
        """Stop accepting work, fail held-back operations, wait (bounded) for work in
        flight and stop the completion thread. Every operation accepted before ends
        signalled or failed."""
        with self._submit_lock, self._lock:
            self._closing = True
            deferred = self._take_parked()
        for work in deferred:
            work.abort(UnavailableError("the device was closed before the waits"))
        self._fail_foreign_waiters("closed")
        self.completion.close()

    def mark_lost(self, reason: str) -> UnavailableError:
        """The device is lost: fail held-back and in-flight work (their semaphores fail;
        nothing more is submitted). Returns the UnavailableError every later operation
        raises; later calls return the first one."""
        with self._lock:
            if self._lost is not None:
                return self._lost
            error = self._lost = UnavailableError(f"the device was lost: {reason}")
            stranded = self._take_parked()
        for work in stranded:
            work.abort(error)
        self.completion.fail_all(error)
        self._fail_foreign_waiters("lost")
        return error

    # -- semaphores of other devices --------------------------------------------------------------
    # A semaphore of another device is a host object like any other: its signal wakes this
    # queue through the watcher that parking registered, on whichever thread signals it (that
    # device's completion thread included). What the other device adds is its end: once it is
    # closed or lost, nothing of it will signal its semaphores, so work parked here on one of
    # them fails with UnavailableError (as its own held-back work does) instead of waiting
    # for a host signal that may never come.

    def _note_foreign_waits(self, unreached: list[Point]) -> None:
        """Register this queue with the owners of the other devices' semaphores in
        ``unreached`` (work was just parked on them); fail that work if an owner is gone."""
        for semaphore, _ in unreached:
            owner = _owner(semaphore)
            if owner is not None and owner is not self and not owner._add_foreign_waiter(self):
                self._fail_waiting_on(owner, owner._gone_reason())

    def _add_foreign_waiter(self, waiter: Queue) -> bool:
        """Note that ``waiter`` parked work on a semaphore of this device; False (nothing
        noted) when this device is already closed or lost."""
        with self._lock:
            if self._closing or self._lost is not None:
                return False
            self._foreign_waiters.add(waiter)
            return True

    def _gone_reason(self) -> str:
        return "lost" if self._lost is not None else "closed"

    def _fail_foreign_waiters(self, reason: str) -> None:
        """This device is closed or lost: fail the other queues' work parked on its
        semaphores. Called after ``_closing``/``_lost`` was set under the lock, so a queue
        that registers later finds it set and fails its work itself."""
        with self._lock:
            waiters = list(self._foreign_waiters)
            self._foreign_waiters.clear()
        for waiter in waiters:
            waiter._fail_waiting_on(self, reason)

    def _fail_waiting_on(self, owner: Queue, reason: str) -> None:
        """Fail the work parked here on a not yet reached semaphore of ``owner``'s device."""
        taken = []
        with self._lock:
            for semaphore, heap in self._parked.items():
                if _owner(semaphore) is not owner:
                    continue
                for value, _, token, work in heap:
                    if work.token is token and value > semaphore.value:
                        work.token = None  # its other heap entries are stale now
                        taken.append(work)
        for work in taken:
            work.abort(
                UnavailableError(
                    f"queue operation wait: the device of a waited semaphore was {reason} "
                    "before the value was reached"
                )
            )

    @staticmethod
    def shutdown(queue: Queue) -> None:
        """Finaliser: close without raising (used at interpreter exit)."""
        with contextlib.suppress(Exception):
            queue.close()


def _owner(semaphore: Semaphore) -> Queue | None:
    """The queue of the device that created ``semaphore`` (None for a free semaphore)."""
    owner: Queue | None = semaphore.owner
    return owner


def _wait_state(waits: tuple[Point, ...]) -> bool | BaseException:
    """True when every wait is reached, the failure when one failed, else False."""
    reached = True
    for semaphore, value in waits:
        failure = semaphore.failure
        if failure is not None:
            return failure
        if semaphore.value < value:
            reached = False
    return reached
