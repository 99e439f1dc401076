"""``update_buffer``: host bytes captured at record time, written at any alignment.

Targets are pre-filled with non-zero random bytes and compared whole against a numpy model, so
a byte written outside the target range, or a byte taken from the wrong source position, shows
up. Sub-cases are batched into one command buffer, each in its own slot of one buffer (slot
bases are multiples of 32 or more, so in-slot offsets keep their alignment class).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait

import hal

SLOT = 64
"""Slot size of the small-update matrix (offsets ≤ 35, lengths ≤ 9); a multiple of 32, so an
in-slot offset keeps its alignment class."""

TARGET_OFFSETS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 13, 32, 35)
UPDATE_LENGTHS = tuple(range(1, 10))
SOURCE_OFFSET = 3


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each test runs with native immediates and with the uniform-buffer fallback."""
    return request.getfixturevalue(request.param)


def assert_bytes_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    """Byte-exact comparison that names the first differing bytes."""
    assert actual.shape == expected.shape
    diff = np.flatnonzero(actual != expected)
    if diff.size:
        first = int(diff[0])
        lo, hi = max(0, first - 4), first + 8
        pytest.fail(
            f"{diff.size} bytes differ, first at {first}: got {actual[lo:hi].tolist()} "
            f"expected {expected[lo:hi].tolist()} (from byte {lo})"
        )


def host_source(kind: str, data: np.ndarray) -> Any:
    """``data`` (uint8) as the given kind of host source object."""
    if kind == "bytes":
        return data.tobytes()
    if kind == "bytearray":
        return bytearray(data.tobytes())
    if kind == "memoryview":
        return memoryview(data.tobytes())
    if kind == "numpy_u8":
        return data.copy()
    if kind == "numpy_u32":  # bytes of a wider dtype: offsets still count bytes
        return data[: data.size // 4 * 4].view(np.uint32).copy()
    raise AssertionError(kind)


SOURCE_KINDS = ["bytes", "bytearray", "memoryview", "numpy_u8", "numpy_u32"]


def run_matrix(device: hal.Device, kind: str, seed: int) -> None:
    """Every target offset × length in one command buffer, from one host source."""
    cases = [(o, n) for o in TARGET_OFFSETS for n in UPDATE_LENGTHS]
    model = random_bytes(SLOT * len(cases), seed)
    raw = random_bytes(64, seed + 500)
    source = host_source(kind, raw)
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        for i, (offset, length) in enumerate(cases):
            start = SOURCE_OFFSET + i % 7  # varying source offsets, all non-zero
            target = i * SLOT + offset
            cb.update_buffer(source, start, buffer, target, length)
            model[target : target + length] = raw[start : start + length]
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_update_alignment_matrix(device: hal.Device, kind: str) -> None:
    """Target offsets 0..8 and more × lengths 1..9, non-zero source offsets."""
    run_matrix(device, kind, seed=SOURCE_KINDS.index(kind))


@pytest.mark.parametrize("kind", ["bytes", "numpy_u8"])
def test_update_alignment_matrix_no_immediates(device_no_immediates: hal.Device, kind: str) -> None:
    """The same matrix with builtin-kernel parameters in a staged uniform buffer."""
    run_matrix(device_no_immediates, kind, seed=10 + SOURCE_KINDS.index(kind))


@pytest.mark.parametrize(
    ("source_offset", "target_offset", "length"),
    [(5, 3, 200_000), (4, 8, 200_000), (1, 0, 200_001), (0, 36, 65536 + 4)],
)
def test_update_large(
    any_device: hal.Device, source_offset: int, target_offset: int, length: int
) -> None:
    """Updates larger than 64 KiB, at odd and aligned offsets."""
    model = random_bytes(target_offset + length + 100, seed=20)
    raw = random_bytes(source_offset + length + 7, seed=21)
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        cb.update_buffer(raw, source_offset, buffer, target_offset, length)
    model[target_offset : target_offset + length] = raw[source_offset : source_offset + length]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_update_non_contiguous_numpy_source(device: hal.Device) -> None:
    """A strided or multi-dimensional array contributes its elements' bytes in C order."""
    model = random_bytes(256, seed=22)
    buffer = device.buffer_from_numpy(model)
    base = np.arange(64, dtype=np.uint16) * 257 + 3
    strided = base[::3]  # 22 elements, non-contiguous
    matrix = np.arange(1, 25, dtype=np.uint8).reshape(4, 6).T  # Fortran-ordered view
    with device.record() as cb:
        cb.update_buffer(strided, 2, buffer, 9, 30)
        cb.update_buffer(matrix, 1, buffer, 101, 20)
    model[9:39] = np.frombuffer(strided.tobytes()[2:32], np.uint8)
    model[101:121] = np.frombuffer(matrix.tobytes()[1:21], np.uint8)
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


Mutator = Callable[[Any], None]


def _mutate_numpy(source: Any) -> None:
    source[:] = 0


def _mutate_bytearray(source: Any) -> None:
    source[:] = bytes(len(source))


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [("numpy_u8", _mutate_numpy), ("bytearray", _mutate_bytearray), ("numpy_u32", _mutate_numpy)],
)
def test_update_source_captured_at_record_time(
    any_device: hal.Device, kind: str, mutate: Mutator
) -> None:
    """Changing the host source after recording (before submission) has no effect."""
    raw = random_bytes(4096, seed=23)
    source = host_source(kind, raw)
    model = random_bytes(8192, seed=24)
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        cb.update_buffer(source, 1, buffer, 3, 9)
        cb.update_buffer(source, 4, buffer, 64, 64)
        cb.update_buffer(source, 13, buffer, 1001, 4000)
        mutate(source)  # still recording: the bytes must already be captured
    mutate(source)  # ended, not yet submitted
    model[3:12] = raw[1:10]
    model[64:128] = raw[4:68]
    model[1001:5001] = raw[13:4013]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


