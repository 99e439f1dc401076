"""One-shot dispatch programs, session 21 (issue 10): templated dispatch programs encoded
from the device's recipe (hal/runtime/dispatch_programs.py), recording's fast path for a
fresh command buffer (``dispatch_facts``) and the chain link submitted without a hop
through the completion thread (``Queue._ordered``). Bytes compared with numpy on the shared
device; calls and plans compared with the general path's on the null backend and the
shared device."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import WAIT

import hal
from hal.backends.protocol import BackendError
from hal.core.batching import batch_transfers
from hal.core.lowering import lower
from hal.runtime.dispatch_programs import DispatchProgram, DispatchPrograms
from hal.runtime.encoder import compile_plan
from hal.runtime.programs import CheckedProgram
from hal.runtime.queue import Work

ONE_SHOT = hal.CommandBufferMode.ONE_SHOT


def _record(
    device: hal.Device, executable: hal.Executable, views: list[object], barriers: bool = True
) -> hal.CommandBuffer:
    cb = device.create_command_buffer(ONE_SHOT)
    cb.begin()
    for view in views:
        cb.dispatch(executable, "touch", (1, 1, 1), bindings=[view])
        if barriers:
            cb.execution_barrier()
    cb.end()
    return cb


def _submit(device: hal.Device, cb: hal.CommandBuffer) -> None:
    s = device.create_semaphore()
    device.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)


# -- templated dispatch programs ---------------------------------------------------------------


def test_dispatch_program_bytes(device: hal.Device) -> None:
    """N dispatch + barrier pairs over views (repeats included): each view's counter counts
    its dispatches, the program comes from the recipe, twice in a row (the recipe reused)."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    buffer = device.allocate_buffer(8 * 256)
    views: list[object] = [hal.BufferRef(buffer, 256 * i, 256) for i in range(8)]
    order = [views[i] for i in (0, 1, 2, 1, 7, 0, 0, 5, 3, 3)]
    expected = np.zeros(8, dtype=np.uint32)
    for round_ in range(2):
        cb = _record(device, noop, order)
        assert isinstance(cb.programs, DispatchPrograms)
        program = cb.prepare(None)
        assert isinstance(program, DispatchProgram)
        _submit(device, cb)
        for i in (0, 1, 2, 1, 7, 0, 0, 5, 3, 3):
            expected[i] += 1
        counters = buffer.to_numpy(np.uint32).reshape(8, 64)[:, 0]
        assert np.array_equal(counters, expected), round_


def _random_program(
    rng: random.Random, device: hal.Device, executables: list[hal.Executable], buffers: list[object]
) -> hal.CommandBuffer:
    cb = device.create_command_buffer(ONE_SHOT)
    cb.begin()
    for _ in range(rng.randint(1, 12)):
        buffer = rng.choice(buffers)
        offset = rng.choice((0, 256, 512, 4, 260))
        target: object = (
            buffer if rng.random() < 0.2 else hal.BufferRef(buffer, offset, rng.choice((4, 256)))
        )
        grid = (rng.randint(1, 3), 1, rng.choice((1, 2)))
        cb.dispatch(rng.choice(executables), "touch", grid, bindings=[target])
        if rng.random() < 0.6:
            cb.execution_barrier()
    cb.end()
    return cb


def test_recipe_calls_equal_compile_plan(shared_or_null: hal.Device) -> None:
    """For random programs (aliased, unaligned and overlapping bindings, two executables,
    barriers or none): the plan equals the general path's, the recipe's calls equal
    compile_plan's of that plan call for call, and the resources are the plan's."""
    rng = random.Random(21)
    executables = [
        shared_or_null.create_executable(hal.shader_path("noop.wgsl"), label=f"noop{i}")
        for i in range(2)
    ]
    buffers: list[object] = [shared_or_null.allocate_buffer(1024) for _ in range(3)]
    taken = 0
    for _ in range(150):
        cb = _random_program(rng, shared_or_null, executables, buffers)
        segments = list(cb.segments)
        general = batch_transfers(lower(segments, shared_or_null.caps), shared_or_null.caps)
        assert cb.plan == general
        program = cb.prepare(None)
        if isinstance(program, DispatchProgram):
            taken += 1
            compiled = compile_plan(general, shared_or_null.encoding)
            assert program.calls == compiled._steps
            assert frozenset(program.resources) == general.resources
            assert program.has_steps == bool(general.steps)
        _submit(shared_or_null, cb)
    assert taken >= 25  # the rest shadow a binding or stage parameters: not templated


