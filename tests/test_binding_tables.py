"""Binding tables: command buffers recorded with ``hal.SlotRef`` and resolved at submission.

Covers slots in fill/update/copy, dispatch bindings and indirect parameters; tables made of
``Buffer`` and ``BufferRef`` entries (aligned and not); reusable (DEFAULT mode) command
buffers submitted again with other tables and data; ONE_SHOT resubmission; several command
buffers in one ``queue_execute``; and the errors of API.md. Results are compared byte for
byte with numpy models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT, random_bytes, submit_and_wait

import hal

KERNELS = Path(__file__).parent / "kernels"
INDIRECT = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_INDIRECT_PARAMS
KEY = 0x5AC3A53C
DEFAULT_MODE = hal.CommandBufferMode.DEFAULT


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each session device in turn: native immediates, then the staged-constants fallback."""
    return request.getfixturevalue(request.param)


def executable(device: hal.Device, name: str) -> hal.Executable:
    """The executable of ``tests/kernels/<name>``."""
    return device.create_executable(str(KERNELS / name))


def xor_key(data: np.ndarray, key: int = KEY) -> np.ndarray:
    """``key`` XORed into each little-endian u32 word of ``data`` (see xor_words.wgsl)."""
    pattern = np.frombuffer(key.to_bytes(4, "little"), dtype=np.uint8)
    return data ^ np.resize(pattern, data.size)


def upload(device: hal.Device, data: np.ndarray, **kwargs: object) -> hal.Buffer:
    """A new buffer holding ``data``'s bytes."""
    return device.buffer_from_numpy(data, **kwargs)  # type: ignore[arg-type]


def read(buffer: hal.Buffer, dtype: type = np.uint8) -> np.ndarray:
    """The whole buffer as a flat array."""
    return buffer.to_numpy(dtype)


def execute(
    device: hal.Device,
    cbs: hal.CommandBuffer | list[hal.CommandBuffer],
    table: list[hal.Buffer | hal.BufferRef] | None,
) -> None:
    """Submit ``cbs`` with ``table`` and wait (bounded) for completion."""
    done = device.create_semaphore()
    device.queue_execute(cbs, signal=[(done, 1)], binding_table=table)
    done.wait(1, timeout=WAIT)


# -- transfers through slots -------------------------------------------------------------------


def record_transfers(device: hal.Device, mode: hal.CommandBufferMode) -> hal.CommandBuffer:
    """fill slot 0 [4, 24) with 0xAB; update slot 1 at +8 with 13 bytes; barrier; copy slot
    0 [0, 32) to slot 2 at +3."""
    cb = device.create_command_buffer(mode=mode, binding_capacity=3)
    cb.begin()
    cb.fill_buffer(hal.SlotRef(0), 4, 20, 0xAB, 1)
    cb.update_buffer(np.arange(1, 14, dtype=np.uint8), 0, hal.SlotRef(1, 8), 0, 13)
    cb.execution_barrier()
    cb.copy_buffer(hal.SlotRef(0), 0, hal.SlotRef(2), 3, 32)
    cb.end()
    return cb


