"""Completion: which submitted work finished, found without a thread hop where possible.

Submitted :class:`~hal.runtime.queue.Work` carries the backend's ticket. A tracker thread blocks
in ``backend.wait(oldest ticket)`` whenever work is in flight and sleeps on a condition variable
otherwise, so an idle device costs no CPU; where the backend's blocking wait holds off other
threads' submissions (wgpu-native 29 on a GPU: ``Backend.tracker_poll_s``) it polls without
blocking instead, sleeping between polls, while submissions stream. An unbounded host wait on
one ticket blocks in ``backend.wait`` itself (:meth:`Completion.wait_for`) and completes the
work on its own thread, saving the tracker's wake-up (~33 µs per hand-off on the H100 host); so
does a bounded one where the backend's wait has a real timeout (Dawn, null). While such a
host wait blocks for the oldest work in flight, the tracker stays parked instead of blocking in
the backend beside it (two threads woken by one completion fight for the GIL: on Dawn ~25 µs
of the round trip whenever the tracker ran first); so it does while a host wait polls for that
work (wgpu-native on a GPU, where the tracker's blocking poll would hold the waiter's polls
off), and it takes over when the wait gives up. For :data:`LINGER_S` after such a wait (on
every backend) the tracker stands by:
a quiet submission (``add``) does not wake it, so a submit-and-wait loop pays no thread wake-up
per round trip (~20 µs on the H200 host); it looks for work no wait took every
:data:`STANDBY_S`, and consumers that need it sooner wake it (:meth:`Completion.kick`: a
watcher, a host thread asleep on semaphores, a bounded ``wait_idle``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from hal.backends.protocol import BackendError
from hal.errors import UnavailableError

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.queue import Work

__all__ = ["LINGER_S", "STANDBY_S", "STREAM_WINDOW_S", "Completion"]

_CLOSE_TIMEOUT = 10.0
_CLAIMED_STANDBY_S = 0.1
"""The longest the tracker stands by while a host wait holds the oldest work (that wait wakes
it when it leaves, at the latest after its 10 ms slice): a safety net, not a latency."""
_FIRST_POLL_SLEEP_S = 20e-6
STREAM_WINDOW_S = 0.1
"""Seconds after a submission behind unfinished work during which waits poll (see
``Completion._polls_instead``)."""
LINGER_S = 0.02
"""Seconds after a host wait completed work on its own thread during which the tracker stands
by (where the backend's waits are bounded): it wakes every :data:`STANDBY_S` to look for work,
and a submission nobody is known to wait for does not wake it (see ``Completion.add``)."""
STANDBY_S = 0.001
"""While standing by, the longest the tracker sleeps before it looks for work that no host
wait took: the most a quiet submission's completion waits for the tracker."""


class Completion:
    """The in-flight work of one device and the thread that completes it."""

    def __init__(self, backend: Backend, on_lost: Callable[[str], object]) -> None:
        self._backend = backend
        self._on_lost = on_lost
        # The condition's own lock, entered directly where nothing waits or notifies
        # (Condition.__enter__ is Python code).
        self._lock = self.lock = threading.Lock()
        self.cond = threading.Condition(self._lock)
        # Threads in wait_idle (changed under the lock): completions notify only then.
        self._idle_waiters = 0
        # Host waits polling the backend now (poll_for / poll_backoff): the tracker leaves
        # the polling to them.
        self._pollers = 0
        # Tickets of the host waits blocked in the backend on their own thread now (changed
        # under the lock): while one of them is the oldest work in flight, the tracker stays
        # parked on the condition instead of blocking in the backend beside it (see
        # _yields_to_waiter), and a waiter leaving wakes it where work is left
        # (_tracker_yielding: parked for that reason, not idle).
        self._direct: list[int] = []
        self._tracker_yielding = False
        # The ticket the tracker waits for in the backend now (0: none). Dawn serialises
        # waits on one device: a bounded host wait begun meanwhile would return only when
        # the tracker's wait does (within Backend.serial_wait_slice_s), so one with less
        # time left leaves the work to the tracker and keeps its deadline.
        self._tracker_waits_for = 0
        # Standing by (bounded-wait backends, within LINGER_S of a host wait that completed
        # work itself): the tracker sleeps in STANDBY_S slices and a quiet submission does
        # not wake it, so that a submit-and-wait round trip costs no thread wake-up (on the
        # H200 host ~20 µs of a ~75 µs Dawn round trip). Changed under the lock.
        self._standby = False
        self._standby_claimed = False  # standing by while a host wait holds the oldest work
        self._linger_until = 0.0
        # Work taken off the in-flight list and not yet completed (changed under the lock):
        # wait_idle waits for it too, so it never returns before the signals.
        self._completing = 0
        # When work was last submitted behind unfinished work (time.monotonic): within
        # STREAM_WINDOW_S of it, where the backend's blocking wait holds off submissions,
        # nothing blocks in it.
        self._behind_at = -STREAM_WINDOW_S
        # And whether the queue has not drained since (cleared when nothing is in flight).
        self._stream_open = False
        self._in_flight: list[Work] = []
        self._closing = False
        self._stopped = False
        self._completed = 0
        self._tracker = threading.Thread(target=self._track, name="hal-completion", daemon=True)
        self._tracker.start()

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    @property
    def completed(self) -> int:
        """The highest ticket whose work was completed (or failed) so far."""
        return self._completed

    def add(self, work: Work, quiet: bool = False) -> bool:
        """Track submitted ``work`` (call with :attr:`cond` held). ``quiet``: nothing is
        known to wait for it but a host wait that completes it itself (no host callback, no
        watcher, no sleeper): a standing-by tracker is not woken for it and finds it within
        :data:`STANDBY_S` unless a host wait takes it first (:meth:`kick` wakes it for a
        consumer that comes later). False when the tracker has stopped (after
        :meth:`close`): the caller then completes it with :meth:`wait_for`."""
        in_flight = self._in_flight
        if in_flight:
            self._behind_at = time.monotonic()
            self._stream_open = True
        in_flight.append(work)
        if len(in_flight) == 1 and not (quiet and self._standby):
            # Only an empty list puts the tracker to sleep on the condition; otherwise it is
            # waiting for older work and finds this after it.
            self.cond.notify_all()
        return not self._stopped

    def kick(self) -> None:
        """Wake a standing-by tracker now: a consumer that needs it (a watcher, a sleeping
        host wait) arrived after a quiet submission. Costs nothing otherwise."""
        if self._standby:
            with self._lock:
                if self._standby:
                    self.cond.notify_all()

    def wait_for(
        self, ticket: int, timeout: float | None = None, left: list[bool] | None = None
    ) -> bool:
        """Block in the backend until ``ticket`` finished, then complete it on this thread;
        with ``timeout`` (where :attr:`bounded_waits`) give up after that many seconds:
        False, the work still in flight for the tracker. Raises nothing: a lost device fails
        the work instead, and a backend failure that is not a loss fails the work up to
        ``ticket`` (its completion cannot be known). ``left`` (:meth:`_blocked`'s): the
        work completed, its wait's note is dropped with the completion (see
        :meth:`_finish_through`)."""
        if ticket and ticket <= self._completed:
            # Finished already; work submitted without command buffers may still carry it.
            self.complete_through(ticket)
            return True
        backend = self._backend
        try:
            if timeout is None:
                backend.wait(ticket)
            elif not backend.wait_bounded(ticket, timeout):
                return False
        except BackendError as error:
            reason = None if error.lost else backend.probe_lost()
            if error.lost or reason is not None:
                self._on_lost(f"waiting for submitted work: {reason or error}")
            else:
                self._finish_through(ticket, error)
            return True
        except Exception as error:  # a backend bug: never let it stop the tracker
            self._finish_through(ticket, error)
            return True
        # A KeyboardInterrupt or SystemExit (a host wait's own thread) propagates and touches
        # nothing: the work is still in flight, and the tracker completes it.
        self._finish_through(ticket, None, left)  # complete_through, one call fewer
        return True

    def wait_direct(
        self,
        ticket: int,
        deadline: float | None,
        slice_s: float,
        settled: Callable[[], bool],
    ) -> bool:
        """One step of a host wait for ``ticket`` on its own thread (see
        hal/runtime/semaphore.py ``_wait_in_backend``): poll without blocking for the
        backend's ``waiter_poll_s`` (bounded by ``deadline``; ended early by ``settled()``),
        then block in the backend for at most ``slice_s`` where its wait is bounded, or
        until done for an unbounded wait. True when it did one of those (look again);
        False to leave the work to the tracker: closing, the tracker spins, the work is
        already being completed, the deadline passed, or a bounded wait on a backend
        without one, or a bounded wait with less than the backend's
        ``serial_wait_slice_s`` left while the tracker waits in the backend (the backend
        would return only with the tracker's wait). Raises nothing (see :meth:`wait_for`)."""
        backend = self._backend
        if self._closing or backend.spin_s > 0 or ticket <= self._completed:
            return False
        if (
            deadline is not None
            and self._tracker_waits_for
            and deadline - time.monotonic() < backend.serial_wait_slice_s
        ):
            return False  # the tracker completes it and signals; the wait keeps its deadline
        poll = backend.waiter_poll_s
        if poll > 0:
            # Non-blocking polls first (on a GPU): small work finishes within them; they
            # return by the deadline, which wgpu-native's blocking poll cannot, and see the
            # work done sooner than Dawn's WaitAny wakes.
            if deadline is not None:
                poll = min(poll, deadline - time.monotonic())
            if poll > 0 and self._polled(self.poll_for, ticket, poll, settled):
                return True
        if backend.tracker_poll_s > 0 and self._polls_instead():
            # A stream of submissions that a blocking wait would hold off: poll on, sleeping.
            return self._polled(self.poll_backoff, ticket, deadline, settled)
        if backend.bounded_waits:
            # In slices, so a host signal() or fail() of the semaphore is seen within one.
            remaining = slice_s if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._blocked(ticket, remaining if remaining < slice_s else slice_s)
            return True
        if deadline is None:
            self._blocked(ticket, None)
            return True
        return False

    def _blocked(self, ticket: int, timeout: float | None) -> None:
        """:meth:`wait_for` ``(ticket, timeout)`` on a host wait's own thread, noted in
        :attr:`_direct` while it runs, so that the tracker does not block in the backend
        beside it: two threads woken by one completion contend for the GIL (and on Dawn
        both enter ``wgpuInstanceWaitAny``), which cost the waiter ~25 µs a round trip
        whenever the tracker ran first. Leaving wakes a parked tracker (also where a
        KeyboardInterrupt lands right after the note: a leaked note would keep the tracker
        parked while that ticket is the oldest in flight)."""
        noted = False
        # Filled once the completion dropped the note itself (in the lock it takes anyway:
        # the usual round trip's end costs one lock round trip fewer).
        left: list[bool] = []
        try:
            with self._lock:
                noted = True
                self._direct.append(ticket)
            self.wait_for(ticket, timeout, left)
        finally:
            if noted and not left:
                self._leave_direct(ticket)

    def _leave_direct(self, ticket: int) -> None:
        """Drop :meth:`_blocked`'s note and wake a parked tracker, even where a
        KeyboardInterrupt lands while the lock is taken (it is re-raised after): a leaked
        note would park the tracker for as long as that ticket is the oldest in flight."""
        interrupted: BaseException | None = None
        while True:
            try:
                with self._lock:
                    self._drop_note(ticket)
                break
            except KeyboardInterrupt as error:
                interrupted = error
        if interrupted is not None:
            raise interrupted

    def _drop_note(self, ticket: int) -> None:
        """Drop a host wait's note for ``ticket``, start the tracker's standby
        (:data:`LINGER_S`) and wake it where it is parked with work left (call with the lock
        held; safe to repeat after an interrupt: nothing in it can fail)."""
        # Absent only where an interrupt fell between a wait's ``noted`` and its append
        # (try/except: contextlib.suppress costs ~0.2 µs a round trip).
        try:  # noqa: SIM105
            self._direct.remove(ticket)
        except ValueError:
            pass
        self._linger_until = time.monotonic() + LINGER_S
        if self._standby_claimed or ((self._tracker_yielding or self._standby) and self._in_flight):
            self.cond.notify_all()

    def _yields_to_waiter(self) -> bool:
        """Whether the tracker should leave the oldest work in flight to a host wait that
        blocks in the backend for it on its own thread now (call with the lock held): that
        wait completes it (and everything older) the moment it finishes, or wakes the
        tracker when it gives up. Only for the oldest ticket: a wait for later work would
        complete the older work only once the later finished. Membership, not ``min``: a
        note an interrupt leaked for work since completed never matches later work."""
        return bool(self._in_flight) and self._in_flight[0].ticket in self._direct

    def _polled(self, poll: Callable[..., bool], ticket: int, *args: object) -> bool:
        """``poll(ticket, *args)`` (a host wait's polls for ``ticket``) counted in
        :attr:`_pollers` and noted in :attr:`_direct` while it runs, so that the tracker
        neither polls beside it nor blocks in the backend for that work: on wgpu-native a
        blocking poll holds the device's fence lock, so the host wait's own polls queued
        behind the tracker's and both threads woke together at completion (~35 µs of a
        one-dispatch round trip on the H200 host). Leaving wakes a parked tracker, which
        takes over work the polls gave up on (past ``waiter_poll_s``, 2 ms on GPUs, the
        tracker may then block beside an unbounded wait: a cost only such long work pays).
        Also where a KeyboardInterrupt lands anywhere (see :meth:`_leave_polls`)."""
        counted = False
        try:
            with self._lock:
                self._pollers += 1
                counted = True
                self._direct.append(ticket)
            return poll(ticket, *args)
        finally:
            if counted:
                self._leave_polls(ticket)

    def _leave_polls(self, ticket: int) -> None:
        """Undo :meth:`_polled`'s count and note as :meth:`_leave_direct` does (linger, wake
        a parked tracker where work is left), in steps a KeyboardInterrupt cannot split (it
        is re-raised after): a leaked count stops the tracker polling, a leaked note parks
        it."""
        interrupted: BaseException | None = None
        counted = True
        while True:
            try:
                with self._lock:
                    if counted:
                        self._pollers -= 1
                        counted = False
                break
            except KeyboardInterrupt as error:
                interrupted = error
        try:
            self._leave_direct(ticket)
        finally:
            if interrupted is not None:
                raise interrupted

    def complete_through(self, ticket: int) -> None:
        """Complete every in-flight operation with a ticket <= ``ticket``."""
        self._finish_through(ticket, None)

    def _finish_through(
        self, ticket: int, error: BaseException | None, left: list[bool] | None = None
    ) -> None:
        """Complete (or, with ``error``, fail) every in-flight operation with a ticket <=
        ``ticket``. Each one succeeds or fails on its own: Work.complete and Work.abort
        contain what user code raises. A KeyboardInterrupt or SystemExit (a host wait's own
        thread) fails none of them: the rest is completed, then it propagates. ``left``: a
        :meth:`_blocked` wait's, whose note for ``ticket`` is dropped (as
        :meth:`_leave_direct` does) in the lock that releases the count, then ``left``
        filled; where an interrupt stops that, ``left`` stays empty and the wait drops the
        note itself."""
        box: list[list[Work]] = []  # filled by _take_through the moment the work is taken
        index = 0
        released = False
        stop: BaseException | None = None
        while True:
            # Resumed where an interrupt left it: taking the work, completing each item,
            # releasing the count (Work.complete and abort may run twice: both idempotent).
            try:
                if not box:
                    with self._lock:
                        self._take_through(ticket, box)
                done = box[0]
                while index < len(done):
                    stop = _settle(done[index], error) or stop
                    index += 1
                if not released:
                    with self._lock:
                        self._completing -= len(done)
                        released = True
                        if done and self._idle_waiters:
                            self.cond.notify_all()
                        if left is not None:
                            self._drop_note(ticket)
                            left.append(True)  # last: an interrupt before it leaves it empty
                break
            except (KeyboardInterrupt, SystemExit) as interrupt:
                stop = stop or interrupt
        if stop is not None:
            raise stop

    def _take_through(self, ticket: int, box: list[list[Work]]) -> None:
        """Take the in-flight work with tickets <= ``ticket`` off the list into ``box``,
        counted in ``_completing`` (call with the lock held). The list changes and ``box``
        is filled with no call in between, so an interrupt cannot separate them."""
        in_flight = self._in_flight
        if in_flight and in_flight[-1].ticket <= ticket:  # the usual case: all of it
            done, rest = in_flight, []
        else:
            done = [w for w in in_flight if w.ticket <= ticket]
            rest = [w for w in in_flight if w.ticket > ticket] if done else in_flight
        count = len(done)
        self._completing += count
        if ticket > self._completed:
            self._completed = ticket
        if not rest:
            self._stream_open = False
        self._in_flight = rest
        box.append(done)

    def take_all(self) -> list[Work]:
        """Remove every in-flight operation (call with :attr:`cond` held)."""
        taken, self._in_flight = self._in_flight, []
        self.cond.notify_all()
        return taken

    @property
    def direct_waits(self) -> bool:
        """Whether an unbounded host wait should block in the backend itself (saving the
        tracker's hand-off) rather than wait for the tracker: not while the tracker spins,
        where a second thread's blocking wait would slow the spinning one down."""
        return self._backend.spin_s <= 0 and not self._polls_instead()

    def _polls_instead(self) -> bool:
        """Whether waits poll (sleeping between polls) rather than block in the backend: where
        its blocking wait holds off other threads' submissions (``Backend.tracker_poll_s``)
        and submissions are streaming. A lone submission and its round trip keep the blocking
        wait, which costs the submitting thread nothing; a stream pays it once, for the
        submission that finds the tracker blocked."""
        return self._backend.tracker_poll_s > 0 and (
            self._stream_open or time.monotonic() - self._behind_at < STREAM_WINDOW_S
        )

    def note_submission(self) -> None:
        """Called before each backend submission: one made while earlier work is in flight
        starts (or extends) a stream. Noted before the submission, because the submission
        itself may be held off until the tracker's blocking wait returns, and by then the
        earlier work may be completed."""
        if self._in_flight:
            self._behind_at = time.monotonic()
            self._stream_open = True

    @property
    def bounded_waits(self) -> bool:
        """Whether a bounded host wait may block in the backend itself too
        (:meth:`wait_for` with a timeout): where the backend's wait has a real timeout."""
        return self._backend.bounded_waits and self._backend.spin_s <= 0

    def _track(self) -> None:
        seen = 0  # the oldest ticket a host wait held at the last standby look
        unclaimed = 0  # the oldest ticket no host wait held at the last standby look
        while True:
            with self.cond:
                yielded = 0  # the oldest ticket it left to a host wait for a whole period
                looked = False  # woken by a standby slice's end, not by a notify
                while True:
                    if self._in_flight and not self._yields_to_waiter():
                        oldest = self._in_flight[0].ticket
                        lingering = not self._closing and time.monotonic() < self._linger_until
                        if not looked or oldest == unclaimed or not lingering:
                            break
                        # Quiet work a look found unclaimed gets one more slice: its host
                        # wait may not have begun yet (the submitting thread let the GIL go
                        # between its submission and its wait: the tracker blocking in the
                        # backend beside that wait costs it ~35 µs on the H200 host).
                        unclaimed = oldest
                    if self._in_flight and self._in_flight[0].ticket == yielded:
                        # Left to a host wait for a whole period and still in flight: take
                        # it over (a note leaked by an interrupt would otherwise park the
                        # tracker for good; a real long wait only gains a second waiter).
                        break
                    if not self._in_flight and self._closing:
                        self._stopped = True
                        return
                    if not self._closing and time.monotonic() < self._linger_until:
                        # Standing by: quiet submissions do not wake it (add), so it looks
                        # for work itself every STANDBY_S. Where a host wait holds the same
                        # oldest work as one look ago (a long wait), whatever is submitted
                        # runs after it, and that wait wakes the tracker when it leaves
                        # (_blocked): it stops looking meanwhile (a short round trip never
                        # gets there, so its end costs no wake-up).
                        oldest = self._in_flight[0].ticket if self._yields_to_waiter() else 0
                        claimed = oldest > 0 and oldest == seen
                        seen = oldest
                        self._standby = True
                        self._standby_claimed = claimed
                        try:
                            looked = not self.cond.wait(
                                _CLAIMED_STANDBY_S if claimed else STANDBY_S
                            )
                        finally:
                            self._standby = self._standby_claimed = False
                    elif self._in_flight:
                        # A host wait completes the oldest work: woken when it leaves with
                        # work left, by new work after the list emptied (add) or by close().
                        self._tracker_yielding = True
                        held = self._in_flight[0].ticket
                        try:
                            if not self.cond.wait(_CLAIMED_STANDBY_S):
                                yielded = held
                        finally:
                            self._tracker_yielding = False
                        looked = False
                    else:
                        self.cond.wait()  # idle: add() wakes it
                        looked = False
                oldest = self._in_flight[0].ticket
            if self._backend.spin_s > 0 and self._spin(oldest):
                continue
            if self._polls_instead():
                self.poll_backoff(oldest, None, partial(self._gone, oldest), tracker=True)
                continue
            self._tracker_waits_for = oldest
            try:
                self.wait_for(oldest)
            finally:
                self._tracker_waits_for = 0

    def _gone(self, ticket: int) -> bool:
        """Whether no in-flight work up to ``ticket`` is left (completed, failed or taken)."""
        in_flight = self._in_flight
        return not in_flight or in_flight[0].ticket > ticket

    def poll_backoff(
        self,
        ticket: int,
        deadline: float | None,
        settled: Callable[[], bool],
        *,
        tracker: bool = False,
    ) -> bool:
        """Poll the backend without blocking until ``ticket`` finished, completing it on
        this thread, sleeping between polls (doubling from ~20 µs to the backend's
        ``tracker_poll_s``): True, also as soon as ``settled()``; False once the monotonic
        ``deadline`` passed. A backend failure: the tracker (``tracker=True``) reports it
        through :meth:`wait_for`; a host wait returns False and leaves it to the tracker.
        While a host wait polls, the tracker only sleeps: one poller is enough."""
        backend = self._backend
        cap = backend.tracker_poll_s
        delay = 0.0
        while True:
            if self._completed >= ticket:
                if tracker:  # work submitted without GPU work may carry a finished ticket
                    self.complete_through(ticket)
                return True
            if settled():
                return True
            if not tracker or not self._pollers:
                try:
                    done = backend.completed_ticket()
                except BackendError:
                    if tracker:
                        self.wait_for(ticket)
                        return True
                    return False
                except Exception as error:  # a backend bug: never let it stop the tracker
                    if tracker:
                        self._finish_through(ticket, error)
                        return True
                    return False
                if done > self._completed:
                    # Also work older than ``ticket``: a host wait's poll is the only one
                    # while it runs (the tracker leaves polling to it).
                    self.complete_through(done)
                if done >= ticket:
                    return True
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(delay, remaining))
            else:
                time.sleep(delay)
            delay = min(cap, delay * 2 if delay else _FIRST_POLL_SLEEP_S)

    @property
    def waiter_poll_s(self) -> float:
        """Seconds a host wait may poll without blocking on its own thread
        (:meth:`poll_for`); 0 where the backend cannot tell finished work that way or the
        tracker spins already."""
        return self._backend.waiter_poll_s if self._backend.spin_s <= 0 else 0.0

    def poll_for(self, ticket: int, seconds: float, settled: Callable[[], bool]) -> bool:
        """Poll the backend without blocking for up to ``seconds`` until ``ticket``
        finished, completing it on this thread: True, or False (nothing changed) to wait
        another way; also True as soon as ``settled()`` (the waiter's semaphores were
        reached or failed some other way). A backend failure is left to the tracker's
        blocking wait to report."""
        poll = self._backend.poll_ticket
        deadline = time.perf_counter() + seconds
        while True:
            if self._completed >= ticket or settled():
                return True  # completed by the tracker or another waiter, or settled
            try:
                done = poll(ticket)
            except Exception:  # BackendError or a backend bug: the tracker reports it
                return False
            if done > self._completed:
                self.complete_through(done)  # older work too (the tracker leaves it to us)
            if done >= ticket:
                return True
            if time.perf_counter() >= deadline:
                return False

    def _spin(self, oldest: int) -> bool:
        """Poll without blocking for up to the backend's ``spin_s`` until ``oldest`` finished
        (then complete what did): True, or False to block instead."""
        backend = self._backend
        deadline = time.perf_counter() + backend.spin_s
        while True:
            try:
                done = backend.completed_ticket()
            except Exception:
                return False  # the blocking wait reports it
            if done >= oldest:
                self.complete_through(done)
                return True
            if time.perf_counter() > deadline:
                return False

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until nothing submitted is in flight; False on timeout."""
        if timeout is None and self.direct_waits:
            # Unbounded: block in the backend on this thread, saving the tracker's wake-up.
            while True:
                with self.cond:
                    if not self._in_flight:
                        break
                    last = self._in_flight[-1].ticket
                self._blocked(last, None)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self._in_flight or self._completing:
                if self._standby:
                    # This wait leaves the work to the tracker: wake it (only where work is
                    # left, so that an idle device's tracker stays standing by).
                    self.cond.notify_all()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle_waiters += 1
                try:
                    self.cond.wait(remaining)
                finally:
                    self._idle_waiters -= 1
        return True

    def close(self) -> None:
        """Stop the tracker once in-flight work finished (bounded wait)."""
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        self._tracker.join(_CLOSE_TIMEOUT)

    def fail_all(self, error: UnavailableError) -> None:
        """Fail everything in flight with ``error`` (a lost device)."""
        with self.cond:
            stranded = self.take_all()
        for work in stranded:
            work.abort(error)


def _settle(work: Work, error: BaseException | None) -> BaseException | None:
    """Complete ``work`` (or fail it with ``error``). A KeyboardInterrupt or SystemExit
    landing in it is returned, not taken for the work's failure: the completion is finished
    without running its ``on_complete`` again (retiring and advancing are idempotent)."""
    stop: BaseException | None = None
    while True:
        try:
            if error is None:
                work.complete()
            else:
                work.abort(error)
            return stop
        except (KeyboardInterrupt, SystemExit) as interrupt:
            stop = stop or interrupt
            work.on_complete = None
        except BaseException as failure:  # pragma: no cover - defensive: never lose the rest
            work.abort(failure)
            return stop
