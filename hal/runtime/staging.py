"""Fast host transfers through reusable staging buffers.

wgpu-py's ``queue.write_buffer`` allocates a fresh staging buffer on every call and
``queue.read_buffer`` a fresh MAP_READ buffer, then waits through wgpu-py's poller thread.
hal keeps a small pool of staging buffers per device instead — MAP_WRITE|COPY_SRC for uploads,
MAP_READ|COPY_DST for readbacks — and moves bytes straight between the caller's memory and
the mapped range (one host memcpy, split over a few threads on many-core hosts; numpy
releases the GIL while it copies). Large transfers go in chunks that rotate over a few
buffers, so the host copy of one chunk overlaps the GPU copy of the previous one.

Maps go through the backend (``map_async`` / ``wait_mapped``; wgpu-native maps with its raw
functions and polls on this thread: hal/backends/wgpu_native.py). Waiting never depends on
hal's completion thread, so these functions may run on it (``queue_write`` reads back there).

Host-memory buffers: where the backend has them (``host_memory_buffers``: Dawn's
host-mapped-pointer), the pool's buffers are host pages wrapped as buffers instead
(:class:`_HostStaging`): the GPU copies straight from and into them, nothing is mapped, and
"waiting for the map" is waiting for the submission that last used the buffer
(``backend.wait``). Same pool, chunks and pipelining; chunks are ``HOST_CHUNK_SIZE``. The
pages live as long as the buffer's last GPU use (the backend keeps them until the
implementation released the buffer); :meth:`StagingPool.release` destroys the idle ones. On
many-core hosts their host copies stream over ``STREAM_THREADS`` (no join per chunk).

Zero-copy (host-memory buffers only, from ``WRAP_MIN``): a large ``to_numpy`` result is an
array over a region of the pool's own host pages (:class:`_Region`), which the GPU writes in
place and which returns to the pool once the array and its views were collected; an upload
from such an array copies straight from the region's buffers. On CPU and integrated adapters
(``HOST_WRAP``) the caller's own memory is wrapped for the call too: an upload's source, a
readback's new ``bytes``. The unaligned head and tail go through the pool; every such call
waits for its copies before it returns, and the backend holds the memory's owner until the
implementation released the wrap.

Registration cache (host-memory buffers only, from ``WRAP_MIN``): a numpy array transferred
again has its interior wrapped once and kept (hal/runtime/host_cache.py); those transfers
copy straight from or into it, in one submission, before the per-call wrap above is tried.

Safety: wgpu-native aborts the process when a submission uses a mapped buffer. A staging
buffer is unmapped before the command buffer that uses it is even encoded, is mapped again
only after that submission was made, and user buffers are never mapped at all: hal does not
request ``mappable-primary-buffers`` (see README, "Host transfers").

Exactness: the GPU copies whole words, so an unaligned transfer moves its aligned body through
staging and its 1-3 byte edges through an update command buffer, whose builtin kernels patch
only those bytes; no other byte of the target changes, even under concurrent GPU work.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import BackendError
from hal.errors import UnavailableError
from hal.runtime.host_cache import CACHE_BYTES, CachedMemory, HostCache, WrappedPieces

if TYPE_CHECKING:
    from hal.backends.protocol import Backend
    from hal.runtime.buffer import Buffer
    from hal.runtime.profiling import ProfilerSlot
    from hal.runtime.queue import Queue

__all__ = ["EdgeWriter", "Sink", "StagingPool", "Upload", "copy_bytes", "new_bytes"]

EdgeWriter = Callable[[Any, int, bytes, int, bytes], None]
"""Writes edge bytes ``(root buffer, head offset, head, tail offset, tail)`` with an update
command buffer ordered after submitted work (hal/runtime/transfers.py provides it)."""

Sink = Callable[[memoryview, int], None]
"""Receives ``(chunk, position)``: a read-only view of bytes that start at ``position`` of
the requested range. The view is only valid during the call."""

_log = logging.getLogger("hal")
_MIB = 1 << 20
_MAP_TIMEOUT = 60.0
_MIN_BUFFER = 64 * 1024
_PARALLEL_MIN = 2 * _MIB


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else default


DEPTH = _env_int("HAL_STAGING_DEPTH", 3)
"""Staging buffers one large transfer rotates over (``HAL_STAGING_DEPTH`` overrides)."""

WRITE_BUFFER_MAX = _env_int("HAL_WRITE_BUFFER_MAX", 1 * _MIB)
"""Uploads up to this size go through ``queue.write_buffer`` (wgpu's own staging: no map
round trip, the lowest latency); larger ones stream through hal's staging buffers."""

