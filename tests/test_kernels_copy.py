"""The builtin copy kernels dispatched directly on small grids, so that every workgroup loops
over several tiles / grid steps (the lowering's grids cover a test-sized copy in one step):
the word kernel's staged funnel shift (builtin_copy.wgsl, tiles of 1024 target words) at
lengths around whole tiles, every byte-offset pair, the 16-byte block kernel, and the
unaligned copy in 16-byte accesses (builtin_copy16.wgsl) at every source shift modulo 16.
Bytes inside the range are compared with numpy, bytes outside it must keep their values.
Then how the lowering picks that kernel: only where both windows round up to whole blocks
inside their allocations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import test_lowering as TL
from conftest import random_bytes, submit_and_wait

import hal
from hal.core.builtins import (
    BuiltinKernel,
    allocation_size,
    copy4_params,
    copy_params,
    shader_source,
)
from hal.core.caps import DeviceCaps
from hal.core.lowering import lower
from hal.core.plan import Plan
from hal.core.rebase import table_shape

TILE_BYTES = 4096
"""Target bytes of one staged tile of builtin_copy.wgsl (256 invocations x 4 words)."""

SIZE = 5 * TILE_BYTES + 64


def _run(
    device: hal.Device, name: str, entry: str, groups: int, params: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dispatch ``entry`` of builtin ``name`` from one random buffer into another; return
    (source, target before, target after)."""
    src_np, dst_np = random_bytes(SIZE, 1), random_bytes(SIZE, 2)
    exe = device.create_executable(shader_source(name), label=name)
    with device.buffer_from_numpy(src_np) as src, device.buffer_from_numpy(dst_np) as dst:
        with device.record() as cb:
            cb.dispatch(exe, entry, (groups, 1, 1), constants=params, bindings=[src, dst])
        submit_and_wait(device, cb)
        return src_np, dst_np, dst.to_numpy(np.uint8, (SIZE,))


def _expect(src: np.ndarray, before: np.ndarray, s0: int, d0: int, length: int) -> np.ndarray:
    want = before.copy()
    want[d0 : d0 + length] = src[s0 : s0 + length]
    return want


@pytest.mark.parametrize(
    ("s0", "d0", "length", "groups"),
    [
        (1, 3, 4 * TILE_BYTES + 5, 1),  # one workgroup, five tiles, the last partial
        (1, 3, 4 * TILE_BYTES - 4, 2),  # whole tiles exactly (plus the partial edge words)
        (2, 1, 3 * TILE_BYTES + 4, 2),  # one word past whole tiles
        (3, 0, TILE_BYTES - 1, 1),  # under one tile
        (5, 130, 4 * TILE_BYTES + 777, 3),
        (7, 4, 9, 1),  # two partial words, one whole
        (0, 6, 2, 1),  # inside one target word
        (9, 2, 4 * TILE_BYTES + 1000, 64),  # more workgroups than tiles
    ],
)
def test_word_copy_shifted_tiles(
    device: hal.Device, s0: int, d0: int, length: int, groups: int
) -> None:
    src, before, got = _run(
        device, "builtin_copy.wgsl", "copy", groups, copy_params(s0, d0, length)
    )
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize("shift", [1, 2, 3])
@pytest.mark.parametrize("d0", [0, 1, 2, 3])
def test_word_copy_every_offset_pair(device: hal.Device, shift: int, d0: int) -> None:
    s0 = d0 + shift
    length = 2 * TILE_BYTES + 3 * d0 + 1
    src, before, got = _run(device, "builtin_copy.wgsl", "copy", 1, copy_params(s0, d0, length))
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize(("s0", "d0"), [(0, 0), (4, 8), (12, 0)])
def test_word_copy_equal_offsets_grid_stride(device: hal.Device, s0: int, d0: int) -> None:
    length = 4 * TILE_BYTES + 12
    src, before, got = _run(device, "builtin_copy.wgsl", "copy", 2, copy_params(s0, d0, length))
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize(("blocks", "groups"), [(1, 1), (255, 1), (1023, 1), (1027, 2), (1200, 3)])
def test_block_copy_grid_stride(device: hal.Device, blocks: int, groups: int) -> None:
    src, before, got = _run(
        device, "builtin_copy4.wgsl", "copy4", groups, copy4_params(2, 1, blocks)
    )
    np.testing.assert_array_equal(got, _expect(src, before, 32, 16, 16 * blocks))


