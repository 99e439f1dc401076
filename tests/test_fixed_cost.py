"""The fixed cost of one submission, session 21 (issue 10): the native fast lane of
``queue_copy``/``queue_fill`` (hal/runtime/transfer_lane.py), one-shot command buffers of one
native fill or copy (hal/runtime/native_programs.py) and the one-point ``Semaphore.wait``.
Bytes compared with numpy on the shared device and on the null backend; the lane taken where
it should be and declined (to the general path's errors) where not."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.backends.protocol import BackendError
from hal.core.single_plans import native_steps, single_plan
from hal.runtime.native_programs import NativeProgram, NativePrograms
from hal.runtime.programs import CheckedProgram
from hal.runtime.transfer_lane import TransferLane


def _runs_no_kernels(device: hal.Device) -> bool:
    """The null backend runs native copies and clears but no kernel (builtin or user)."""
    return device.backend.implementation == "null"


def _count_lane(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record what every lane call returned."""
    taken: list[bool] = []
    for name in ("copy", "fill"):
        original = getattr(TransferLane, name)

        def spy(self: TransferLane, *args: object, _original: object = original) -> bool:
            result = _original(self, *args)  # type: ignore[operator]
            taken.append(result)
            return result

        monkeypatch.setattr(TransferLane, name, spy)
    return taken


def test_queue_copy_and_fill_bytes_through_the_lane(
    shared_or_null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aligned copies to another buffer and zero fills take the lane, a copy within one
    buffer where its plan is native (WebGPU has no such native copy: a kernel there); the
    bytes land in semaphore order."""
    taken = _count_lane(monkeypatch)
    data = np.arange(256, dtype=np.uint8)
    a = shared_or_null.buffer_from_numpy(data)
    b = shared_or_null.buffer_from_numpy(np.full(256, 7, np.uint8))
    s = shared_or_null.create_semaphore()
    shared_or_null.queue_copy(a, 16, b, 64, 128, signal=[(s, 1)])
    shared_or_null.queue_fill(b, 96, 32, 0, wait=[(s, 1)], signal=[(s, 2)])
    shared_or_null.queue_copy(a, 0, a, 128, 64, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=WAIT)
    expected_b = np.full(256, 7, np.uint8)
    expected_b[64:192] = data[16:144]
    expected_b[96:128] = 0
    expected_a = data.copy()
    expected_a[128:192] = data[0:64]
    assert np.array_equal(b.to_numpy(np.uint8), expected_b)
    if not _runs_no_kernels(shared_or_null):
        assert np.array_equal(a.to_numpy(np.uint8), expected_a)
    within = native_steps((a, 0, a, 128, 64), shared_or_null.caps) is not None
    assert taken == [True, True, within]


def test_lane_declines_what_needs_more_than_native_calls(
    shared_or_null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unaligned copies, patterned fills and views go the general path: same bytes."""
    taken = _count_lane(monkeypatch)
    data = np.arange(64, dtype=np.uint8)
    a = shared_or_null.buffer_from_numpy(data)
    b = shared_or_null.buffer_from_numpy(np.zeros(64, np.uint8))
    s = shared_or_null.create_semaphore()
    shared_or_null.queue_copy(a, 1, b, 3, 13, signal=[(s, 1)])
    shared_or_null.queue_fill(b, 32, 8, 0x01020304, wait=[(s, 1)], signal=[(s, 2)])
    view = hal.BufferView(b, 64, np.uint8)
    shared_or_null.queue_fill(view, 48, 4, 0, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=WAIT)
    expected = np.zeros(64, np.uint8)
    expected[3:16] = data[1:14]
    expected[32:40] = np.frombuffer(bytes([4, 3, 2, 1]) * 2, np.uint8)
    if not _runs_no_kernels(shared_or_null):
        assert np.array_equal(b.to_numpy(np.uint8), expected)
    # The copy's and the pattern fill's templates have a dispatch; the view is not a Buffer.
    steps_copy = native_steps((a, 1, b, 3, 13), shared_or_null.caps)
    steps_fill = native_steps((b, 32, 8, 0x01020304), shared_or_null.caps)
    assert taken[0] is (steps_copy is not None)
    assert taken[1] is (steps_fill is not None)
    assert taken[2] is False


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        ("copy_range", hal.OutOfRangeError, r"^queue_copy: "),
        ("copy_overlap", hal.InvalidArgumentError, r"^queue_copy: .*overlap"),
        ("fill_range", hal.OutOfRangeError, r"^queue_fill: "),
        ("fill_align", hal.InvalidArgumentError, r"^queue_fill: "),
        ("copy_released", hal.FailedPreconditionError, r"^queue_copy: .*released"),
        ("fill_permission", hal.PermissionDeniedError, r"^queue_fill: "),
    ],
)
def test_lane_declines_bad_calls_to_the_general_errors(
    null: hal.Device, call: str, error: type[Exception], message: str
) -> None:
    """A call the lane's checks refuse raises the general path's typed error and queues
    nothing: the signal never comes, the bytes stay."""
    a = null.buffer_from_numpy(np.arange(64, dtype=np.uint8))
    b = null.buffer_from_numpy(np.full(64, 9, np.uint8))
    dead = null.allocate_buffer(64)
    dead.release()
    readonly = null.allocate_buffer(64, usage=hal.BufferUsage.TRANSFER_SOURCE)
    s = null.create_semaphore()
    with pytest.raises(error, match=message):
        if call == "copy_range":
            null.queue_copy(a, 0, b, 32, 64, signal=[(s, 1)])
        elif call == "copy_overlap":
            null.queue_copy(a, 0, a, 16, 32, signal=[(s, 1)])
        elif call == "fill_range":
            null.queue_fill(b, 32, 64, 0, signal=[(s, 1)])
        elif call == "fill_align":
            null.queue_fill(b, 2, 4, 0, signal=[(s, 1)])
        elif call == "copy_released":
            null.queue_copy(dead, 0, b, 0, 16, signal=[(s, 1)])
        else:
            null.queue_fill(readonly, 0, 4, 0, signal=[(s, 1)])
    null.wait_idle(WAIT)
    assert s.query() == 0
    assert np.array_equal(a.to_numpy(np.uint8), np.arange(64, dtype=np.uint8))
    assert np.array_equal(b.to_numpy(np.uint8), np.full(64, 9, np.uint8))


