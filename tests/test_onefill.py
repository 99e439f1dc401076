"""``queue_execute`` of one command buffer of one native fill or copy through the transfer
lane (hal/runtime/transfer_lane.py ``TransferLane.execute``, issue 10's one-fill round trip):
bytes compared with numpy on the shared device and the null backend, the lane taken where it
should be (the general submission never runs) and declined, with nothing changed, to the
general path's errors everywhere else."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.backends.protocol import BackendError
from hal.core.single_plans import native_steps
from hal.runtime.command_buffer import CommandBufferState
from hal.runtime.execution import Executor
from hal.runtime.native_programs import NativePrograms
from hal.runtime.transfer_lane import TransferLane


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record what every ``TransferLane.execute`` call returned."""
    taken: list[bool] = []
    original = TransferLane.execute

    def spy(self: TransferLane, *args: object) -> bool:
        result = original(self, *args)  # type: ignore[arg-type]
        taken.append(result)
        return result

    monkeypatch.setattr(TransferLane, "execute", spy)
    return taken


def _one(
    device: hal.Device,
    kind: str,
    a: hal.Buffer,
    b: hal.Buffer,
    mode: hal.CommandBufferMode = hal.CommandBufferMode.ONE_SHOT,
) -> hal.CommandBuffer:
    cb = device.create_command_buffer(mode)
    cb.begin()
    if kind == "fill":
        cb.fill_buffer(b, 8, 16, 0)
    else:
        cb.copy_buffer(a, 4, b, 8, 16)
    cb.end()
    return cb


