"""Dispatches on a real device: constants, entry points, ordering, binding ranges, indirect.

Every test compares GPU results with a numpy model, byte for byte where the data are
integers. Most tests run twice: on the default device (native ``var<immediate>`` constants)
and on ``device_no_immediates`` (constants staged in a buffer, kernels rewritten by the HAL).
Test kernels live in ``tests/kernels/``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait

import hal

KERNELS = Path(__file__).parent / "kernels"
INDIRECT = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_INDIRECT_PARAMS
UNIFORM = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_UNIFORM_READ
KEY = 0xC3A55A3C
"""XOR key of the byte-level kernels: four distinct bytes, so a misplaced byte shows."""


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each session device in turn: native immediates, then the staged-constants fallback."""
    return request.getfixturevalue(request.param)


def executable(device: hal.Device, name: str) -> hal.Executable:
    """The executable of ``tests/kernels/<name>``."""
    return device.create_executable(str(KERNELS / name))


def elementwise(device: hal.Device) -> hal.Executable:
    """The shipped ``elementwise.wgsl`` example kernels."""
    return device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))


def upload(
    device: hal.Device, data: np.ndarray, usage: hal.BufferUsage | None = None
) -> hal.Buffer:
    """A new buffer holding ``data``'s bytes."""
    if usage is None:
        return device.buffer_from_numpy(data)
    return device.buffer_from_numpy(data, usage=usage)


def xor_key(data: np.ndarray, key: int = KEY) -> np.ndarray:
    """What the byte-level kernels produce: byte j of a binding XORed with byte j % 4 of
    ``key`` (little-endian), i.e. ``key`` XORed into each u32 word."""
    pattern = np.frombuffer(key.to_bytes(4, "little"), dtype=np.uint8)
    return data ^ np.resize(pattern, data.size)


def read(buffer: hal.Buffer, dtype: type = np.uint8) -> np.ndarray:
    """The whole buffer as a flat array."""
    return buffer.to_numpy(dtype)


# -- constants --------------------------------------------------------------------------------


def test_struct_constants_int_and_float(any_device: hal.Device) -> None:
    """elementwise ``scale`` reads a struct {u32 count, f32 scale, f32 bias}."""
    n, count = 200, 150
    x = (np.arange(n, dtype=np.float32) - 50.0).astype(np.float32)
    src = upload(any_device, x)
    dst = upload(any_device, np.full(n, 7.0, dtype=np.float32))
    with any_device.record() as cb:
        cb.dispatch(
            elementwise(any_device),
            "scale",
            (4, 1, 1),
            constants=[count, 2.5, -1.0],
            bindings=[src, dst],
        )
    submit_and_wait(any_device, cb)
    expected = np.full(n, 7.0, dtype=np.float32)
    expected[:count] = x[:count] * np.float32(2.5) - np.float32(1.0)
    np.testing.assert_array_equal(read(dst, np.float32), expected)


@pytest.mark.parametrize("form", ["list", "bytes", "numpy"])
def test_mixed_scalar_constants_bit_exact(any_device: hal.Device, form: str) -> None:
    """i32 (negative), f32, u32 (above 2**31) and f32 fields arrive bit for bit, whether the
    constants are given as numbers, bytes or a numpy array."""
    values = [-7, 1.5, 0xFFFFFFF0, -2.25, 12345]
    packed = struct.pack("<ifIfi", *values)
    constants: object = {
        "list": values,
        "bytes": packed,
        "numpy": np.frombuffer(packed, dtype=np.uint32).copy(),
    }[form]
    out = any_device.allocate_buffer(7 * 4)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "constants.wgsl"),
            "dump_mixed",
            (1, 1, 1),
            constants=constants,
            bindings=[out],
        )
    submit_and_wait(any_device, cb)
    expected = packed + struct.pack("<if", -7 + 12345, 1.5 * -2.25)
    assert read(out).tobytes() == expected


def test_array_constants_full_128_bytes(any_device: hal.Device) -> None:
    """An ``array<u32, 32>`` immediate block (the 128-byte maximum) arrives intact."""
    words = np.random.default_rng(3).integers(0, 2**32, 32, dtype=np.uint32)
    out = any_device.allocate_buffer(32 * 4)
    ex = executable(any_device, "constants_array.wgsl")
    assert ex.layout("dump_words").constants_size == 128
    with any_device.record() as cb:
        cb.dispatch(ex, "dump_words", (1, 1, 1), constants=words.tobytes(), bindings=[out])
    submit_and_wait(any_device, cb)
    expected = words + (np.arange(32, dtype=np.uint32) << np.uint32(24))
    np.testing.assert_array_equal(read(out, np.uint32), expected)