COPY16_STEP = 2 * 256 * 16
"""Target bytes one workgroup of builtin_copy16.wgsl covers in one grid step (two blocks
per invocation)."""


def _copy16_cases() -> list[tuple[int, int, int]]:
    """(source byte, target byte, length): every source shift modulo 16 against target
    offsets of each class, at lengths that leave the paired loop, its remainder, and both
    partial edge blocks (or one partial block only) to do."""
    cases = []
    for s0 in range(16):
        for d0, length in ((0, 2 * COPY16_STEP + 16 * 37 + 5), (1, 45), (7, 3 * COPY16_STEP + 9)):
            cases.append((s0, d0, length))
        cases.append((s0, 13, 2))  # inside one target block
    return cases


def test_copy16_every_shift(device: hal.Device) -> None:
    """One workgroup per dispatch (so it loops), one slot per case: every source shift
    modulo 16, the target at offsets 0, 1, 7 and 13 modulo 16; bytes outside each range keep
    their values."""
    cases = _copy16_cases()
    slot = 4 * COPY16_STEP
    size = slot * len(cases)
    src_np, dst_np = random_bytes(size, 3), random_bytes(size, 4)
    exe = device.create_executable(shader_source("builtin_copy16.wgsl"), label="copy16")
    want = dst_np.copy()
    with device.buffer_from_numpy(src_np) as src, device.buffer_from_numpy(dst_np) as dst:
        with device.record() as cb:
            for k, (s0, d0, length) in enumerate(cases):
                s, d = k * slot + s0, k * slot + d0
                params = copy_params(s, d, length)
                cb.dispatch(exe, "copy16", (1, 1, 1), constants=params, bindings=[src, dst])
                want[d : d + length] = src_np[s : s + length]
        submit_and_wait(device, cb)
        np.testing.assert_array_equal(dst.to_numpy(np.uint8, (size,)), want)
        np.testing.assert_array_equal(src.to_numpy(np.uint8, (size,)), src_np)


@pytest.mark.parametrize(("s0", "d0", "groups"), [(1, 3, 2), (3, 1, 5), (14, 0, 64)])
def test_copy16_grid_stride(device: hal.Device, s0: int, d0: int, groups: int) -> None:
    """Several workgroups (and more workgroups than blocks) over one range."""
    length = SIZE - 64
    src, before, got = _run(
        device, "builtin_copy16.wgsl", "copy16", groups, copy_params(s0, d0, length)
    )
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


# -- which kernel the lowering picks --------------------------------------------------------

PADDED = DeviceCaps(storage_alignment=256, padded_allocations=True)


class Root(TL.Alloc):
    """A stand-in root buffer with the ``byte_length`` the 16-byte windows are judged by."""

    @property
    def byte_length(self) -> int:
        return self.size


def _lowered(caps: DeviceCaps, segments: list, allocs: list[TL.Alloc]) -> Plan:
    """Lower ``segments`` with every transfer a builtin kernel and replay the plan on memory
    padded as the allocator pads (allocation_size) against in-order execution."""
    plan = lower(segments, caps, TL.LoweringOptions(transfers="kernel"))
    got = TL.random_memory(allocs, 5)
    for a in allocs:
        got[a] += bytearray(allocation_size(a.size, caps.max_buffer_size) - len(got[a]))
    want = {a: bytearray(v) for a, v in got.items()}
    TL.execute(plan, caps, got)
    TL.reference(segments, want)
    assert got == want
    return plan


def _kernels(plan: Plan) -> list[BuiltinKernel]:
    return [d.kernel for d in TL.all_dispatches(plan)]  # type: ignore[misc]