def transfers_model(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, a_off: int, b_off: int, c_off: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected bytes of the three allocations after ``record_transfers`` with table entries
    at allocation offsets ``a_off``, ``b_off``, ``c_off``."""
    a, b, c = a.copy(), b.copy(), c.copy()
    a[a_off + 4 : a_off + 24] = 0xAB
    b[b_off + 8 : b_off + 21] = np.arange(1, 14)
    c[c_off + 3 : c_off + 35] = a[a_off : a_off + 32]
    return a, b, c


@pytest.mark.parametrize(
    ("offsets", "as_subspans"),
    [
        pytest.param((0, 0, 0), False, id="whole-buffers"),
        pytest.param((32, 64, 96), False, id="aligned-refs"),
        pytest.param((5, 3, 1), False, id="unaligned-refs"),
        pytest.param((5, 3, 1), True, id="unaligned-subspans"),
    ],
)
def test_fill_update_copy_through_slots(
    device: hal.Device, offsets: tuple[int, int, int], as_subspans: bool
) -> None:
    """Slots resolve to the table entries (Buffer, subspan, or BufferRef whose offset is
    added to the SlotRef's) and every byte outside the written ranges stays as it was."""
    init = [random_bytes(160, seed=s) for s in (1, 2, 3)]
    bufs = [upload(device, x) for x in init]
    table: list[hal.Buffer | hal.BufferRef] = []
    for buf, off in zip(bufs, offsets, strict=True):
        if as_subspans:
            table.append(buf.subspan(off, 150 - off))
        else:
            table.append(buf if off == 0 else hal.BufferRef(buf, off))
    cb = record_transfers(device, hal.CommandBufferMode.ONE_SHOT)
    assert cb.plan is None  # lowered per binding table, at submission
    execute(device, cb, table)
    for buf, want in zip(bufs, transfers_model(*init, *offsets), strict=True):
        np.testing.assert_array_equal(read(buf), want)


def test_slot_length_limits_the_range(device: hal.Device) -> None:
    """``SlotRef(slot, offset, length)`` with ``length=None`` arguments runs to the end of the
    slot range, not of the table entry."""
    buf = upload(device, random_bytes(64, seed=4))
    before = read(buf).copy()
    cb = device.create_command_buffer(binding_capacity=1)
    cb.begin()
    cb.fill_buffer(hal.SlotRef(0, 8, 12), 4, None, 0x77, 1)
    cb.end()
    execute(device, cb, [hal.BufferRef(buf, 2)])
    before[2 + 8 + 4 : 2 + 8 + 12] = 0x77
    np.testing.assert_array_equal(read(buf), before)


# -- dispatches through slots ------------------------------------------------------------------


def test_dispatch_bindings_through_slots(any_device: hal.Device) -> None:
    """Dispatch bindings given as SlotRefs, with an unaligned BufferRef table entry."""
    src_bytes, dst_bytes = random_bytes(256, seed=5), random_bytes(256, seed=6)
    src, dst = upload(any_device, src_bytes), upload(any_device, dst_bytes)
    cb = any_device.create_command_buffer(binding_capacity=2)
    cb.begin()
    cb.dispatch(
        executable(any_device, "xor_words.wgsl"),
        "xor_copy",
        (1, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0), hal.SlotRef(1, 32, 64)],
    )
    cb.end()
    execute(any_device, cb, [hal.BufferRef(src, 3, 64), hal.BufferRef(dst, 32)])
    expected = dst_bytes.copy()
    expected[64:128] = xor_key(src_bytes[3:67])
    np.testing.assert_array_equal(read(dst), expected)
    np.testing.assert_array_equal(read(src), src_bytes)
    assert cb.stats is not None and cb.stats.shadowed_bindings > 0


def test_dispatch_indirect_through_a_slot(any_device: hal.Device) -> None:
    """Indirect parameters in a slot (table entry at offset 12, slot offset 4), written by an
    update through the same slot."""
    params = any_device.allocate_buffer(64, usage=INDIRECT)
    counter = any_device.allocate_buffer(4)
    seen = any_device.allocate_buffer(64 * 4)
    cb = any_device.create_command_buffer(binding_capacity=3)
    cb.begin()
    cb.update_buffer(np.array([2, 3, 2], dtype=np.uint32), 0, hal.SlotRef(2, 4), 0, 12)
    cb.execution_barrier()
    cb.dispatch_indirect(
        executable(any_device, "count_workgroups.wgsl"),
        "count",
        hal.SlotRef(2, 4, 12),
        bindings=[hal.SlotRef(0), hal.SlotRef(1)],
    )
    cb.end()
    execute(any_device, cb, [counter, seen, hal.BufferRef(params, 12, 32)])
    assert int(read(counter, np.uint32)[0]) == 12
    expected = np.zeros(64, dtype=np.uint32)
    expected[:12] = np.arange(1, 13)
    np.testing.assert_array_equal(read(seen, np.uint32), expected)
    np.testing.assert_array_equal(read(params, np.uint32)[4:7], [2, 3, 2])


def test_two_slots_naming_one_buffer(any_device: hal.Device) -> None:
    """Two slots whose entries are disjoint ranges of one buffer, bound read-only and
    read_write in one dispatch: resolved through the table, the HAL must still make it
    work."""
    initial = random_bytes(192, seed=7)
    buf = upload(any_device, initial)
    cb = any_device.create_command_buffer(binding_capacity=2)
    cb.begin()
    cb.dispatch(
        executable(any_device, "xor_words.wgsl"),
        "xor_copy",
        (1, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0), hal.SlotRef(1)],
    )
    cb.end()
    execute(any_device, cb, [hal.BufferRef(buf, 0, 64), hal.BufferRef(buf, 96, 64)])
    expected = initial.copy()
    expected[96:160] = xor_key(initial[:64])
    np.testing.assert_array_equal(read(buf), expected)


