"""Host access to buffers: zero-initialisation, map_*, transfers, numpy views, release,
subspans.

Every check compares bytes with a numpy model of the buffer. Host access needs a MAPPING
usage; ``transfer_h2d``/``transfer_d2h``/``to_numpy`` go through the queue and are ordered
after previously submitted work.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import WAIT, random_bytes, submit_and_wait

import hal

MAPPABLE = hal.BufferUsage.DEFAULT | hal.BufferUsage.MAPPING


def mappable(device: hal.Device, size: int, **kwargs: object) -> hal.Buffer:
    """A new buffer with DEFAULT | MAPPING usage."""
    return device.allocate_buffer(size, usage=MAPPABLE, **kwargs)  # type: ignore[arg-type]


def contents(buffer: hal.Buffer) -> np.ndarray:
    """The whole buffer's bytes, read through the queue."""
    return np.frombuffer(buffer.device.transfer_d2h(buffer), dtype=np.uint8)


# -- zero initialisation ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 5, 64, 1000, 1 << 20])
def test_new_buffers_read_as_zeros(device: hal.Device, size: int) -> None:
    """A fresh buffer of any size reads as zeros through every read path."""
    buf = mappable(device, size)
    assert buf.byte_length == size
    assert buf.byte_offset == 0
    assert buf.allocated_buffer is buf
    zeros = np.zeros(size, dtype=np.uint8)
    np.testing.assert_array_equal(buf.to_numpy(), zeros)
    assert buf.map_read() == bytes(size)
    assert device.transfer_d2h(buf) == bytes(size)
    with buf.map_range(hal.MemoryAccess.READ) as view:
        assert len(view) == size
        assert bytes(view) == bytes(size)


def test_recycled_memory_reads_as_zeros(device: hal.Device) -> None:
    """Buffers allocated after others were filled and released still read as zeros."""
    for i in range(5):
        buf = device.allocate_buffer(4096 + i)
        with device.record() as cb:
            cb.fill_buffer(buf, 0, 4096, 0xFF, 1)
        submit_and_wait(device, cb)
        buf.release()
        fresh = device.allocate_buffer(4096 + i)
        np.testing.assert_array_equal(fresh.to_numpy(), np.zeros(4096 + i, np.uint8))


def test_zero_size_buffer_operations(device: hal.Device) -> None:
    """A zero-byte buffer supports empty reads, writes and views."""
    buf = mappable(device, 0)
    buf.map_zero()
    buf.map_write(0, b"")
    assert buf.map_read(0, 0) == b""
    device.transfer_h2d(b"", buf)
    assert device.transfer_d2h(buf, 0, 0) == b""
    assert buf.to_numpy(np.float32).shape == (0,)
    assert buf.subspan(0).byte_length == 0
    with pytest.raises(hal.OutOfRangeError):
        buf.map_read(0, 1)


# -- map_* ------------------------------------------------------------------------------------


def test_map_operations_match_a_numpy_model(device: hal.Device) -> None:
    """A random sequence of map_write / map_fill / map_zero at unaligned offsets and lengths
    (and map_read of random ranges) behaves exactly like the same edits on a bytearray."""
    size = 203
    buf = mappable(device, size)
    model = np.zeros(size, dtype=np.uint8)
    rng = np.random.default_rng(11)
    for step in range(60):
        kind = step % 4
        offset = int(rng.integers(0, size))
        length = int(rng.integers(0, size - offset + 1))
        if kind == 0:
            data = rng.integers(0, 256, length, dtype=np.uint8)
            buf.map_write(offset, data.tobytes())
            model[offset : offset + length] = data
        elif kind == 1:
            n = int(rng.choice([1, 2, 4]))
            offset -= offset % n
            length -= length % n
            pattern = int(rng.integers(0, 1 << (8 * n)))
            buf.map_fill(offset, length, pattern, n)
            model[offset : offset + length] = np.resize(
                np.frombuffer(pattern.to_bytes(n, "little"), np.uint8), length
            )
        elif kind == 2:
            buf.map_zero(offset, length)
            model[offset : offset + length] = 0
        else:
            assert buf.map_read(offset, length) == model[offset : offset + length].tobytes()
    assert buf.map_read() == model.tobytes()
    np.testing.assert_array_equal(buf.to_numpy(), model)


