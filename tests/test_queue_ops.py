"""Queue operations other than plain ``queue_execute``: fill, update, copy, barrier,
alloca/dealloca and file reads/writes, ordered only by their wait and signal lists.

Results are compared byte for byte with a numpy model of the whole buffer (pre-filled with
non-zero random bytes, so a stray or missing write shows up). Operations are usually held back
on a host semaphore and submitted out of order, so only the semaphores order them. Every wait is
bounded by ``WAIT``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal


def read(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    """All bytes of ``buffer`` after the submitted work finished."""
    return np.frombuffer(device.transfer_d2h(buffer), dtype=np.uint8).copy()


def settled(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    """``buffer``'s bytes once everything actually submitted has finished (held-back
    operations excluded), after a short pause that gives an early submission time to land."""
    time.sleep(0.02)
    device.wait_idle(WAIT)
    return read(device, buffer)


def filled(device: hal.Device, size: int, seed: int) -> tuple[hal.Buffer, np.ndarray]:
    """A buffer of ``size`` non-zero random bytes and its numpy model."""
    data = random_bytes(size, seed)
    return device.buffer_from_numpy(data), data.copy()


def pattern_bytes(pattern: int, pattern_length: int, length: int) -> np.ndarray:
    """``length`` bytes of ``pattern`` (little-endian, ``pattern_length`` bytes) repeated."""
    unit = np.frombuffer(pattern.to_bytes(pattern_length, "little"), dtype=np.uint8)
    return np.tile(unit, length // pattern_length)


def fresh_device() -> hal.Device:
    """A device of its own, for tests that close it."""
    return hal.create_device(label="test_queue_ops")


# -- fill / update / copy / barrier ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_transfer_chain_ordered_by_semaphores(device: hal.Device) -> None:
    """Seven overlapping transfers at unaligned offsets, each waiting on the previous one's
    signal and all held back on the host; submitted last-first, so only the semaphores give
    the order the model assumes."""
    a, model_a = filled(device, 256, seed=11)
    b, model_b = filled(device, 256, seed=12)
    source = random_bytes(100, seed=13)
    host, step = device.create_semaphore(), device.create_semaphore()
    b_view = b.subspan(4)

    ops: list[Callable[[], None]] = [
        lambda: device.queue_fill(a, 3, 61, 0xC3, 1, wait=[(host, 1)], signal=[(step, 1)]),
        lambda: device.queue_update(source, 7, a, 21, 70, wait=[(step, 1)], signal=[(step, 2)]),
        lambda: device.queue_fill(
            hal.BufferRef(a, 2), 48, 20, 0xBEEF, 2, wait=[(step, 2)], signal=[(step, 3)]
        ),
        lambda: device.queue_barrier(wait=[(step, 3)], signal=[(step, 4)]),
        lambda: device.queue_copy(a, 1, b_view, 1, 111, wait=[(step, 4)], signal=[(step, 5)]),
        lambda: device.queue_fill(b, 8, 16, 0x11223344, 4, wait=[(step, 5)], signal=[(step, 6)]),
        lambda: device.queue_copy(b, 0, a, 200, 37, wait=[(step, 6)], signal=[(step, 7)]),
    ]
    for op in reversed(ops):
        op()
    assert np.array_equal(settled(device, a), model_a)
    assert np.array_equal(read(device, b), model_b)
    assert step.query() == 0

    host.signal(1)
    step.wait(7, timeout=WAIT)
    model_a[3:64] = 0xC3
    model_a[21:91] = source[7:77]
    model_a[50:70] = pattern_bytes(0xBEEF, 2, 20)
    model_b[5:116] = model_a[1:112]
    model_b[8:24] = pattern_bytes(0x11223344, 4, 16)
    model_a[200:237] = model_b[0:37]
    assert np.array_equal(read(device, a), model_a)
    assert np.array_equal(read(device, b), model_b)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("offset", "length", "pattern", "pattern_length"),
    [(1, 1, 0x9D, 1), (5, 250, b"\xab", None), (6, 58, b"\x12\x34", None), (4, 0, 7, 4)],
)
def test_queue_fill_bytes_exact(
    device: hal.Device, offset: int, length: int, pattern: int | bytes, pattern_length: int | None
) -> None:
    buffer, model = filled(device, 300, seed=14)
    done = device.create_semaphore()
    device.queue_fill(buffer, offset, length, pattern, pattern_length, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    if isinstance(pattern, bytes):
        unit = np.frombuffer(pattern, dtype=np.uint8)
    else:
        assert pattern_length is not None
        unit = np.frombuffer(pattern.to_bytes(pattern_length, "little"), dtype=np.uint8)
    model[offset : offset + length] = np.tile(unit, length // len(unit))
    assert np.array_equal(read(device, buffer), model)


@pytest.mark.timeout(60)
def test_queue_update_large_at_odd_offset(device: hal.Device) -> None:
    size = 3 * 65536 + 1001
    buffer, model = filled(device, size, seed=15)
    source = random_bytes(3 * 65536 + 100, seed=16)
    length = 3 * 65536 + 7
    done = device.create_semaphore()
    device.queue_update(source, 3, buffer, 13, length, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    model[13 : 13 + length] = source[3 : 3 + length]
    assert np.array_equal(read(device, buffer), model)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["numpy", "bytearray", "memoryview"])
def test_queue_update_captures_source_at_call_time(device: hal.Device, kind: str) -> None:
    """A held-back update writes the bytes its source had at the call, not at submission."""
    buffer, model = filled(device, 70_001, seed=17)
    original = random_bytes(70_000, seed=18)
    array = original.copy()
    source: Any = {
        "numpy": array,
        "bytearray": bytearray(array.tobytes()),
        "memoryview": memoryview(array),
    }[kind]
    host, done = device.create_semaphore(), device.create_semaphore()
    device.queue_update(source, 1, buffer, 1, 69_999, wait=[(host, 1)], signal=[(done, 1)])
    # Overwrite the source while the update is held back.
    if isinstance(source, bytearray):
        source[:] = bytes(len(source))
    else:
        array[:] = 0
    assert np.array_equal(settled(device, buffer), model)
    host.signal(1)
    done.wait(1, timeout=WAIT)
    model[1:70_000] = original[1:70_000]
    assert np.array_equal(read(device, buffer), model)


# -- alloca / dealloca ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_alloca_use_dealloca(device: hal.Device) -> None:
    host, step = device.create_semaphore(), device.create_semaphore()
    out, model = filled(device, 300, seed=19)
    buffer = device.queue_alloca(300, wait=[(host, 1)], signal=[(step, 1)])
    assert buffer.byte_length == 300
    device.queue_fill(buffer, 0, 300, 0x5C, 1, wait=[(step, 1)], signal=[(step, 2)])
    device.queue_update(b"\x01\x02\x03", 0, buffer, 101, 3, wait=[(step, 2)], signal=[(step, 3)])
    device.queue_copy(buffer, 1, out, 3, 290, wait=[(step, 3)], signal=[(step, 4)])
    device.queue_dealloca(buffer, wait=[(step, 4)], signal=[(step, 5)])
    time.sleep(0.02)
    assert step.query() == 0, "alloca signalled before its wait was reached"

    host.signal(1)
    step.wait(5, timeout=WAIT)
    expected = np.full(300, 0x5C, dtype=np.uint8)
    expected[101:104] = [1, 2, 3]
    model[3:293] = expected[1:291]
    assert np.array_equal(read(device, out), model)

    assert buffer.is_released
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_fill(buffer, 0, 4, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_copy(buffer, 0, out, 0, 4)
    with pytest.raises(hal.FailedPreconditionError):
        device.transfer_d2h(buffer)
    with device.record() as cb, pytest.raises(hal.FailedPreconditionError):
        cb.fill_buffer(buffer, 0, 4, 0, 4)


@pytest.mark.timeout(60)
def test_dealloca_waits_for_its_wait_list(device: hal.Device) -> None:
    """The buffer stays usable until the dealloca's wait is reached."""
    host, done = device.create_semaphore(), device.create_semaphore()
    buffer = device.queue_alloca(64)
    device.queue_dealloca(buffer, wait=[(host, 1)], signal=[(done, 1)])
    filled_done = device.create_semaphore()
    device.queue_fill(buffer, 0, 64, 0x42, 1, signal=[(filled_done, 1)])
    filled_done.wait(1, timeout=WAIT)
    assert not buffer.is_released
    assert read(device, buffer).tolist() == [0x42] * 64
    host.signal(1)
    done.wait(1, timeout=WAIT)
    with pytest.raises(hal.FailedPreconditionError):
        device.queue_fill(buffer, 0, 4, 0, 4)


