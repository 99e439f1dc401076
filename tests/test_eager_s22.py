"""Session 22's eager paths: binding-table replay rebased per new table (hal/runtime/encoder.py
``Program.rebased``'s gather of per-step calls, one-entry and multi-entry groups, transfer
and indirect sites, more tables than the program cache holds, tables that change between
submissions in flight), and ``device.record()`` as a plain context manager. Bytes are
compared with numpy models on the shared device (lavapipe in CI).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal

KERNELS = Path(__file__).parent / "kernels"
KEY = 0x5AC3A53C
DEFAULT_MODE = hal.CommandBufferMode.DEFAULT
INDIRECT = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_INDIRECT_PARAMS


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each session device in turn: native immediates, then staged constants (the plan then
    has an aux CONSTANTS buffer that rebased programs share with their template)."""
    return request.getfixturevalue(request.param)


def xor_key(data: np.ndarray, key: int = KEY) -> np.ndarray:
    """``key`` XORed into each little-endian u32 word of ``data`` (see xor_words.wgsl)."""
    pattern = np.frombuffer(key.to_bytes(4, "little"), dtype=np.uint8)
    return data ^ np.resize(pattern, data.size)


def touch_cb(device: hal.Device, n: int) -> hal.CommandBuffer:
    """benchmarks/eager.py's table row: n x (noop ``touch`` on slot 0 at 256 * (i % 8) +
    barrier); each touch adds 1 to the u32 at the start of its range."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    cb = device.create_command_buffer(DEFAULT_MODE, binding_capacity=1)
    cb.begin()
    for i in range(n):
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[hal.SlotRef(0, 256 * (i % 8), 256)])
        cb.execution_barrier()
    cb.end()
    return cb


def touch_model(n: int, times: int, base: int = 0, size: int = 4096) -> np.ndarray:
    """The u32 words of a zeroed buffer after ``times`` submissions of ``touch_cb(n)`` with
    the table entry at byte ``base``."""
    words = np.zeros(size // 4, dtype=np.uint32)
    for i in range(n):
        words[(base + 256 * (i % 8)) // 4] += times
    return words


def test_new_table_every_submission_in_flight(device: hal.Device) -> None:
    """20 buffers (more than the 8 programs a command buffer keeps), each submitted three
    times round-robin with no wait between submissions (every one a new table for the
    program cache): each buffer's counters count exactly its own submissions."""
    cb = touch_cb(device, 100)
    buffers = [device.allocate_buffer(4096) for _ in range(20)]
    for buffer in buffers:
        device.queue_fill(buffer, 0, 4096, 0)
    done = device.create_semaphore()
    for _ in range(3):
        for buffer in buffers:
            device.queue_execute(cb, binding_table=[buffer])
    device.queue_barrier(signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    model = touch_model(100, 3)
    for buffer in buffers:
        np.testing.assert_array_equal(buffer.to_numpy(np.uint32), model)


def test_new_table_at_other_offsets_in_flight(device: hal.Device) -> None:
    """Entries that are BufferRefs at other (aligned) offsets of their own buffers share the
    template when their shape matches and are rebased by the offset shift; a table of another
    shape (an unaligned base) is lowered on its own. All submitted before any wait."""
    cb = touch_cb(device, 24)
    bases = [0, 256, 512, 256, 0, 1024, 4]
    buffers = [device.allocate_buffer(4096 + 1024) for _ in bases]
    for buffer in buffers:
        device.queue_fill(buffer, 0, buffer.byte_length, 0)
    done = device.create_semaphore()
    for buffer, base in zip(buffers, bases, strict=True):
        entry = buffer if base == 0 else hal.BufferRef(buffer, base, 2048)
        device.queue_execute(cb, binding_table=[entry])
    device.queue_barrier(signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    for buffer, base in zip(buffers, bases, strict=True):
        model = touch_model(24, 1, base, buffer.byte_length)
        np.testing.assert_array_equal(buffer.to_numpy(np.uint32), model)


def test_unevenly_spaced_group_sites(device: hal.Device) -> None:
    """Slot groups at unevenly spaced calls of a pass (a direct buffer's group between them,
    a repeated binding that sets no group, a slot group of two entries): the gather path of
    the rebase, for 12 tables in flight."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    direct = device.allocate_buffer(1024)
    device.queue_fill(direct, 0, 1024, 0)
    ex = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    cb = device.create_command_buffer(DEFAULT_MODE, binding_capacity=1)
    cb.begin()
    pattern = [("slot", 0), ("slot", 0), ("direct", 256), ("slot", 512), ("direct", 0)]
    pattern += [("slot", 256), ("xor", 0), ("slot", 512), ("slot", 512), ("direct", 256)]
    for kind, offset in pattern:
        if kind == "xor":  # a two-entry group of slot ranges: slot [1024, 1072) -> [2048, ...)
            bindings = [hal.SlotRef(0, 1024, 48), hal.SlotRef(0, 2048, 48)]
            cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=bindings)
        else:
            target = (
                hal.SlotRef(0, offset, 256)
                if kind == "slot"
                else hal.BufferRef(direct, offset, 256)
            )
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[target])
        cb.execution_barrier()
    cb.end()
    sources = [random_bytes(48, seed=300 + i) for i in range(12)]
    buffers = []
    for data in sources:
        buffer = device.allocate_buffer(4096)
        device.queue_fill(buffer, 0, 4096, 0)
        device.queue_update(data, 0, buffer, 1024, 48)
        buffers.append(buffer)
    done = device.create_semaphore()
    for buffer in buffers:
        device.queue_execute(cb, binding_table=[buffer])
    device.queue_barrier(signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    direct_model = np.zeros(256, dtype=np.uint32)
    slot_counts = np.zeros(1024, dtype=np.uint32)
    for kind, offset in pattern:
        if kind == "slot":
            slot_counts[offset // 4] += 1
        elif kind == "direct":
            direct_model[offset // 4] += len(buffers)
    np.testing.assert_array_equal(direct.to_numpy(np.uint32), direct_model)
    for data, buffer in zip(sources, buffers, strict=True):
        model = np.zeros(4096, dtype=np.uint8)
        model[1024:1072] = data
        model[2048:2096] = xor_key(data)
        words = model.view(np.uint32).copy()
        words += slot_counts
        np.testing.assert_array_equal(buffer.to_numpy(np.uint32), words)


def test_group_of_a_slot_and_a_direct_buffer(any_device: hal.Device) -> None:
    """A dispatch whose bind group has a slot entry beside a direct one (the multi-entry
    rebase path): xor_copy from slot 0 into a buffer the command buffer names directly, then
    a copy of that buffer into slot 1; 12 tables of new buffers submitted in flight, each
    checked after."""
    ex = any_device.create_executable(str(KERNELS / "xor_words.wgsl"))
    scratch = any_device.allocate_buffer(64)
    cb = any_device.create_command_buffer(DEFAULT_MODE, binding_capacity=2)
    cb.begin()
    cb.dispatch(
        ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[hal.SlotRef(0, 0, 48), scratch]
    )
    cb.execution_barrier()
    cb.copy_buffer(scratch, 0, hal.SlotRef(1), 16, 48)
    cb.end()
    sources = [random_bytes(64, seed=100 + i) for i in range(12)]
    pairs = []
    for data in sources:
        pairs.append((any_device.buffer_from_numpy(data), any_device.allocate_buffer(128)))
    done = any_device.create_semaphore()
    for src, dst in pairs:
        any_device.queue_fill(dst, 0, 128, 0)
        any_device.queue_execute(cb, binding_table=[src, dst])
    any_device.queue_barrier(signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    for data, (_, dst) in zip(sources, pairs, strict=True):
        model = np.zeros(128, dtype=np.uint8)
        model[16:64] = xor_key(data[:48])
        np.testing.assert_array_equal(dst.to_numpy(np.uint8), model)
    # The rebased programs are gone; the template (and its aux buffers' groups) still runs.
    gc.collect()
    src, dst = pairs[0]
    any_device.queue_fill(dst, 0, 128, 0)
    any_device.queue_execute(cb, binding_table=[src, dst], signal=[(done, 2)])
    done.wait(2, timeout=WAIT)
    model = np.zeros(128, dtype=np.uint8)
    model[16:64] = xor_key(sources[0][:48])
    np.testing.assert_array_equal(dst.to_numpy(np.uint8), model)


def test_transfer_and_indirect_sites_through_slots(device: hal.Device) -> None:
    """Native copy and clear and an indirect dispatch through slots, rebased for 10 tables
    submitted in flight: each table's buffers hold exactly their own results."""
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    cb = device.create_command_buffer(DEFAULT_MODE, binding_capacity=3)
    cb.begin()
    cb.copy_buffer(hal.SlotRef(0), 0, hal.SlotRef(1), 256, 64)
    cb.fill_buffer(hal.SlotRef(1), 0, 64, 0)
    cb.execution_barrier()
    cb.dispatch_indirect(noop, "touch", hal.SlotRef(2, 0, 12), bindings=[hal.SlotRef(1, 512, 256)])
    cb.end()
    counts = np.array([1, 1, 1], dtype=np.uint32)
    tables = []
    for i in range(10):
        source = device.buffer_from_numpy(random_bytes(128, seed=200 + i))
        target = device.buffer_from_numpy(np.full(1024, 0x77, dtype=np.uint8))
        params = device.buffer_from_numpy(counts, usage=INDIRECT)
        tables.append((source, target, params))
    done = device.create_semaphore()
    for table in tables:
        device.queue_execute(cb, binding_table=list(table))
    device.queue_barrier(signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    for i, (_, target, _) in enumerate(tables):
        model = np.full(1024, 0x77, dtype=np.uint8)
        model[256:320] = random_bytes(128, seed=200 + i)[:64]
        model[0:64] = 0
        words = model.view(np.uint32).copy()
        words[512 // 4] += 1
        np.testing.assert_array_equal(target.to_numpy(np.uint32), words)


def test_released_entry_in_a_new_table_changes_nothing(device: hal.Device) -> None:
    """A new table naming a released buffer raises FailedPreconditionError and queues
    nothing; the next table (new again) runs, and so does the first one again."""
    cb = touch_cb(device, 16)
    first, second = device.allocate_buffer(4096), device.allocate_buffer(4096)
    gone = device.allocate_buffer(4096)
    for buffer in (first, second):
        device.queue_fill(buffer, 0, 4096, 0)
    done = device.create_semaphore()
    device.queue_execute(cb, binding_table=[first], signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    gone.release()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, binding_table=[gone], signal=[(done, 2)])
    assert done.value == 1
    device.queue_execute(cb, binding_table=[second])
    device.queue_execute(cb, binding_table=[first], signal=[(done, 2)])
    done.wait(2, timeout=WAIT)
    np.testing.assert_array_equal(first.to_numpy(np.uint32), touch_model(16, 2))
    np.testing.assert_array_equal(second.to_numpy(np.uint32), touch_model(16, 1))


def test_cb_plan_follows_each_new_table(device: hal.Device) -> None:
    """``cb.plan`` of a rebased submission names that table's allocation (made on demand
    from the template's plan), not the template's."""
    cb = touch_cb(device, 8)
    buffers = [device.allocate_buffer(4096) for _ in range(3)]
    done = device.create_semaphore()
    for value, buffer in enumerate(buffers, 1):
        device.queue_execute(cb, binding_table=[buffer], signal=[(done, value)])
        done.wait(value, timeout=WAIT)
        plan = cb.plan
        assert plan is not None
        dispatches = [d for p in plan.passes for d in p.dispatches]
        named = {id(r.resource) for d in dispatches for _, _, r in d.bindings}
        assert named == {id(buffer.allocated_buffer)}


# -- device.record() ---------------------------------------------------------------------------


def test_record_ends_and_runs(device: hal.Device) -> None:
    """``with device.record() as cb:`` begins, and ends on a clean exit: the one-fill command
    buffer is executable and fills the bytes."""
    buffer = device.buffer_from_numpy(np.full(64, 0xEE, dtype=np.uint8))
    with device.record() as cb:
        assert cb.state is hal.CommandBufferState.RECORDING
        cb.fill_buffer(buffer, 8, 16, 0x01020304)
    assert cb.state is hal.CommandBufferState.EXECUTABLE
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    model = np.full(64, 0xEE, dtype=np.uint8)
    model[8:24] = np.resize(np.array([4, 3, 2, 1], dtype=np.uint8), 16)
    np.testing.assert_array_equal(buffer.to_numpy(np.uint8), model)


def test_record_leaves_the_cb_recording_when_the_block_raises(device: hal.Device) -> None:
    """An exception in the block propagates unchanged (KeyboardInterrupt too) and the
    command buffer is not ended."""
    buffer = device.allocate_buffer(64)
    for error in (ValueError("user"), KeyboardInterrupt()):
        with pytest.raises(type(error)) as caught, device.record() as cb:
            cb.fill_buffer(buffer, 0, 4, 0)
            raise error
        assert caught.value is error
        assert cb.state is hal.CommandBufferState.RECORDING


def test_record_raises_what_creating_beginning_and_ending_raise(null: hal.Device) -> None:
    """Bad arguments raise InvalidArgumentError on entering (the block does not run); an
    end() that fails raises from the with statement; a closed device raises
    UnavailableError on entering."""
    ran = []
    with (
        pytest.raises(hal.InvalidArgumentError, match="binding_capacity"),
        null.record(binding_capacity=-1),
    ):
        ran.append(1)
    inline_with_capacity = hal.CommandBufferMode.ONE_SHOT | (
        hal.CommandBufferMode.ALLOW_INLINE_EXECUTION
    )
    with (
        pytest.raises(hal.InvalidArgumentError, match="inline"),
        null.record(inline_with_capacity, binding_capacity=1),
    ):
        ran.append(2)
    assert ran == []
    ended_inside = pytest.raises(hal.FailedPreconditionError, match="end: the command buffer")
    with ended_inside, null.record() as cb:
        cb.end()  # ended inside: the with statement's end() fails
    null.close()
    with pytest.raises(hal.UnavailableError), null.record():
        ran.append(3)
    assert ran == []


def test_one_record_object_runs_one_block_at_a_time(null: hal.Device) -> None:
    """A device.record() object reused: one block after another each make their own
    command buffer; nested use raises FailedPreconditionError (it ended the inner cb twice
    and left the outer one recording) and the outer block still ends its own."""
    recording = null.record()
    with recording as first:
        pass
    with recording as second:
        pass
    assert first is not second
    assert first.state is second.state is hal.CommandBufferState.EXECUTABLE
    nested = pytest.raises(hal.FailedPreconditionError, match=r"^record: .*already running")
    with recording as outer, nested, recording:
        pass
    assert outer.state is hal.CommandBufferState.EXECUTABLE


def test_rebase_onto_equals_shape_then_rebase_for(null: hal.Device) -> None:
    """hal/core/rebase.py ``rebase_onto`` (the latest template's one-pass check) is
    ``rebase_for`` exactly when ``table_shape`` of the new table equals the template's, and
    None otherwise, over random tables: offsets, sizes, padded and unpadded allocations,
    shared allocations, allocations the command buffer names directly."""
    import random

    from hal.core.rebase import rebase_for, rebase_onto, table_shape

    class Root:
        def __init__(self, byte_length: int) -> None:
            self.byte_length = byte_length

    caps = null.caps
    rng = random.Random(22)
    limit = caps.max_buffer_size
    roots = [Root(rng.choice([16, 100, 4096, limit - 4, limit - 12, limit])) for _ in range(8)]
    matched = 0
    for _ in range(3000):
        count = rng.randint(1, 3)
        size = rng.choice([16, 48, 256])

        def table(count: int, size: int) -> list[tuple[Root, Root, int, int]]:
            chosen = [rng.choice(roots) for _ in range(count)]
            return [(r, r, rng.choice([0, 4, 256, 512, 260]), size) for r in chosen]

        old = table(count, size)
        direct = frozenset([id(roots[0])]) if rng.random() < 0.2 else frozenset()
        shape = table_shape(old, caps, direct)  # type: ignore[arg-type]
        if shape is None:
            continue
        new = table(count, rng.choice([size, size, 48]))
        got = rebase_onto(old, shape, new, caps, direct)  # type: ignore[arg-type]
        if table_shape(new, caps, direct) == shape:  # type: ignore[arg-type]
            matched += 1
            assert got == rebase_for(old, new)  # type: ignore[arg-type]
        else:
            assert got is None
    assert matched > 100