@pytest.mark.parametrize("base", [0, 1, 2, 64])
def test_update_ordering_in_one_command_buffer(any_device: hal.Device, base: int) -> None:
    """fill → update (overlapping: update wins), update → fill (fill wins), update → copy of
    the updated bytes to another buffer, all in one command buffer with barriers; the copy
    must see the updated bytes. ``base`` shifts everything to vary the alignment class."""
    model = random_bytes(1024, seed=25)
    other_model = random_bytes(1024, seed=26)
    buffer = any_device.buffer_from_numpy(model)
    other = any_device.buffer_from_numpy(other_model)
    first = random_bytes(40, seed=27)
    second = random_bytes(40, seed=28)
    with any_device.record() as cb:
        cb.fill_buffer(buffer, base, 128, 0, 1)  # zero fill, then an overlapping update
        cb.execution_barrier()
        cb.update_buffer(first, 0, buffer, base + 10, 40)
        cb.execution_barrier()
        cb.update_buffer(second, 5, buffer, base + 200, 35)  # update, then an overlapping fill
        cb.execution_barrier()
        cb.fill_buffer(buffer, base + 220, 40, 0x7E, 1)
        cb.execution_barrier()
        cb.copy_buffer(buffer, base + 8, other, 3, 50)  # copies bytes the update wrote
        cb.copy_buffer(buffer, base + 200, other, 300 + base, 60)
    model[base : base + 128] = 0
    model[base + 10 : base + 50] = first
    model[base + 200 : base + 235] = second[5:40]
    model[base + 220 : base + 260] = 0x7E
    other_model[3:53] = model[base + 8 : base + 58]
    other_model[300 + base : 360 + base] = model[base + 200 : base + 260]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)
    assert_bytes_equal(other.to_numpy(), other_model)


def test_update_reused_source_object(any_device: hal.Device) -> None:
    """One host array rewritten between updates: each update keeps the bytes it saw."""
    model = random_bytes(4096, seed=37)
    buffer = any_device.buffer_from_numpy(model)
    source = np.zeros(64, dtype=np.uint8)
    with any_device.record() as cb:
        for i in range(40):
            source[:] = i + 1
            offset = 1 + i * 67
            cb.update_buffer(source, i % 5, buffer, offset, 7 + i)
            model[offset : offset + 7 + i] = i + 1
    source[:] = 0
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_update_same_range_twice_last_wins(any_device: hal.Device) -> None:
    """Two updates of the same bytes separated by a barrier: the later one is visible."""
    model = random_bytes(256, seed=29)
    buffer = any_device.buffer_from_numpy(model)
    first, second = random_bytes(50, seed=30), random_bytes(50, seed=31)
    with any_device.record() as cb:
        cb.update_buffer(first, 0, buffer, 5, 50)
        cb.execution_barrier()
        cb.update_buffer(second, 0, buffer, 5, 50)
        cb.execution_barrier()
        cb.update_buffer(first, 1, buffer, 100, 48)
        cb.execution_barrier()
        cb.update_buffer(second, 2, buffer, 100, 48)
    model[5:55] = second
    model[100:148] = second[2:50]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