# -- queue_read / queue_write ---------------------------------------------------------------------

FILE_KINDS = ["path", "str_path", "open_file", "bytesio", "bytes", "bytearray", "numpy"]


def make_source(kind: str, data: bytes, tmp_path: Path) -> tuple[Any, Callable[[], None]]:
    """A queue_read source of ``kind`` holding ``data``, and a function that closes it."""
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    if kind == "path":
        return path, lambda: None
    if kind == "str_path":
        return str(path), lambda: None
    if kind == "open_file":
        handle = open(path, "rb")  # noqa: SIM115 - closed by the returned function
        return handle, handle.close
    if kind == "bytesio":
        return io.BytesIO(data), lambda: None
    if kind == "bytes":
        return bytes(data), lambda: None
    if kind == "bytearray":
        return bytearray(data), lambda: None
    assert kind == "numpy"
    return np.frombuffer(data, dtype=np.uint8).copy(), lambda: None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_queue_read_into_unaligned_offset(device: hal.Device, kind: str, tmp_path: Path) -> None:
    data = random_bytes(1000, seed=20).tobytes()
    source, close = make_source(kind, data, tmp_path)
    buffer, model = filled(device, 400, seed=21)
    target = buffer.subspan(2)
    host, step = device.create_semaphore(), device.create_semaphore()
    try:
        device.queue_read(source, 7, target, 3, 301, wait=[(host, 1)], signal=[(step, 1)])
        # Ordered after the read: copies part of what it wrote.
        device.queue_copy(buffer, 5, buffer, 350, 40, wait=[(step, 1)], signal=[(step, 2)])
        assert np.array_equal(settled(device, buffer), model)
        host.signal(1)
        step.wait(2, timeout=WAIT)
    finally:
        close()
    model[5:306] = np.frombuffer(data[7:308], dtype=np.uint8)
    model[350:390] = model[5:45]
    assert np.array_equal(read(device, buffer), model)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "source_offset", "length"),
    [("path", 50, 60), ("bytes", 0, 101), ("open_file", 100, 1), ("bytearray", 101, 1)],
)
def test_queue_read_past_end_of_file_fails_signal(
    device: hal.Device, kind: str, source_offset: int, length: int, tmp_path: Path
) -> None:
    source, close = make_source(kind, random_bytes(100, seed=22).tobytes(), tmp_path)
    buffer, model = filled(device, 128, seed=23)
    host, read_done, after = (device.create_semaphore() for _ in range(3))
    try:
        device.queue_read(
            source, source_offset, buffer, 1, length, wait=[(host, 1)], signal=[(read_done, 1)]
        )
        device.queue_fill(buffer, 0, 128, 0, 1, wait=[(read_done, 1)], signal=[(after, 1)])
        host.signal(1)
        with pytest.raises(hal.AbortedError) as info:
            read_done.wait(1, timeout=WAIT)
        assert info.value.__cause__ is not None
        assert info.value.status is info.value.__cause__
        with pytest.raises(hal.AbortedError):
            after.wait(1, timeout=WAIT)
    finally:
        close()
    assert np.array_equal(settled(device, buffer), model)


