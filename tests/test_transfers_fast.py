"""Host transfers through the staging pool (hal/staging.py): exact bytes at any offset and
length (chunked too), ordering after submitted work, concurrency, zero sizes, and the staged
queue_update / queue_read / queue_write paths."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal
from hal.runtime import staging
from hal.runtime.transfers import STAGED_MIN

CHUNK = 64 * 1024  # small chunks, so modest sizes exercise the pipelined, multi-chunk path


@pytest.fixture()
def pool(device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> Iterator[staging.StagingPool]:
    """The device's staging pool with 64 KiB chunks and write_buffer off (every upload
    streams through staging buffers)."""
    pool = device._host.staging
    monkeypatch.setattr(pool, "chunk_size", CHUNK)
    monkeypatch.setattr(staging, "WRITE_BUFFER_MAX", 0)
    yield pool
    with pool._lock:
        idle = [s for items in pool._idle.values() for s in items]
    assert all(s.mapped == 0 for s in idle), "a staging buffer went back to the pool mapped"


# (offset, length) pairs: aligned, odd offsets, odd lengths, sub-word, above the chunk size.
CASES = [
    (0, 4),
    (1, 1),
    (3, 2),
    (2, 5),
    (5, 4096),
    (0, 4097),
    (7, 100_003),
    (4, 3 * CHUNK),
    (1, 3 * CHUNK + 5),
    (6, 5 * CHUNK - 1),
]


@pytest.mark.parametrize("write_buffer", [False, True], ids=["staged", "write_buffer"])
@pytest.mark.parametrize(("offset", "length"), CASES)
def test_h2d_is_byte_exact(
    device: hal.Device,
    pool: staging.StagingPool,
    monkeypatch: pytest.MonkeyPatch,
    write_buffer: bool,
    offset: int,
    length: int,
) -> None:
    if write_buffer:
        monkeypatch.setattr(staging, "WRITE_BUFFER_MAX", 1 << 30)
    size = offset + length + 9
    buf = device.allocate_buffer(size)
    background = random_bytes(size, seed=1)
    device.transfer_h2d(background, buf)
    data = random_bytes(length, seed=2)
    device.transfer_h2d(data, buf, offset)
    expected = background.copy()
    expected[offset : offset + length] = data
    np.testing.assert_array_equal(buf.to_numpy(), expected)


@pytest.mark.parametrize(("offset", "length"), CASES)
def test_d2h_is_byte_exact(
    device: hal.Device, pool: staging.StagingPool, offset: int, length: int
) -> None:
    size = offset + length + 3
    data = random_bytes(size, seed=3)
    buf = device.buffer_from_numpy(data)
    assert device.transfer_d2h(buf, offset, length) == data[offset : offset + length].tobytes()
    view = buf.subspan(offset, length)
    np.testing.assert_array_equal(view.to_numpy(), data[offset : offset + length])


def test_subspan_writes_leave_neighbours(device: hal.Device, pool: staging.StagingPool) -> None:
    buf = device.allocate_buffer(3 * CHUNK)
    device.queue_fill(buf, 0, None, 0xA5, 1)
    view = buf.subspan(3, 2 * CHUNK + 1)
    data = random_bytes(2 * CHUNK - 2, seed=4)
    device.transfer_h2d(data, view, 1)
    got = buf.to_numpy()
    assert (got[:4] == 0xA5).all()
    np.testing.assert_array_equal(got[4 : 4 + len(data)], data)
    assert (got[4 + len(data) :] == 0xA5).all()


def test_reads_see_previously_submitted_work(device: hal.Device, pool: staging.StagingPool) -> None:
    """No waits between: the queue orders the read after the fill it follows."""
    buf = device.allocate_buffer(4 * CHUNK + 8)
    for value in (0x11, 0x22, 0x33):
        device.queue_fill(buf, 0, None, value, 1)
        assert device.transfer_d2h(buf, 1, 4 * CHUNK + 3) == bytes([value]) * (4 * CHUNK + 3)


def test_writes_land_after_previously_submitted_work(
    device: hal.Device, pool: staging.StagingPool
) -> None:
    buf = device.allocate_buffer(4 * CHUNK)
    data = random_bytes(4 * CHUNK - 2, seed=5)
    device.queue_fill(buf, 0, None, 0xEE, 1)  # submitted first: must not overwrite the data
    device.transfer_h2d(data, buf, 1)
    got = buf.to_numpy()
    assert got[0] == 0xEE and got[-1] == 0xEE
    np.testing.assert_array_equal(got[1:-1], data)


def test_reads_after_a_dispatch(device: hal.Device, pool: staging.StagingPool) -> None:
    ops = device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
    x = np.arange(CHUNK, dtype=np.float32)  # 4 chunks of bytes
    src = device.buffer_from_numpy(x)
    dst = device.allocate_buffer(x.nbytes)
    with device.record() as cb:
        cb.dispatch(
            ops, "scale", (CHUNK // 64, 1, 1), constants=[CHUNK, 2.0, 1.0], bindings=[src, dst]
        )
    device.queue_execute(cb)
    np.testing.assert_array_equal(dst.to_numpy(np.float32), 2 * x + 1)


def test_two_threads(device: hal.Device, pool: staging.StagingPool) -> None:
    buf = device.allocate_buffer(2 * 5 * CHUNK)
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        try:
            base = part * 5 * CHUNK
            for round_ in range(6):
                length = 3 * CHUNK + 7 * round_ + part
                data = random_bytes(length, seed=100 * part + round_)
                device.transfer_h2d(data, buf, base + round_)
                assert device.transfer_d2h(buf, base + round_, length) == data.tobytes()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_zero_sizes(device: hal.Device, pool: staging.StagingPool) -> None:
    buf = device.allocate_buffer(8)
    device.transfer_h2d(b"", buf, 8)
    device.transfer_h2d(np.zeros(0, np.uint8), buf, 3)
    assert device.transfer_d2h(buf, 8) == b""
    assert device.transfer_d2h(buf, 3, 0) == b""
    empty = device.allocate_buffer(0)
    assert empty.to_numpy().shape == (0,)
    assert device.buffer_from_numpy(np.zeros(0, np.float32)).byte_length == 0
    device.queue_update(b"", 0, buf, 5, 0)
    device.wait_idle(WAIT)
    assert buf.to_numpy().tolist() == [0] * 8


def test_pool_reuses_and_bounds_buffers(device: hal.Device, pool: staging.StagingPool) -> None:
    buf = device.allocate_buffer(4 * CHUNK)
    data = random_bytes(4 * CHUNK, seed=6)
    for _ in range(5):
        device.transfer_h2d(data, buf)
        assert device.transfer_d2h(buf) == data.tobytes()
    for items in pool._idle.values():
        assert len(items) <= pool._keep


def test_queue_update_staged_is_captured_and_exact(
    device: hal.Device, pool: staging.StagingPool
) -> None:
    length = STAGED_MIN + 13
    buf = device.allocate_buffer(length + 10)
    device.queue_fill(buf, 0, None, 0x5A, 1)
    gate, done = device.create_semaphore(), device.create_semaphore()
    source = bytearray(random_bytes(length + 4, seed=7).tobytes())
    expected = bytes(source[2 : 2 + length])
    device.queue_update(source, 2, buf, 3, length, wait=[(gate, 1)], signal=[(done, 1)])
    source[:] = bytes(len(source))  # captured at the call: later changes don't matter
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    got = buf.to_numpy()
    assert got[:3].tolist() == [0x5A] * 3 and got[3 + length :].tolist() == [0x5A] * 7
    assert got[3 : 3 + length].tobytes() == expected


def test_queue_update_staged_checks_arguments(
    device: hal.Device, pool: staging.StagingPool
) -> None:
    buf = device.allocate_buffer(STAGED_MIN)
    with pytest.raises(hal.OutOfRangeError):
        device.queue_update(bytes(STAGED_MIN), 0, buf, 1, STAGED_MIN)
    with pytest.raises(hal.OutOfRangeError):
        device.queue_update(bytes(STAGED_MIN), 1, buf, 0, STAGED_MIN)
    read_only = device.allocate_buffer(STAGED_MIN, usage=hal.BufferUsage.TRANSFER_SOURCE)
    with pytest.raises(hal.PermissionDeniedError):
        device.queue_update(bytes(STAGED_MIN), 0, read_only, 0, STAGED_MIN)


def test_queue_read_and_write_files_staged(
    device: hal.Device, pool: staging.StagingPool, tmp_path: Path
) -> None:
    length = 3 * CHUNK + 5
    data = random_bytes(length + 11, seed=8)
    source = tmp_path / "in.bin"
    source.write_bytes(data.tobytes())
    buf = device.allocate_buffer(length + 2)
    read, written = device.create_semaphore(), device.create_semaphore()
    device.queue_read(source, 11, buf, 1, length, signal=[(read, 1)])
    target = tmp_path / "out.bin"
    device.queue_write(buf, 1, target, 3, length, wait=[(read, 1)], signal=[(written, 1)])
    written.wait(1, timeout=WAIT)
    assert target.read_bytes() == bytes(3) + data[11:].tobytes()
    out = bytearray(length + 1)
    device.queue_write(buf, 1, out, 1, length, signal=[(written, 2)])
    written.wait(2, timeout=WAIT)
    assert bytes(out[1:]) == data[11:].tobytes()


def test_queue_read_short_file_fails_the_signal(
    device: hal.Device, pool: staging.StagingPool, tmp_path: Path
) -> None:
    source = tmp_path / "short.bin"
    source.write_bytes(bytes(STAGED_MIN))
    buf = device.allocate_buffer(2 * STAGED_MIN)
    done = device.create_semaphore()
    device.queue_read(source, 0, buf, 0, 2 * STAGED_MIN, signal=[(done, 1)])
    with pytest.raises(hal.AbortedError):
        done.wait(1, timeout=WAIT)
    assert buf.to_numpy().tolist() == [0] * (2 * STAGED_MIN)


def test_copy_bytes_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The threaded memcpy splits large copies into page-aligned pieces exactly."""
    monkeypatch.setattr(staging, "COPY_THREADS", 3)
    source = random_bytes(5 * 1024 * 1024 + 3, seed=9)
    target = np.zeros_like(source)
    staging.copy_bytes(target, source)
    np.testing.assert_array_equal(target, source)
    with pytest.raises(ValueError):
        staging.copy_bytes(target[:-1], source)


def test_new_bytes_is_a_filled_bytes_object() -> None:
    obj, view = staging.new_bytes(5 * 1024 * 1024)
    view[:3] = b"abc"
    view[-1] = 7
    view.release()
    result = bytes(obj)
    assert result[:3] == b"abc" and result[-1] == 7


def test_queue_update_without_waits_streams(device: hal.Device, pool: staging.StagingPool) -> None:
    """No waits: streamed through the staging pool now; the signal follows the copies."""
    length = 3 * CHUNK + 1
    buf = device.allocate_buffer(length + 6)
    device.queue_fill(buf, 0, None, 0x77, 1)
    data = random_bytes(length, seed=10)
    done = device.create_semaphore()
    device.queue_update(data, 0, buf, 5, length, signal=[(done, 1)])
    data[:] = 0  # already copied out
    done.wait(1, timeout=WAIT)
    got = buf.to_numpy()
    assert got[:5].tolist() == [0x77] * 5 and got[-1] == 0x77
    np.testing.assert_array_equal(got[5:-1], random_bytes(length, seed=10))