# With few cores the GPU (lavapipe: the same CPU) needs them; threads would only contend.
_cores = os.cpu_count() or 1
COPY_THREADS = _env_int("HAL_COPY_THREADS", 1 if _cores < 8 else min(8, _cores // 2))
"""Threads one large host memcpy is split over (``HAL_COPY_THREADS`` overrides)."""

STREAM_THREADS = _env_int("HAL_STREAM_THREADS", 1 if _cores < 8 else min(12, _cores * 3 // 4))
"""Threads that stream a large transfer's host copies where the pool is host memory
(``HAL_STREAM_THREADS`` overrides; 1: copy chunk by chunk with ``COPY_THREADS``). Measured on
the H200 host (16 cores, 256 MiB, session 20): one memcpy split over 12 threads ran at 41-49
GB/s, 8 threads at 36-39; split per 32 MiB chunk (each chunk's threads joined before its
GPU copy was submitted) it ran at 24, which capped the pool's upload at 16-22 GB/s."""

STREAM_PIECE = 4 * _MIB
"""Bytes one streaming copy task moves."""

CHUNK_SIZE = _env_int("HAL_STAGING_CHUNK", max(4 * _MIB, 2 * _MIB * COPY_THREADS))
"""Bytes per staging buffer and per pipelined chunk (``HAL_STAGING_CHUNK`` overrides): 2 MiB
per copy thread, at least 4 MiB. Measured on the H100 host (8 threads, 64 MiB): 16 MiB
chunks moved 15.5 GB/s up and 16.9 down, 8 MiB chunks 9.3 and 6.5 (smaller pieces per thread
cost more than they overlap); on lavapipe (1 thread) 2-4 MiB did best.
"""

HOST_CHUNK_SIZE = _env_int("HAL_HOST_CHUNK", max(8 * _MIB, CHUNK_SIZE))
"""Bytes per host-memory buffer and per pipelined chunk where the backend has host-memory
buffers, on integrated and CPU adapters (``HAL_HOST_CHUNK`` overrides)."""

DISCRETE_HOST_CHUNK_SIZE = _env_int("HAL_HOST_CHUNK", 32 * _MIB)
"""The same on discrete adapters: on the H200, 32 MiB chunks moved 256 MiB at 18.8 GB/s up
and 10.7 down through the pool against 15.3 and 8.8 with 16 MiB (one run)."""

HOST_MEMORY = os.environ.get("HAL_HOST_MEMORY", "1").strip() != "0"
"""Use host-memory buffers where the backend has them (``HAL_HOST_MEMORY=0``: never)."""

_wrap_env = os.environ.get("HAL_HOST_WRAP", "").strip()
HOST_WRAP: bool | None = None if _wrap_env not in ("0", "1") else _wrap_env == "1"
"""Where the pool is host memory, wrap the caller's memory (the source of an upload, the
new ``bytes`` of a readback) as host-memory buffers so the GPU copies straight from and into
it: ``HAL_HOST_WRAP=1`` always, ``0`` never; by default on CPU and integrated adapters only.
On the H200 (discrete) the driver pinned a host array's pages at 20-25 GB/s and fresh pages
faulted in at about 4.5 GB/s, so wrapping moved 256 MiB at 11.7-12.9 GB/s up and 5.8-7.3
down, against 13.4-21.2 and 7.8-12.2 through the pool; lavapipe pins at over 100 GB/s."""

HOST_RESULTS = os.environ.get("HAL_HOST_RESULTS", "1").strip() != "0"
"""Where the pool is host memory, large ``to_numpy`` results are host pages the GPU writes
directly, reused once the array was collected (``HAL_HOST_RESULTS=0``: never). The first
result of a size is filled through the pool; its pages are wrapped on their next use."""

WRAP_MIN = _env_int("HAL_HOST_WRAP_MIN", 4 * _MIB)
"""Transfers from this size wrap memory (``HAL_HOST_WRAP_MIN`` overrides); smaller ones
copy through the pool, whose buffers are already wrapped."""

RESULT_KEEP = _env_int("HAL_HOST_RESULT_KEEP", 1 << 30)
"""Bytes of idle readback regions (``to_numpy`` results whose arrays were collected) kept
wrapped for reuse, at most two regions (``HAL_HOST_RESULT_KEEP`` overrides)."""

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _copy_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="hal-copy")
        return _executor


_stream_executors: dict[int, ThreadPoolExecutor] = {}


def _stream_executor(threads: int) -> ThreadPoolExecutor:
    with _executor_lock:
        executor = _stream_executors.get(threads)
        if executor is None:
            executor = ThreadPoolExecutor(threads, thread_name_prefix="hal-stream")
            _stream_executors[threads] = executor
        return executor


def _copy_pieces(executor: ThreadPoolExecutor, target: Any, source: Any) -> list[Future[Any]]:
    """Queue ``target[:] = source`` (equal-length byte buffers) as ``STREAM_PIECE`` tasks, in
    order: tasks of the next chunk start as soon as a thread is free, with no join per
    chunk."""
    dst = np.frombuffer(target, np.uint8)
    src = np.frombuffer(source, np.uint8)
    step = STREAM_PIECE
    return [
        executor.submit(np.copyto, dst[i : i + step], src[i : i + step])
        for i in range(0, dst.nbytes, step)
    ]


def _join(futures: list[Future[Any]]) -> None:
    """Wait for every one of ``futures`` (none may still write once this returns), then
    raise the first one's exception, if any."""
    error: BaseException | None = None
    for future in futures:
        try:
            future.result()
        except BaseException as caught:  # re-raised below, once every piece stopped
            error = error or caught
    if error is not None:
        raise error


def copy_bytes(target: Any, source: Any) -> None:
    """Copy ``source`` into ``target`` (equal-length byte buffers: memoryviews, numpy arrays,
    cffi buffers), over ``COPY_THREADS`` threads when it is large. Raises ValueError when the
    lengths differ."""
    dst = np.frombuffer(target, np.uint8) if not isinstance(target, np.ndarray) else target
    src = np.frombuffer(source, np.uint8) if not isinstance(source, np.ndarray) else source
    if dst.nbytes != src.nbytes:
        raise ValueError(f"copy_bytes: {src.nbytes} bytes into {dst.nbytes}")
    size = dst.nbytes
    if COPY_THREADS <= 1 or size < _PARALLEL_MIN:
        np.copyto(dst, src)
        return
    step = -(-size // COPY_THREADS)
    step = (step + 4095) & ~4095  # page-aligned pieces
    pool = _copy_executor()
    futures = [
        pool.submit(np.copyto, dst[i : i + step], src[i : i + step])
        for i in range(step, size, step)
    ]
    np.copyto(dst[:step], src[:step])  # this thread does the first piece
    for future in futures:
        future.result()


try:
    import ctypes

    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    _as_string = ctypes.pythonapi.PyBytes_AsString
    _as_string.restype = ctypes.c_void_p
    _as_string.argtypes = (ctypes.py_object,)
    _NEW_BYTES = True
except (ImportError, AttributeError):  # pragma: no cover - not CPython
    _NEW_BYTES = False

_HUGE = 2 * _MIB
try:
    _madvise: Any = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.restype = ctypes.c_int
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
except (AttributeError, OSError, NameError):  # pragma: no cover - not Linux
    _madvise = None


def _advise_huge_pages(address: int, size: int) -> None:
    # Fresh large allocations cost one page fault per 4 KiB page on first write, which made a
    # 64 MiB readback into new bytes 4x slower than into numpy memory (numpy asks for
    # transparent huge pages itself); ask the same for the bytes object's buffer.
    start, end = (address + _HUGE - 1) & ~(_HUGE - 1), (address + size) & ~(_HUGE - 1)
    if _madvise is not None and end - start >= _HUGE:
        _madvise(start, end - start, 14)  # MADV_HUGEPAGE; failure only costs speed


def new_bytes(size: int) -> tuple[Any, memoryview]:
    """A new object of ``size`` bytes to fill through the returned writable view, then hand
    out. On CPython it is a ``bytes`` object filled in place, as C code does with
    ``PyBytes_FromStringAndSize(NULL, n)`` — before anyone else sees it — which saves a
    second copy of large readbacks; elsewhere a ``bytearray`` the caller converts."""
    if _NEW_BYTES and size > 0:
        obj = _from_size(None, size)
        address = _as_string(obj)
        if size >= 2 * _HUGE:
            _advise_huge_pages(address, size)
        array = (ctypes.c_char * size).from_address(address)
        return obj, memoryview(array).cast("B")
    raw = bytearray(size)
    return raw, memoryview(raw)


def _release(view: memoryview) -> None:
    # Views of mapped memory must not outlive the map; release fails only while a consumer
    # still holds an export, which our own copies never do once they return.
    with contextlib.suppress(BufferError):
        view.release()


_POPULATE_WRITE = 23  # Linux 5.14+: fault pages in writable, contents kept
_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)


def populate(address: int, size: int) -> None:
    """Fault ``[address, address+size)`` (page-aligned) in writable, over ``COPY_THREADS``
    threads. Fresh pages cost a page fault and a zeroing each on first touch; wrapping them
    would take those faults one by one inside the driver, so they are taken in parallel
    first. Contents are kept; a kernel without MADV_POPULATE_WRITE only costs speed."""
    if _madvise is None:
        return
    step = -(-size // max(1, COPY_THREADS))
    step = max(_HUGE, (step + _HUGE - 1) & ~(_HUGE - 1))
    if step >= size:
        _madvise(address, size, _POPULATE_WRITE)
        return
    pool = _copy_executor()
    futures = [
        pool.submit(_madvise, address + i, min(step, size - i), _POPULATE_WRITE)
        for i in range(step, size, step)
    ]
    _madvise(address, step, _POPULATE_WRITE)  # ctypes releases the GIL meanwhile
    for future in futures:
        future.result()


def _host_address(view: memoryview) -> int | None:
    """The address of ``view``'s bytes where the backend may wrap them: contiguous memory
    that is writable, or a ``bytes`` object's (heap pages, only ever copied from); else
    None (read-only views may be read-only mappings the driver cannot pin)."""
    if not view.c_contiguous or view.nbytes == 0:
        return None
    if view.readonly and type(view.obj) is not bytes:
        return None
    return int(np.frombuffer(view, np.uint8).ctypes.data)


class _Region(WrappedPieces):
    """Host pages of the pool's own, wrapped as host-memory buffers piece by piece (pieces
    are wrapped on first use): the memory of large ``to_numpy`` results, handed out as the
    array's memory and reused once that array was collected. Leased to one transfer (or
    one live array) at a time; no GPU work uses it while leased out."""

    __slots__ = ("filled", "view")

    def __init__(self, size: int, alignment: int, piece: int) -> None:
        step = max(alignment, _HUGE)
        length = -(-size // step) * step
        # Private: mmap's default for anonymous memory is MAP_SHARED, whose pages are shmem
        # (no transparent huge pages); filling them ran at 1.1 GB/s on lavapipe's host
        # against 5-6 GB/s for private ones.
        pages = mmap.mmap(-1, length + step, flags=_PRIVATE)
        base = memoryview(pages)
        address = int(np.frombuffer(base, np.uint8).ctypes.data)
        start = -address % step
        if hasattr(mmap, "MADV_HUGEPAGE"):
            pages.madvise(mmap.MADV_HUGEPAGE, start, length)  # before the first touch
        super().__init__(address + start, length, piece)
        self.view = base[start : start + length]
        self.filled = False  # filled once (through the pool): its pages are faulted in

    def _keep(self, offset: int, length: int) -> Any:
        # The wrap keeps the pages' memoryview: they are freed once the implementation
        # released them and no array uses them.
        return self.view[offset : offset + length]


def _returned(pool: weakref.ref[StagingPool], region: _Region) -> None:
    # A finalizer (any thread, inside any allocation): no locks, only an atomic append.
    owner = pool()
    if owner is not None:
        owner._returned.append(region)


class _Staging:
    """One staging buffer: ``MAP_WRITE|COPY_SRC`` (``upload``) or ``MAP_READ|COPY_DST``.

    ``last_ticket`` is the submission that last used it; it is mapped only after that
    submission was made, so it is never mapped while a submission that uses it is encoded.
    """

    __slots__ = ("_backend", "_token", "buffer", "last_ticket", "mapped", "size", "upload")

    def __init__(self, backend: Backend, size: int, upload: bool) -> None:
        self._backend = backend
        self.buffer = backend.create_staging_buffer(size, upload=upload)
        self.size = size
        self.upload = upload
        self.last_ticket = 0
        self.mapped = 0  # bytes mapped (from offset 0), or 0
        self._token: Any = None

    def request_map(self, size: int) -> None:
        """Ask for ``[0, size)`` to be mapped once the GPU finished ``last_ticket``."""
        self.mapped = size
        self._token = self._backend.map_async(self.buffer, size, write=self.upload)

    def wait_mapped(self) -> memoryview:
        """Block until the requested map is done; the mapped bytes (writable for uploads).

        Raises UnavailableError when the map fails or does not finish in 60 s (device lost)."""
        size = self.mapped
        try:
            done = self._backend.wait_mapped(self._token, _MAP_TIMEOUT)
        except BackendError as error:
            self.mapped = 0
            raise UnavailableError(f"host transfer: {error}") from None
        if not done:
            raise UnavailableError("host transfer: a staging buffer never mapped (device lost?)")
        return self._backend.mapped_range(self.buffer, size, writable=self.upload)

    def unmap(self) -> None:
        """Unmap (a no-op when not mapped)."""
        if self.mapped:
            self.mapped = 0
            self._backend.unmap(self.buffer)

    def settle(self) -> None:
        """Finish a requested map and unmap, so the buffer can go back to the pool."""
        if self.mapped:
            try:
                self.wait_mapped()
            finally:
                self.unmap()


class _HostStaging:
    """One host-memory buffer (host pages the GPU copies from and into), with the interface
    of :class:`_Staging`: "mapping" it waits for ``last_ticket`` (the GPU's last use) and
    returns a view of the pages; unmapping is bookkeeping only. Used by both directions."""

    __slots__ = ("_backend", "_view", "buffer", "last_ticket", "mapped", "size", "upload")

    def __init__(self, backend: Backend, size: int, upload: bool) -> None:
        self._backend = backend
        self.buffer, self._view = backend.create_host_buffer(size)
        self.size = size
        self.upload = upload
        self.last_ticket = 0
        self.mapped = 0

    def request_map(self, size: int) -> None:
        """Note that ``[0, size)`` will be accessed once the GPU finished ``last_ticket``."""
        self.mapped = size

    def wait_mapped(self) -> memoryview:
        """Block until the GPU finished the submission that last used the buffer; its first
        ``mapped`` bytes (read-only for readbacks). Raises UnavailableError (device lost)."""
        if self.last_ticket:
            try:
                self._backend.wait(self.last_ticket)
            except BackendError as error:
                self.mapped = 0
                raise UnavailableError(f"host transfer: {error}") from None
        view = self._view[: self.mapped]
        return view if self.upload else view.toreadonly()

    def unmap(self) -> None:
        """Nothing to unmap: host memory is always accessible."""
        self.mapped = 0

    def settle(self) -> None:
        """Nothing to finish: the next user waits for ``last_ticket`` itself."""
        self.mapped = 0

    def destroy(self) -> None:
        """Wait for the buffer's last GPU use, then destroy it (the backend frees the pages
        once the implementation released them). Raises BackendError (device lost)."""
        if self.last_ticket:
            self._backend.wait(self.last_ticket)
        self._backend.destroy_buffer(self.buffer)


class Upload:
    """Bytes captured into staging buffers now, copied into a buffer later (a held-back
    ``queue_update``/``queue_read``). ``encode()`` makes the command buffer; ``release()``
    gives the staging buffers back once the GPU finished it."""

    __slots__ = ("_copies", "_pool", "_staging")

    def __init__(
        self,
        pool: StagingPool,
        staging: list[Any],
        copies: list[tuple[Any, int, Any, int, int]],
    ) -> None:
        self._pool = pool
        self._staging: list[Any] = staging
        self._copies = copies

    def encode(self) -> Any:
        """A backend command buffer with the staged copies."""
        return self._pool.backend.copy_command_buffer(self._copies)

    def release(self) -> None:
        """Return the staging buffers to the pool (call once the copies completed)."""
        staging, self._staging = self._staging, []
        for item in staging:
            self._pool.give(item)


class StagingPool:
    """The staging buffers of one device and the transfers that use them.

    Every transfer takes its own buffers for its duration (concurrent transfers never wait
    on each other) and returns them with the index of the submission that last used them;
    the next user waits for that submission on the GPU, never for hal's completion thread.
    """

    def __init__(
        self,
        backend: Backend,
        queue: Queue,
        profiler: ProfilerSlot,
        write_edges: EdgeWriter,
        discrete: bool = False,
    ) -> None:
        self.backend = backend
        self._queue = queue
        self._profiler = profiler
        self._write_edge_bytes = write_edges
        self._lock = threading.Lock()
        self._idle: dict[bool, list[Any]] = {True: [], False: []}
        #: True when the pool's buffers are host memory (:class:`_HostStaging`).
        self.host_memory = HOST_MEMORY and bool(getattr(backend, "host_memory_buffers", False))
        #: True when large transfers wrap the caller's memory (see ``HOST_WRAP``).
        self.wrap = self.host_memory and (not discrete if HOST_WRAP is None else HOST_WRAP)
        #: True when large ``to_numpy`` results are reused wrapped host pages.
        self.wrap_results = self.host_memory and HOST_RESULTS
        #: Transfers of at least this many bytes wrap memory (where :attr:`wrap`).
        self.wrap_min = WRAP_MIN
        #: Threads that stream large host copies (host-memory pools only; 1: chunk by chunk).
        self.stream_threads = STREAM_THREADS if self.host_memory else 1
        if self.host_memory:
            chunk = DISCRETE_HOST_CHUNK_SIZE if discrete else HOST_CHUNK_SIZE
        else:
            chunk = CHUNK_SIZE
        self.chunk_size = max(_MIN_BUFFER, chunk & ~7)
        self.depth = max(1, DEPTH)
        self._keep = 2 * self.depth  # idle buffers kept per direction
        self._alignment = 0
        self._regions: list[_Region] = []  # idle readback regions, newest last
        self._leased: dict[int, _Region] = {}
        self._returned: collections.deque[_Region] = collections.deque()
        #: The registration cache of caller arrays (hal/runtime/host_cache.py; host-memory
        #: pools that can wrap memory only).
        self.cache = HostCache(backend, CACHE_BYTES if self.host_memory else 0, WRAP_MIN)

    # -- the pool -------------------------------------------------------------------------

    def _take(self, upload: bool, size: int) -> Any:
        """An idle buffer of at least ``size`` bytes (``size`` <= chunk size), or a new one:
        a :class:`_HostStaging` where the pool is host memory, else a :class:`_Staging`."""
        with self._lock:
            idle = self._idle[upload]
            fitting = [s for s in idle if s.size >= size]
            if fitting:
                best = min(fitting, key=lambda s: s.size)
                idle.remove(best)
                return best
        capacity = self.chunk_size
        if size < capacity:  # small transfers get small buffers: powers of two from 64 KiB
            capacity = min(capacity, max(_MIN_BUFFER, 1 << (size - 1).bit_length()))
        if self.host_memory:
            return _HostStaging(self.backend, capacity, upload)
        return _Staging(self.backend, capacity, upload)

    def give(self, staging: Any) -> None:
        """Return a staging buffer to the pool (a few are kept per direction)."""
        with self._lock:
            idle = self._idle[staging.upload]
            idle.append(staging)
            if len(idle) > self._keep:
                # Dropping the last reference releases it; wgpu frees it after its work (a
                # host-memory buffer's pages with it: the backend holds them until then).
                idle.remove(min(idle, key=lambda s: s.size))

    def release(self) -> None:
        """Destroy the idle host-memory buffers once the GPU is done with them (their pages
        are freed after); mapped staging buffers are dropped. The pool stays usable. Never
        raises: on a lost device the buffers are simply dropped."""
        with self._lock:
            idle = [item for items in self._idle.values() for item in items]
            self._idle = {True: [], False: []}
        for item in idle:
            if isinstance(item, _HostStaging):
                with contextlib.suppress(BackendError):
                    item.destroy()
        self.release_results()

    def close(self) -> None:
        """Release the registration cache's wraps of caller memory and the idle readback
        regions (the device is closing); waits for nothing. Never raises."""
        self.cache.clear()
        self.release_results()

    def release_results(self) -> None:
        """Destroy the idle readback regions (results whose arrays were collected): the
        next large ``to_numpy`` takes fresh pages. Never raises."""
        self._reap()
        with self._lock:
            regions, self._regions = self._regions, []
        for region in regions:
            region.destroy(self.backend)

    def _submit(self, command_buffer: Any, allocation: Any) -> int:
        return self._queue.submit_now([command_buffer], [allocation])

    def _copy_command(
        self, source: Any, source_offset: int, target: Any, target_offset: int, size: int
    ) -> Any:
        return self.backend.copy_command_buffer(
            [(source, source_offset, target, target_offset, size)]
        )

    # -- uploads --------------------------------------------------------------------------

    def write(self, buffer: Buffer, offset: int, source: memoryview) -> None:
        """Copy ``source`` to absolute ``offset`` of ``buffer``'s allocation, ordered after all
        submitted work. Returns once the bytes are copied out of ``source`` (the GPU copies
        may still run). Raises UnavailableError when the device is lost or closed."""
        size = len(source)
        if size == 0:
            return
        profiler = self._profiler.active
        began = time.perf_counter_ns()
        start, end = (offset + 3) & ~3, (offset + size) & ~3
        if end <= start:  # no whole word: only edge bytes
            self._write_edges(buffer, offset, source, b"")
        else:
            head = source[: start - offset]
            tail = source[end - offset :]
            if len(head) or len(tail):
                self._write_edges(buffer, offset, head, tail, end)
            self._write_body(buffer, start, source[start - offset : end - offset])
        if profiler is not None:
            profiler.host_event("host_write", began, time.perf_counter_ns(), {"bytes": size})

    def _write_edges(
        self, buffer: Buffer, offset: int, head: Any, tail: Any, tail_offset: int = 0
    ) -> None:
        """Write the 1-3 byte edges through an update command buffer (builtin kernels patch
        only those bytes), ordered after submitted work."""
        root = buffer.allocated_buffer
        base = root.byte_offset
        self._write_edge_bytes(root, offset - base, bytes(head), tail_offset - base, bytes(tail))

    def _write_body(self, buffer: Buffer, start: int, body: memoryview) -> None:
        """Copy the word-aligned ``body`` to ``start``: straight from the caller's memory
        where it can be wrapped, else through the pool."""
        if not (len(body) >= self.wrap_min and self._write_wrapped(buffer, start, body)):
            self._write_pooled(buffer, start, body)

    def _write_pooled(self, buffer: Buffer, start: int, body: memoryview) -> None:
        """Stream the word-aligned ``body`` to ``start`` in chunks over rotating buffers."""
        allocation = buffer.allocation
        target = allocation.handle
        if len(body) <= WRITE_BUFFER_MAX:
            # write_buffer lands before the command buffers of the next submission, so a
            # pending clear of a new buffer must be submitted first or it would wipe it.
            self._queue.flush_clears()
            self.backend.write_buffer(target, start, body)  # BackendError: the caller's
            empty = self.backend.copy_command_buffer([])
            self._submit(empty, allocation)  # flushes the write now and tracks it
            return
        chunk = self.chunk_size
        total = len(body)
        chunks = -(-total // chunk)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("staging: upload of %d bytes in %d chunk(s) of %d", total, chunks, chunk)
        if self.stream_threads > 1 and chunks > 1:
            self._write_streamed(buffer, start, body)
            return
        staging = [self._take(True, min(chunk, total)) for _ in range(min(self.depth, chunks))]
        try:
            for k in range(chunks):
                item = staging[k % len(staging)]
                part = body[k * chunk : (k + 1) * chunk]
                item.request_map(len(part))
                view = item.wait_mapped()
                try:
                    copy_bytes(view, part)
                finally:
                    _release(view)
                    item.unmap()
                command = self._copy_command(item.buffer, 0, target, start + k * chunk, len(part))
                item.last_ticket = self._submit(command, allocation)
        finally:
            for item in staging:
                item.settle()
                self.give(item)

    def _write_streamed(self, buffer: Buffer, start: int, body: memoryview) -> None:
        """:meth:`_write_pooled` with the host copies streamed over ``stream_threads``:
        the pieces of the next chunks are queued while this thread waits for the current
        chunk's and submits its GPU copy, so the copy threads never idle at a chunk
        boundary. A buffer is refilled only after the GPU copy that read it finished."""
        allocation = buffer.allocation
        target = allocation.handle
        chunk, total = self.chunk_size, len(body)
        chunks = -(-total // chunk)
        staging = [self._take(True, min(chunk, total)) for _ in range(min(self.depth, chunks))]
        depth = len(staging)
        executor = _stream_executor(self.stream_threads)
        pending: dict[int, tuple[list[Future[Any]], memoryview]] = {}
        queued = 0
        try:
            for k in range(chunks):
                # Chunks up to k+depth-1: their buffers' last chunks (k-1 and before) were
                # submitted, so waiting for those copies here never waits on ourselves.
                while queued < min(chunks, k + depth):
                    item = staging[queued % depth]
                    part = body[queued * chunk : (queued + 1) * chunk]
                    item.request_map(len(part))
                    view = item.wait_mapped()
                    pending[queued] = (_copy_pieces(executor, view, part), view)
                    queued += 1
                futures, view = pending.pop(k)
                item = staging[k % depth]
                _join(futures)
                _release(view)
                item.unmap()
                size = min(chunk, total - k * chunk)
                command = self._copy_command(item.buffer, 0, target, start + k * chunk, size)
                item.last_ticket = self._submit(command, allocation)
        finally:
            for futures, view in pending.values():
                with contextlib.suppress(BaseException):
                    _join(futures)
                _release(view)
            for item in staging:
                item.settle()
                self.give(item)

    def capture(
        self, buffer: Buffer, offset: int, size: int, fill: Sink
    ) -> tuple[Upload | None, Any, Any]:
        """Stage ``size`` bytes for absolute ``offset`` of ``buffer`` now, to be copied later.

        ``fill(view, position)`` writes source bytes ``[position, position+len(view))`` into
        ``view``. Returns the staged word-aligned body (None if there is none) and the head
        and tail edge bytes, which the caller writes with an update command. Never waits for
        other transfers (it may run on hal's completion thread)."""
        start, end = (offset + 3) & ~3, (offset + size) & ~3
        if end <= start:
            data = bytearray(size)
            fill(memoryview(data), 0)
            return None, bytes(data), b""
        head = bytearray(start - offset)
        tail = bytearray(offset + size - end)
        if head:
            fill(memoryview(head), 0)
        if tail:
            fill(memoryview(tail), end - offset)
        chunk = self.chunk_size
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("staging: %d bytes captured for a queued update", end - start)
        target = buffer.allocation.handle
        staging: list[Any] = []
        copies: list[tuple[Any, int, Any, int, int]] = []
        try:
            for position in range(start, end, chunk):
                length = min(chunk, end - position)
                item = self._take(True, length)
                staging.append(item)
                item.request_map(length)
                view = item.wait_mapped()
                try:
                    fill(view[:length], position - offset)
                finally:
                    _release(view)
                    item.unmap()
                copies.append((item.buffer, 0, target, position, length))
        except BaseException:
            for item in staging:
                item.settle()
                self.give(item)
            raise
        return Upload(self, staging, copies), bytes(head), bytes(tail)

    # -- readbacks ------------------------------------------------------------------------

    def read(self, buffer: Buffer, offset: int, length: int, sink: Sink) -> None:
        """Read ``length`` bytes at absolute ``offset`` of ``buffer``'s allocation after all
        submitted work, handing them to ``sink`` chunk by chunk in order. Raises
        UnavailableError when the device is lost or closed; what ``sink`` raises propagates."""
        if length == 0:
            return
        profiler = self._profiler.active
        began = time.perf_counter_ns()
        self._read(buffer, offset, length, sink)
        if profiler is not None:
            profiler.host_event("host_read", began, time.perf_counter_ns(), {"bytes": length})

    def _read(self, buffer: Buffer, offset: int, length: int, sink: Sink) -> None:
        allocation = buffer.allocation
        source = allocation.handle
        start, end = offset & ~3, (offset + length + 3) & ~3
        chunk = self.chunk_size
        total = end - start
        chunks = -(-total // chunk)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("staging: readback of %d bytes in %d chunk(s) of %d", total, chunks, chunk)
        staging = [self._take(False, min(chunk, total)) for _ in range(min(self.depth, chunks))]

        def submit(k: int) -> None:
            item = staging[k % len(staging)]
            position = start + k * chunk
            size = min(chunk, end - position)
            command = self._copy_command(source, position, item.buffer, 0, size)
            item.last_ticket = self._submit(command, allocation)
            item.request_map(size)  # after the submission: it maps once the copy is done

        try:
            for k in range(len(staging)):
                submit(k)
            for k in range(chunks):
                item = staging[k % len(staging)]
                position = start + k * chunk
                size = min(chunk, end - position)
                view = item.wait_mapped()
                lo, hi = max(position, offset), min(position + size, offset + length)
                try:
                    sink(view[lo - position : hi - position], lo - offset)
                finally:
                    _release(view)
                    item.unmap()
                if k + len(staging) < chunks:
                    submit(k + len(staging))
            # Our own poll saw the copies finish; complete them in the queue now, so a
            # wait_idle right after a read doesn't wait for the tracker thread to notice.
            last = max(item.last_ticket for item in staging)
            if last:
                self._queue.completion.complete_through(last)
        finally:
            for item in staging:
                item.settle()
                self.give(item)

    # -- wrapped memory -------------------------------------------------------------------
    # Where the pool is host memory, a large transfer whose host memory is a leased result
    # region (a live ``to_numpy`` array) copies straight from or into the region's own
    # buffers; where ``wrap`` is on, other memory (the caller's, a new ``bytes``) has its
    # page-aligned middle wrapped as host-memory buffers for the call. The unaligned head
    # and tail (under a page each) go through the pool. Wrapping (the driver pins the
    # pages) goes piece by piece, so pinning one piece overlaps the GPU's copy of the
    # previous. Each call waits for its copies before it returns: the caller's memory is
    # never used by the GPU afterwards.

    def _middle(self, address: int, length: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of memory at ``address`` whose addresses are aligned
        for wrapping (``lo == hi`` when there are none)."""
        if not self._alignment:
            try:
                self._alignment = self.backend.host_memory_alignment()
            except BackendError:  # host-memory buffers but no wrapping: the pool alone
                self.wrap = self.wrap_results = False
                return 0, 0
        alignment = self._alignment
        lo = -address % alignment
        hi = (address + length) // alignment * alignment - address
        return (lo, hi) if hi > lo else (0, 0)

    def _piece(self) -> int:
        return max(self._alignment, self.chunk_size // self._alignment * self._alignment)

    def _region_of(self, address: int, size: int) -> _Region | None:
        """The leased region holding ``[address, address+size)``, or None."""
        with self._lock:
            leased = list(self._leased.values())
        for region in leased:
            if region.address <= address and address + size <= region.address + region.size:
                return region
        return None

    def _plan(self, view: memoryview, offset: int) -> _Plan | None:
        """``(address, lo, hi, source)`` for a wrapped transfer of ``view`` (whose first
        byte goes to or from absolute ``offset``): its aligned middle ``[lo, hi)`` and what
        already wraps it — the leased region holding it, or the registration cache's entry
        (held: :meth:`_finish_wrapped` releases it) — or None for a wrap made for this call;
        None where it goes through the pool alone."""
        if not self.host_memory or not view.c_contiguous or not len(view):
            return None
        if self._queue.lost is not None:
            self.cache.clear()
            return None
        address = int(np.frombuffer(view, np.uint8).ctypes.data)
        if (address - offset) % 4:  # the GPU copies words
            return None
        if self.cache.limit and len(view) >= self.wrap_min:
            lo, hi = self._middle(address, len(view))
            if hi - lo >= self.wrap_min:
                entry = self.cache.acquire(view, address, self._alignment, self._piece())
                if entry is not None:
                    return address, lo, hi, entry
        if _host_address(view) is None:
            return None
        if not (self.wrap or (self.wrap_results and bool(self._leased))):
            return None
        lo, hi = self._middle(address, len(view))
        if hi - lo < self.wrap_min:
            return None
        region = self._region_of(address + lo, hi - lo)
        if region is None and not self.wrap:
            return None
        return address, lo, hi, region

    def _spans(
        self,
        plan: _Plan,
        keep: Any,
        wrapped: list[Any],
        fresh: bool,
    ) -> Iterator[tuple[Any, int, int, int]]:
        """``(buffer, buffer offset, position, size)`` covering positions ``[lo, hi)`` of
        ``plan``: the region's or cache entry's own buffers (wrapping pages twice is not
        portable), else
        new wraps of the memory, piece by piece (appended to ``wrapped``, faulted in first
        when ``fresh``). BackendError when the backend refuses the memory."""
        address, lo, hi, region = plan
        if region is not None:
            begin = address + lo - region.address
            yield from region.spans(self.backend, begin, lo, hi - lo)
            return
        piece = self._piece()
        for position in range(lo, hi, piece):
            size = min(piece, hi - position)
            if fresh:
                populate(address + position, size)
            handle = self.backend.wrap_host_memory(address + position, size, keep)
            wrapped.append(handle)
            yield handle, 0, position, size

    def _finish_wrapped(self, wrapped: list[Any], last: int, plan: _Plan) -> None:
        """Wait for ``last`` (the copies' submission), then release ``plan``'s cache entry
        (if it used one), destroy the new wraps and let the backend process events (Dawn
        releases the memory once later submissions completed). Raises BackendError (device
        lost)."""
        try:
            if last:
                self.backend.wait(last)
                self._queue.completion.complete_through(last)
        finally:
            if isinstance(plan[3], CachedMemory):
                self.cache.release(plan[3])
            for handle in wrapped:
                with contextlib.suppress(BackendError):
                    self.backend.destroy_buffer(handle)
            if wrapped:
                with contextlib.suppress(BackendError):
                    self.backend.poll()

    def _write_wrapped(self, buffer: Buffer, start: int, body: memoryview) -> bool:
        """Copy ``body`` to ``start`` straight from its memory (the aligned middle through
        host-memory buffers, head and tail through the pool) and wait for it; False
        (nothing done) where it goes through the pool alone."""
        plan = self._plan(body, start)
        if plan is None:
            return False
        _, lo, _, _ = plan
        allocation = buffer.allocation
        target = allocation.handle
        wrapped: list[Any] = []
        copies = _Copies(self, allocation, isinstance(plan[3], CachedMemory))
        done = lo
        try:
            with contextlib.suppress(_Refused):
                for handle, inner, position, size in self._wrapping(
                    self._spans(plan, body, wrapped, fresh=False)
                ):
                    copies.add((handle, inner, target, start + position, size))
                    done = position + size
            copies.flush()
            for a, b in ((0, lo), (done, len(body))):  # what is not wrapped: through the pool
                if b > a:
                    self._write_pooled(buffer, start + a, body[a:b])
        finally:
            self._finish_wrapped(wrapped, copies.last, plan)
        return True

    @staticmethod
    def _wrapping(
        spans: Iterator[tuple[Any, int, int, int]],
    ) -> Iterator[tuple[Any, int, int, int]]:
        """``spans``, a refused wrap (BackendError, device not lost) ending it with
        :class:`_Refused`: the caller moves the rest through the pool."""
        while True:
            try:
                span = next(spans)
            except StopIteration:
                return
            except BackendError as error:
                if error.lost:
                    raise
                raise _Refused(str(error)) from None
            yield span

    def read_into(self, buffer: Buffer, offset: int, target: memoryview, keep: Any = None) -> None:
        """Read ``len(target)`` bytes at absolute ``offset`` of ``buffer``'s allocation into
        the writable ``target`` after all submitted work: large reads straight into its
        memory where it is a result region or can be wrapped (``keep``, default
        ``target``, owns that memory), else through the pool. Raises UnavailableError when
        the device is lost or closed."""
        length = len(target)
        if length == 0:
            return
        if self._returned:
            self._reap()  # collected results beyond what is kept are unwrapped now
        profiler = self._profiler.active
        began = time.perf_counter_ns()
        if not (
            length >= self.wrap_min
            and not target.readonly
            and self._read_wrapped(buffer, offset, target, target if keep is None else keep)
        ):
            self._read_pooled(buffer, offset, target)
        if profiler is not None:
            profiler.host_event("host_read", began, time.perf_counter_ns(), {"bytes": length})

    def _read_pooled(self, buffer: Buffer, offset: int, target: memoryview) -> None:
        if self.stream_threads > 1 and len(target) > self.chunk_size:
            self._read_streamed(buffer, offset, target)
            return

        def sink(chunk: memoryview, position: int) -> None:
            copy_bytes(target[position : position + len(chunk)], chunk)

        self._read(buffer, offset, len(target), sink)

    def _read_streamed(self, buffer: Buffer, offset: int, target: memoryview) -> None:
        """:meth:`_read` into ``target`` with the host copies streamed over
        ``stream_threads``: a chunk's copy pieces are queued as soon as its GPU copy
        finished and run while this thread waits for the previous chunk's, whose buffer
        then takes the next GPU copy."""
        allocation = buffer.allocation
        source = allocation.handle
        length = len(target)
        start, end = offset & ~3, (offset + length + 3) & ~3
        chunk = self.chunk_size
        chunks = -(-(end - start) // chunk)
        staging = [
            self._take(False, min(chunk, end - start)) for _ in range(min(self.depth, chunks))
        ]
        depth = len(staging)
        executor = _stream_executor(self.stream_threads)
        copying: collections.deque[tuple[int, list[Future[Any]], memoryview]] = collections.deque()

        def submit(k: int) -> None:
            item = staging[k % depth]
            position = start + k * chunk
            command = self._copy_command(
                source, position, item.buffer, 0, min(chunk, end - position)
            )
            item.last_ticket = self._submit(command, allocation)
            item.request_map(min(chunk, end - position))

        def finish_oldest() -> None:
            j, futures, view = copying.popleft()
            try:
                _join(futures)
            finally:
                _release(view)
                staging[j % depth].unmap()
            if j + depth < chunks:
                submit(j + depth)

        try:
            for k in range(depth):
                submit(k)
            for k in range(chunks):
                position = start + k * chunk
                if len(copying) >= depth:
                    # Every buffer still holds a chunk being copied out (depth 1): finish
                    # the oldest, which hands its buffer chunk k's GPU copy.
                    finish_oldest()
                view = staging[k % depth].wait_mapped()
                lo, hi = max(position, offset), min(position + len(view), offset + length)
                futures = _copy_pieces(
                    executor, target[lo - offset : hi - offset], view[lo - position : hi - position]
                )
                copying.append((k, futures, view))
                if len(copying) > 1:  # chunk k copies meanwhile
                    finish_oldest()
            while copying:
                finish_oldest()
            last = max(item.last_ticket for item in staging)
            if last:
                self._queue.completion.complete_through(last)
        finally:
            for _, futures, view in copying:
                with contextlib.suppress(BaseException):
                    _join(futures)
                _release(view)
            for item in staging:
                item.settle()
                self.give(item)

    def _read_wrapped(self, buffer: Buffer, offset: int, target: memoryview, keep: Any) -> bool:
        """Read into ``target``'s memory (aligned middle through host-memory buffers, head
        and tail through the pool) and wait for it; False (nothing done) where it goes
        through the pool alone. A region's first fill goes through the pool too (copying
        faults its new pages in faster than the driver does), and marks it for wrapping."""
        plan = self._plan(target, offset)
        if plan is None:
            return False
        _, lo, _, region = plan
        if isinstance(region, _Region) and not region.filled:
            region.filled = True
            return False
        allocation = buffer.allocation
        source = allocation.handle
        wrapped: list[Any] = []
        copies = _Copies(self, allocation, isinstance(plan[3], CachedMemory))
        done = lo
        try:
            with contextlib.suppress(_Refused):
                for handle, inner, position, size in self._wrapping(
                    self._spans(plan, keep, wrapped, fresh=True)
                ):
                    copies.add((source, offset + position, handle, inner, size))
                    done = position + size
            copies.flush()
            for a, b in ((0, lo), (done, len(target))):  # after the copies above, in order
                if b > a:
                    self._read_pooled(buffer, offset + a, target[a:b])
        finally:
            self._finish_wrapped(wrapped, copies.last, plan)
        return True

    def lease_result(self, size: int) -> tuple[np.ndarray, memoryview] | None:
        """A new uint8 array of ``size`` bytes over host pages the pool wraps (a collected
        result's region reused where one fits), and a writable view of them to read into;
        None below ``wrap_min`` or without wrapping. The region returns to the pool once
        the array (and every view of it) was collected."""
        if not (self.wrap_results and size >= self.wrap_min):
            return None
        self._reap()
        with self._lock:
            fitting = [r for r in self._regions if size <= r.size <= 2 * size + _HUGE]
            # The smallest that fits, the most recently used of those (its pages are warm).
            region = min(reversed(fitting), key=lambda r: r.size) if fitting else None
            if region is not None:
                self._regions.remove(region)
        if region is None:
            if self._middle(0, size) == (0, 0):
                return None  # no wrapping after all (the backend cannot)
            region = _Region(size, self._alignment, self._piece())
        view = region.view[:size]
        array = np.frombuffer(view, np.uint8)
        root: Any = array
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base  # what every array derived from this one keeps alive
        with self._lock:
            self._leased[id(region)] = region
        weakref.finalize(root, _returned, weakref.ref(self), region)
        return array, view

    def _reap(self) -> None:
        """Take back the regions whose arrays were collected; keep at most two (and
        ``RESULT_KEEP`` bytes) wrapped for reuse, destroy the rest."""
        doomed: list[_Region] = []
        with self._lock:
            while self._returned:
                region = self._returned.popleft()
                self._leased.pop(id(region), None)
                self._regions.append(region)
            while self._regions and (
                len(self._regions) > 2 or sum(r.size for r in self._regions) > RESULT_KEEP
            ):
                doomed.append(self._regions.pop(0))
        for region in doomed:
            region.destroy(self.backend)


_Plan = tuple[int, int, int, "_Region | CachedMemory | None"]
"""``(address, lo, hi, source)`` of a wrapped transfer (:meth:`StagingPool._plan`)."""


class _Copies:
    """The GPU copies of one wrapped transfer: submitted one by one as they come (so a
    piece's GPU copy overlaps wrapping the next), or ``batched`` into one submission at
    :meth:`flush` (a cache entry's pieces, already wrapped: one submission, one wait).
    ``last`` is the ticket of the last submission (0: none)."""

    __slots__ = ("_allocation", "_batched", "_pending", "_pool", "last")

    def __init__(self, pool: StagingPool, allocation: Any, batched: bool) -> None:
        self._pool = pool
        self._allocation = allocation
        self._batched = batched
        self._pending: list[tuple[Any, int, Any, int, int]] = []
        self.last = 0

    def add(self, copy: tuple[Any, int, Any, int, int]) -> None:
        """Queue ``copy`` (submitted now unless batched). Raises BackendError."""
        self._pending.append(copy)
        if not self._batched:
            self.flush()

    def flush(self) -> None:
        """Submit what is queued. Raises BackendError."""
        if self._pending:
            command = self._pool.backend.copy_command_buffer(self._pending)
            self._pending = []
            self.last = self._pool._submit(command, self._allocation)


class _Refused(Exception):
    """The backend refused to wrap some memory (internal: the rest goes through the pool)."""
