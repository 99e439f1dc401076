"""``fill_buffer``: byte-exact results against a numpy model.

Every target is pre-filled with non-zero random bytes that avoid the pattern's bytes, so a
byte written outside ``[offset, offset + length)`` (or one left unwritten inside it) shows up
when the whole buffer is compared with the model. Many fills are batched into one command
buffer: each sub-case owns a disjoint slot of one large buffer, and slot bases are multiples
of 256 so a sub-case keeps the alignment class (mod 4 and mod the 32-byte storage alignment)
of its in-slot offset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait

import hal
from hal.core.batching import builtin_transfers

SLOT_ALIGN = 256
"""Slot bases are multiples of this, so in-slot offsets keep their alignment class."""

SLOT_PAD = 64
"""Untouched bytes after each sub-case, inside its slot."""

PATTERN_INTS = {1: 0xA5, 2: 0xB6C7, 4: 0x1A2B3C4D}
PATTERN_BYTES = {1: b"\xe1", 2: b"\xe1\xf2", 4: b"\xe1\xf2\x03\x14"}

# In-slot offsets per pattern length: 0, odd offsets, ≡ 2 mod 4, multiples of 4 that are not
# multiples of 32, and multiples of 32.
OFFSETS = {
    1: (0, 1, 2, 3, 5, 7, 4, 12, 36, 31, 33, 64),
    2: (0, 2, 6, 10, 34, 4, 8, 12, 36, 30, 64),
    4: (0, 4, 8, 12, 20, 36, 100, 32, 64),
}
# Lengths per pattern length (multiples of it), including 64 KiB.
LENGTHS = {
    1: (1, 3, 31, 33, 65536, 65537),
    2: (2, 6, 30, 34, 62, 65536),
    4: (4, 8, 28, 36, 65536),
}


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each test runs with native immediates and with the uniform-buffer fallback."""
    return request.getfixturevalue(request.param)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def background(size: int, seed: int, avoid: bytes = b"") -> np.ndarray:
    """Non-zero random bytes containing none of the bytes in ``avoid``."""
    data = random_bytes(size, seed)
    banned = np.frombuffer(bytes(avoid) + b"\0", dtype=np.uint8)
    substitute = next(v for v in range(1, 256) if v not in banned)
    data[np.isin(data, banned)] = substitute
    return data


def slot_bases(extents: Sequence[int]) -> tuple[list[int], int]:
    """Disjoint slot bases for sub-cases needing ``extents`` bytes each, and the total size."""
    bases, cursor = [], 0
    for extent in extents:
        bases.append(cursor)
        cursor += _round_up(extent + SLOT_PAD, SLOT_ALIGN)
    return bases, cursor


def model_fill(model: np.ndarray, offset: int, length: int, pattern: bytes) -> None:
    """The expected effect of a fill: ``pattern`` repeated from ``offset``."""
    unit = np.frombuffer(pattern, dtype=np.uint8)
    model[offset : offset + length] = np.resize(unit, length)


def pattern_bytes(pattern: int | bytes, pattern_length: int | None) -> bytes:
    """The little-endian bytes a fill pattern stands for."""
    if isinstance(pattern, bytes):
        return pattern
    return pattern.to_bytes(4 if pattern_length is None else pattern_length, "little")


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


def matrix_cases(pattern_length: int) -> list[tuple[int, int]]:
    """(in-slot offset, length) sub-cases of the alignment matrix for one pattern length."""
    return [(o, n) for o in OFFSETS[pattern_length] for n in LENGTHS[pattern_length]]


