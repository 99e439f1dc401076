"""Channels: a group of ranks for collectives, over a duplicate of an mpi4py communicator.

mpi4py is imported on the first channel (the ``mpi`` extra), with MPI initialised for
``MPI_THREAD_MULTIPLE``: host steps call MPI from hal's host threads. Each channel owns its
duplicate communicator, so hal's collectives never match a user's messages.

Ordering: every collective of a channel takes a ticket when it is submitted, and collectives
reach MPI in ticket order (:meth:`Channel.turn`), whatever thread runs them; a ticket whose
operation never runs (a failed wait) is given up, so the ones after it still run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from hal.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
)

__all__ = ["Channel", "load_mpi"]

_MISSING = (
    "mpi4py is not installed: collectives need the `mpi` extra (pip install .[mpi], which "
    "installs mpi4py and the MPICH wheel) and a launch under mpiexec"
)


def load_mpi(what: str) -> Any:
    """The ``mpi4py.MPI`` module, imported with thread level ``multiple`` if not yet loaded.
    Raises UnavailableError naming the ``mpi`` extra when mpi4py is missing."""
    try:
        import mpi4py
    except ImportError:
        raise UnavailableError(f"{what}: {_MISSING}") from None
    if mpi4py is None:  # hidden (sys.modules entry set to None)
        raise UnavailableError(f"{what}: {_MISSING}")
    mpi4py.rc.thread_level = "multiple"  # effective only before MPI's first import
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise UnavailableError(f"{what}: {_MISSING} ({error})") from None
    return MPI


class Channel:
    """A group of ``count`` ranks of which this process is ``rank`` (after IREE's
    ``iree_hal_channel_t``). Create with ``device.create_channel``; use as a context manager
    or call :meth:`close`. Using a closed channel raises FailedPreconditionError; a channel
    whose collective timed out raises UnavailableError (MPI cannot cancel it)."""

    def __init__(self, device: Any, comm: Any, mpi: Any) -> None:
        self.device = device
        self._comm = comm
        self._mpi = mpi
        self.rank: int = comm.Get_rank()
        self.count: int = comm.Get_size()
        self._closed = False
        self._broken: BaseException | None = None
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._given_up: set[int] = set()

    def __repr__(self) -> str:
        state = " closed" if self._closed else " broken" if self._broken else ""
        return f"<hal.Channel rank {self.rank} of {self.count}{state}>"

    @property
    def comm(self) -> Any:
        """The channel's own (duplicated) mpi4py communicator."""
        return self._comm

    @property
    def mpi(self) -> Any:
        """The ``mpi4py.MPI`` module (runtime use)."""
        return self._mpi

    def check_usable(self, what: str) -> None:
        """FailedPreconditionError once closed, UnavailableError once a collective on it
        timed out."""
        if self._closed:
            raise FailedPreconditionError(f"{what}: the channel was closed")
        if self._broken is not None:
            raise UnavailableError(
                f"{what}: the channel is unusable after an earlier collective failed: "
                f"{self._broken}"
            ) from self._broken

    def split(self, color: int, key: int) -> Channel:
        """A new channel of the ranks that pass the same ``color``, ordered by ``key`` (MPI's
        ``Comm.Split``; collective over this channel: every rank must call it). Raises
        InvalidArgumentError for non-int arguments, FailedPreconditionError/UnavailableError
        as :meth:`check_usable`."""
        from hal.core.checks import check_int

        self.check_usable("Channel.split")
        color = check_int("Channel.split", "color", color)
        key = _signed("Channel.split", "key", key)
        return Channel(self.device, self._comm.Split(color, key), self._mpi)

    def close(self) -> None:
        """Free the communicator (idempotent). A broken channel keeps it: its pending
        request may still be matched by a late peer."""
        if self._closed:
            return
        self._closed = True
        if self._broken is None:
            self._comm.Free()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ordering (runtime use) ------------------------------------------------------------

    def take_tickets(self, n: int) -> list[int]:
        """``n`` consecutive tickets in submission order."""
        with self._cond:
            first = self._next_ticket
            self._next_ticket += n
        return list(range(first, first + n))

    def turn(self, ticket: int, deadline: float) -> None:
        """Block until ``ticket`` is the next to reach MPI. Raises DeadlineExceededError past
        ``deadline`` (``time.monotonic()``)."""
        with self._cond:
            while self._serving != ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceededError(
                        f"collective: an earlier collective of channel rank {self.rank}/"
                        f"{self.count} did not start within HAL_COLLECTIVE_TIMEOUT"
                    )
                self._cond.wait(min(remaining, 0.5))

    def give_up(self, ticket: int) -> None:
        """``ticket`` has reached MPI, or never will: let the next one go."""
        with self._cond:
            if ticket < self._serving:
                return
            self._given_up.add(ticket)
            while self._serving in self._given_up:
                self._given_up.discard(self._serving)
                self._serving += 1
            self._cond.notify_all()

    def mark_broken(self, error: BaseException) -> None:
        """A collective timed out: every later use raises UnavailableError."""
        if self._broken is None:
            self._broken = error


def _signed(what: str, argument: str, value: Any) -> int:
    if type(value) is not int and not hasattr(value, "__index__"):
        raise InvalidArgumentError(f"{what}: {argument} {value!r} must be an int")
    return int(value)


def create_channel(device: Any, group: Any) -> Channel:
    """A channel over a duplicate of ``group`` (default: the world). Raises UnavailableError
    without mpi4py, InvalidArgumentError when ``group`` is not an mpi4py intracommunicator."""
    what = "create_channel"
    mpi = load_mpi(what)
    if group is None:
        group = mpi.COMM_WORLD
    if not isinstance(group, mpi.Intracomm) or group == mpi.COMM_NULL:
        raise InvalidArgumentError(
            f"{what}: group {group!r} must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD)"
        )
    return Channel(device, group.Dup(), mpi)