def test_each_dispatch_gets_its_own_constants(any_device: hal.Device) -> None:
    """Many dispatches of one entry point in one command buffer, each with different
    constants, write different buffers: every dispatch must see its own values."""
    ex = executable(any_device, "constants_array.wgsl")
    rng = np.random.default_rng(4)
    blocks = [rng.integers(0, 2**32, 32, dtype=np.uint32) for _ in range(6)]
    outs = [any_device.allocate_buffer(32 * 4) for _ in blocks]
    with any_device.record() as cb:
        for words, out in zip(blocks, outs, strict=True):
            cb.dispatch(ex, "dump_words", (1, 1, 1), constants=words, bindings=[out])
    submit_and_wait(any_device, cb)
    lanes = np.arange(32, dtype=np.uint32) << np.uint32(24)
    for words, out in zip(blocks, outs, strict=True):
        np.testing.assert_array_equal(read(out, np.uint32), words + lanes)


def test_constants_must_be_whole_words(device: hal.Device) -> None:
    """Constants that are not a multiple of 4 bytes, or longer than the block, are rejected
    at record time."""
    ex = executable(device, "multi_entry.wgsl")
    out = device.allocate_buffer(64)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch(ex, "store", (1, 1, 1), constants=b"\x01\x02\x03", bindings=[out])
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch(ex, "store", (1, 1, 1), constants=[1, 2, 3], bindings=[out])
    cb.end()
    assert cb.segments == ()


def test_executable_reflection_same_on_both_devices(
    device: hal.Device, device_no_immediates: hal.Device
) -> None:
    """The rewritten kernels (no immediates) keep the entry points and layouts the source
    declares."""
    for dev in (device, device_no_immediates):
        ex = elementwise(dev)
        assert set(ex.entry_points) == {"scale", "square", "accumulate"}
        assert ex.layout("scale").constants_size == 12
        assert ex.layout("scale").binding_count == 2
        assert [b.kind for b in ex.layout("scale").bindings] == ["read-only-storage", "storage"]
        assert executable(dev, "constants_array.wgsl").layout("dump_words").constants_size == 128
        layout = executable(dev, "uniform_scale.wgsl").layout("affine")
        assert [b.kind for b in layout.bindings] == ["uniform", "read-only-storage", "storage"]
        assert layout.constants_size == 0
    assert executable(device, "multi_entry.wgsl").layout("fixed").constants_size == 0


# -- entry points and ordering ----------------------------------------------------------------


def test_several_entry_points_of_one_module(any_device: hal.Device) -> None:
    """``scale``, ``square`` and ``accumulate`` of elementwise.wgsl, independent dispatches in
    one command buffer, each with its own constants."""
    n = 80
    ex = elementwise(any_device)
    x = np.arange(n, dtype=np.float32) - 30
    bx = upload(any_device, x)
    outs = [upload(any_device, np.full(n, 2.0, dtype=np.float32)) for _ in range(3)]
    with any_device.record() as cb:
        cb.dispatch(ex, "scale", (2, 1, 1), constants=[n, -3.0, 0.25], bindings=[bx, outs[0]])
        cb.dispatch(ex, "square", (2, 1, 1), constants=[50, 0.0, 0.0], bindings=[bx, outs[1]])
        cb.dispatch(ex, "accumulate", (2, 1, 1), constants=[n, 0.0, 0.0], bindings=[bx, outs[2]])
    submit_and_wait(any_device, cb)
    squared = np.full(n, 2.0, dtype=np.float32)
    squared[:50] = x[:50] * x[:50]
    np.testing.assert_array_equal(read(outs[0], np.float32), x * np.float32(-3) + np.float32(0.25))
    np.testing.assert_array_equal(read(outs[1], np.float32), squared)
    np.testing.assert_array_equal(read(outs[2], np.float32), x + 2)


def test_entry_points_sharing_a_constants_block(any_device: hal.Device) -> None:
    """``store`` then ``shift_or`` of multi_entry.wgsl, separated by a barrier, with different
    constants (the module also has an entry point that uses no constants)."""
    ex = executable(any_device, "multi_entry.wgsl")
    out = any_device.allocate_buffer(40 * 4)
    with any_device.record() as cb:
        cb.dispatch(ex, "store", (3, 1, 1), constants=[5, 0], bindings=[out])
        cb.execution_barrier()
        cb.dispatch(ex, "shift_or", (3, 1, 1), constants=[1, 4], bindings=[out])
    submit_and_wait(any_device, cb)
    expected = ((np.arange(40, dtype=np.uint32) + 5) << 4) | 1
    np.testing.assert_array_equal(read(out, np.uint32), expected)