def test_lane_loss_while_encoding_is_unavailable(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend reports a loss while the lane encodes: UnavailableError, the device marked
    lost, the buffers given back (a later release frees them), nothing signalled."""
    a = null.allocate_buffer(64)
    b = null.allocate_buffer(64)
    s = null.create_semaphore()
    backend = null.backend
    held = (a.allocation.in_flight, b.allocation.in_flight)  # new buffers' pending clears

    def lost_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("device lost: reset", lost=True)

    monkeypatch.setattr(backend, "encode", lost_encode)
    with pytest.raises(hal.UnavailableError, match="lost"):
        null.queue_copy(a, 0, b, 0, 16, signal=[(s, 1)])
    assert (a.allocation.in_flight, b.allocation.in_flight) == held
    assert s.value == 0
    with pytest.raises(hal.UnavailableError):
        null.queue_fill(a, 0, 4, 0)


def test_lane_rejection_not_a_loss_takes_the_general_path(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend rejection that is not a loss: the lane gives everything back and declines;
    the general path then names the command wgpu rejects (InvalidArgumentError)."""
    a = null.allocate_buffer(64)
    b = null.allocate_buffer(64)
    s = null.create_semaphore()
    held = (a.allocation.in_flight, b.allocation.in_flight)  # new buffers' pending clears

    def rejecting_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("validation: nope")

    monkeypatch.setattr(null.backend, "encode", rejecting_encode)
    with pytest.raises(hal.InvalidArgumentError, match=r"wgpu rejected command 0 \(copy"):
        null.queue_copy(a, 0, b, 0, 16, signal=[(s, 1)])
    assert (a.allocation.in_flight, b.allocation.in_flight) == held
    assert s.value == 0


def test_lane_declines_while_profiling(null: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """An active profile takes the general path (it times every command)."""
    taken = _count_lane(monkeypatch)
    a = null.buffer_from_numpy(np.arange(16, dtype=np.uint8))
    b = null.allocate_buffer(16)
    s = null.create_semaphore()
    try:
        with null.profile():
            null.queue_copy(a, 0, b, 0, 16, signal=[(s, 1)])
            s.wait(1, timeout=WAIT)
    except hal.UnimplementedError:
        pytest.skip("profiling needs timestamps the null backend has not")
    assert taken == [False]
    assert np.array_equal(b.to_numpy(np.uint8), np.arange(16, dtype=np.uint8))


# -- one-shot command buffers of one native fill or copy -------------------------------------


def _one(device: hal.Device, kind: str, a: hal.Buffer, b: hal.Buffer) -> hal.CommandBuffer:
    cb = device.create_command_buffer()
    cb.begin()
    if kind == "fill":
        cb.fill_buffer(b, 8, 16, 0)
    else:
        cb.copy_buffer(a, 4, b, 8, 16)
    cb.end()
    return cb


@pytest.mark.parametrize("kind", ["fill", "copy"])
def test_native_cb_bytes_plan_and_stats(shared_or_null: hal.Device, kind: str) -> None:
    """A one-shot cb of one native fill or copy is planned natively; its bytes land and its
    plan, stats and dump are the general path's."""
    data = np.arange(32, dtype=np.uint8)
    a = shared_or_null.buffer_from_numpy(data)
    b = shared_or_null.buffer_from_numpy(np.full(32, 5, np.uint8))
    cb = _one(shared_or_null, kind, a, b)
    record = (b, 8, 16, 0) if kind == "fill" else (a, 4, b, 8, 16)
    if native_steps(record, shared_or_null.caps) is None:
        pytest.skip("this device plans the command with more than native calls")
    assert isinstance(cb.programs, NativePrograms)
    s = shared_or_null.create_semaphore()
    shared_or_null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    expected = np.full(32, 5, np.uint8)
    expected[8:24] = 0 if kind == "fill" else data[4:20]
    assert np.array_equal(b.to_numpy(np.uint8), expected)
    assert cb.plan == single_plan(record, shared_or_null.caps)
    assert cb.stats is not None and cb.stats.native_copies + cb.stats.native_clears == 1
    assert "plan:" in cb.dump() and ("copy" in cb.dump() or "fill" in cb.dump())


def test_native_cb_reusable_runs_twice_and_released_buffer_fails(null: hal.Device) -> None:
    """A reusable native cb submits any number of times; once a buffer it uses is released,
    queue_execute raises FailedPreconditionError and queues nothing."""
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    cb = null.create_command_buffer(mode=hal.CommandBufferMode.DEFAULT)
    cb.begin()
    cb.copy_buffer(a, 0, b, 0, 32)
    cb.end()
    s = null.create_semaphore()
    null.queue_execute(cb, signal=[(s, 1)])
    null.queue_fill(b, 0, 32, 0, wait=[(s, 1)], signal=[(s, 2)])
    null.queue_execute(cb, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=WAIT)
    assert np.array_equal(b.to_numpy(np.uint8), np.arange(32, dtype=np.uint8))
    a.release()
    with pytest.raises(hal.FailedPreconditionError, match=r"^queue_execute: .*released"):
        null.queue_execute(cb, signal=[(s, 4)])
    null.wait_idle(WAIT)
    assert s.query() == 3


def test_native_cb_rejected_by_backend_names_the_command(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend rejects the native calls: InvalidArgumentError naming command 0, the
    one-shot cb given back (it can be submitted once the backend accepts)."""
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    cb = _one(null, "copy", a, b)
    program = cb.prepare(None)
    assert isinstance(program, NativeProgram)
    backend = null.backend
    original = backend.encode

    def rejecting_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("validation: nope")

    monkeypatch.setattr(backend, "encode", rejecting_encode)
    with pytest.raises(hal.InvalidArgumentError, match=r"wgpu rejected command 0 \(copy"):
        null.queue_execute(cb)
    monkeypatch.setattr(backend, "encode", original)
    s = null.create_semaphore()
    null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    assert np.array_equal(b.to_numpy(np.uint8)[8:24], np.arange(4, 20, dtype=np.uint8))


def test_native_program_profiled_is_the_general_programs(null: hal.Device) -> None:
    """encode_profiled and plan of a native program come from the general path's program."""
    a = null.allocate_buffer(32)
    b = null.allocate_buffer(32)
    program = _one(null, "copy", a, b).prepare(None)
    assert isinstance(program, NativeProgram)
    assert isinstance(program.checked(), CheckedProgram)
    assert program.plan.steps == program.checked().plan.steps
    assert program.resources == (b, a) and program.has_steps


# -- the one-point wait ----------------------------------------------------------------------


def test_wait_errors(null: hal.Device) -> None:
    """Semaphore.wait's own checks: the value's type and range, the timeout, the deadline
    (the converted timeout in the message) and a failure."""
    s = null.create_semaphore()
    with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait"):
        s.wait("1", timeout=1)  # type: ignore[arg-type]
    with pytest.raises(hal.OutOfRangeError, match=r"Semaphore\.wait"):
        s.wait(1 << 63, timeout=1)
    with pytest.raises(hal.InvalidArgumentError, match=r"Semaphore\.wait: timeout"):
        s.wait(1, timeout=-1)
    with pytest.raises(hal.DeadlineExceededError, match=r"within 0\.02 s"):
        s.wait(1, timeout=0.02)
    s.fail("broken")
    with pytest.raises(hal.AbortedError, match="broken"):
        s.wait(1, timeout=1)


def test_wait_woken_by_a_host_signal_and_by_work(null: hal.Device) -> None:
    """A waiter asleep on the shared condition wakes for a host signal from another thread,
    and a wait_idle waiter for completed work (both notified only while someone sleeps)."""
    s = null.create_semaphore()
    woke: list[float] = []

    def waiter() -> None:
        s.wait(1, timeout=WAIT)
        woke.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    s.signal(1)
    thread.join(WAIT)
    assert woke and not thread.is_alive()


def test_wait_idle_woken_by_the_tracker(null: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread asleep in a bounded wait_idle is woken when the tracker completes the work
    (completions notify only while such a thread sleeps)."""
    backend = null.backend
    original = backend.wait

    def slow_wait(ticket: int) -> None:
        time.sleep(0.1)
        original(ticket)

    monkeypatch.setattr(backend, "wait", slow_wait)
    a = null.allocate_buffer(64)
    t = null.create_semaphore()
    null.queue_fill(a, 0, 64, 0, signal=[(t, 1)])
    completion = null._queue.completion  # type: ignore[attr-defined]
    start = time.monotonic()
    assert completion.wait_idle(WAIT)
    assert time.monotonic() - start < WAIT / 2
    assert t.query() == 1