@pytest.mark.parametrize("kind", ["int", "bytes"])
@pytest.mark.parametrize("pattern_length", [1, 2, 4])
def test_fill_alignment_matrix(any_device: hal.Device, pattern_length: int, kind: str) -> None:
    """Every (offset, length) alignment class, one command buffer, one readback."""
    table: dict[int, int] | dict[int, bytes] = PATTERN_INTS if kind == "int" else PATTERN_BYTES
    pattern: int | bytes = table[pattern_length]
    data = pattern_bytes(pattern, pattern_length)
    cases = matrix_cases(pattern_length)
    bases, size = slot_bases([o + n for o, n in cases])
    model = background(size, seed=pattern_length, avoid=data)
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        for base, (offset, length) in zip(bases, cases, strict=True):
            if kind == "int":
                cb.fill_buffer(buffer, base + offset, length, pattern, pattern_length)
            else:
                cb.fill_buffer(buffer, base + offset, length, pattern)
            model_fill(model, base + offset, length, data)
    submit_and_wait(any_device, cb)
    assert cb.stats is not None and cb.stats.native_clears == 0
    assert_bytes_equal(buffer.to_numpy(), model)


def test_fill_int_pattern_defaults_to_four_bytes(device: hal.Device) -> None:
    """An int pattern without pattern_length is a 4-byte little-endian word."""
    model = background(256, seed=11, avoid=b"\x01\x02\x03\x04")
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        cb.fill_buffer(buffer, 4, 40, 0x04030201)
        cb.fill_buffer(buffer, 68, 12, bytes([1, 2, 3, 4]), 4)
        cb.fill_buffer(buffer, 129, 5, 0x01, 1)
    model_fill(model, 4, 40, b"\x01\x02\x03\x04")
    model_fill(model, 68, 12, b"\x01\x02\x03\x04")
    model_fill(model, 129, 5, b"\x01")
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


FillCase = tuple[int, int, int | bytes, int | None]
"""(in-slot offset, length, pattern, pattern_length) of one fill."""

ZERO_ALIGNED: list[FillCase] = [
    # (in-slot offset, length, pattern, pattern_length): absolute offset and length ≡ 0 mod 4.
    (0, 4, 0, 4),
    (4, 32, 0, 1),
    (36, 36, b"\0\0", None),
    (64, 65536, 0, 2),
    (8, 12, b"\0", None),
    (100, 28, b"\0\0\0\0", None),
]
ZERO_UNALIGNED: list[FillCase] = [
    (1, 1, 0, 1),
    (3, 33, b"\0", None),
    (2, 6, 0, 2),
    (6, 64, b"\0\0", None),
    (0, 3, 0, 1),
    (4, 30, 0, 2),
    (5, 65536, 0, 1),
]


def run_fills(
    device: hal.Device,
    cases: Sequence[FillCase],
    seed: int,
) -> hal.CommandBuffer:
    """Fill each (offset, length, pattern, pattern_length) case into its own slot of one
    buffer pre-filled with random bytes; check the whole buffer; return the command buffer."""
    bases, size = slot_bases([o + n for o, n, _, _ in cases])
    model = background(size, seed)
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        for base, (offset, length, pattern, pattern_length) in zip(bases, cases, strict=True):
            cb.fill_buffer(buffer, base + offset, length, pattern, pattern_length)
            model_fill(model, base + offset, length, pattern_bytes(pattern, pattern_length))
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)
    return cb


def test_zero_fill_aligned_is_native_clear(any_device: hal.Device) -> None:
    """Zero patterns at 4-byte aligned offset and length lower to native clear_buffer."""
    cb = run_fills(any_device, ZERO_ALIGNED, seed=21)
    assert cb.stats is not None
    assert cb.stats.native_clears == len(ZERO_ALIGNED)
    assert cb.stats.builtin_dispatches == 0


def test_zero_fill_unaligned_uses_builtin(any_device: hal.Device) -> None:
    """Zero patterns at unaligned offset or length go through the builtin fill kernel."""
    cb = run_fills(any_device, ZERO_UNALIGNED, seed=22)
    assert cb.stats is not None
    assert cb.stats.native_clears == 0
    # Large kernel fills split into a 16-byte-block body and word edges.
    assert cb.plan is not None and builtin_transfers(cb.plan) >= len(ZERO_UNALIGNED)