def test_entry_point_without_constants_in_module_with_constants(any_device: hal.Device) -> None:
    """An entry point that does not use the module's constants block (``fixed``) is
    dispatchable next to ones that do."""
    ex = executable(any_device, "multi_entry.wgsl")
    out = any_device.allocate_buffer(16 * 4)
    with any_device.record() as cb:
        cb.dispatch(ex, "store", (1, 1, 1), constants=[10, 0], bindings=[out])
        cb.execution_barrier()
        cb.dispatch(ex, "fixed", (1, 1, 1), bindings=[out])
        cb.execution_barrier()
        cb.dispatch(ex, "shift_or", (1, 1, 1), constants=[3, 2], bindings=[out])
    submit_and_wait(any_device, cb)
    expected = (((np.arange(16, dtype=np.uint32) + 10) * 3 + 1) << 2) | 3
    np.testing.assert_array_equal(read(out, np.uint32), expected)


def test_chained_dispatches_follow_barriers(any_device: hal.Device) -> None:
    """A: y = 2x + 1; B: z = y*y; C: y += z — and then 20 accumulations into w. Any other
    order gives different numbers."""
    n = 96
    ex = elementwise(any_device)
    x = np.arange(n, dtype=np.float32) - 20
    bx = upload(any_device, x)
    by = any_device.allocate_buffer(n * 4)
    bz = any_device.allocate_buffer(n * 4)
    bw = any_device.allocate_buffer(n * 4)
    with any_device.record() as cb:
        cb.dispatch(ex, "scale", (2, 1, 1), constants=[n, 2.0, 1.0], bindings=[bx, by])
        cb.execution_barrier()
        cb.dispatch(ex, "square", (2, 1, 1), constants=[n, 0.0, 0.0], bindings=[by, bz])
        cb.execution_barrier()
        cb.dispatch(ex, "accumulate", (2, 1, 1), constants=[n, 0.0, 0.0], bindings=[bz, by])
        cb.execution_barrier()
        for _ in range(20):
            cb.dispatch(ex, "accumulate", (2, 1, 1), constants=[n, 0.0, 0.0], bindings=[by, bw])
            cb.execution_barrier()
        cb.dispatch(ex, "square", (2, 1, 1), constants=[n, 0.0, 0.0], bindings=[bw, bz])
    submit_and_wait(any_device, cb)
    y = 2 * x + 1
    y = y + y * y
    np.testing.assert_array_equal(read(by, np.float32), y)
    np.testing.assert_array_equal(read(bw, np.float32), 20 * y)
    np.testing.assert_array_equal(read(bz, np.float32), (20 * y) ** 2)


def test_transfers_and_dispatches_interleave_in_order(any_device: hal.Device) -> None:
    """fill → dispatch → update → dispatch → copy, separated by barriers, see each other's
    results in program order."""
    ex = executable(any_device, "xor_inplace.wgsl")
    buf = any_device.allocate_buffer(64)
    out = any_device.allocate_buffer(64)
    patch = np.arange(1, 9, dtype=np.uint8)
    with any_device.record() as cb:
        cb.fill_buffer(buf, 0, 64, 0x11223344, 4)
        cb.execution_barrier()
        cb.dispatch(ex, "xor_inplace", (1, 1, 1), constants=[KEY], bindings=[buf])
        cb.execution_barrier()
        cb.update_buffer(patch, 0, buf, 8, 8)
        cb.execution_barrier()
        cb.dispatch(ex, "xor_inplace", (1, 1, 1), constants=[0x01010101], bindings=[buf])
        cb.execution_barrier()
        cb.copy_buffer(buf, 0, out, 0, 64)
    submit_and_wait(any_device, cb)
    model = xor_key(np.resize(np.frombuffer(b"\x44\x33\x22\x11", np.uint8), 64))
    model[8:16] = patch
    model = xor_key(model, 0x01010101)
    np.testing.assert_array_equal(read(buf), model)
    np.testing.assert_array_equal(read(out), model)


def test_unaligned_update_between_dispatches(any_device: hal.Device) -> None:
    """An update at an odd offset and length between two dispatches lands in order (the HAL
    copies it from its staging buffer with a builtin kernel)."""
    ex = executable(any_device, "xor_inplace.wgsl")
    initial = random_bytes(64, seed=9)
    buf = upload(any_device, initial)
    patch = np.arange(100, 107, dtype=np.uint8)
    with any_device.record() as cb:
        cb.dispatch(ex, "xor_inplace", (1, 1, 1), constants=[KEY], bindings=[buf])
        cb.execution_barrier()
        cb.update_buffer(patch, 0, buf, 9, 7)
        cb.execution_barrier()
        cb.dispatch(ex, "xor_inplace", (1, 1, 1), constants=[0x80808080], bindings=[buf])
    submit_and_wait(any_device, cb)
    model = xor_key(initial)
    model[9:16] = patch
    np.testing.assert_array_equal(read(buf), xor_key(model, 0x80808080))