@pytest.mark.parametrize("kind", ["fill", "copy"])
def test_one_command_cb_takes_the_lane(
    shared_or_null: hal.Device, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-shot cb of one native fill or copy is submitted by the lane, never by the
    executor's general submission; its bytes land in semaphore order."""
    data = np.arange(32, dtype=np.uint8)
    a = shared_or_null.buffer_from_numpy(data)
    b = shared_or_null.buffer_from_numpy(np.full(32, 5, np.uint8))
    record = (b, 8, 16, 0) if kind == "fill" else (a, 4, b, 8, 16)
    if native_steps(record, shared_or_null.caps) is None:
        pytest.skip("this device plans the command with more than native calls")
    taken = _spy(monkeypatch)

    def no_general(*args: object) -> None:
        raise AssertionError("the general submission ran")

    monkeypatch.setattr(Executor, "_submit", no_general)
    s = shared_or_null.create_semaphore()
    first = _one(shared_or_null, kind, a, b)
    assert isinstance(first.programs, NativePrograms)
    shared_or_null.queue_execute(first, signal=[(s, 1)])
    shared_or_null.queue_execute(_one(shared_or_null, kind, a, b), wait=[(s, 1)], signal=[(s, 2)])
    s.wait(2, timeout=WAIT)
    assert taken == [True, True]
    assert first.state is CommandBufferState.SUBMITTED
    expected = np.full(32, 5, np.uint8)
    expected[8:24] = 0 if kind == "fill" else data[4:20]
    assert np.array_equal(b.to_numpy(np.uint8), expected)


def test_reusable_cb_through_the_lane_runs_again(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reusable native cb goes through the lane every time and stays executable."""
    taken = _spy(monkeypatch)
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    cb = _one(null, "copy", a, b, hal.CommandBufferMode.DEFAULT)
    s = null.create_semaphore()
    null.queue_execute(cb, signal=[(s, 1)])
    null.queue_fill(b, 0, 32, 0, wait=[(s, 1)], signal=[(s, 2)])
    null.queue_execute(cb, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=WAIT)
    assert taken == [True, True]
    assert cb.state is CommandBufferState.EXECUTABLE
    expected = np.zeros(32, np.uint8)
    expected[8:24] = np.arange(4, 20, dtype=np.uint8)
    assert np.array_equal(b.to_numpy(np.uint8), expected)


def test_one_shot_resubmitted_raises_and_queues_nothing(null: hal.Device) -> None:
    """The lane claims as the general path does: a second submission of a ONE_SHOT cb is
    FailedPreconditionError with the general path's message, and signals nothing."""
    a = null.allocate_buffer(32)
    b = null.allocate_buffer(32)
    cb = _one(null, "fill", a, b)
    s = null.create_semaphore()
    null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    with pytest.raises(
        hal.FailedPreconditionError,
        match=r"^queue_execute: the ONE_SHOT command buffer was already submitted$",
    ):
        null.queue_execute(cb, signal=[(s, 2)])
    null.wait_idle(WAIT)
    assert s.query() == 1


def test_one_shot_claimed_by_one_thread_only(null: hal.Device) -> None:
    """Eight threads submit one ONE_SHOT cb at once: exactly one succeeds, the others get
    FailedPreconditionError, and the fill ran once (the semaphore reached 1, not more)."""
    b = null.buffer_from_numpy(np.full(32, 9, np.uint8))
    cb = _one(null, "fill", b, b)
    s = null.create_semaphore()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def submit() -> None:
        start.wait()
        try:
            null.queue_execute(cb, signal=[(s, 1)])
        except hal.FailedPreconditionError as error:
            errors.append(error)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    s.wait(1, timeout=WAIT)
    assert len(errors) == 7
    assert all("already submitted" in str(error) for error in errors)
    expected = np.full(32, 9, np.uint8)
    expected[8:24] = 0
    assert np.array_equal(b.to_numpy(np.uint8), expected)


def test_released_buffer_declines_to_the_general_error(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer released after ``end()``: the lane gives the claim back and declines; the
    general path raises FailedPreconditionError naming the release; the one-shot cb is
    left executable and nothing is signalled."""
    taken = _spy(monkeypatch)
    a = null.allocate_buffer(32)
    b = null.allocate_buffer(32)
    cb = _one(null, "copy", a, b)
    a.release()
    s = null.create_semaphore()
    with pytest.raises(hal.FailedPreconditionError, match=r"^queue_execute: .*was released"):
        null.queue_execute(cb, signal=[(s, 1)])
    assert taken == [False]
    assert cb.state is CommandBufferState.EXECUTABLE
    null.wait_idle(WAIT)
    assert s.query() == 0


def test_lane_declines_inline_with_waits_foreign_cb_and_tables(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline cb with waits, another device's cb and a binding table take the general
    path, which raises its own errors (or runs, for an empty table), nothing queued."""
    taken = _spy(monkeypatch)
    b = null.allocate_buffer(32)
    s = null.create_semaphore()
    inline = null.create_command_buffer(
        hal.CommandBufferMode.ONE_SHOT | hal.CommandBufferMode.ALLOW_INLINE_EXECUTION
    )
    inline.begin()
    inline.fill_buffer(b, 0, 16, 0)
    inline.end()
    with pytest.raises(
        hal.InvalidArgumentError,
        match=r"^queue_execute: an inline-execution command buffer cannot wait on semaphores$",
    ):
        null.queue_execute(inline, wait=[(s, 0)], signal=[(s, 1)])
    assert taken == [False]
    assert inline.state is CommandBufferState.EXECUTABLE
    other = hal.create_device(implementation="null", backend="null")
    try:
        foreign = _one(other, "fill", other.allocate_buffer(32), other.allocate_buffer(32))
        with pytest.raises(
            hal.InvalidArgumentError,
            match=r"^queue_execute: command_buffers\[0\] is not a command buffer of this device$",
        ):
            null.queue_execute(foreign, signal=[(s, 1)])
        assert foreign.state is CommandBufferState.EXECUTABLE
    finally:
        other.close()
    assert taken == [False, False]
    cb = _one(null, "fill", b, b)
    null.queue_execute(cb, signal=[(s, 1)], binding_table=[])
    s.wait(1, timeout=WAIT)
    assert taken == [False, False]  # a table never reaches the lane
    assert np.array_equal(b.to_numpy(np.uint8)[8:24], np.zeros(16, np.uint8))


def test_loss_while_encoding_is_unavailable_and_gives_the_cb_back(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend reports a loss while the lane encodes the cb: UnavailableError, the
    buffers given back, the one-shot cb unclaimed, nothing signalled, the device lost."""
    a = null.allocate_buffer(64)
    b = null.allocate_buffer(64)
    cb = _one(null, "copy", a, b)
    s = null.create_semaphore()
    held = (a.allocation.in_flight, b.allocation.in_flight)

    def lost_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("device lost: reset", lost=True)

    monkeypatch.setattr(null.backend, "encode", lost_encode)
    with pytest.raises(hal.UnavailableError, match="lost"):
        null.queue_execute(cb, signal=[(s, 1)])
    assert (a.allocation.in_flight, b.allocation.in_flight) == held
    assert cb.state is CommandBufferState.EXECUTABLE
    assert s.value == 0
    with pytest.raises(hal.UnavailableError):
        null.queue_fill(a, 0, 4, 0)


def test_rejection_not_a_loss_names_command_0(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend rejection that is not a loss: the lane declines with everything given
    back, the general path names command 0; the cb can be submitted once accepted."""
    taken = _spy(monkeypatch)
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    cb = _one(null, "copy", a, b)
    backend = null.backend
    original = backend.encode

    def rejecting_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("validation: nope")

    monkeypatch.setattr(backend, "encode", rejecting_encode)
    with pytest.raises(hal.InvalidArgumentError, match=r"wgpu rejected command 0 \(copy"):
        null.queue_execute(cb)
    assert taken == [False]
    assert cb.state is CommandBufferState.EXECUTABLE
    monkeypatch.setattr(backend, "encode", original)
    s = null.create_semaphore()
    null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)
    assert taken == [False, True]
    assert np.array_equal(b.to_numpy(np.uint8)[8:24], np.arange(4, 20, dtype=np.uint8))


def test_lane_declines_while_profiling(null: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """An active profile takes the general path (it times every command)."""
    taken = _spy(monkeypatch)
    a = null.buffer_from_numpy(np.arange(32, dtype=np.uint8))
    b = null.allocate_buffer(32)
    s = null.create_semaphore()
    try:
        with null.profile():
            null.queue_execute(_one(null, "copy", a, b), signal=[(s, 1)])
            s.wait(1, timeout=WAIT)
    except hal.UnimplementedError:
        pytest.skip("profiling needs timestamps the null backend has not")
    assert taken == [False]
    assert np.array_equal(b.to_numpy(np.uint8)[8:24], np.arange(4, 20, dtype=np.uint8))


def test_create_command_buffer_checks_unchanged(null: hal.Device) -> None:
    """The defaults' shortcut in CommandBuffer keeps every argument check and message."""
    with pytest.raises(hal.InvalidArgumentError, match=r"binding_capacity -1 is not a non-neg"):
        null.create_command_buffer(binding_capacity=-1)
    with pytest.raises(hal.InvalidArgumentError, match=r"binding_capacity True is not a non-neg"):
        null.create_command_buffer(binding_capacity=True)  # type: ignore[arg-type]
    with pytest.raises(hal.InvalidArgumentError, match=r"mode 'x' is not CommandBufferMode"):
        null.create_command_buffer(mode="x")  # type: ignore[arg-type]
    with pytest.raises(hal.InvalidArgumentError, match=r"categories must not be empty"):
        null.create_command_buffer(categories=0)  # type: ignore[arg-type]
    cb = null.create_command_buffer(
        int(hal.CommandBufferMode.ONE_SHOT), binding_capacity=np.int64(2)
    )  # type: ignore[arg-type]
    assert cb.mode is hal.CommandBufferMode.ONE_SHOT and cb.binding_capacity == 2
    assert type(cb.binding_capacity) is int
