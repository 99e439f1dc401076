"""hal.BufferView, the typed device array: keeps dtype and shape through to_numpy and
np.asarray, and is accepted wherever a command or queue operation takes a Buffer (standing for
its own range of the buffer, not the whole buffer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hal
from hal.core.builtins import shader_path

TIMEOUT = 30


def _execute(device: hal.Device, cb: hal.CommandBuffer) -> None:
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)])
    done.wait(1, timeout=TIMEOUT)


def test_typed_round_trip_and_array_protocol(device: hal.Device) -> None:
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    view = device.buffer_view_from_numpy(a)
    assert isinstance(view, hal.BufferView)
    assert (view.shape, view.dtype, view.byte_length) == ((2, 3, 4), np.dtype(np.int32), 96)
    assert (view.size, view.ndim, len(view)) == (24, 3, 2)
    got = view.to_numpy()
    assert got.dtype == np.int32 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, a)
    as_array = np.asarray(view)
    assert as_array.dtype == np.int32 and as_array.shape == (2, 3, 4)
    np.testing.assert_array_equal(as_array, a)
    converted = np.asarray(view, dtype=np.float64)
    assert converted.dtype == np.float64
    np.testing.assert_array_equal(converted, a.astype(np.float64))
    np.testing.assert_array_equal(np.array(view) + 1, a + 1)
    with pytest.raises(ValueError, match="without a copy"):
        view.__array__(copy=False)
    text = repr(view)
    assert text.startswith("<hal.BufferView 2x3x4 int32 of <hal.Buffer 96 B")


def test_bad_shapes_and_dtypes_name_bufferview_and_the_argument(device: hal.Device) -> None:
    buf = device.allocate_buffer(16)
    cases = [
        ((2.5,), np.float32, "shape[0]"),
        ("4", np.float32, "shape"),
        ((-1,), np.float32, "shape[0]"),
        ((4,), object, "dtype"),
        ((4,), "not-a-dtype", "dtype"),
    ]
    for shape, dtype, argument in cases:
        with pytest.raises(hal.InvalidArgumentError) as caught:
            hal.BufferView(buf, shape, dtype)
        assert str(caught.value).startswith("BufferView: ") and argument in str(caught.value)
    with pytest.raises(hal.OutOfRangeError, match="BufferView: shape"):
        hal.BufferView(buf, (5,), np.float32)
    with pytest.raises(hal.InvalidArgumentError, match=r"BufferView: buffer must be a hal\.Buffer"):
        hal.BufferView(np.zeros(4), (4,), np.float32)  # type: ignore[arg-type]
    with pytest.raises(hal.InvalidArgumentError, match="buffer_view_from_numpy"):
        device.buffer_view_from_numpy(np.array([object()]))


def test_views_bind_to_dispatches_and_stand_for_their_range(device: hal.Device) -> None:
    ops = device.create_executable(shader_path("elementwise.wgsl"))
    x = np.arange(64, dtype=np.float32)
    src = device.buffer_view_from_numpy(x)
    # The output view covers the first 64 floats of a larger buffer: the rest never changes.
    big = device.buffer_from_numpy(np.full(80, -5.0, np.float32))
    dst = hal.BufferView(big, (64,), np.float32)
    with device.record() as cb:
        cb.dispatch(ops, "scale", (1, 1, 1), constants=[64, 3.0, 1.0], bindings=[src, dst])
    _execute(device, cb)
    np.testing.assert_array_equal(dst.to_numpy(), x * 3 + 1)
    np.testing.assert_array_equal(big.to_numpy(np.float32)[64:], np.full(16, -5.0, np.float32))
    # A single view as `bindings` (like a single Buffer) and a wrong kind still refused.
    with device.record() as cb, pytest.raises(hal.InvalidArgumentError, match="bindings"):
        cb.dispatch(ops, "scale", (1, 1, 1), constants=[64, 1.0, 1.0], bindings=[src, 5])


def test_views_in_fill_update_copy(device: hal.Device) -> None:
    big = device.buffer_from_numpy(np.zeros(32, np.uint32))
    head = hal.BufferView(big, (8,), np.uint32)
    src = device.buffer_view_from_numpy(np.arange(8, dtype=np.uint32) + 100)
    tail = hal.BufferView(big.subspan(64), (2, 4), np.uint32)
    with device.record() as cb:
        cb.fill_buffer(head, 0, None, 7)  # None: to the end of the view, not of the buffer
        cb.execution_barrier()
        cb.update_buffer(np.array([1, 2], np.uint32), 0, head, 8, 8)
        cb.copy_buffer(src, 0, tail, 0, None)
    _execute(device, cb)
    want = np.zeros(32, np.uint32)
    want[:8] = [7, 7, 1, 2, 7, 7, 7, 7]
    want[16:24] = np.arange(8) + 100
    np.testing.assert_array_equal(big.to_numpy(np.uint32), want)
    np.testing.assert_array_equal(tail.to_numpy(), (np.arange(8) + 100).reshape(2, 4))
    with device.record() as cb, pytest.raises(hal.OutOfRangeError, match="fill_buffer"):
        cb.fill_buffer(head, 0, 36, 0)  # past the view's 32 bytes (the buffer has 128)
    assert big.to_numpy(np.uint32)[8] == 0  # the rejected command changed nothing


def test_views_in_queue_operations_and_transfers(device: hal.Device) -> None:
    a = device.buffer_view_from_numpy(np.zeros((4, 4), np.float32))
    b = device.buffer_view_from_numpy(np.zeros((4, 4), np.float32))
    s = device.create_semaphore()
    device.queue_fill(a, 0, None, np.float32(1.5).view(np.uint32).item(), signal=[(s, 1)])
    device.queue_copy(a, 0, b, 0, None, wait=[(s, 1)], signal=[(s, 2)])
    row = np.array([9, 8, 7, 6], np.float32)
    device.queue_update(row, 0, b, 16, 16, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=TIMEOUT)
    want = np.full((4, 4), 1.5, np.float32)
    want[1] = row
    np.testing.assert_array_equal(b.to_numpy(), want)
    # A large update goes through the staging path; the view is accepted there too.
    n = 1 << 16
    large = device.buffer_view_from_numpy(np.zeros(n, np.uint32))
    device.queue_update(np.arange(n, dtype=np.uint32), 0, large, 0, 4 * n, signal=[(s, 4)])
    s.wait(4, timeout=TIMEOUT)
    np.testing.assert_array_equal(large.to_numpy(), np.arange(n, dtype=np.uint32))
    device.transfer_h2d(np.arange(16, dtype=np.float32), a)
    np.testing.assert_array_equal(
        np.frombuffer(device.transfer_d2h(a), np.float32), np.arange(16, dtype=np.float32)
    )
    with pytest.raises(hal.OutOfRangeError, match="transfer_h2d"):
        device.transfer_h2d(bytes(68), a)  # 68 bytes into a 64-byte view
    with pytest.raises(hal.OutOfRangeError, match="transfer_d2h"):
        device.transfer_d2h(a, 0, 65)


def test_a_view_of_a_released_buffer_is_refused(device: hal.Device) -> None:
    view = device.buffer_view_from_numpy(np.zeros(4, np.float32))
    view.buffer.release()
    with device.record() as cb, pytest.raises(hal.FailedPreconditionError, match="released"):
        cb.fill_buffer(view, 0, None, 0)
    with pytest.raises(hal.FailedPreconditionError, match="released"):
        np.asarray(view)


def test_views_in_file_operations(device: hal.Device, tmp_path: Path) -> None:
    data = np.arange(32, dtype=np.int16).reshape(4, 8)
    source = tmp_path / "in.bin"
    source.write_bytes(data.tobytes())
    view = device.buffer_view_from_numpy(np.zeros((4, 8), np.int16))
    s = device.create_semaphore()
    device.queue_read(source, 0, view, 0, data.nbytes, signal=[(s, 1)])
    target = bytearray(data.nbytes)
    device.queue_write(view, 0, target, 0, data.nbytes, wait=[(s, 1)], signal=[(s, 2)])
    s.wait(2, timeout=TIMEOUT)
    np.testing.assert_array_equal(view.to_numpy(), data)
    assert bytes(target) == data.tobytes()