# -- binding ranges ---------------------------------------------------------------------------


def run_xor_copy(
    device: hal.Device,
    src_range: tuple[int, int],
    dst_range: tuple[int, int],
    size: int = 256,
) -> tuple[np.ndarray, np.ndarray, hal.CommandBuffer]:
    """xor_copy from ``BufferRef(src, *src_range)`` to ``BufferRef(dst, *dst_range)`` of two
    random ``size``-byte buffers. Returns (initial src bytes, initial dst bytes, cb)."""
    src_bytes = random_bytes(size, seed=1)
    dst_bytes = random_bytes(size, seed=2)
    src = upload(device, src_bytes)
    dst = upload(device, dst_bytes)
    words = max(src_range[1], dst_range[1]) // 4 + 1
    with device.record() as cb:
        cb.dispatch(
            executable(device, "xor_words.wgsl"),
            "xor_copy",
            (-(-words // 64), 1, 1),
            constants=[KEY],
            bindings=[hal.BufferRef(src, *src_range), hal.BufferRef(dst, *dst_range)],
        )
    submit_and_wait(device, cb)
    np.testing.assert_array_equal(read(src), src_bytes, err_msg="read-only source changed")
    return src_bytes, read(dst), cb


def expected_xor_copy(
    src_bytes: np.ndarray,
    dst_bytes: np.ndarray,
    src_range: tuple[int, int],
    dst_range: tuple[int, int],
) -> np.ndarray:
    """dst after xor_copy when the source range is at least as long as the target range."""
    (so, sl), (do, dl) = src_range, dst_range
    assert -(-sl // 4) * 4 >= dl
    expected = dst_bytes.copy()
    expected[do : do + dl] = xor_key(src_bytes[so : so + dl])
    return expected


# (source offset, length), (target offset, length): one of the two bindings is one that wgpu
# cannot bind as is (offset not a multiple of 32, or length not a multiple of 4).
ONE_SHADOWED = [
    pytest.param((4, 64), (0, 64), id="src@4"),
    pytest.param((12, 64), (0, 64), id="src@12"),
    pytest.param((36, 64), (0, 64), id="src@36"),
    pytest.param((0, 64), (4, 64), id="dst@4"),
    pytest.param((0, 64), (12, 64), id="dst@12"),
    pytest.param((0, 64), (36, 64), id="dst@36"),
    pytest.param((1, 40), (0, 40), id="src@1"),
    pytest.param((3, 37), (0, 36), id="src@3+37B"),
    pytest.param((0, 40), (3, 37), id="dst@3+37B"),
    pytest.param((0, 40), (1, 40), id="dst@1"),
    pytest.param((0, 12), (0, 10), id="dst-10B"),
    pytest.param((64, 10), (32, 8), id="src-10B"),
]


@pytest.mark.parametrize(("src_range", "dst_range"), ONE_SHADOWED)
def test_binding_at_unaligned_offset_or_length(
    any_device: hal.Device, src_range: tuple[int, int], dst_range: tuple[int, int]
) -> None:
    """The kernel sees exactly the bound bytes; bytes outside the target range are
    untouched; the HAL reports the shadowed binding."""
    src_bytes, dst_after, cb = run_xor_copy(any_device, src_range, dst_range)
    dst_bytes = random_bytes(256, seed=2)
    np.testing.assert_array_equal(
        dst_after, expected_xor_copy(src_bytes, dst_bytes, src_range, dst_range)
    )
    assert cb.stats is not None and cb.stats.shadowed_bindings > 0


@pytest.mark.parametrize(
    ("src_range", "dst_range"),
    [
        pytest.param((4, 64), (12, 64), id="src@4-dst@12"),
        pytest.param((1, 40), (3, 37), id="src@1-dst@3"),
        pytest.param((36, 10), (0, 10), id="both-10B"),
    ],
)
def test_two_unaligned_bindings_in_one_dispatch(
    any_device: hal.Device, src_range: tuple[int, int], dst_range: tuple[int, int]
) -> None:
    """A read-only and a read-write binding that both need shadowing, in one dispatch."""
    src_bytes, dst_after, cb = run_xor_copy(any_device, src_range, dst_range)
    dst_bytes = random_bytes(256, seed=2)
    np.testing.assert_array_equal(
        dst_after, expected_xor_copy(src_bytes, dst_bytes, src_range, dst_range)
    )
    assert cb.stats is not None and cb.stats.shadowed_bindings > 0


def test_aligned_bindings_are_not_shadowed(device: hal.Device) -> None:
    """Bindings at multiples of the adapter alignment with whole-word lengths bind as is."""
    a = max(64, device.caps.storage_alignment)  # 256 under the Metal profile
    size = 4 * a
    src_bytes, dst_after, cb = run_xor_copy(device, (a, 64), (2 * a, 64), size)
    np.testing.assert_array_equal(
        dst_after, expected_xor_copy(src_bytes, random_bytes(size, seed=2), (a, 64), (2 * a, 64))
    )
    assert cb.stats is not None and cb.stats.shadowed_bindings == 0


@pytest.mark.parametrize(("offset", "length"), [(3, 17), (1, 64), (36, 5), (33, 2)])
def test_read_write_binding_at_odd_offset(any_device: hal.Device, offset: int, length: int) -> None:
    """An in-place kernel through an odd-offset, odd-length binding changes exactly the bound
    bytes (shadowed in, and copied back)."""
    initial = random_bytes(128, seed=5)
    buf = upload(any_device, initial)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "xor_inplace.wgsl"),
            "xor_inplace",
            (1, 1, 1),
            constants=[KEY],
            bindings=[hal.BufferRef(buf, offset, length)],
        )
    submit_and_wait(any_device, cb)
    expected = initial.copy()
    expected[offset : offset + length] = xor_key(initial[offset : offset + length])
    np.testing.assert_array_equal(read(buf), expected)
    assert cb.stats is not None and cb.stats.shadowed_bindings > 0


def test_binding_to_the_end_of_a_subspan(any_device: hal.Device) -> None:
    """``BufferRef(subspan, offset)`` with no length binds to the end of the subspan, not of
    the allocation: the kernel's arrayLength covers exactly those bytes."""
    initial = random_bytes(96, seed=10)
    buf = upload(any_device, initial)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "xor_inplace.wgsl"),
            "xor_inplace",
            (1, 1, 1),
            constants=[KEY],
            bindings=[hal.BufferRef(buf.subspan(10, 50), 4)],
        )
    submit_and_wait(any_device, cb)
    expected = initial.copy()
    expected[14:60] = xor_key(initial[14:60])
    np.testing.assert_array_equal(read(buf), expected)


