"""Timeline semaphores and fences.

All semaphores share one condition variable: a host wait on several semaphores ("any" or
"all") then needs no per-waiter plumbing, and signals are rare enough that waking every waiter
costs nothing measurable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hal.core.checks import UNBOUNDED_TIMEOUT, check_int, timeout_seconds
from hal.errors import (
    AbortedError,
    DeadlineExceededError,
    InvalidArgumentError,
    OutOfRangeError,
)

if TYPE_CHECKING:
    from hal.runtime.device import Device

__all__ = [
    "MAX_VALUE",
    "Fence",
    "Semaphore",
    "WaitList",
    "normalise_points",
    "wait_points",
    "wait_points_async",
]

MAX_VALUE = (1 << 63) - 1
"""Largest semaphore payload."""

_changed_lock = threading.Lock()
_changed = threading.Condition(_changed_lock)
# Host threads blocked in ``_changed.wait`` (changed under the lock): a signal notifies only
# when one is (Condition.notify_all is Python code, ~1 µs, paid by every GPU completion).
_sleepers = [0]
_log = logging.getLogger("hal")


class Semaphore:
    """A timeline semaphore: a monotonically increasing 63-bit value, or failed.

    ``query`` and ``wait`` raise AbortedError (with the failure as ``__cause__``) once failed.
    """

    __slots__ = ("__weakref__", "_expected", "_failure", "_value", "_watchers", "device", "owner")

    def __init__(
        self, initial_value: int = 0, device: Device | None = None, owner: Any = None
    ) -> None:
        self._value = _check_value("create_semaphore", initial_value)
        self._failure: BaseException | None = None
        self._watchers: list[Callable[[], None]] = []
        # (value, completion, backend ticket) of submitted work that will signal us.
        # Usually in increasing value order (a timeline): pruned from the front.
        self._expected: collections.deque[tuple[int, Any, int, bool]] = collections.deque()
        self.device = device
        # The queue of the device that created it (runtime use: another device's queue that
        # waits on it learns from it when that device closes); None for a free semaphore.
        self.owner = owner

    def __repr__(self) -> str:
        state = "failed" if self._failure is not None else str(self._value)
        return f"<hal.Semaphore {state}>"

    @property
    def failure(self) -> BaseException | None:
        """The failure that failed the semaphore, or None."""
        return self._failure

    @property
    def value(self) -> int:
        """The current value without the failure check of :meth:`query`."""
        return self._value

    def query(self) -> int:
        """The current value. Raises AbortedError if the semaphore failed."""
        failure = self._failure
        if failure is not None:
            raise AbortedError(f"semaphore failed: {failure}", failure)
        return self._value

    def signal(self, value: int) -> None:
        """Advance to ``value``. Raises OutOfRangeError unless it increases the value and
        AbortedError if the semaphore failed."""
        value = _check_value("signal", value)
        with _changed_lock:
            if self._failure is not None:
                raise AbortedError(f"signal: semaphore failed: {self._failure}", self._failure)
            if value <= self._value:
                raise OutOfRangeError(
                    f"signal: value {value} does not increase the semaphore's {self._value}"
                )
            self._value = value
            _changed.notify_all()
        self._notify_watchers()

    def advance(self, value: int) -> None:
        """Signal from the queue (runtime use): never lowers the value and ignores a failed
        semaphore."""
        with _changed_lock:
            if self._failure is not None or value <= self._value:
                return
            self._value = value
            if _sleepers[0]:
                _changed.notify_all()
        # Read without the lock: a watcher registered after the value changed re-checks
        # the value itself (every registrant checks again once its watcher is in place).
        if self._watchers:
            self._notify_watchers()

    def fail(self, error: BaseException | str) -> None:
        """Fail the semaphore with an exception or a message (wrapped in RuntimeError); the
        first failure wins and later ones are ignored. Raises InvalidArgumentError for
        anything else."""
        _check_failure("Semaphore.fail", error)
        if not isinstance(error, BaseException):
            error = RuntimeError(str(error))
        with _changed_lock:
            if self._failure is not None:
                return
            self._failure = error
            _changed.notify_all()
        self._notify_watchers()

    def wait(self, value: int, timeout: float | None = None) -> None:
        """Block until the value reaches ``value``. Raises DeadlineExceededError after
        ``timeout`` seconds (0 polls; None, ``math.inf`` or a huge timeout waits forever),
        AbortedError if the semaphore fails and InvalidArgumentError for a bad value or
        timeout."""
        if type(value) is not int or not 0 <= value <= MAX_VALUE:
            value = _check_value("Semaphore.wait", value)
        if self._failure is None and self._value >= value:
            timeout_seconds("Semaphore.wait", timeout)  # a bad timeout still raises
            return
        # wait_points of this one point, without its list checks.
        pairs = ((self, value),)
        kind = type(timeout)
        if timeout is None:
            seconds = None
        elif (kind is float or kind is int) and 0 <= timeout < UNBOUNDED_TIMEOUT:
            seconds = timeout + 0.0  # timeout_seconds' common case, without its call
        else:
            seconds = timeout_seconds("Semaphore.wait", timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        _wait_in_backend(pairs, "all", deadline)
        if self._failure is None and self._value >= value:
            return
        _sleep_until(pairs, "all", deadline, seconds)

    async def wait_async(self, value: int, timeout: float | None = None) -> None:
        """Await the value reaching ``value`` without blocking the event loop (a watcher on
        the semaphore wakes the awaiting task; no thread per wait). Raises as :meth:`wait`:
        DeadlineExceededError after ``timeout`` seconds, AbortedError if the semaphore
        fails, InvalidArgumentError for a bad value or timeout. Cancelling the awaiting task
        removes the watcher."""
        value = _check_value("Semaphore.wait_async", value)
        await wait_points_async([(self, value)], "all", timeout, "Semaphore.wait_async")

    def expect(self, value: int, completion: Any, ticket: int, plain: bool = False) -> bool:
        """Note that submitted work with ``ticket`` (tracked by ``completion``) signals
        ``value`` when done (runtime use: lets an unbounded wait block on that ticket);
        ``plain``: that work runs no host code at completion, so only the device can fail
        it (a queue may then order work after it without waiting: :meth:`_queued_by`).
        Returns :attr:`awaited` (read under the same lock: the submission's one look)."""
        with _changed_lock:
            expected = self._expected
            while expected and expected[0][0] <= self._value:
                expected.popleft()
            expected.append((value, completion, ticket, plain))
            return bool(self._watchers) or _sleepers[0] > 0

    def _queued_by(self, value: int, completion: Any) -> bool:
        """Whether plain work already submitted to ``completion``'s queue brings the value
        to ``value`` (runtime use: a later submission to that queue is ordered after it)."""
        with _changed_lock:
            for v, owner, _, plain in self._expected:
                if v >= value:
                    return owner is completion and plain
        return False

    def _signalling_submission(self, value: int) -> tuple[Any, int] | None:
        """The earliest submitted work that brings the value to ``value``, if any. The
        queue notes its expectations in ticket order (under its submission lock), so the
        first match is the earliest."""
        with _changed_lock:
            for v, completion, ticket, _ in self._expected:
                if v >= value:
                    return completion, ticket
        return None

    @property
    def awaited(self) -> bool:
        """Whether something waits for this semaphore's next change other than a host wait
        that completes the work itself (runtime use): a watcher, or any host thread asleep
        on the semaphores' shared condition. A submission signalling an awaited semaphore
        wakes a standing-by completion thread (hal/runtime/completion.py ``add``)."""
        return bool(self._watchers) or _sleepers[0] > 0

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once at the next change (signal or failure). Wakes the
        completion threads of the submitted work that will signal the semaphore, where they
        stand by (the work may have been submitted quietly, before this watcher came)."""
        with _changed_lock:
            self._watchers.append(callback)
            completions = [c for v, c, _, _ in self._expected if v > self._value]
        for completion in completions:
            completion.kick()

    def _unwatch(self, callback: Callable[[], None]) -> None:
        """Forget ``callback`` if it has not run yet."""
        with _changed_lock, contextlib.suppress(ValueError):
            self._watchers.remove(callback)

    def _notify_watchers(self) -> None:
        # Every watcher runs, whatever another raised: the queue's watchers release held-back
        # work, and one operation's failure must not strand the others. A KeyboardInterrupt
        # or SystemExit (this thread's) is raised once every watcher ran; where it lands
        # between steps the walk resumes, running at most the interrupted watcher again (the
        # queue's watchers re-check what is ready, so a second run changes nothing).
        box: list[list[Callable[[], None]]] = []
        index = retries = 0
        stop: BaseException | None = None
        while True:
            try:
                if not box:
                    with _changed_lock:
                        box.append(self._watchers)
                        self._watchers = []
                watchers = box[0]
                while index < len(watchers):
                    callback = watchers[index]
                    try:
                        callback()
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except BaseException:  # pragma: no cover - the queue's callbacks never raise
                        _log.exception("a semaphore watcher raised")
                    index += 1
                    retries = 0
                break
            except (KeyboardInterrupt, SystemExit) as interrupt:
                stop = stop or interrupt
                retries += 1
                if retries > 2:  # a watcher that keeps raising it: go on without it
                    index, retries = index + 1, 0
        if stop is not None:
            raise stop


Point = tuple[Semaphore, int]


class Fence:
    """A set of (semaphore, value) points waited or signalled together."""

    __slots__ = ("_points",)

    def __init__(self, points: Iterable[Point] = ()) -> None:
        """Raises InvalidArgumentError unless ``points`` is an iterable of (Semaphore, int)
        pairs, OutOfRangeError for a value past :data:`MAX_VALUE`."""
        self._points: dict[Semaphore, int] = {}
        for semaphore, value in normalise_points("Fence", points):
            self.insert(semaphore, value)

    def insert(self, semaphore: Semaphore, value: int) -> None:
        """Add a point; a semaphore already present keeps the larger value."""
        if not isinstance(semaphore, Semaphore):
            raise InvalidArgumentError(f"Fence.insert: {semaphore!r} is not a Semaphore")
        value = _check_value("Fence.insert", value)
        self._points[semaphore] = max(value, self._points.get(semaphore, 0))

    @property
    def points(self) -> tuple[Point, ...]:
        """The (semaphore, value) points."""
        return tuple(self._points.items())

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self) -> Any:
        return iter(self.points)

    @classmethod
    def join(cls, *fences: Fence) -> Fence:
        """A fence with every point of ``fences`` (the larger value per semaphore)."""
        joined = cls()
        for i, fence in enumerate(fences):
            if not isinstance(fence, Fence):
                raise InvalidArgumentError(f"Fence.join: fences[{i}] {fence!r} is not a Fence")
            for semaphore, value in fence.points:
                joined.insert(semaphore, value)
        return joined

    def wait(self, timeout: float | None = None) -> None:
        """Wait for every point. Raises DeadlineExceededError / AbortedError, and
        InvalidArgumentError for a bad timeout (see :func:`wait_points`)."""
        wait_points(self.points, "all", timeout, "Fence.wait")

    async def wait_async(self, timeout: float | None = None) -> None:
        """Await every point without blocking the event loop; raises as :meth:`wait`.
        Cancelling the awaiting task removes its watchers."""
        await wait_points_async(self.points, "all", timeout, "Fence.wait_async")

    def signal(self) -> None:
        """Signal every point from the host."""
        for semaphore, value in self.points:
            semaphore.signal(value)

    def fail(self, error: BaseException | str) -> None:
        """Fail every semaphore of the fence (``error`` as in ``Semaphore.fail``)."""
        _check_failure("Fence.fail", error)
        for semaphore, _ in self.points:
            semaphore.fail(error)

    @property
    def is_reached(self) -> bool:
        """True when every point is reached. Raises AbortedError if one failed."""
        return all(semaphore.query() >= value for semaphore, value in self.points)


WaitList = Fence | Sequence[Point]


def _check_failure(what: str, error: Any) -> None:
    if not isinstance(error, (BaseException, str)):
        raise InvalidArgumentError(
            f"{what}: error {error!r} must be an exception or a message string"
        )


def _check_value(what: str, value: Any) -> int:
    value = check_int(what, "value", value)
    if value > MAX_VALUE:
        raise OutOfRangeError(f"{what}: value {value} exceeds the maximum {MAX_VALUE}")
    return value


def normalise_points(what: str, points: WaitList | Iterable[Point] | None) -> tuple[Point, ...]:
    """A wait/signal list as (semaphore, value) tuples. Raises InvalidArgumentError for
    anything but None, a Fence or an iterable of (Semaphore, non-negative int) pairs, and
    OutOfRangeError for a value past :data:`MAX_VALUE`."""
    if points is None:
        return ()
    kind = type(points)
    if kind is tuple or kind is list:  # the common case, checked without isinstance chains
        if not points:
            return ()
        one: Any = points
        if len(one) == 1:  # one point (a round trip's signal): no list to build
            item = one[0]
            if (
                type(item) is tuple
                and len(item) == 2
                and type(item[0]) is Semaphore
                and type(item[1]) is int
                and 0 <= item[1] <= MAX_VALUE
            ):
                return one if kind is tuple else (item,)
        fast = []
        for item in points:
            if type(item) is not tuple or len(item) != 2:
                break
            semaphore, value = item
            if type(semaphore) is not Semaphore or type(value) is not int:
                break
            if not 0 <= value <= MAX_VALUE:
                break
            fast.append(item)
        else:
            return tuple(fast)
    if isinstance(points, Fence):
        return points.points
    if isinstance(points, (str, bytes, bytearray, Semaphore)) or not isinstance(points, Iterable):
        raise InvalidArgumentError(
            f"{what}: {points!r} must be a Fence or a sequence of (semaphore, value) pairs"
        )
    out = []
    for item in points:
        try:
            semaphore, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"{what}: {item!r} is not a (semaphore, value) pair"
            ) from None
        if not isinstance(semaphore, Semaphore):
            raise InvalidArgumentError(f"{what}: {semaphore!r} is not a Semaphore")
        if isinstance(item, (str, bytes)):
            raise InvalidArgumentError(f"{what}: {item!r} is not a (semaphore, value) pair")
        out.append((semaphore, _check_value(what, value)))
    return tuple(out)


def wait_points(
    points: WaitList,
    mode: str = "all",
    timeout: float | None = None,
    what: str = "wait_semaphores",
) -> None:
    """Wait until all (or any) points are reached. ``timeout`` is seconds (0 polls; None,
    ``math.inf`` and huge values wait forever). Raises DeadlineExceededError on timeout,
    AbortedError if a needed semaphore failed, InvalidArgumentError (naming ``what``) for a
    bad mode, point or timeout."""
    if not isinstance(mode, str) or mode not in ("all", "any"):
        raise InvalidArgumentError(f"{what}: mode {mode!r} must be 'all' or 'any'")
    pairs = normalise_points(what, points)
    timeout = timeout_seconds(what, timeout)
    if not pairs:
        return
    deadline = None if timeout is None else time.monotonic() + timeout

    if len(pairs) == 1:
        _wait_in_backend(pairs, mode, deadline)
    _sleep_until(pairs, mode, deadline, timeout)


def _sleep_until(
    pairs: tuple[Point, ...], mode: str, deadline: float | None, timeout: float | None
) -> None:
    """Sleep on the shared condition until ``pairs`` are reached (all or any). Raises
    DeadlineExceededError past ``deadline``, AbortedError for a failed semaphore. The
    completion threads of the work already submitted for them are woken where they stand by
    (a sleeper is counted before that, so work submitted from now on wakes them itself)."""
    counted = False
    try:
        with _changed_lock:
            if _reached(pairs, mode):
                return
            _sleepers[0] += 1
            counted = True
            completions = [
                c for semaphore, value in pairs for v, c, _, _ in semaphore._expected if v >= value
            ]
        for completion in completions:
            completion.kick()
        with _changed_lock:
            while not _reached(pairs, mode):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceededError(
                        f"wait: {len(pairs)} semaphore point(s) not reached within {timeout} s"
                    )
                _changed.wait(remaining)
    finally:
        if counted:
            with _changed_lock:
                _sleepers[0] -= 1


def _wait_in_backend(pairs: tuple[Point, ...], mode: str, deadline: float | None) -> None:
    """Block in the device's own wait for the submitted work that signals the one point of
    ``pairs``, completing it on this thread: the tracker thread's wake-up and hand-off are
    skipped. Unbounded waits do it wherever the tracker does not spin; bounded ones where
    the backend's wait returns by a deadline (Dawn's TimedWaitAny, the null backend) —
    wgpu-native's blocking poll cannot be interrupted, so there a wait first polls without
    blocking for the backend's ``waiter_poll_s`` (GPUs), then a bounded one leaves the work
    to the tracker. Timed backend waits run in slices of ``_BACKEND_SLICE_S`` and polls
    stop as soon as the semaphores settle, so a host signal or failure ends the wait.
    Returns when the point is reached, when there is nothing to block on, or at
    the deadline (the caller then raises)."""
    semaphore, value = pairs[0]
    settled = lambda: _settled(pairs, mode)  # noqa: E731 - made once, polled many times
    # One point: "all" and "any" agree, so :func:`_reached` and
    # :meth:`Semaphore._signalling_submission` are inlined (the eager round trip's wait:
    # each call is ~0.1 µs of it).
    while True:
        failure = semaphore._failure
        if failure is not None:
            raise AbortedError(f"wait: semaphore failed: {failure}", failure)
        if semaphore._value >= value:
            return
        with _changed_lock:
            for entry in semaphore._expected:
                if entry[0] >= value:
                    break
            else:
                # A host signal, or work not yet submitted: wait for the signal itself.
                return
        _, completion, ticket, _ = entry
        if not completion.wait_direct(ticket, deadline, _BACKEND_SLICE_S, settled):
            return  # the tracker (or another thread) completes that work, or the deadline


_BACKEND_SLICE_S = 0.01
"""The longest a wait blocks in the backend's timed wait before it looks at its semaphores
again (a host ``signal()`` or ``fail()`` is not seen by the backend)."""


def _settled(pairs: tuple[Point, ...], mode: str) -> bool:
    """Whether the wait on ``pairs`` is over: reached, or a semaphore failed."""
    try:
        return _reached(pairs, mode)
    except AbortedError:
        return True


def _reached(pairs: tuple[Point, ...], mode: str) -> bool:
    """Whether all (or any) points are reached. Raises AbortedError for a failed one."""
    reached = 0
    for semaphore, value in pairs:
        failure = semaphore._failure
        if failure is not None:
            raise AbortedError(f"wait: semaphore failed: {failure}", failure)
        if semaphore._value >= value:
            reached += 1
            if mode == "any":
                return True
    return reached == len(pairs)


async def wait_points_async(
    points: WaitList,
    mode: str = "all",
    timeout: float | None = None,
    what: str = "wait_semaphores",
) -> None:
    """:func:`wait_points` for asyncio: never blocks the running loop. Every semaphore not
    yet reached gets a one-shot watcher that wakes the loop (``call_soon_threadsafe``),
    whatever thread signals it (the host, the completion thread); the points are checked
    again on every wake-up. Raises as :func:`wait_points`; on return, timeout, failure or
    cancellation the watchers still registered are removed."""
    if not isinstance(mode, str) or mode not in ("all", "any"):
        raise InvalidArgumentError(f"{what}: mode {mode!r} must be 'all' or 'any'")
    pairs = normalise_points(what, points)
    timeout = timeout_seconds(what, timeout)
    if not pairs or _reached(pairs, mode):
        return
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    changed = asyncio.Event()
    watching: dict[Semaphore, Callable[[], None]] = {}

    def watcher(semaphore: Semaphore) -> Callable[[], None]:
        def on_change() -> None:  # runs on the signalling thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(woken, semaphore)

        return on_change

    def woken(semaphore: Semaphore) -> None:  # runs on the loop
        watching.pop(semaphore, None)
        changed.set()

    try:
        while True:
            changed.clear()
            for semaphore, _ in pairs:
                if semaphore not in watching:
                    watching[semaphore] = callback = watcher(semaphore)
                    semaphore.watch(callback)
            # Checked after the watchers are in place, so no change is missed.
            if _reached(pairs, mode):
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(
                    f"wait: {len(pairs)} semaphore point(s) not reached within {timeout} s"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
    finally:
        for semaphore, callback in watching.items():
            semaphore._unwatch(callback)
