"""Peer copies: ``queue_copy`` from a buffer of another device of the process.

Two WebGPU devices share no memory, so the bytes go through the host: chunks are read back
from the source device into its staging buffers and written from there into the target
device's (one host memcpy per chunk, mapped range to mapped range), pipelined as host
transfers are (hal/runtime/staging.py): while the host copies chunk k into the target's
staging buffer and the target's GPU copies it on, the source's GPU already copies the next
chunks out.

Ordering. The operation is two queue operations of the target device around a job on a
worker thread: ``launch`` waits for the caller's ``wait`` list and hands the job over; the
job submits the readback to the *source* device's queue, behind everything that queue has
submitted by then — so after the work whose completion signalled the semaphores waited on,
and after any other work the source device had submitted on that buffer — and the target's
copies to the target's queue; ``finish`` waits for the job (a private gate semaphore) and
signals ``signal`` once the target's GPU finished the copies. A failed wait, a failing job
(the source device closed or lost meanwhile) or the target device closing fails ``signal``.

The job runs on a worker thread because it blocks (maps, the source's earlier work): the
thread that reaches the waits — a caller, or a device's completion thread — is never held.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.core.checks import check_buffer_usage, make_ref
from hal.core.refs import BufferLike, BufferRef
from hal.enums import BufferUsage, MemoryAccess, MemoryType
from hal.errors import InvalidArgumentError
from hal.runtime.loss import backend_failure
from hal.runtime.semaphore import Semaphore

if TYPE_CHECKING:
    from hal.core.segments import Ref
    from hal.runtime.device import Device
    from hal.runtime.semaphore import WaitList
    from hal.runtime.transfers import HostTransfers

__all__ = ["is_peer_source", "queue_peer_copy"]

_WORKERS = 4
"""Worker threads running peer copy jobs (a job never waits for another one)."""

_WHAT = "queue_copy"
_log = logging.getLogger("hal")


def is_peer_source(source: Any, device: Device) -> bool:
    """Whether ``source`` (a queue_copy argument) is a Buffer or BufferRef of a device other
    than ``device``: a peer copy. Anything else takes the ordinary path and its checks."""
    buffer = source.buffer if isinstance(source, BufferRef) else source
    return isinstance(buffer, BufferLike) and buffer.device is not device


def queue_peer_copy(
    host: HostTransfers,
    source: Any,
    source_offset: int,
    target: Any,
    target_offset: int,
    length: int | None,
    wait: WaitList,
    signal: WaitList,
) -> None:
    """Queue a copy of ``length`` bytes (None: the rest of the source range) from ``source``
    (a Buffer or BufferRef of another device) into ``target`` of ``host``'s device, at any
    alignment (see the module docstring for the ordering). Checks everything first: raises
    UnavailableError (the source's device is closed or lost), OutOfRangeError,
    PermissionDeniedError (usage, access or a memory type the GPU cannot copy from),
    InvalidArgumentError, FailedPreconditionError (a released buffer)."""
    device = host.device
    peer = (source.buffer if isinstance(source, BufferRef) else source).device
    peer.check_open(f"{_WHAT}: source's device")
    src = _checked_ref("source", source, source_offset, length, peer)
    dst = _checked_ref("target", target, target_offset, src.length, device)
    assert src.buffer is not None and dst.buffer is not None and src.length is not None
    if src.length == 0:
        host.queue.operation(wait, signal)
        return
    gate = Semaphore(0)
    allocations = [src.buffer.allocation, dst.buffer.allocation]
    job = _job(src.buffer.allocation.host, src, host, dst, gate)

    def launch() -> list[Any]:
        # Held for the job itself: ``finish`` releases its own hold if the target device
        # closes meanwhile, and a release() of either buffer must wait for the job.
        for allocation in allocations:
            allocation.acquire()
        _submit_job(job)
        return []

    # ``finish`` first: it holds both allocations from now on, whenever the job runs.
    host.queue.operation([(gate, 1)], signal, allocations)
    # ``(gate, 0)``: completing ``launch`` changes nothing; a failed wait aborts it, which
    # fails the gate and so ``finish``, with the wait's failure as the cause.
    host.queue.operation(wait, [(gate, 0)], prepare=launch)


def _checked_ref(argument: str, buffer: Any, offset: Any, length: Any, device: Device) -> Ref:
    """``buffer`` + ``offset``/``length`` as a checked direct reference of ``device``, with
    the usage, access and memory type a copy needs (of a subspan and of its allocation)."""
    if not isinstance(buffer, (BufferLike, BufferRef)):
        raise InvalidArgumentError(
            f"{_WHAT}: {argument} of a peer copy must be a Buffer or BufferRef, "
            f"not {type(buffer).__name__}"
        )
    ref = make_ref(_WHAT, argument, buffer, offset, length, 0, device)
    if argument == "source":
        usage, access = BufferUsage.TRANSFER_SOURCE, MemoryAccess.READ
    else:
        usage, access = BufferUsage.TRANSFER_TARGET, MemoryAccess.WRITE
    root = ref.buffer
    assert root is not None  # a direct reference
    view = buffer.buffer if isinstance(buffer, BufferRef) else buffer
    check_buffer_usage(_WHAT, argument, root, usage, access, MemoryType.DEVICE_VISIBLE)
    if view is not root:  # a subspan carries its own permissions
        check_buffer_usage(_WHAT, argument, view, usage, access, MemoryType.DEVICE_VISIBLE)
    return ref


def _job(
    source_host: HostTransfers,
    src: Ref,
    target_host: HostTransfers,
    dst: Ref,
    gate: Semaphore,
) -> Callable[[], None]:
    """The copy itself, run on a worker once the waits are reached: advances ``gate`` once
    the target's copies are submitted, fails it with whatever stopped the copy."""
    assert src.buffer is not None and dst.buffer is not None and src.length is not None
    source, target = src.buffer, dst.buffer
    source_offset, target_offset, length = src.offset, dst.offset, src.length

    def sink(chunk: memoryview, position: int) -> None:
        try:
            target_host.staging.write(target, target_offset + position, chunk)
        except BackendError as error:  # the target's: its loss is the target's
            raise backend_failure(target_host.queue, _WHAT, error) from None

    def run() -> None:
        try:
            source_host.device.check_open(f"{_WHAT}: source's device")
            target_host.device.check_open(_WHAT)
            source_host.staging.read(source, source_offset, length, sink)
        except BackendError as error:
            gate.fail(backend_failure(source_host.queue, _WHAT, error))
        except BaseException as error:  # a worker: whatever stopped the copy fails it
            gate.fail(error)
        else:
            gate.advance(1)
        finally:
            source.allocation.retire()
            target.allocation.retire()

    return run


_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_started: list[threading.Thread] = []
_start_lock = threading.Lock()


def _submit_job(job: Callable[[], None]) -> None:
    """Run ``job`` on one of the worker threads (started on first use; daemons, so a job
    stuck on a lost device never keeps the process alive)."""
    with _start_lock:
        while len(_started) < _WORKERS:
            worker = threading.Thread(target=_work, name="hal-peer-copy", daemon=True)
            worker.start()
            _started.append(worker)
    _jobs.put(job)


def _work() -> None:
    while True:
        job = _jobs.get()
        try:
            job()
        except BaseException:  # pragma: no cover - a job fails its gate itself; keep serving
            _log.exception("a peer copy job raised")