def test_recipe_shared_by_programs_of_a_shape(null: hal.Device) -> None:
    """Two programs of one shape on other buffers share the device's recipe; their calls
    are compile_plan's of their own plans (bind groups of their own buffers)."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    a, b = null.allocate_buffer(512), null.allocate_buffer(512)
    first = _record(null, noop, [hal.BufferRef(a, 0, 256), hal.BufferRef(a, 256, 256)])
    second = _record(null, noop, [hal.BufferRef(b, 0, 256), hal.BufferRef(b, 256, 256)])
    p1, p2 = first.prepare(None), second.prepare(None)
    assert isinstance(p1, DispatchProgram) and isinstance(p2, DispatchProgram)
    assert p1._owner.template.key == p2._owner.template.key
    assert null.dispatch_recipes[p1._owner.template.key] is not None
    assert p1.calls != p2.calls and p1.calls == compile_plan(first.plan, null.encoding)._steps
    assert p2.calls == compile_plan(second.plan, null.encoding)._steps
    assert p1.resources == (a,) and p2.resources == (b,)


def test_recipe_reuses_the_latest_calls_only_for_the_same_buffers(device: hal.Device) -> None:
    """A program on the same buffers as the recipe's latest one reuses its calls; another
    buffer (even one allocated after a release, whatever its id) gets its own bind groups
    and the right bytes."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    a = device.allocate_buffer(256)
    first = _record(device, noop, [a]).prepare(None)
    again = _record(device, noop, [a]).prepare(None)
    assert isinstance(first, DispatchProgram) and isinstance(again, DispatchProgram)
    assert again.calls is first.calls
    a.release()
    for _ in range(3):
        b = device.allocate_buffer(256)
        cb = _record(device, noop, [b, b])
        program = cb.prepare(None)
        assert isinstance(program, DispatchProgram)
        assert program.calls is not first.calls
        compiled = compile_plan(cb.plan, device.encoding)
        assert program.calls == compiled._steps
        _submit(device, cb)
        assert b.to_numpy(np.uint32)[0] == 2
        b.release()


def test_recipe_on_a_pooled_handle_makes_new_bind_groups(device: hal.Device) -> None:
    """The free pool gives a released buffer's backend handle to the next allocation of its
    size: the recipe's latest calls (bound to the released buffer's forgotten bind groups)
    are not reused for it (reusing them encoded a destroyed bind group: wgpu-core aborted
    the process), and the new buffer counts its own dispatches."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    a = device.allocate_buffer(256)
    _submit(device, _record(device, noop, [a, a]))
    handle = a.allocation.handle
    a.release()
    device.wait_idle(WAIT)
    for _ in range(3):
        b = device.allocate_buffer(256)
        if b.allocation.handle is not handle:
            pytest.skip("the free pool is off (HAL_BUFFER_POOL_BYTES=0)")
        _submit(device, _record(device, noop, [b, b]))
        np.testing.assert_array_equal(b.to_numpy(np.uint32)[:2], [2, 0])
        b.release()
        device.wait_idle(WAIT)


def test_released_buffer_fails_and_queues_nothing(null: hal.Device) -> None:
    """A buffer released after end(): FailedPreconditionError, nothing signalled, the
    one-shot cb given back (still executable)."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    a = null.allocate_buffer(256)
    cb = _record(null, noop, [a])
    a.release()
    s = null.create_semaphore()
    with pytest.raises(hal.FailedPreconditionError, match=r"^queue_execute: .*released"):
        null.queue_execute(cb, signal=[(s, 1)])
    null.wait_idle(WAIT)
    assert s.query() == 0
    assert cb.state is hal.CommandBufferState.EXECUTABLE