def test_indirect_slot_entry_at_unaligned_offset(device: hal.Device) -> None:
    """Indirect parameters whose table entry starts at an odd offset (so the resolved offset
    is not a multiple of 4): the HAL either runs the right number of workgroups or refuses
    with InvalidArgumentError — it never passes the bad offset to wgpu."""
    params = device.allocate_buffer(64, usage=INDIRECT)
    device.transfer_h2d(np.array([2, 2, 1], dtype=np.uint32), params, 7)
    counter = device.allocate_buffer(4)
    seen = device.allocate_buffer(16 * 4)
    cb = device.create_command_buffer(binding_capacity=1)
    cb.begin()
    cb.dispatch_indirect(
        executable(device, "count_workgroups.wgsl"),
        "count",
        hal.SlotRef(0, 4, 12),
        bindings=[counter, seen],
    )
    cb.end()
    try:
        execute(device, cb, [hal.BufferRef(params, 3)])
    except hal.InvalidArgumentError:
        np.testing.assert_array_equal(read(counter, np.uint32), [0])
        return
    np.testing.assert_array_equal(read(counter, np.uint32), [4])
    np.testing.assert_array_equal(read(seen, np.uint32)[:5], [1, 2, 3, 4, 0])


# -- reusable command buffers ------------------------------------------------------------------


def test_reusable_command_buffer_with_different_tables_and_data(any_device: hal.Device) -> None:
    """One DEFAULT-mode command buffer submitted eleven times with different tables (Buffers,
    aligned and unaligned BufferRefs) and different source data."""
    ex = executable(any_device, "xor_words.wgsl")
    cb = any_device.create_command_buffer(mode=DEFAULT_MODE, binding_capacity=2)
    cb.begin()
    cb.dispatch(
        ex,
        "xor_copy",
        (1, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0, 0, 48), hal.SlotRef(1, 0, 48)],
    )
    cb.end()
    src = any_device.allocate_buffer(128)
    dsts = [any_device.allocate_buffer(128) for _ in range(3)]
    runs = [  # (source offset, target index, target offset, seed): more tables than it caches
        (0, 0, 0, 10),
        (64, 1, 32, 11),
        (0, 2, 0, 12),
        (0, 0, 64, 13),
        (4, 1, 32, 14),
        (32, 2, 64, 15),
        (0, 1, 0, 16),
        (7, 0, 32, 17),
        (64, 2, 0, 18),
        (0, 0, 0, 19),
        (64, 1, 32, 20),
    ]
    models = [np.zeros(128, dtype=np.uint8) for _ in dsts]
    for src_off, t, dst_off, seed in runs:
        data = random_bytes(128, seed=seed)
        any_device.transfer_h2d(data, src)
        table: list[hal.Buffer | hal.BufferRef] = [
            src if src_off == 0 else hal.BufferRef(src, src_off),
            dsts[t] if dst_off == 0 else hal.BufferRef(dsts[t], dst_off),
        ]
        execute(any_device, cb, table)
        models[t][dst_off : dst_off + 48] = xor_key(data[src_off : src_off + 48])
        for dst, model in zip(dsts, models, strict=True):
            np.testing.assert_array_equal(read(dst), model)


@pytest.mark.parametrize("slots", [False, True], ids=["direct", "slots"])
def test_default_mode_resubmission_gives_the_same_result(device: hal.Device, slots: bool) -> None:
    """A DEFAULT-mode command buffer (fill, update, dispatch) submitted three times leaves the
    same bytes each time."""
    ex = executable(device, "xor_words.wgsl")
    src_bytes = random_bytes(96, seed=20)
    src, dst = upload(device, src_bytes), device.allocate_buffer(96)
    capacity = 2 if slots else 0
    s = hal.SlotRef(0) if slots else src
    d = hal.SlotRef(1) if slots else dst
    patch = np.array([9, 8, 7, 6, 5], dtype=np.uint8)
    cb = device.create_command_buffer(mode=DEFAULT_MODE, binding_capacity=capacity)
    cb.begin()
    cb.fill_buffer(d, 0, 96, 0xEE, 1)
    cb.execution_barrier()
    cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[s, d])
    cb.execution_barrier()
    cb.update_buffer(patch, 0, d, 41, 5)
    cb.end()
    patch[:] = 0  # captured at record time
    expected = xor_key(src_bytes)
    expected[41:46] = [9, 8, 7, 6, 5]
    table = [src, dst] if slots else None
    for _ in range(3):
        device.transfer_h2d(random_bytes(96, seed=99), dst)  # scribble between submissions
        execute(device, cb, table)
        np.testing.assert_array_equal(read(dst), expected)


