"""A registration cache for caller memory: numpy arrays transferred again are wrapped once.

RDMA MPI libraries keep a "registration cache": pinning a buffer for DMA costs more than
copying it once, but a buffer that is sent again can reuse its registration. hal does the
same with Dawn's host-memory buffers. The first large transfer of a numpy array goes through
the staging pool (a streamed memcpy into pinned pool pages); when the same array is
transferred again, its page-aligned interior is wrapped as host-memory buffers (pinned once,
piece by piece as pieces are used) and kept, so later transfers are one GPU copy straight
from or into the caller's pages. The edges outside whole pages still go through the pool.

Which memory is cached, and why it is safe:

- Only memory owned by a numpy array: the transferred object's ``.base`` chain must end at
  an ``ndarray`` with ``OWNDATA`` (heap memory numpy frees in its dealloc). ``bytes``,
  ``mmap``, memoryviews of foreign memory and arrays over them are never cached: hal cannot
  know when such memory goes away.
- The cache holds a weak reference to the owner, never the owner itself. numpy clears an
  array's weak references in its dealloc before it frees the data; the callback only marks
  the entry dead (it may run on any thread, inside any allocation: no locks), and the next
  cache use destroys the wrapped buffers. No GPU work uses them by then: every cached
  transfer waited for its copies before it returned (the caller kept the array alive).
- The owner's memory cannot move while cached: numpy refuses ``ndarray.resize`` on an
  array with weak references (``refcheck=False`` included). Each use still checks the
  owner's data pointer and size against the entry's and drops a mismatching entry.
- Entries and first sightings are keyed by ``id(owner)`` and checked against a weak
  reference, so a new array that reuses a dead one's ``id`` and address is a new array:
  never the old wrap, and a first sighting again (arrays made fresh for every transfer are
  copied, not pinned each time). The last ``_SEEN_MAX`` sighted arrays and every cached one
  therefore have a weak reference, and numpy refuses to resize them in place.
- Bounded: at most ``limit`` bytes (whole interiors, reserved when an entry is made) are
  wrapped; the least recently used idle entries are evicted first, entries in use are
  never destroyed under a transfer (they are doomed and destroyed when it ends).
  :meth:`HostCache.clear` releases everything (device close, device loss).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import BackendError

if TYPE_CHECKING:
    from hal.backends.protocol import Backend

__all__ = ["CACHE_BYTES", "CachedMemory", "HostCache", "owner_array", "parse_bytes"]

_GIB = 1 << 30
_SEEN_MAX = 64  # first sightings remembered (weak reference, address, size)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(raw: str) -> int | None:
    """``raw`` as a byte count: digits with an optional ``K``/``M``/``G``/``T`` suffix (an
    optional ``iB``/``B`` after it), e.g. ``"0"``, ``"512M"``, ``"4GiB"``; None when it is
    not one."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", raw.lower())
    return None if match is None else int(match[1]) * _UNITS[match[2]]