def test_large_unaligned_bindings(any_device: hal.Device) -> None:
    """A 1 MiB read-only binding at offset 3 and a read_write binding at offset 5 of another
    buffer (lengths not multiples of 4)."""
    size = (1 << 20) + 64
    length = (1 << 20) + 2
    src_bytes, dst_bytes = random_bytes(size, seed=11), random_bytes(size, seed=12)
    src, dst = upload(any_device, src_bytes), upload(any_device, dst_bytes)
    words = -(-length // 4)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "xor_words.wgsl"),
            "xor_copy",
            (-(-words // 64), 1, 1),
            constants=[KEY],
            bindings=[hal.BufferRef(src, 3, length + 2), hal.BufferRef(dst, 5, length)],
        )
    submit_and_wait(any_device, cb)
    expected = dst_bytes.copy()
    expected[5 : 5 + length] = xor_key(src_bytes[3 : 3 + length])
    np.testing.assert_array_equal(read(dst), expected)
    np.testing.assert_array_equal(read(src), src_bytes)


def test_shadow_copy_back_is_visible_to_the_next_dispatch(any_device: hal.Device) -> None:
    """A shadowed write (odd offset) followed by a barrier and a shadowed read of an
    overlapping odd range: the read sees the written bytes."""
    initial = random_bytes(96, seed=6)
    buf = upload(any_device, initial)
    out = any_device.allocate_buffer(32)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "xor_inplace.wgsl"),
            "xor_inplace",
            (1, 1, 1),
            constants=[0x0F0F0F0F],
            bindings=[hal.BufferRef(buf, 5, 30)],
        )
        cb.execution_barrier()
        cb.dispatch(
            executable(any_device, "xor_words.wgsl"),
            "xor_copy",
            (1, 1, 1),
            constants=[KEY],
            bindings=[hal.BufferRef(buf, 7, 32), out],
        )
    submit_and_wait(any_device, cb)
    written = initial.copy()
    written[5:35] = xor_key(initial[5:35], 0x0F0F0F0F)
    np.testing.assert_array_equal(read(buf), written)
    np.testing.assert_array_equal(read(out), xor_key(written[7:39]))