def test_rejection_names_the_command_and_gives_the_cb_back(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend rejects the calls (not a loss): InvalidArgumentError naming command 0,
    nothing signalled; once the backend accepts, the same one-shot cb runs."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    a = null.allocate_buffer(256)
    cb = _record(null, noop, [a])
    backend = null.backend
    original = backend.encode

    def rejecting_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("validation: nope")

    monkeypatch.setattr(backend, "encode", rejecting_encode)
    s = null.create_semaphore()
    with pytest.raises(hal.InvalidArgumentError, match=r"wgpu rejected command 0 \(dispatch"):
        null.queue_execute(cb, signal=[(s, 1)])
    assert s.query() == 0
    monkeypatch.setattr(backend, "encode", original)
    null.queue_execute(cb, signal=[(s, 1)])
    s.wait(1, timeout=WAIT)


def test_loss_while_encoding_is_unavailable(
    null: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss while the program encodes: UnavailableError, the device lost."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    cb = _record(null, noop, [null.allocate_buffer(256)])

    def lost_encode(*args: object, **kwargs: object) -> object:
        raise BackendError("device lost: reset", lost=True)

    monkeypatch.setattr(null.backend, "encode", lost_encode)
    with pytest.raises(hal.UnavailableError, match="lost"):
        null.queue_execute(cb)
    with pytest.raises(hal.UnavailableError):
        null.create_command_buffer()


def test_profiled_program_and_dump_are_the_general_paths(null: hal.Device) -> None:
    """plan, stats, dump and the profiled program come from the general path."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    a = null.allocate_buffer(512)
    cb = _record(null, noop, [hal.BufferRef(a, 0, 256), hal.BufferRef(a, 256, 256)])
    program = cb.prepare(None)
    assert isinstance(program, DispatchProgram)
    assert isinstance(program.checked(), CheckedProgram)
    assert program.plan == program.checked().plan == cb.plan
    assert cb.stats is not None and cb.stats.dispatches == 2
    assert "dispatch noop:touch" in cb.dump()


# -- recording's fast path --------------------------------------------------------------------


def test_fast_recording_equals_the_general_segment(shared_or_null: hal.Device) -> None:
    """The first dispatch of a fresh cb records the segment the general path makes."""
    noop = shared_or_null.create_executable(hal.shader_path("noop.wgsl"))
    a = shared_or_null.allocate_buffer(1024)
    for target in (a, hal.BufferRef(a, 256, 256), hal.BufferRef(a, 4, None)):
        cb = shared_or_null.create_command_buffer(ONE_SHOT)
        cb.begin()
        cb.dispatch(noop, "touch", (2, 1, 1), bindings=[target])
        (fast,) = cb.segments
        general, any_slot = cb._dispatch_segment(
            "dispatch", noop, "touch", (), [target], (2, 1, 1), None
        )
        assert fast == general and not any_slot


def test_fast_recording_declines_to_the_general_errors(null: hal.Device) -> None:
    """What the fast path cannot take goes down the general path, which raises the typed
    error naming the argument; a rejected dispatch records nothing."""
    noop = null.create_executable(hal.shader_path("noop.wgsl"))
    a = null.allocate_buffer(256)
    no_storage = null.allocate_buffer(256, usage=hal.BufferUsage.TRANSFER)
    released = null.allocate_buffer(256)
    released.release()
    cases: list[tuple[object, type[Exception], str]] = [
        ([hal.BufferRef(a, 128, 256)], hal.OutOfRangeError, "bindings"),
        ([no_storage], hal.PermissionDeniedError, "bindings"),
        ([released], hal.FailedPreconditionError, "released"),
        ([a, a], hal.InvalidArgumentError, "2 bindings given"),
        (["nope"], hal.InvalidArgumentError, "bindings"),
    ]
    for bindings, error, text in cases:
        cb = null.create_command_buffer(ONE_SHOT)
        cb.begin()
        with pytest.raises(error, match=text):
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=bindings)  # type: ignore[arg-type]
        assert cb.segments == ()
    cb = null.create_command_buffer(ONE_SHOT)
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError, match=r"workgroup_count\.x"):
        cb.dispatch(noop, "touch", (1 << 20, 1, 1), bindings=[a])
    cb.dispatch(noop, "touch", (0, 1, 1), bindings=[a])
    assert cb.segments == ()


# -- the chain link ---------------------------------------------------------------------------


def test_chain_links_run_in_order(device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain of dependent submissions (each waits for the previous one's signal) is
    submitted without parking; the counter it increments counts every link."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    cb.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])
    cb.end()
    queue = device._queue
    decisions: list[bool] = []
    original = type(queue)._ordered

    def spy(self: object, work: Work) -> bool:
        result = original(self, work)  # type: ignore[arg-type]
        decisions.append(result)
        return result

    monkeypatch.setattr(type(queue), "_ordered", spy)
    # Long work first, so the links' waits are not yet reached when they are submitted.
    long = device.allocate_buffer(32 << 20)
    with device.record() as slow:
        for value in (3, 5, 7, 9):
            slow.fill_buffer(long, 0, 32 << 20, value, 1)
    device.queue_execute(slow)
    s = device.create_semaphore()
    device.queue_execute(cb, signal=[(s, 1)])  # the first link, behind the long work
    n = 40
    for i in range(1, n):
        device.queue_execute(cb, wait=[(s, i)], signal=[(s, i + 1)])
    s.wait(n, timeout=WAIT)
    assert counter.to_numpy(np.uint32)[0] == n
    # Links whose wait was not reached yet went straight to the queue.
    assert decisions and all(decisions)


def test_ordered_only_after_plain_work_of_this_queue(null: hal.Device) -> None:
    """A wait counts as ordered only where plain work submitted to this queue signals it:
    not a host-signalled semaphore, not work with host code at completion, not another
    device's queue."""
    queue = null._queue
    completion = queue.completion
    other = hal.create_device(implementation="null", backend="null")
    try:
        cases = [
            (completion, True, True),
            (completion, False, False),  # host code at completion (a read-back)
            (other._queue.completion, True, False),
        ]
        for owner, plain, expected in cases:
            s = null.create_semaphore()
            s.expect(1, owner, 1, plain)
            work = Work([], [], ((s, 1),), ())
            assert queue._ordered(work) is expected
            assert work.early is expected
        host = null.create_semaphore()  # nothing submitted signals it
        assert not queue._ordered(Work([], [], ((host, 1),), ()))
    finally:
        other.close()


def test_early_work_fails_with_its_waits_failure(null: hal.Device) -> None:
    """Work submitted before its wait was reached completes as a failure of that wait if
    the signalling work failed meanwhile (as parked work would have been dropped): the
    same error object down the chain."""
    wait_on = null.create_semaphore()
    signal = null.create_semaphore()
    work = Work([], [], ((wait_on, 1),), ((signal, 1),))
    work.early = True
    error = hal.UnavailableError("the signalling work failed")
    wait_on.fail(error)
    work.complete()
    assert signal.failure is error and work.failure is error
    ok = Work([], [], ((null.create_semaphore(), 0),), ((signal2 := null.create_semaphore(), 1),))
    ok.early = True
    ok.complete()
    assert signal2.query() == 1
