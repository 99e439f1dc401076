"""``queue_host_call``: host functions run in queue order (by semaphores) on hal's host threads.

A host call waits, off every thread, for its wait points: it watches each semaphore it still
needs and is handed to a worker once all are reached (or failed, which fails its signals
without calling it). Workers are an elastic pool — a new thread starts whenever every worker
is busy — so a host call that sleeps or blocks (a collective waiting for its peers) never
delays another one, nor the GPU queue and its completion thread, which only ever hand work
over here.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hal.errors import UnavailableError

if TYPE_CHECKING:
    from hal.runtime.semaphore import Point, Semaphore

__all__ = ["HostCalls"]

_IDLE_SECONDS = 5.0
"""How long an idle worker thread waits for more work before it ends."""


class _Call:
    __slots__ = ("fn", "on_skip", "signals", "state", "waits", "watching")

    def __init__(
        self,
        fn: Callable[[], object],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
        on_skip: Callable[[BaseException], None] | None,
    ) -> None:
        self.fn = fn
        self.waits = waits
        self.signals = signals
        self.on_skip = on_skip
        self.state = "waiting"  # then "running" and "done"
        self.watching: set[Semaphore] = set()


class HostCalls:
    """The host calls of one device: waiting ones, and the worker threads that run them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._waiting: set[_Call] = set()
        self._ready: collections.deque[_Call] = collections.deque()
        self._idle = 0
        self._running = 0
        self._closed = False

    def enqueue(
        self,
        fn: Callable[[], object],
        waits: tuple[Point, ...],
        signals: tuple[Point, ...],
        on_skip: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``fn`` on a worker once ``waits`` are reached, then advance ``signals``; what
        ``fn`` raises (any BaseException) fails them instead. A failed wait, or the device
        closing first, fails them without calling ``fn`` (``on_skip`` is called with the
        failure). Never raises."""
        call = _Call(fn, waits, signals, on_skip)
        with self._lock:
            closed = self._closed
            if not closed:
                self._waiting.add(call)
        if closed:
            self._skip(call, UnavailableError("queue_host_call: the device was closed"))
            return
        self._arm(call)

    def _arm(self, call: _Call, changed: Semaphore | None = None) -> None:
        """Hand ``call`` over if its waits are reached or one failed, else watch every
        semaphore it still needs (a change re-arms it)."""
        with self._lock:
            if changed is not None:
                call.watching.discard(changed)
            if call.state != "waiting":
                return
        while True:
            failure: BaseException | None = None
            unreached = []
            for semaphore, value in call.waits:
                if semaphore.failure is not None:
                    failure = semaphore.failure
                    break
                if semaphore.value < value:
                    unreached.append(semaphore)
            if failure is not None:
                if self._claim(call, "done"):
                    self._skip(call, failure)
                return
            if not unreached:
                if self._claim(call, "running"):
                    self._start(call)
                return
            with self._lock:
                new = [s for s in unreached if s not in call.watching]
                call.watching.update(new)
            for semaphore in new:
                semaphore.watch(functools.partial(self._arm, call, semaphore))
            # A change that landed before the watchers were in place: one more pass.
            if all(s.value < v and s.failure is None for s, v in call.waits if s in unreached):
                return

    def _claim(self, call: _Call, state: str) -> bool:
        with self._lock:
            if call.state != "waiting":
                return False
            call.state = state
            self._waiting.discard(call)
            return True

    def _skip(self, call: _Call, failure: BaseException) -> None:
        call.state = "done"
        if call.on_skip is not None:
            try:
                call.on_skip(failure)
            except BaseException as error:  # runtime callbacks: never escapes a watcher
                failure = error
        for semaphore, _ in call.signals:
            semaphore.fail(failure)

    def _start(self, call: _Call) -> None:
        with self._lock:
            self._ready.append(call)
            self._running += 1
            if len(self._ready) > self._idle:
                thread = threading.Thread(target=self._work, name="hal-host-call", daemon=True)
                thread.start()
            else:
                self._lock.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._ready:
                    self._idle += 1
                    woke = self._lock.wait(_IDLE_SECONDS)
                    self._idle -= 1
                    if not woke and not self._ready:
                        return
                call = self._ready.popleft()
            self._run(call)

    def _run(self, call: _Call) -> None:
        try:
            call.fn()
        except BaseException as error:  # user code: it fails only this operation
            for semaphore, _ in call.signals:
                semaphore.fail(error)
        else:
            for semaphore, value in call.signals:
                semaphore.advance(value)
        finally:
            call.state = "done"
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no host call is running (waiting ones excluded); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._running == 0, timeout)

    def close(self) -> None:
        """Fail every host call still waiting (UnavailableError); running ones finish."""
        with self._lock:
            self._closed = True
            waiting = [c for c in self._waiting if c.state == "waiting"]
            for call in waiting:
                call.state = "done"
            self._waiting.clear()
        for call in waiting:
            self._skip(call, UnavailableError("queue_host_call: the device was closed"))
