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
implementation released the buffer); :meth:`StagingPool.release` destroys the idle ones.

Safety: wgpu-native aborts the process when a submission uses a mapped buffer. A staging
buffer is unmapped before the command buffer that uses it is even encoded, is mapped again
only after that submission was made, and user buffers are never mapped at all: hal does not
request ``mappable-primary-buffers`` (see README, "Host transfers").

Exactness: the GPU copies whole words, so an unaligned transfer moves its aligned body through
staging and its 1-3 byte edges through an update command buffer, whose builtin kernels patch
only those bytes; no other byte of the target changes, even under concurrent GPU work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.backends.protocol import BackendError
from hal.errors import UnavailableError

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

CHUNK_SIZE = _env_int("HAL_STAGING_CHUNK", max(4 * _MIB, 2 * _MIB * COPY_THREADS))
"""Bytes per staging buffer and per pipelined chunk (``HAL_STAGING_CHUNK`` overrides): 2 MiB
per copy thread, at least 4 MiB. Measured on the H100 host (8 threads, 64 MiB): 16 MiB
chunks moved 15.5 GB/s up and 16.9 down, 8 MiB chunks 9.3 and 6.5 (smaller pieces per thread
cost more than they overlap); on lavapipe (1 thread) 2-4 MiB did best.
"""

HOST_CHUNK_SIZE = _env_int("HAL_HOST_CHUNK", max(8 * _MIB, CHUNK_SIZE))
"""Bytes per host-memory buffer and per pipelined chunk where the backend has host-memory
buffers (``HAL_HOST_CHUNK`` overrides)."""

HOST_MEMORY = os.environ.get("HAL_HOST_MEMORY", "1").strip() != "0"
"""Use host-memory buffers where the backend has them (``HAL_HOST_MEMORY=0``: never)."""

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _copy_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="hal-copy")
        return _executor


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
        self, backend: Backend, queue: Queue, profiler: ProfilerSlot, write_edges: EdgeWriter
    ) -> None:
        self.backend = backend
        self._queue = queue
        self._profiler = profiler
        self._write_edge_bytes = write_edges
        self._lock = threading.Lock()
        self._idle: dict[bool, list[Any]] = {True: [], False: []}
        #: True when the pool's buffers are host memory (:class:`_HostStaging`).
        self.host_memory = HOST_MEMORY and bool(getattr(backend, "host_memory_buffers", False))
        chunk = HOST_CHUNK_SIZE if self.host_memory else CHUNK_SIZE
        self.chunk_size = max(_MIN_BUFFER, chunk & ~7)
        self.depth = max(1, DEPTH)
        self._keep = 2 * self.depth  # idle buffers kept per direction

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