def _default_bytes() -> int:
    # Pinned memory is taken from the whole system: at most an eighth of it, at most 4 GiB.
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return _GIB
    return max(0, min(4 * _GIB, physical // 8))


_env = parse_bytes(os.environ.get("HAL_HOST_CACHE_BYTES", "x"))
CACHE_BYTES = _default_bytes() if _env is None else _env
"""Bytes of caller memory the registration cache keeps wrapped, per device
(``HAL_HOST_CACHE_BYTES``, e.g. ``2G``; ``0``: no cache). Default: an eighth of the
physical memory, at most 4 GiB."""


def owner_array(obj: Any) -> np.ndarray | None:
    """The numpy array that owns the memory behind ``obj`` (an array or the object a
    memoryview exports), following ``.base``; None when that memory is not owned by a
    numpy array (``bytes``, ``mmap``, foreign memory, an array over any of them)."""
    while isinstance(obj, np.ndarray):
        base = obj.base
        if base is None:
            return obj if obj.flags.owndata else None
        obj = base
    return None


def _data_pointer(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


class WrappedPieces:
    """Host memory ``[address, address+size)`` wrapped as host-memory buffers of ``piece``
    bytes, each piece faulted in and wrapped on first use: the staging pool's own regions
    (hal/runtime/staging.py) and cached caller memory (:class:`CachedMemory`)."""

    __slots__ = ("address", "handles", "piece", "size")

    def __init__(self, address: int, size: int, piece: int) -> None:
        self.address = address
        self.size = size
        self.piece = piece
        self.handles: list[Any] = [None] * -(-size // piece)

    def spans(
        self, backend: Backend, begin: int, position: int, size: int
    ) -> Iterator[tuple[Any, int, int, int]]:
        """``(buffer, buffer offset, position, size)`` covering bytes ``[begin,
        begin+size)`` of the memory, which are range positions ``[position,
        position+size)``; pieces not yet wrapped are wrapped as they come (BackendError
        if refused)."""
        end = begin + size
        piece = self.piece
        for k in range(begin // piece, -(-end // piece)):
            lo, hi = max(begin, k * piece), min(end, (k + 1) * piece)
            handle = self.handles[k]
            if handle is None:
                handle = self._wrap(backend, k)
            yield handle, lo - k * piece, position + lo - begin, hi - lo

    def _wrap(self, backend: Backend, k: int) -> Any:
        """Fault piece ``k`` in and wrap it (BackendError if refused)."""
        from hal.runtime.staging import populate

        start = self.address + k * self.piece
        length = min(self.piece, self.size - k * self.piece)
        populate(start, length)  # faults taken in parallel, not one by one in the pin
        handle = self.handles[k] = backend.wrap_host_memory(
            start, length, self._keep(k * self.piece, length)
        )
        return handle

    def _keep(self, offset: int, length: int) -> Any:
        """What the wrap of ``[offset, offset+length)`` keeps alive (None: nothing)."""
        return None

    def _take_handles(self) -> list[Any]:
        handles, self.handles = self.handles, [None] * len(self.handles)
        return handles

    def destroy(self, backend: Backend) -> None:
        """Destroy the wrapped pieces (no GPU work uses them). Never raises."""
        for handle in self._take_handles():
            if handle is not None:
                with contextlib.suppress(BackendError):
                    backend.destroy_buffer(handle)


class CachedMemory(WrappedPieces):
    """One cached owner's page-aligned interior ``[address, address+size)``, wrapped as
    host-memory buffers of ``piece`` bytes as the pieces are first used. ``users``
    transfers hold it; ``doomed`` entries are destroyed once none does."""

    __slots__ = ("_lock", "data", "doomed", "nbytes", "ref", "users")

    def __init__(
        self, ref: weakref.ref[Any], data: int, nbytes: int, address: int, size: int, piece: int
    ) -> None:
        super().__init__(address, size, piece)
        self.ref = ref
        self.data = data
        self.nbytes = nbytes
        self.users = 0
        self.doomed = False
        self._lock = threading.Lock()

    def _wrap(self, backend: Backend, k: int) -> Any:
        # Under the entry's lock: two threads transferring the same array never wrap the
        # same pages twice. No reference to the owner goes to Dawn (``_keep`` None): the
        # cache's weak reference decides when the wrap is destroyed.
        with self._lock:
            handle = self.handles[k]
            return handle if handle is not None else super()._wrap(backend, k)

    def _take_handles(self) -> list[Any]:
        with self._lock:
            return super()._take_handles()


def _died(cache: weakref.ref[HostCache]) -> Callable[[Any], None]:
    def callback(_: Any) -> None:
        # Inside the owner's dealloc, on any thread: no locks, only an atomic append.
        owner = cache()
        if owner is not None:
            owner._died.append(None)

    return callback


class HostCache:
    """The registration cache of one device's staging pool (module docstring). Thread-safe;
    wrapping and destroying go through the backend (Dawn's lock), never under the cache's
    own lock."""

    def __init__(self, backend: Backend, limit: int, minimum: int) -> None:
        self.backend = backend
        #: Bytes of wrapped interiors at most (0: the cache is off).
        self.limit = limit
        #: Interiors smaller than this are not cached.
        self.minimum = minimum
        #: Bytes of the entries' interiors now reserved.
        self.bytes = 0
        #: Transfers served from an entry, and entries made (for tests and benchmarks).
        self.hits = 0
        self.made = 0
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[int, CachedMemory] = collections.OrderedDict()
        self._seen: collections.OrderedDict[int, tuple[weakref.ref[Any], int, int]] = (
            collections.OrderedDict()
        )
        self._died: collections.deque[None] = collections.deque()

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(
        self, view: memoryview, address: int, alignment: int, piece: int
    ) -> CachedMemory | None:
        """The entry to transfer ``view`` (contiguous, at ``address``) through, held until
        :meth:`release`; None where it goes the ordinary way: the cache is off, the memory
        is not owned by a numpy array, or this is the owner's first sighting (noted now)."""
        if self.limit <= 0:
            return None
        owner = owner_array(view.obj)
        if owner is None:
            return None
        data, nbytes = _data_pointer(owner), owner.nbytes
        if not data <= address <= address + len(view) <= data + nbytes:
            return None  # not the owner's memory after all (a C extension's trickery)
        start = -(-data // alignment) * alignment
        size = (data + nbytes) // alignment * alignment - start
        if size < max(self.minimum, alignment) or size > self.limit:
            return None
        if self._died:
            self.reap()
        doomed: list[CachedMemory] = []
        try:
            with self._lock:
                return self._lookup(owner, data, nbytes, start, size, piece, doomed)
        finally:
            self._destroy(doomed)

    def _lookup(
        self,
        owner: np.ndarray,
        data: int,
        nbytes: int,
        start: int,
        size: int,
        piece: int,
        doomed: list[CachedMemory],
    ) -> CachedMemory | None:
        """:meth:`acquire` under the lock; entries to destroy go to ``doomed``."""
        key = id(owner)
        entry = self._entries.get(key)
        if entry is not None:
            if entry.ref() is owner and (entry.data, entry.nbytes) == (data, nbytes):
                entry.users += 1
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            self._forget(key, doomed)  # another array at that id, or the memory moved
        seen = self._seen.pop(key, None)
        if seen is None or seen[0]() is not owner or seen[1:] != (data, nbytes):
            self._seen[key] = (weakref.ref(owner), data, nbytes)
            while len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            return None
        for old in [k for k, e in self._entries.items() if e.users == 0]:
            if self.bytes + size <= self.limit:
                break
            self._forget(old, doomed)  # least recently used first
        if self.bytes + size > self.limit:
            self._seen[key] = seen  # entries in use: try again next time
            return None
        entry = CachedMemory(
            weakref.ref(owner, _died(weakref.ref(self))), data, nbytes, start, size, piece
        )
        entry.users = 1
        self._entries[key] = entry
        self.bytes += size
        self.made += 1
        return entry

    def _forget(self, key: int, doomed: list[CachedMemory]) -> None:
        """Drop entry ``key`` (under the lock): destroyed now if idle, else at release."""
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        entry.doomed = True
        if entry.users == 0:
            doomed.append(entry)

    def release(self, entry: CachedMemory) -> None:
        """A transfer through ``entry`` finished (its copies completed); a doomed entry is
        destroyed once no transfer holds it. Never raises."""
        with self._lock:
            entry.users -= 1
            destroy = entry.doomed and entry.users == 0
        if destroy:
            entry.destroy(self.backend)

    def reap(self) -> None:
        """Destroy the entries whose owners were collected. Never raises."""
        doomed: list[CachedMemory] = []
        with self._lock:
            self._died.clear()
            for key in [k for k, e in self._entries.items() if e.ref() is None]:
                self._forget(key, doomed)
        self._destroy(doomed)

    def clear(self) -> None:
        """Release every entry (idle ones now, those in use when their transfer ends) and
        forget every sighting. Never raises."""
        doomed: list[CachedMemory] = []
        with self._lock:
            self._died.clear()
            self._seen.clear()
            for key in list(self._entries):
                self._forget(key, doomed)
        self._destroy(doomed)

    def _destroy(self, doomed: list[CachedMemory]) -> None:
        """Destroy ``doomed`` entries (taken out under the lock) outside it, then let the
        implementation free them. Never raises."""
        for entry in doomed:
            entry.destroy(self.backend)
        if doomed:
            with contextlib.suppress(BackendError):
                self.backend.poll()  # Dawn releases the memory once events are processed