def make_target(kind: str, initial: bytes, tmp_path: Path) -> tuple[Any, Callable[[], bytes]]:
    """A queue_write target of ``kind`` holding ``initial``, and a function returning its
    current contents (closing an open file)."""
    path = tmp_path / "target.bin"
    path.write_bytes(initial)
    if kind == "path":
        return path, path.read_bytes
    if kind == "str_path":
        return str(path), path.read_bytes
    if kind == "open_file":
        handle = open(path, "r+b")  # noqa: SIM115 - closed by the returned function

        def contents() -> bytes:
            handle.close()
            return path.read_bytes()

        return handle, contents
    if kind == "bytesio":
        stream = io.BytesIO(initial)
        return stream, stream.getvalue
    if kind == "bytearray":
        array = bytearray(initial)
        return array, lambda: bytes(array)
    assert kind == "numpy"
    values = np.frombuffer(initial, dtype=np.uint8).copy()
    return values, values.tobytes


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["path", "str_path", "open_file", "bytesio", "bytearray", "numpy"])
def test_queue_write_after_fill(device: hal.Device, kind: str, tmp_path: Path) -> None:
    initial = random_bytes(100, seed=24).tobytes()
    target, contents = make_target(kind, initial, tmp_path)
    buffer, model = filled(device, 80, seed=25)
    host, step = device.create_semaphore(), device.create_semaphore()
    device.queue_write(buffer, 5, target, 11, 60, wait=[(step, 1)], signal=[(step, 2)])
    device.queue_fill(buffer, 9, 40, 0xE7, 1, wait=[(host, 1)], signal=[(step, 1)])
    time.sleep(0.02)
    device.wait_idle(WAIT)
    if kind in ("bytearray", "numpy", "bytesio"):
        assert contents() == initial, "written before its wait was reached"
    assert step.query() == 0
    host.signal(1)
    step.wait(2, timeout=WAIT)
    model[9:49] = 0xE7
    expected = bytearray(initial)
    expected[11:71] = model[5:65].tobytes()
    assert contents() == bytes(expected)