def test_zero_and_pattern_fills_mixed(device: hal.Device) -> None:
    """Native clears and builtin fills interleaved in one command buffer."""
    cases: list[FillCase] = []
    for a, b in zip(ZERO_ALIGNED, ZERO_UNALIGNED, strict=False):
        cases += [a, b, (a[0], a[1], 0x5A, 1), (b[0] | 1, b[1], 0x5B, 1)]
    cb = run_fills(device, cases, seed=23)
    assert cb.stats is not None and cb.stats.native_clears == len(ZERO_ALIGNED)


def test_fill_zero_length_is_noop(device: hal.Device) -> None:
    """A zero-length fill (valid arguments) records nothing and touches nothing."""
    model = background(64, seed=24)
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        cb.fill_buffer(buffer, 6, 0, 0x1234, 2)
        cb.fill_buffer(buffer, 64, 0, 0, 4)  # at the very end
        cb.fill_buffer(buffer.subspan(3, 20), 1, 0, b"\x01")
    assert len(cb.segments) == 0
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


# Subspan / BufferRef cases: (absolute start of the target range, its length, fill offset
# relative to the target, fill length or None, pattern). The pattern repeats from the fill
# offset relative to the target.
VIEW_CASES: list[tuple[int, int, int, int | None, bytes]] = [
    (1, 100, 0, 100, b"\xab"),  # odd absolute start, pattern_length 1
    (1, 100, 3, None, b"\xab"),  # to the end of the view, not of the buffer
    (2, 60, 0, 60, b"\x11\x22"),  # absolute offset 2, pattern_length 2
    (2, 60, 4, 20, b"\x11\x22"),
    (1, 61, 2, 10, b"\x11\x22"),  # odd absolute start: relative offset 2 is allowed
    (3, 40, 0, None, b"\x11\x22\x33\x44"),  # pattern_length 4 at absolute offset 3
    (3, 40, 4, 12, b"\x11\x22\x33\x44"),
    (5, 40, 2, 36, b"\x66\x77"),
    (6, 50, 8, 40, b"\x01\x02\x03\x04"),
    (33, 70, 0, None, b"\0"),  # zero pattern in an odd view
    (36, 64, 0, 64, b"\0\0\0\0"),  # zero pattern, aligned absolute offset
    (7, 65536, 1, 65535, b"\xc3"),
    (10, 65538, 2, 65536, b"\xd4\xe5"),
]


@pytest.mark.parametrize("via", ["subspan", "buffer_ref", "nested_subspan"])
def test_fill_through_views(any_device: hal.Device, via: str) -> None:
    """Fills through subspans and BufferRefs: offsets are relative to the view, alignment is
    checked against the view, and the pattern repeats from the view-relative offset."""
    bases, size = slot_bases([start + span for start, span, _, _, _ in VIEW_CASES])
    model = background(size, seed=31, avoid=b"\xab\x11\x22\x33\x44\x66\x77\x01\x02\x03\x04")
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        for base, (start, span, offset, length, pattern) in zip(bases, VIEW_CASES, strict=True):
            target: hal.Buffer | hal.BufferRef
            if via == "subspan":
                target = buffer.subspan(base + start, span)
            elif via == "buffer_ref":
                target = hal.BufferRef(buffer, base + start, span)
            else:  # a subspan of a subspan re-roots on the allocation
                target = buffer.subspan(base, start + span + 3).subspan(start, span)
            cb.fill_buffer(target, offset, length, pattern)
            count = span - offset if length is None else length
            model_fill(model, base + start + offset, count, pattern)
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_fill_view_alignment_is_relative(device: hal.Device) -> None:
    """offset/length must be multiples of pattern_length relative to the given target."""
    buffer = device.buffer_from_numpy(background(128, seed=32))
    odd_view = buffer.subspan(1, 64)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError):
        cb.fill_buffer(odd_view, 1, 2, 0x1122, 2)
    with pytest.raises(hal.InvalidArgumentError):
        cb.fill_buffer(hal.BufferRef(buffer, 4, 64), 2, 6, b"\x01\x02\x03\x04")
    with pytest.raises(hal.InvalidArgumentError):
        cb.fill_buffer(buffer, 4, 6, 0x01020304, 4)
    with pytest.raises(hal.InvalidArgumentError):  # to the end: 63 bytes, not a multiple
        cb.fill_buffer(buffer.subspan(1, 63), 0, None, 0x01020304)
    assert len(cb.segments) == 0  # a rejected command records nothing
    cb.fill_buffer(odd_view, 2, 4, 0x1122, 2)  # odd absolute offset, aligned relative one
    cb.fill_buffer(odd_view, 0, None, 0x01020304)  # the whole 64-byte view
    assert len(cb.segments) == 2
    cb.end()