def test_map_write_accepts_numpy_and_memoryview(device: hal.Device) -> None:
    """map_write takes any bytes-like object, including numpy arrays of other dtypes."""
    buf = mappable(device, 32)
    buf.map_write(1, np.array([0x04030201, 0x08070605], dtype=np.uint32))
    buf.map_write(13, memoryview(b"\xaa\xbb\xcc"))
    buf.map_write(20, bytearray(b"\x01"))
    model = np.zeros(32, dtype=np.uint8)
    model[1:9] = np.arange(1, 9)
    model[13:16] = [0xAA, 0xBB, 0xCC]
    model[20] = 1
    np.testing.assert_array_equal(contents(buf), model)


def test_map_fill_patterns_and_alignment(device: hal.Device) -> None:
    """map_fill writes the pattern little-endian from ``offset``; offsets and lengths must be
    multiples of the pattern length."""
    buf = mappable(device, 24)
    buf.map_fill(0, 24, 0xEE, 1)
    buf.map_fill(2, 6, 0xBEEF, 2)
    buf.map_fill(12, 8, 0x11223344, 4)
    buf.map_fill(20, None, b"\x5a\xa5", 2)
    model = np.full(24, 0xEE, dtype=np.uint8)
    model[2:8] = [0xEF, 0xBE] * 3
    model[12:20] = [0x44, 0x33, 0x22, 0x11] * 2
    model[20:24] = [0x5A, 0xA5] * 2
    assert buf.map_read() == model.tobytes()
    with pytest.raises(hal.InvalidArgumentError):
        buf.map_fill(1, 4, 0xBEEF, 2)
    with pytest.raises(hal.InvalidArgumentError):
        buf.map_fill(4, 6, 0x11223344, 4)
    with pytest.raises(hal.InvalidArgumentError):
        buf.map_fill(0, 3, b"abc")
    assert buf.map_read() == model.tobytes()


def test_map_range_read_and_write(device: hal.Device) -> None:
    """map_range yields a read-only view for READ and a writable one for WRITE; written bytes
    land when the block exits; unaligned offsets and lengths work."""
    initial = random_bytes(100, seed=12)
    buf = mappable(device, 100)
    buf.map_write(0, initial.tobytes())
    with buf.map_range(hal.MemoryAccess.READ, 7, 13) as view:
        assert bytes(view) == initial[7:20].tobytes()
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
    with buf.map_range(hal.MemoryAccess.READ | hal.MemoryAccess.WRITE, 3, 9) as view:
        assert bytes(view) == initial[3:12].tobytes()
        view[0] = 0xFE
        view[8] = 0xFD
    with buf.map_range(hal.MemoryAccess.WRITE, 50) as view:
        assert len(view) == 50
        view[:] = bytes(range(50))
    with buf.map_range(hal.MemoryAccess.DISCARD_WRITE, 97, 2) as view:
        view[:] = b"\x01\x02"
    model = initial.copy()
    model[3], model[11] = 0xFE, 0xFD
    model[50:100] = np.arange(50)
    model[97:99] = [1, 2]
    np.testing.assert_array_equal(contents(buf), model)


def test_map_needs_mapping_usage(device: hal.Device) -> None:
    """Without a MAPPING usage every map_* raises PermissionDeniedError and changes nothing."""
    buf = device.allocate_buffer(16)
    device.transfer_h2d(b"\x01" * 16, buf)
    with pytest.raises(hal.PermissionDeniedError), buf.map_range(hal.MemoryAccess.READ):
        pass
    with pytest.raises(hal.PermissionDeniedError), buf.map_range(hal.MemoryAccess.WRITE, 0, 4):
        pass
    with pytest.raises(hal.PermissionDeniedError):
        buf.map_read()
    with pytest.raises(hal.PermissionDeniedError):
        buf.map_write(0, b"\x00")
    with pytest.raises(hal.PermissionDeniedError):
        buf.map_zero()
    with pytest.raises(hal.PermissionDeniedError):
        buf.map_fill(0, 4, 0, 4)
    assert issubclass(hal.PermissionDeniedError, PermissionError)
    assert device.transfer_d2h(buf) == b"\x01" * 16


def test_map_respects_allowed_access(device: hal.Device) -> None:
    """A buffer allocated with READ access cannot be mapped for writing."""
    buf = mappable(device, 16, access=hal.MemoryAccess.READ)
    assert buf.map_read() == bytes(16)
    with pytest.raises(hal.PermissionDeniedError):
        buf.map_write(0, b"x")
    with pytest.raises(hal.PermissionDeniedError), buf.map_range(hal.MemoryAccess.WRITE):
        pass
    assert buf.map_read() == bytes(16)