@pytest.mark.parametrize("out_offset", [256, 288, 260])
def test_same_buffer_read_only_and_read_write(any_device: hal.Device, out_offset: int) -> None:
    """One buffer bound read-only (binding 0) and read_write (binding 1) on disjoint ranges
    of one dispatch — wgpu forbids it natively; the HAL must make it work."""
    n = 64
    data = np.zeros(160, dtype=np.float32)
    data[:n] = np.arange(n, dtype=np.float32) * 3 - 7
    buf = upload(any_device, data)
    before = read(buf).copy()
    with any_device.record() as cb:
        cb.dispatch(
            elementwise(any_device),
            "scale",
            (1, 1, 1),
            constants=[n, -2.0, 0.5],
            bindings=[hal.BufferRef(buf, 0, n * 4), hal.BufferRef(buf, out_offset, n * 4)],
        )
    submit_and_wait(any_device, cb)
    expected = before.copy()
    result = data[:n] * np.float32(-2.0) + np.float32(0.5)
    expected[out_offset : out_offset + n * 4] = result.view(np.uint8)
    np.testing.assert_array_equal(read(buf), expected)


def test_one_buffer_as_uniform_read_only_and_read_write(any_device: hal.Device) -> None:
    """One buffer bound as uniform (coefficients), read-only storage (input) and read_write
    storage (output), on disjoint ranges of one dispatch."""
    buf = any_device.allocate_buffer(512, usage=UNIFORM)
    coefficients = np.array([2.0, 1.0], dtype=np.float32).view(np.uint32)
    any_device.transfer_h2d(np.array([*coefficients, 16, 0], dtype=np.uint32), buf, 0)
    x = np.arange(16, dtype=np.float32) - 4
    any_device.transfer_h2d(x, buf, 64)
    before = read(buf).copy()
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "uniform_scale.wgsl"),
            "affine",
            (1, 1, 1),
            bindings=[
                hal.BufferRef(buf, 0, 16),
                hal.BufferRef(buf, 64, 64),
                hal.BufferRef(buf, 256, 64),
            ],
        )
    submit_and_wait(any_device, cb)
    expected = before.copy()
    expected[256:320] = (x * 2 + 1).view(np.uint8)
    np.testing.assert_array_equal(read(buf), expected)


def test_subspans_as_bindings(any_device: hal.Device) -> None:
    """Subspans (aligned, unaligned, subspan of a subspan, BufferRef into a subspan) bind the
    bytes of their parent allocation."""
    src_bytes = random_bytes(256, seed=7)
    dst_bytes = random_bytes(512, seed=8)
    src = upload(any_device, src_bytes)
    dst = upload(any_device, dst_bytes)
    ex = executable(any_device, "xor_words.wgsl")
    cases = [  # (source binding, source offset, target binding, target offset, length)
        (src.subspan(32, 64), 32, dst.subspan(0, 64), 0, 64),
        (src.subspan(16).subspan(20, 40), 36, dst.subspan(64, 40), 64, 40),
        (src, 0, dst.subspan(128, 100).subspan(4, 64), 132, 64),
        (
            hal.BufferRef(src.subspan(8), 3, 24),
            11,
            hal.BufferRef(dst.subspan(192), 32, 24),
            224,
            24,
        ),
    ]
    expected = dst_bytes.copy()
    with any_device.record() as cb:
        for s, so, d, do, length in cases:
            if s is src:
                s = hal.BufferRef(src, 0, length)
            cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[s, d])
            expected[do : do + length] = xor_key(src_bytes[so : so + length])
    submit_and_wait(any_device, cb)
    np.testing.assert_array_equal(read(dst), expected)
    np.testing.assert_array_equal(read(src), src_bytes)


# -- uniform bindings -------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 32, 4])
def test_uniform_binding(any_device: hal.Device, offset: int) -> None:
    """A ``var<uniform>`` binding of a buffer with DISPATCH_UNIFORM_READ, at an aligned or an
    unaligned offset."""
    n = 100
    coefficients = np.zeros(16, dtype=np.uint32)
    coefficients[offset // 4 : offset // 4 + 4] = np.array(
        [np.float32(3.0).view(np.uint32), np.float32(-4.5).view(np.uint32), 80, 0]
    )
    ubuf = upload(any_device, coefficients, usage=UNIFORM)
    x = np.arange(n, dtype=np.float32) / 4
    src = upload(any_device, x)
    dst = upload(any_device, np.full(n, -1.0, dtype=np.float32))
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "uniform_scale.wgsl"),
            "affine",
            (2, 1, 1),
            bindings=[hal.BufferRef(ubuf, offset, 16), src, dst],
        )
    submit_and_wait(any_device, cb)
    expected = np.full(n, -1.0, dtype=np.float32)
    expected[:80] = x[:80] * np.float32(3.0) - np.float32(4.5)
    np.testing.assert_array_equal(read(dst, np.float32), expected)