def test_fill_reusable_command_buffer(any_device: hal.Device) -> None:
    """A DEFAULT (reusable) command buffer fills the same bytes on every submission."""
    model = background(4096, seed=41, avoid=b"\x9a\x8b\x7c\x6d\xee")
    original = model.copy()
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        cb.fill_buffer(buffer, 3, 61, b"\xee")
        cb.fill_buffer(buffer, 130, 34, 0x9A8B, 2)
        cb.fill_buffer(buffer, 256, 512, 0)
        cb.fill_buffer(hal.BufferRef(buffer, 1025, 1000), 4, 996, 0x6D7C8B9A)
    model_fill(model, 3, 61, b"\xee")
    model_fill(model, 130, 34, b"\x8b\x9a")
    model_fill(model, 256, 512, b"\0")
    model_fill(model, 1029, 996, b"\x9a\x8b\x7c\x6d")
    for _ in range(2):
        submit_and_wait(any_device, cb)
        assert_bytes_equal(buffer.to_numpy(), model)
        any_device.transfer_h2d(original, buffer)
        assert_bytes_equal(buffer.to_numpy(), original)


@pytest.mark.parametrize(
    ("offset", "pattern"),
    [(1, b"\x3c"), (2, b"\x3c\x4d"), (4, 0x5E6F7A8B)],
    ids=["pattern1", "pattern2", "pattern4"],
)
def test_fill_larger_than_one_grid(device: hal.Device, offset: int, pattern: int | bytes) -> None:
    """Over 4 MiB: more words than one builtin dispatch has invocations (grid-stride loop)."""
    length = (4 << 20) + 4100
    data = pattern_bytes(pattern, None)
    model = background(offset + length + 67, seed=51, avoid=data)
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        cb.fill_buffer(buffer, offset, length, pattern)
    model_fill(model, offset, length, data)
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


ODD_SIZES = (1, 2, 3, 5, 6, 7, 37, 38, 39)
END_PATTERNS: list[tuple[int | bytes, int]] = [(b"\x5c", 1), (0, 1), (b"\x6d\x7e", 2)]


def test_fill_to_end_of_odd_sized_buffers(any_device: hal.Device) -> None:
    """Fills ending at the last byte of buffers whose size is not a multiple of 4."""
    buffers, models = [], []
    with any_device.record() as cb:
        for i, size in enumerate(ODD_SIZES):
            for j, (pattern, unit) in enumerate(END_PATTERNS):
                model = background(size, seed=60 + 3 * i + j, avoid=b"\x5c\x6d\x7e")
                buffer = any_device.buffer_from_numpy(model)
                base = size % unit  # a view whose size is a whole number of patterns
                offset = (size - base) // 2 // unit * unit
                cb.fill_buffer(hal.BufferRef(buffer, base), offset, None, pattern, unit)
                start = base + offset
                model_fill(model, start, size - start, pattern_bytes(pattern, unit))
                buffers.append(buffer)
                models.append(model)
    submit_and_wait(any_device, cb)
    for buffer, model in zip(buffers, models, strict=True):
        assert_bytes_equal(buffer.to_numpy(), model)