def test_map_out_of_range(device: hal.Device) -> None:
    """Ranges past the end raise OutOfRangeError."""
    buf = mappable(device, 10)
    with pytest.raises(hal.OutOfRangeError):
        buf.map_read(8, 3)
    with pytest.raises(hal.OutOfRangeError):
        buf.map_read(11)
    with pytest.raises(hal.OutOfRangeError):
        buf.map_write(7, b"abcd")
    with pytest.raises(hal.OutOfRangeError):
        buf.map_zero(5, 6)
    with pytest.raises(hal.OutOfRangeError), buf.map_range(hal.MemoryAccess.READ, 4, 7):
        pass
    assert buf.map_read() == bytes(10)


def test_map_on_a_subspan(device: hal.Device) -> None:
    """Offsets of map_* on a subspan are relative to the subspan."""
    root = mappable(device, 64)
    sub = root.subspan(9, 20)
    sub.map_fill(0, 20, 0x33, 1)
    sub.map_write(5, b"\x01\x02\x03")
    assert sub.map_read(4, 5) == b"\x33\x01\x02\x03\x33"
    model = np.zeros(64, dtype=np.uint8)
    model[9:29] = 0x33
    model[14:17] = [1, 2, 3]
    assert root.map_read() == model.tobytes()


# -- transfers --------------------------------------------------------------------------------


def test_transfer_h2d_d2h_unaligned(device: hal.Device) -> None:
    """transfer_h2d/transfer_d2h at odd offsets and lengths touch exactly the given bytes."""
    initial = random_bytes(77, seed=13)
    buf = device.buffer_from_numpy(initial)
    model = initial.copy()
    for offset, length, seed in [(1, 1, 1), (3, 6, 2), (10, 31, 3), (75, 2, 4), (0, 5, 5)]:
        data = random_bytes(length, seed=100 + seed)
        device.transfer_h2d(data, buf, offset)
        model[offset : offset + length] = data
    for offset, length in [(0, 77), (1, 1), (3, 6), (5, 0), (62, 15), (76, 1)]:
        got = device.transfer_d2h(buf, offset, length)
        assert got == model[offset : offset + length].tobytes()
    assert device.transfer_d2h(buf, 70) == model[70:].tobytes()


def test_transfers_through_buffer_refs_and_subspans(device: hal.Device) -> None:
    """Targets and sources may be subspans or BufferRefs; offsets add up."""
    buf = device.allocate_buffer(64)
    device.transfer_h2d(b"abc", hal.BufferRef(buf, 5, 10), 2)
    device.transfer_h2d(b"XY", buf.subspan(30).subspan(3), 1)
    model = bytearray(64)
    model[7:10] = b"abc"
    model[34:36] = b"XY"
    assert device.transfer_d2h(buf) == bytes(model)
    assert device.transfer_d2h(hal.BufferRef(buf, 6, 5), 1, 3) == b"abc"
    assert device.transfer_d2h(buf.subspan(33, 4)) == b"\0XY\0"
    with pytest.raises(hal.OutOfRangeError):
        device.transfer_h2d(b"abcd", hal.BufferRef(buf, 5, 10), 7)
    with pytest.raises(hal.OutOfRangeError):
        device.transfer_d2h(buf.subspan(60), 2, 3)


def test_transfers_need_transfer_usage(device: hal.Device) -> None:
    """transfer_h2d needs TRANSFER_TARGET; transfer_d2h needs TRANSFER_SOURCE."""
    no_target = device.allocate_buffer(8, usage=hal.BufferUsage.TRANSFER_SOURCE)
    no_source = device.allocate_buffer(8, usage=hal.BufferUsage.TRANSFER_TARGET)
    with pytest.raises(hal.PermissionDeniedError):
        device.transfer_h2d(b"1234", no_target)
    with pytest.raises(hal.PermissionDeniedError):
        device.transfer_d2h(no_source)
    assert device.transfer_d2h(no_target) == bytes(8)


def test_transfers_are_ordered_after_submitted_work(device: hal.Device) -> None:
    """Without waiting: a submitted fill, then transfer_h2d into part of the range, then
    transfer_d2h — the write lands after the fill and the read sees both."""
    size = 1 << 20
    buf = device.allocate_buffer(size)
    done = device.create_semaphore()
    with device.record() as cb:
        cb.fill_buffer(buf, 0, size, 0xA5, 1)
        cb.execution_barrier()
        cb.fill_buffer(buf, 1, size - 2, 0x5A, 1)
    device.queue_execute(cb, signal=[(done, 1)])
    device.transfer_h2d(b"\x01\x02\x03", buf, 4097)
    got = np.frombuffer(device.transfer_d2h(buf), dtype=np.uint8)
    model = np.full(size, 0x5A, dtype=np.uint8)
    model[0] = model[-1] = 0xA5
    model[4097:4100] = [1, 2, 3]
    np.testing.assert_array_equal(got, model)
    done.wait(1, timeout=WAIT)