def test_uniform_binding_needs_uniform_usage(device: hal.Device) -> None:
    """Binding a buffer without DISPATCH_UNIFORM_READ to a uniform binding is refused."""
    ubuf = device.allocate_buffer(16)
    src = device.allocate_buffer(64)
    dst = device.allocate_buffer(64)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.PermissionDeniedError):
        cb.dispatch(
            executable(device, "uniform_scale.wgsl"), "affine", (1, 1, 1), bindings=[ubuf, src, dst]
        )


# -- indirect dispatch ------------------------------------------------------------------------


def counters(device: hal.Device, seen_words: int = 64) -> tuple[hal.Buffer, hal.Buffer]:
    """Fresh (counter, seen) buffers for count_workgroups.wgsl."""
    return device.allocate_buffer(4), device.allocate_buffer(seen_words * 4)


def check_ran(counter: hal.Buffer, seen: hal.Buffer, groups: int) -> None:
    """Exactly ``groups`` workgroups ran, each once, with linear ids 0..groups-1."""
    assert int(read(counter, np.uint32)[0]) == groups
    expected = np.zeros(seen.byte_length // 4, dtype=np.uint32)
    expected[:groups] = np.arange(1, groups + 1)
    np.testing.assert_array_equal(read(seen, np.uint32), expected)


def test_count_kernel_with_direct_dispatch(any_device: hal.Device) -> None:
    """Sanity check of the counting kernel: a (3, 2, 2) dispatch runs 12 workgroups."""
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        cb.dispatch(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            (3, 2, 2),
            bindings=[counter, seen],
        )
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 12)


def test_dispatch_indirect_params_from_update(any_device: hal.Device) -> None:
    """Parameters written by update_buffer in the same command buffer (at offset 20)."""
    params = any_device.allocate_buffer(64, usage=INDIRECT)
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        cb.update_buffer(np.array([3, 2, 2], dtype=np.uint32), 0, params, 20, 12)
        cb.execution_barrier()
        cb.dispatch_indirect(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            hal.BufferRef(params, 20, 12),
            bindings=[counter, seen],
        )
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 12)


@pytest.mark.parametrize(
    ("fills", "groups"),
    [
        pytest.param([(0, 12, 2)], 8, id="one-fill"),
        pytest.param([(0, 4, 5), (4, 4, 1), (8, 4, 3)], 15, id="three-fills"),
    ],
)
def test_dispatch_indirect_params_from_fill(
    any_device: hal.Device, fills: list[tuple[int, int, int]], groups: int
) -> None:
    """Parameters written by fill_buffer in the same command buffer (at offset 8)."""
    params = any_device.allocate_buffer(32, usage=INDIRECT)
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        for offset, length, value in fills:
            cb.fill_buffer(params, 8 + offset, length, value, 4)
        cb.execution_barrier()
        cb.dispatch_indirect(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            hal.BufferRef(params, 8, 12),
            bindings=[counter, seen],
        )
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, groups)


def test_dispatch_indirect_params_from_dispatch(any_device: hal.Device) -> None:
    """Parameters computed by a dispatch earlier in the same command buffer, from sizes that
    an update wrote before it."""
    sizes = any_device.allocate_buffer(12)
    params = any_device.allocate_buffer(48, usage=INDIRECT)
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        cb.update_buffer(np.array([2, 3, 1], dtype=np.uint32), 0, sizes, 0, 12)
        cb.execution_barrier()
        cb.dispatch(
            executable(any_device, "make_params.wgsl"),
            "make_params",
            (1, 1, 1),
            bindings=[sizes, hal.BufferRef(params, 32, 16)],
        )
        cb.execution_barrier()
        cb.dispatch_indirect(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            hal.BufferRef(params, 32, 12),
            bindings=[counter, seen],
        )
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 3 * 6 * 1)
    np.testing.assert_array_equal(read(params, np.uint32)[8:11], [3, 6, 1])


def test_dispatch_indirect_params_in_a_bound_buffer(any_device: hal.Device) -> None:
    """The parameters live in the same allocation as a read_write binding of the dispatch
    (disjoint ranges) — legal in the HAL, though wgpu forbids INDIRECT next to a writable
    storage use of one buffer."""
    shared = any_device.allocate_buffer(256, usage=INDIRECT)
    seen = any_device.allocate_buffer(64 * 4)
    with any_device.record() as cb:
        cb.update_buffer(np.array([2, 2, 1], dtype=np.uint32), 0, shared, 0, 12)
        cb.execution_barrier()
        cb.dispatch_indirect(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            hal.BufferRef(shared, 0, 12),
            bindings=[hal.BufferRef(shared, 128, 4), seen],
        )
    submit_and_wait(any_device, cb)
    assert int(read(shared, np.uint32)[32]) == 4
    np.testing.assert_array_equal(read(seen, np.uint32)[:5], [1, 2, 3, 4, 0])