def test_default_mode_resubmission_runs_every_time(device: hal.Device) -> None:
    """Each submission of a reusable command buffer really executes: accumulating y += x
    three times gives 3x."""
    ex = device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
    x = np.arange(64, dtype=np.float32) - 10
    bx, by = upload(device, x), device.allocate_buffer(64 * 4)
    cb = device.create_command_buffer(mode=DEFAULT_MODE)
    cb.begin()
    cb.dispatch(ex, "accumulate", (1, 1, 1), constants=[64, 0.0, 0.0], bindings=[bx, by])
    cb.end()
    for i in range(1, 4):
        execute(device, cb, None)
        np.testing.assert_array_equal(read(by, np.float32), i * x)


# -- submission errors -------------------------------------------------------------------------


def test_table_too_small_raises_at_queue_execute(device: hal.Device) -> None:
    """A table with fewer entries than the slots used raises OutOfRangeError, changes
    nothing, and leaves the ONE_SHOT command buffer submittable."""
    init = [random_bytes(160, seed=s) for s in (1, 2, 3)]
    bufs = [upload(device, x) for x in init]
    cb = record_transfers(device, hal.CommandBufferMode.ONE_SHOT)
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=bufs[:2])
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=None)
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=[])
    device.wait_idle(timeout=WAIT)
    for buf, x in zip(bufs, init, strict=True):
        np.testing.assert_array_equal(read(buf), x)
    execute(device, cb, list(bufs))
    for buf, want in zip(bufs, transfers_model(*init, 0, 0, 0), strict=True):
        np.testing.assert_array_equal(read(buf), want)


def test_slot_range_past_the_table_entry_raises(device: hal.Device) -> None:
    """A SlotRef range that does not fit its table entry raises OutOfRangeError at
    queue_execute; a large enough entry then works."""
    small, big = device.allocate_buffer(32), device.allocate_buffer(64)
    cb = device.create_command_buffer(mode=DEFAULT_MODE, binding_capacity=1)
    cb.begin()
    cb.fill_buffer(hal.SlotRef(0, 16), 0, 24, 0x01020304, 4)
    cb.end()
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=[small])
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute(cb, binding_table=[hal.BufferRef(big, 30)])
    execute(device, cb, [big])
    expected = np.zeros(64, dtype=np.uint8)
    expected[16:40] = np.resize(np.array([4, 3, 2, 1], dtype=np.uint8), 24)
    np.testing.assert_array_equal(read(big), expected)
    np.testing.assert_array_equal(read(small), np.zeros(32, dtype=np.uint8))


def test_slot_at_or_beyond_capacity_raises_at_record(device: hal.Device) -> None:
    """Every command that takes a target/source refuses ``slot >= binding_capacity``."""
    ex = executable(device, "xor_words.wgsl")
    counting = executable(device, "count_workgroups.wgsl")
    buf = device.allocate_buffer(64, usage=INDIRECT)
    cb = device.create_command_buffer(binding_capacity=2)
    cb.begin()
    bad = hal.SlotRef(2)
    with pytest.raises(hal.OutOfRangeError):
        cb.fill_buffer(bad, 0, 4, 0, 4)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(b"abcd", 0, bad, 0, 4)
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(bad, 0, buf, 0, 4)
    with pytest.raises(hal.OutOfRangeError):
        cb.copy_buffer(buf, 0, hal.SlotRef(7), 0, 4)
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[buf, bad])
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch_indirect(counting, "count", bad, bindings=[buf, buf])
    cb.end()
    assert cb.segments == ()
    no_table = device.create_command_buffer()
    no_table.begin()
    with pytest.raises(hal.OutOfRangeError):
        no_table.fill_buffer(hal.SlotRef(0), 0, 4, 0, 4)


def test_bad_table_entries(device: hal.Device) -> None:
    """A table entry that is not a Buffer/BufferRef, a released buffer, or a buffer without
    the usage a slot needs is refused at queue_execute."""
    cb = device.create_command_buffer(mode=DEFAULT_MODE, binding_capacity=1)
    cb.begin()
    cb.fill_buffer(hal.SlotRef(0), 0, 8, 0x11, 1)
    cb.end()
    with pytest.raises(hal.InvalidArgumentError):
        device.queue_execute(cb, binding_table=[hal.SlotRef(0)])  # type: ignore[list-item]
    released = device.allocate_buffer(16)
    released.release()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, binding_table=[released])
    read_only = device.allocate_buffer(16, usage=hal.BufferUsage.TRANSFER_SOURCE)
    with pytest.raises(hal.PermissionDeniedError):
        device.queue_execute(cb, binding_table=[read_only])
    np.testing.assert_array_equal(read(read_only), np.zeros(16, dtype=np.uint8))
    ok = device.allocate_buffer(16)
    execute(device, cb, [ok])
    np.testing.assert_array_equal(read(ok)[:9], [0x11] * 8 + [0])