def test_to_numpy_after_submitted_dispatch_without_waiting(device: hal.Device) -> None:
    """to_numpy right after queue_execute (no wait) sees the dispatch's results."""
    ex = device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
    x = np.arange(4096, dtype=np.float32)
    src, dst = device.buffer_from_numpy(x), device.allocate_buffer(x.nbytes)
    with device.record() as cb:
        cb.dispatch(ex, "square", (64, 1, 1), constants=[4096, 0.0, 0.0], bindings=[src, dst])
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)])
    np.testing.assert_array_equal(dst.to_numpy(np.float32), x * x)
    done.wait(1, timeout=WAIT)


# -- numpy ------------------------------------------------------------------------------------


def test_to_numpy_dtype_shape_offset(device: hal.Device) -> None:
    """to_numpy reinterprets the bytes from ``offset`` as ``dtype`` with ``shape``, and
    returns a copy."""
    data = np.arange(24, dtype=np.int32) * -3
    buf = device.buffer_from_numpy(data)
    np.testing.assert_array_equal(buf.to_numpy(np.int32), data)
    np.testing.assert_array_equal(buf.to_numpy(np.int32, (4, 6)), data.reshape(4, 6))
    np.testing.assert_array_equal(buf.to_numpy(np.int32, (2, 3), offset=8), data[2:8].reshape(2, 3))
    np.testing.assert_array_equal(buf.to_numpy(np.int32, offset=80), data[20:])
    np.testing.assert_array_equal(buf.to_numpy(np.int16, 5, offset=2), data.view(np.int16)[1:6])
    np.testing.assert_array_equal(buf.to_numpy(), data.view(np.uint8))
    unaligned = buf.to_numpy(np.uint32, (3,), offset=1)
    np.testing.assert_array_equal(unaligned, np.frombuffer(data.tobytes()[1:13], np.uint32))
    copy = buf.to_numpy(np.int32)
    copy[:] = 0
    np.testing.assert_array_equal(buf.to_numpy(np.int32), data)
    with pytest.raises(hal.HalError):
        buf.to_numpy(np.int32, (25,))


def test_buffer_from_numpy_round_trips(device: hal.Device) -> None:
    """buffer_from_numpy copies C-order bytes of any array (also non-contiguous ones) and
    the buffer does not alias the array."""
    cases = [
        np.linspace(-1, 1, 35, dtype=np.float32).reshape(5, 7),
        np.arange(7, dtype=np.uint8),
        np.arange(60, dtype=np.int64).reshape(6, 10)[:, ::3],
        np.array([1.5], dtype=np.float64),
    ]
    for array in cases:
        buf = device.buffer_from_numpy(array)
        expected = np.ascontiguousarray(array).copy()
        assert buf.byte_length == expected.nbytes
        array[...] = 0
        got = buf.to_numpy(expected.dtype, expected.shape)
        np.testing.assert_array_equal(got, expected)


def test_buffer_views(device: hal.Device) -> None:
    """BufferView couples a buffer with shape and dtype; buffer_view_from_numpy round trips;
    a view larger than its buffer is refused."""
    array = (np.arange(30, dtype=np.float32) / 7).reshape(3, 10)
    view = device.buffer_view_from_numpy(array)
    assert view.shape == (3, 10)
    assert view.dtype == np.float32
    assert view.byte_length == array.nbytes
    np.testing.assert_array_equal(view.to_numpy(), array)
    raw = device.buffer_from_numpy(np.arange(12, dtype=np.uint16))
    as_u32 = hal.BufferView(raw, (2, 3), np.uint32)
    np.testing.assert_array_equal(
        as_u32.to_numpy(), np.arange(12, dtype=np.uint16).view(np.uint32).reshape(2, 3)
    )
    partial = hal.BufferView(raw, 4, np.uint16)
    np.testing.assert_array_equal(partial.to_numpy(), [0, 1, 2, 3])
    with pytest.raises(hal.OutOfRangeError):
        hal.BufferView(raw, (7,), np.uint32)


# -- release ----------------------------------------------------------------------------------