@pytest.mark.parametrize(("s0", "d0", "length"), [(1, 3, 100_003), (5, 2, 37), (258, 513, 9)])
def test_unaligned_copy_lowers_to_copy16(s0: int, d0: int, length: int) -> None:
    """Offsets apart modulo 4 with padded allocations: the 16-byte kernel, its windows whole
    blocks reaching past the range's end into the allocation's padding (a 3-byte tail)."""
    a, b = Root(s0 + length), Root(d0 + length)
    plan = _lowered(PADDED, [TL.copy(a, s0, b, d0, length)], [a, b])
    assert _kernels(plan) == [BuiltinKernel.COPY16]
    (d,) = TL.all_dispatches(plan)
    (_, _, src), (_, _, dst) = d.bindings
    assert (src.offset, src.size) == (s0 & ~255, -(-(s0 + length) // 16) * 16 - (s0 & ~255))
    assert (dst.offset, dst.size) == (d0 & ~255, -(-(d0 + length) // 16) * 16 - (d0 & ~255))
    assert TL.params(plan, d)[:3] == (s0 % 256, d0 % 256, length)
    # Unpadded stand-ins (the default caps) keep the word kernel, windows in whole words.
    plan = TL.lower(
        [TL.copy(a, s0, b, d0, length)], DeviceCaps(), TL.LoweringOptions(transfers="kernel")
    )
    assert _kernels(plan) == [BuiltinKernel.COPY]


def test_copy16_not_where_a_block_window_is_impossible() -> None:
    """The word kernel where a 16-byte window could leave the allocation or the windows
    would overlap: an allocation padded to words only (within 16 bytes of max-buffer-size), update
    bytes copied from the plan's STAGING buffer, and copies within one allocation whose
    block windows overlap; copies with offsets equal modulo 4 keep their kernels too. The
    test is the allocation's padding: near the limit even a window far from its end is not
    taken (a binding table's plan may be rebased onto another allocation)."""
    near = DeviceCaps(storage_alignment=256, padded_allocations=True, max_buffer_size=1003)
    a, b, c = Root(984), Root(990), Root(1000)  # padded to 992, 992 and 1000 (words only)
    plan = _lowered(near, [TL.copy(a, 1, b, 300, 10), TL.copy(a, 1, c, 300, 10)], [a, b, c])
    assert _kernels(plan) == [BuiltinKernel.COPY16, BuiltinKernel.COPY]
    plan = _lowered(PADDED, [TL.update(bytes(range(1, 40)), b, 3)], [b])
    assert _kernels(plan) == [BuiltinKernel.COPY]  # STAGING is not padded to whole blocks
    c = Root(4096)
    # [300, 305) -> [1025, 1030): block windows [256, 320) and [1024, 1040) stay apart.
    plan = _lowered(PADDED, [TL.copy(c, 300, c, 1025, 5)], [c])
    assert _kernels(plan) == [BuiltinKernel.COPY16]
    # [1, 6) -> [10, 15): one window over both ranges (same allocation, overlapping windows).
    plan = _lowered(PADDED, [TL.copy(c, 1, c, 10, 5)], [c])
    assert _kernels(plan) == [BuiltinKernel.COPY_WITHIN]
    a, b = Root(1000), Root(1000)
    plan = _lowered(PADDED, [TL.copy(a, 2, b, 6, 501)], [a, b])
    assert _kernels(plan) == [BuiltinKernel.COPY]  # 2 and 6 agree modulo 4


def test_allocations_are_padded_to_whole_blocks() -> None:
    """The allocator pads to whole 16-byte blocks (byte_length unchanged), to whole words
    where blocks would pass max-buffer-size; the device says so to the lowering."""
    with hal.create_device(implementation="null", backend="null") as own:
        assert own.caps.padded_allocations
        for size, padded in ((0, 16), (1, 16), (16, 16), (17, 32), (1000, 1008)):
            with own.allocate_buffer(size) as buffer:
                assert (buffer.byte_length, buffer.allocation.size) == (size, padded)
        own.caps = dataclasses.replace(own.caps, max_buffer_size=1003)
        for size, padded in ((984, 992), (990, 992), (993, 996), (1000, 1000)):
            with own.allocate_buffer(size) as buffer:
                assert (buffer.byte_length, buffer.allocation.size) == (size, padded)
    assert allocation_size(0, 8) == 4 and allocation_size(5, 8) == 8


def test_table_shape_tells_block_padded_allocations_apart() -> None:
    """A binding table's plan is rebased only onto allocations padded like those it was
    lowered for: one padded to words only (near max-buffer-size) has another shape."""
    caps = DeviceCaps(padded_allocations=True, max_buffer_size=1003)
    small, near = Root(500), Root(1000)
    other = Root(600)
    assert table_shape([(small, small, 0, 400)], caps, frozenset()) == ((0, 400, True),)
    assert table_shape([(near, near, 0, 400)], caps, frozenset()) == ((0, 400, False),)
    assert table_shape([(other, other, 256, 400)], caps, frozenset()) == ((0, 400, True),)