@pytest.mark.timeout(60)
def test_queue_write_creates_new_file(device: hal.Device, tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    buffer, model = filled(device, 33, seed=26)
    done = device.create_semaphore()
    device.queue_write(buffer.subspan(3), 1, path, 0, 29, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    assert path.read_bytes() == model[4:33].tobytes()


@pytest.mark.timeout(60)
def test_queue_read_then_write_round_trip(device: hal.Device, tmp_path: Path) -> None:
    data = random_bytes(5000, seed=27).tobytes()
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    out = bytearray(5000)
    buffer = device.allocate_buffer(6001)
    step = device.create_semaphore()
    device.queue_read(source, 0, buffer, 1001, 5000, signal=[(step, 1)])
    device.queue_write(buffer, 1001, out, 0, 5000, wait=[(step, 1)], signal=[(step, 2)])
    step.wait(2, timeout=WAIT)
    assert bytes(out) == data


# -- validation is synchronous --------------------------------------------------------------------


def _no_target_usage(device: hal.Device) -> hal.Buffer:
    return device.allocate_buffer(
        64, usage=hal.BufferUsage.TRANSFER_SOURCE | hal.BufferUsage.DISPATCH_STORAGE
    )


def _released(device: hal.Device) -> hal.Buffer:
    buffer = device.allocate_buffer(64)
    buffer.release()
    return buffer


def _unended(device: hal.Device) -> hal.CommandBuffer:
    cb = device.create_command_buffer()
    cb.begin()
    return cb


Call = Callable[[hal.Device, hal.Buffer, list[Any], list[Any]], None]

INVALID_CALLS: dict[str, tuple[Call, type[hal.HalError]]] = {
    "fill_out_of_range": (
        lambda d, b, w, s: d.queue_fill(b, 60, 8, 0, 1, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "fill_offset_past_end": (
        lambda d, b, w, s: d.queue_fill(b, 68, 4, 0, 4, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "fill_misaligned": (
        lambda d, b, w, s: d.queue_fill(b, 2, 8, 0, 4, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "fill_bad_pattern_length": (
        lambda d, b, w, s: d.queue_fill(b, 0, 9, 0, 3, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "fill_without_target_usage": (
        lambda d, b, w, s: d.queue_fill(_no_target_usage(d), 0, 4, 0, 4, wait=w, signal=s),
        hal.PermissionDeniedError,
    ),
    "fill_released": (
        lambda d, b, w, s: d.queue_fill(_released(d), 0, 4, 0, 4, wait=w, signal=s),
        hal.FailedPreconditionError,
    ),
    "update_source_too_short": (
        lambda d, b, w, s: d.queue_update(bytes(10), 4, b, 0, 8, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "update_target_out_of_range": (
        lambda d, b, w, s: d.queue_update(bytes(100), 0, b, 60, 10, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "copy_overlapping": (
        lambda d, b, w, s: d.queue_copy(b, 0, b, 4, 16, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "copy_out_of_range": (
        lambda d, b, w, s: d.queue_copy(b, 0, b.subspan(40), 0, 32, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "bad_wait_list": (
        lambda d, b, w, s: d.queue_fill(b, 0, 4, 0, 4, wait=[(b, 1)], signal=s),
        hal.InvalidArgumentError,
    ),
    "signal_value_too_large": (
        lambda d, b, w, s: d.queue_fill(b, 0, 4, 0, 4, wait=w, signal=[(s[0][0], 1 << 63)]),
        hal.OutOfRangeError,
    ),
    "read_into_slot_ref": (
        lambda d, b, w, s: d.queue_read(bytes(8), 0, hal.SlotRef(0), 0, 8, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "read_target_out_of_range": (
        lambda d, b, w, s: d.queue_read(bytes(100), 0, b, 10, 60, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "read_from_non_file": (
        lambda d, b, w, s: d.queue_read(12345, 0, b, 0, 4, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "write_to_read_only_bytes": (
        lambda d, b, w, s: d.queue_write(b, 0, bytes(64), 0, 8, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "write_past_end_of_bytearray": (
        lambda d, b, w, s: d.queue_write(b, 0, bytearray(16), 10, 8, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "write_source_out_of_range": (
        lambda d, b, w, s: d.queue_write(b, 60, bytearray(16), 0, 8, wait=w, signal=s),
        hal.OutOfRangeError,
    ),
    "dealloca_subspan": (
        lambda d, b, w, s: d.queue_dealloca(b.subspan(4), wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "alloca_negative_size": (
        lambda d, b, w, s: d.queue_alloca(-1, wait=w, signal=s),
        hal.InvalidArgumentError,
    ),
    "execute_unended": (
        lambda d, b, w, s: d.queue_execute(_unended(d), wait=w, signal=s),
        hal.FailedPreconditionError,
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(INVALID_CALLS))
def test_validation_errors_raise_at_call_and_queue_nothing(device: hal.Device, case: str) -> None:
    call, error = INVALID_CALLS[case]
    buffer, model = filled(device, 64, seed=28)
    host, done = device.create_semaphore(), device.create_semaphore()
    with pytest.raises(error):
        call(device, buffer, [(host, 1)], [(done, 1)])
    host.signal(1)
    assert np.array_equal(settled(device, buffer), model)
    assert done.query() == 0, "a rejected operation signalled (or failed) its semaphore"
    assert not buffer.is_released
    # The queue still works afterwards.
    device.queue_fill(buffer, 0, 4, 0x01010101, wait=[(host, 1)], signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    model[0:4] = 1
    assert np.array_equal(read(device, buffer), model)


# -- closing the device ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_with_held_back_operation_fails_its_signal() -> None:
    dev = fresh_device()
    buffer = dev.allocate_buffer(64)
    host, done, chained = dev.create_semaphore(), dev.create_semaphore(), dev.create_semaphore()
    dev.queue_fill(buffer, 0, 64, 0xFF, 1, wait=[(host, 1)], signal=[(done, 1)])
    dev.queue_barrier(wait=[(done, 1)], signal=[(chained, 1)])
    start = time.monotonic()
    dev.close()
    assert time.monotonic() - start < 10.0
    for sem in (done, chained):
        with pytest.raises(hal.AbortedError) as info:
            sem.wait(1, timeout=5.0)
        assert info.value.__cause__ is not None
    # Reaching the wait after the close neither runs nor crashes anything.
    host.signal(1)
    with pytest.raises(hal.AbortedError):
        done.query()
    with pytest.raises(hal.UnavailableError):
        dev.queue_fill(buffer, 0, 4, 0, 4)
    with pytest.raises(hal.UnavailableError):
        dev.queue_barrier()
    dev.close()  # idempotent


@pytest.mark.timeout(60)
def test_close_with_work_in_flight_completes_it() -> None:
    """Work already submitted at close, including a queue_write's host side, still finishes
    and signals; the close returns within a few seconds."""
    dev = fresh_device()
    big = dev.allocate_buffer(8 << 20)
    buffer = dev.allocate_buffer(64)
    out = bytearray(64)
    done = dev.create_semaphore()
    for i in range(8):
        dev.queue_fill(big, 0, None, i + 1, 4)
    dev.queue_fill(buffer, 0, 64, 0x3C, 1)
    dev.queue_write(buffer, 0, out, 0, 64, signal=[(done, 1)])
    start = time.monotonic()
    dev.close()
    assert time.monotonic() - start < 10.0
    done.wait(1, timeout=5.0)
    assert bytes(out) == b"\x3c" * 64


_EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    import time
    import hal

    dev = hal.create_device()
    big = dev.allocate_buffer(4 << 20)
    chain = dev.create_semaphore()
    host = dev.create_semaphore()
    for i in range(1, 61):
        dev.queue_fill(big, 0, None, i, 4, wait=[(chain, i - 1)], signal=[(chain, i)])
    dev.queue_fill(big, 0, 4, 0, 4, wait=[(host, 1)])  # held back forever
    # A thread blocked on a point nobody signals must not keep the process alive.
    threading.Thread(target=lambda: host.wait(1), daemon=True).start()
    if {close!r}:
        start = time.monotonic()
        dev.close()
        print("closed in", time.monotonic() - start, flush=True)
    print("exiting", flush=True)
    """
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("close", [False, True], ids=["exit_without_close", "close"])
def test_process_exits_with_work_in_flight(close: bool) -> None:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT.format(close=close)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exiting" in result.stdout
    if close:
        closed_in = float(result.stdout.split("closed in")[1].split()[0])
        assert closed_in < 5.0
    assert elapsed < 45.0