def test_dispatch_indirect_with_zero_count_runs_nothing(any_device: hal.Device) -> None:
    """Indirect parameters with a zero dimension run no workgroup."""
    params = any_device.allocate_buffer(12, usage=INDIRECT)
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        cb.update_buffer(np.array([4, 0, 3], dtype=np.uint32), 0, params, 0, 12)
        cb.execution_barrier()
        cb.dispatch_indirect(
            executable(any_device, "count_workgroups.wgsl"),
            "count",
            params,
            bindings=[counter, seen],
        )
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 0)


def test_dispatch_indirect_argument_checks(device: hal.Device) -> None:
    """Misaligned or short parameter ranges, and buffers without DISPATCH_INDIRECT_PARAMS,
    are refused at record time."""
    ex = executable(device, "count_workgroups.wgsl")
    params = device.allocate_buffer(64, usage=INDIRECT)
    plain = device.allocate_buffer(64)
    counter, seen = counters(device)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch_indirect(ex, "count", hal.BufferRef(params, 2, 12), bindings=[counter, seen])
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch_indirect(ex, "count", hal.BufferRef(params, 0, 8), bindings=[counter, seen])
    with pytest.raises(hal.PermissionDeniedError):
        cb.dispatch_indirect(ex, "count", plain, bindings=[counter, seen])
    cb.end()
    assert cb.segments == ()


# -- empty dispatches -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [(0, 0, 0), (3, 0, 2), (0, 1, 1), (1, 1, 0)])
def test_dispatch_with_a_zero_dimension_is_a_no_op(
    any_device: hal.Device, count: tuple[int, int, int]
) -> None:
    """No workgroup runs; the dispatch after it in the same command buffer still runs."""
    ex = executable(any_device, "count_workgroups.wgsl")
    counter, seen = counters(any_device)
    with any_device.record() as cb:
        cb.dispatch(ex, "count", count, bindings=[counter, seen])
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 0)
    with any_device.record() as cb:
        cb.dispatch(ex, "count", count, bindings=[counter, seen])
        cb.execution_barrier()
        cb.dispatch(ex, "count", (2, 1, 1), bindings=[counter, seen])
    submit_and_wait(any_device, cb)
    check_ran(counter, seen, 2)


# -- record-time checks -----------------------------------------------------------------------


def test_dispatch_argument_checks(device: hal.Device) -> None:
    """Wrong binding count, unknown entry point and recording outside begin/end raise the
    documented errors and record nothing."""
    ex = executable(device, "xor_words.wgsl")
    a, b = device.allocate_buffer(64), device.allocate_buffer(64)
    cb = device.create_command_buffer()
    with pytest.raises(hal.FailedPreconditionError):
        cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[a, b])
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[a])
    with pytest.raises(hal.InvalidArgumentError):
        cb.dispatch(ex, "nope", (1, 1, 1), constants=[KEY], bindings=[a, b])
    with pytest.raises(hal.OutOfRangeError):
        cb.dispatch(
            ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[a, hal.BufferRef(b, 60, 8)]
        )
    cb.end()
    assert cb.segments == ()
    with pytest.raises(hal.FailedPreconditionError):
        cb.dispatch(ex, "xor_copy", (1, 1, 1), constants=[KEY], bindings=[a, b])


def test_stats_and_dump_describe_the_plan(device: hal.Device) -> None:
    """``cb.stats`` counts the dispatches; ``cb.dump()`` names the entry points."""
    ex = elementwise(device)
    a = upload(device, np.ones(64, dtype=np.float32))
    b = device.allocate_buffer(256)
    with device.record() as cb:
        cb.dispatch(ex, "scale", (1, 1, 1), constants=[64, 1.0, 1.0], bindings=[a, b])
        cb.execution_barrier()
        cb.dispatch(ex, "square", (1, 1, 1), constants=[64, 0.0, 0.0], bindings=[b, a])
    assert cb.stats is not None
    assert cb.stats.dispatches >= 2
    text = cb.dump()
    assert "scale" in text and "square" in text
    submit_and_wait(device, cb)
    np.testing.assert_array_equal(read(a, np.float32), np.full(64, 4.0, dtype=np.float32))