@pytest.mark.parametrize("slots", [False, True], ids=["direct", "slots"])
def test_one_shot_resubmission_raises(device: hal.Device, slots: bool) -> None:
    """A ONE_SHOT command buffer runs once; submitting it again (or listing it twice) raises
    FailedPreconditionError and does not run it again."""
    ex = device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
    x = np.arange(64, dtype=np.float32)
    bx, by = upload(device, x), device.allocate_buffer(64 * 4)
    table = [bx, by] if slots else None
    cb = device.create_command_buffer(binding_capacity=2 if slots else 0)
    cb.begin()
    bindings = [hal.SlotRef(0), hal.SlotRef(1)] if slots else [bx, by]
    cb.dispatch(ex, "accumulate", (1, 1, 1), constants=[64, 0.0, 0.0], bindings=bindings)
    cb.end()
    execute(device, cb, table)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, binding_table=table)
    twice = device.create_command_buffer(binding_capacity=2 if slots else 0)
    twice.begin()
    twice.dispatch(ex, "accumulate", (1, 1, 1), constants=[64, 0.0, 0.0], bindings=bindings)
    twice.end()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute([twice, twice], binding_table=table)
    device.wait_idle(timeout=WAIT)
    np.testing.assert_array_equal(read(by, np.float32), x)


def test_unended_command_buffer_cannot_be_submitted(device: hal.Device) -> None:
    """Submitting a command buffer that was not ended raises FailedPreconditionError."""
    cb = device.create_command_buffer(binding_capacity=1)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, binding_table=[device.allocate_buffer(4)])
    cb.begin()
    cb.fill_buffer(hal.SlotRef(0), 0, 4, 1, 4)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(cb, binding_table=[device.allocate_buffer(4)])


# -- several command buffers ------------------------------------------------------------------


def test_several_command_buffers_in_one_execute(device: hal.Device) -> None:
    """Command buffers of one queue_execute run in order, as if recorded as one (IREE):
    fill A → copy A to B → XOR B in place. A mix of direct and slot command buffers share
    the one binding table."""
    a, b = device.allocate_buffer(64), upload(device, random_bytes(64, seed=30))
    first = device.create_command_buffer()
    first.begin()
    first.fill_buffer(a, 0, 64, 0x0BADF00D, 4)
    first.end()
    second = device.create_command_buffer(binding_capacity=2)
    second.begin()
    second.copy_buffer(hal.SlotRef(0), 0, hal.SlotRef(1), 0, 61)
    second.end()
    third = device.create_command_buffer(mode=DEFAULT_MODE, binding_capacity=2)
    third.begin()
    third.dispatch(
        executable(device, "xor_inplace.wgsl"),
        "xor_inplace",
        (1, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(1)],
    )
    third.end()
    before_b = read(b).copy()
    execute(device, [first, second, third], [a, b])
    filled = np.resize(np.frombuffer((0x0BADF00D).to_bytes(4, "little"), np.uint8), 64)
    np.testing.assert_array_equal(read(a), filled)
    model = before_b.copy()
    model[:61] = filled[:61]
    np.testing.assert_array_equal(read(b), xor_key(model))


def test_several_command_buffers_one_with_a_too_small_table(device: hal.Device) -> None:
    """If any command buffer of a queue_execute cannot resolve the table, nothing runs."""
    a = device.allocate_buffer(32)
    first = device.create_command_buffer()
    first.begin()
    first.fill_buffer(a, 0, 32, 0x55, 1)
    first.end()
    second = device.create_command_buffer(binding_capacity=2)
    second.begin()
    second.fill_buffer(hal.SlotRef(1), 0, 4, 0x66, 1)
    second.end()
    with pytest.raises(hal.OutOfRangeError):
        device.queue_execute([first, second], binding_table=[a])
    device.wait_idle(timeout=WAIT)
    np.testing.assert_array_equal(read(a), np.zeros(32, dtype=np.uint8))
    submit_and_wait(device, first)
    np.testing.assert_array_equal(read(a), np.full(32, 0x55, dtype=np.uint8))