def test_released_buffer_cannot_be_used(device: hal.Device) -> None:
    """After release(): recording a command on the buffer, submitting a command buffer that
    references it, host access and transfers all raise FailedPreconditionError."""
    buf = mappable(device, 64)
    other = device.allocate_buffer(64)
    with device.record() as recorded:
        recorded.fill_buffer(buf, 0, 64, 0x12, 1)
    buf.release()
    buf.release()  # idempotent
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(buf, 0, 4, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        cb.copy_buffer(buf, 0, other, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        cb.update_buffer(b"abcd", 0, hal.BufferRef(buf, 4), 0, 4)
    cb.end()
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_execute(recorded)
    with pytest.raises(hal.FailedPreconditionError):
        buf.map_read()
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_d2h(buf)
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_h2d(b"x", buf)
    with pytest.raises(hal.FailedPreconditionError):
        buf.to_numpy()
    with pytest.raises(hal.FailedPreconditionError):
        buf.subspan(0, 4)
    np.testing.assert_array_equal(other.to_numpy(), np.zeros(64, dtype=np.uint8))


def test_releasing_the_allocation_releases_its_subspans(device: hal.Device) -> None:
    """Subspans share the allocation: releasing the root makes them unusable too, while
    releasing a subspan leaves the root usable."""
    root = device.allocate_buffer(64)
    sub = root.subspan(8, 16)
    other_sub = root.subspan(32, 8)
    other_sub.release()
    device.transfer_h2d(b"ok", root, 40)
    assert device.transfer_d2h(root, 40, 2) == b"ok"
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_d2h(other_sub)
    root.release()
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_d2h(sub)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(sub, 0, 4, 0, 4)


def test_release_while_in_flight_keeps_the_work_valid(device: hal.Device) -> None:
    """Releasing a buffer that submitted work still uses is safe: the work completes and its
    results (copied to another buffer) are correct."""
    size = 1 << 20
    src = device.buffer_from_numpy(random_bytes(size, seed=14))
    expected = src.to_numpy()
    dst = device.allocate_buffer(size)
    with device.record() as cb:
        cb.copy_buffer(src, 1, dst, 3, size - 5)
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)])
    src.release()
    done.wait(1, timeout=WAIT)
    got = dst.to_numpy()
    np.testing.assert_array_equal(got[3 : size - 2], expected[1 : size - 4])
    assert not got[:3].any() and not got[size - 2 :].any()


def test_buffer_context_manager_releases(device: hal.Device) -> None:
    """``with buffer:`` releases it at exit."""
    with device.allocate_buffer(16) as buf:
        device.transfer_h2d(b"abcd", buf)
        assert device.transfer_d2h(buf, 0, 4) == b"abcd"
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_d2h(buf)


# -- subspans ---------------------------------------------------------------------------------


def test_subspan_of_subspan_reroots(device: hal.Device) -> None:
    """A subspan of a subspan points at the allocation with the offsets added, and shares
    its bytes."""
    root = mappable(device, 256)
    a = root.subspan(16, 200)
    b = a.subspan(5, 100)
    c = b.subspan(3)
    for sub, offset, length in [(a, 16, 200), (b, 21, 100), (c, 24, 97)]:
        assert sub.allocated_buffer is root
        assert sub.byte_offset == offset
        assert sub.byte_length == length
        assert sub.memory_type == root.memory_type
        assert sub.allowed_usage == root.allowed_usage
    assert root.subspan(0).byte_length == 256
    assert root.subspan(256).byte_length == 0
    c.map_write(0, b"\x01\x02\x03")
    device.transfer_h2d(b"\x09", b, 2)
    model = np.zeros(256, dtype=np.uint8)
    model[24:27] = [1, 2, 3]
    model[23] = 9
    np.testing.assert_array_equal(root.to_numpy(), model)
    np.testing.assert_array_equal(c.to_numpy()[:3], [1, 2, 3])
    with pytest.raises(hal.OutOfRangeError):
        b.subspan(90, 11)
    with pytest.raises(hal.OutOfRangeError):
        b.subspan(101)
    with pytest.raises(hal.OutOfRangeError):
        c.subspan(0, 98)


def test_subspan_as_command_target(device: hal.Device) -> None:
    """Commands on a subspan of a subspan write the right bytes of the allocation."""
    root = device.buffer_from_numpy(random_bytes(128, seed=15))
    model = root.to_numpy().copy()
    target = root.subspan(10, 100).subspan(7, 40)
    with device.record() as cb:
        cb.fill_buffer(target, 1, 30, 0x6B, 1)
        cb.update_buffer(b"\x00\x01", 0, target, 38, 2)
    submit_and_wait(device, cb)
    model[18:48] = 0x6B
    model[55:57] = [0, 1]
    np.testing.assert_array_equal(root.to_numpy(), model)