ViewCase = tuple[int, int, int, int, int]
"""(view start, view length, source offset, target offset relative to the view, length)."""

VIEW_CASES: Sequence[ViewCase] = [
    (5, 50, 2, 3, 10),
    (1, 64, 0, 0, 64),
    (4, 32, 7, 4, 28),
    (3, 16, 1, 15, 1),
    (32, 100, 9, 1, 99),
    (2, 70000, 11, 1, 69999),
]


@pytest.mark.parametrize("via", ["subspan", "buffer_ref", "nested_subspan"])
def test_update_through_views(any_device: hal.Device, via: str) -> None:
    """Updates into subspans and BufferRefs: target offsets are relative to the view."""
    slots = [0]  # slot bases, multiples of 256; the last entry is the total size
    for start, span, *_ in VIEW_CASES:
        slots.append(slots[-1] + -(-(start + span + 64) // 256) * 256)
    model = random_bytes(slots[-1], seed=32)
    raw = random_bytes(70100, seed=33)
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        for slot, (start, span, src, dst, length) in zip(slots, VIEW_CASES, strict=False):
            target: hal.Buffer | hal.BufferRef
            if via == "subspan":
                target = buffer.subspan(slot + start, span)
            elif via == "buffer_ref":
                target = hal.BufferRef(buffer, slot + start, span)
            else:
                target = buffer.subspan(slot, start + span + 1).subspan(start, span)
            cb.update_buffer(raw, src, target, dst, length)
            model[slot + start + dst : slot + start + dst + length] = raw[src : src + length]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_update_range_checks(device: hal.Device) -> None:
    """Past the source or the target view: OutOfRangeError, nothing recorded."""
    buffer = device.buffer_from_numpy(random_bytes(128, seed=34))
    view = buffer.subspan(3, 20)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(b"0123456789", 3, buffer, 0, 8)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(bytes(32), 0, view, 1, 20)
    with pytest.raises(hal.OutOfRangeError):
        cb.update_buffer(bytes(32), 0, hal.BufferRef(buffer, 120, 8), 4, 5)
    assert len(cb.segments) == 0
    cb.update_buffer(b"0123456789", 3, buffer, 0, 7)
    cb.update_buffer(bytes(32), 0, view, 1, 19)
    cb.update_buffer(b"", 0, buffer, 128, 0)  # zero-length: a no-op
    assert len(cb.segments) == 2
    cb.end()


def test_update_reusable_command_buffer(any_device: hal.Device) -> None:
    """A DEFAULT command buffer writes the recorded bytes on every submission, even after
    the host source changed."""
    model = random_bytes(4096, seed=35)
    raw = random_bytes(300, seed=36)
    source = raw.copy()
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        cb.update_buffer(source, 3, buffer, 1, 7)
        cb.update_buffer(source, 8, buffer, 64, 128)
        cb.update_buffer(source, 1, buffer, 1003, 201)
    expected = model.copy()
    expected[1:8] = raw[3:10]
    expected[64:192] = raw[8:136]
    expected[1003:1204] = raw[1:202]
    for _ in range(2):
        submit_and_wait(any_device, cb)
        assert_bytes_equal(buffer.to_numpy(), expected)
        source[:] = 0xFF
        any_device.transfer_h2d(model, buffer)
        assert_bytes_equal(buffer.to_numpy(), model)


ODD_SIZES = (1, 2, 3, 5, 6, 7, 37, 38, 39)


def test_update_to_end_of_odd_sized_buffers(any_device: hal.Device) -> None:
    """Updates ending at the last byte of buffers whose size is not a multiple of 4."""
    raw = random_bytes(64, seed=70)
    checks: list[tuple[hal.Buffer, np.ndarray]] = []
    with any_device.record() as cb:
        for i, size in enumerate(ODD_SIZES):
            for length in sorted({1, (size + 1) // 2, size}):
                model = random_bytes(size, seed=71 + 3 * i + length)
                buffer = any_device.buffer_from_numpy(model)
                cb.update_buffer(raw, 5, buffer, size - length, length)
                model[size - length :] = raw[5 : 5 + length]
                checks.append((buffer, model))
    submit_and_wait(any_device, cb)
    for buffer, model in checks:
        assert_bytes_equal(buffer.to_numpy(), model)
