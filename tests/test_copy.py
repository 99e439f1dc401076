"""``copy_buffer``: byte-exact results against a numpy model, at every alignment.

Sources and targets are pre-filled with different non-zero random bytes, so a byte copied to
the wrong place, a byte left uncopied, or a byte written outside the target range shows up when
whole buffers are compared with the model. Sub-cases are batched into one command buffer: each
owns a disjoint slot, and slot bases are multiples of 256 so an in-slot offset keeps its
alignment class (mod 4 and mod the 32-byte storage alignment).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait

import hal
from hal.core.batching import builtin_transfers
from hal.core.builtins import BuiltinKernel, block_grid
from hal.core.cost import TransferCosts
from hal.core.plan import ComputePass

SLOT_ALIGN = 256
SLOT_PAD = 64

# Offset classes: 0 mod 32, 8 mod 32, 4 mod 8, 2 mod 4, odd.
OFFSET_CLASSES = {"a32": 32, "a8": 8, "a4": 4, "a2": 2, "odd1": 1, "odd3": 3}
LENGTHS = (1, 3, 4, 31, 33, 4096 + 5)
MIB = 1 << 20


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Each test runs with native immediates and with the uniform-buffer fallback."""
    return request.getfixturevalue(request.param)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def slot_bases(extents: Sequence[int]) -> tuple[list[int], int]:
    """Disjoint slot bases for sub-cases needing ``extents`` bytes each, and the total size."""
    bases, cursor = [], 0
    for extent in extents:
        bases.append(cursor)
        cursor += _round_up(extent + SLOT_PAD, SLOT_ALIGN)
    return bases, cursor


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


def is_native(source_offset: int, target_offset: int, length: int) -> bool:
    """Whether a copy between two allocations can be a native copy_buffer_to_buffer."""
    return source_offset % 4 == 0 and target_offset % 4 == 0 and length % 4 == 0


CopyCase = tuple[int, int, int]  # (source offset, target offset, length), absolute


def run_copies(
    device: hal.Device, cases: Sequence[tuple[int, int, int]], seed: int
) -> tuple[hal.CommandBuffer, list[CopyCase]]:
    """Copy each (source in-slot offset, target in-slot offset, length) case between two
    random buffers, one slot per case, in one command buffer; check both buffers whole."""
    bases, size = slot_bases([max(s, t) + n for s, t, n in cases])
    source_model = random_bytes(size, seed)
    target_model = random_bytes(size, seed + 1000)
    source = device.buffer_from_numpy(source_model)
    target = device.buffer_from_numpy(target_model)
    absolute: list[CopyCase] = []
    with device.record() as cb:
        for base, (s, t, n) in zip(bases, cases, strict=True):
            cb.copy_buffer(source, base + s, target, base + t, n)
            target_model[base + t : base + t + n] = source_model[base + s : base + s + n]
            absolute.append((base + s, base + t, n))
    submit_and_wait(device, cb)
    assert_bytes_equal(target.to_numpy(), target_model)
    assert_bytes_equal(source.to_numpy(), source_model)
    return cb, absolute


@pytest.mark.parametrize("source_class", list(OFFSET_CLASSES))
def test_copy_alignment_matrix(any_device: hal.Device, source_class: str) -> None:
    """Source class × every target class × every length, between two buffers."""
    source_offset = OFFSET_CLASSES[source_class]
    cases = [(source_offset, t, n) for t in OFFSET_CLASSES.values() for n in LENGTHS]
    cb, absolute = run_copies(any_device, cases, seed=source_offset)
    natives = sum(is_native(s, t, n) for s, t, n in absolute)
    assert cb.stats is not None
    assert cb.stats.native_copies == natives
    # Large kernel copies split into a 16-byte-block body and word edges.
    assert cb.plan is not None and builtin_transfers(cb.plan) >= len(cases) - natives


def test_copy_large(any_device: hal.Device) -> None:
    """1 MiB (and one > 4 MiB) copies at aligned and misaligned offset pairs, in one
    command buffer."""
    cases = [
        (0, 0, MIB),
        (1, 1, MIB),
        (1, 0, MIB),
        (3, 2, MIB + 3),
        (4, 8, MIB),
        (2, 33, MIB - 1),
        # Over 4 MiB: more words than one builtin dispatch has invocations (grid stride).
        (1, 6, 4 * MIB + 4101),
    ]
    run_copies(any_device, cases, seed=7)


def test_copy_aligned_is_native(device: hal.Device) -> None:
    """4-byte aligned copies between different buffers use copy_buffer_to_buffer only."""
    cases = [(0, 0, 4), (32, 8, 64), (4, 36, 4096), (8, 4, 12)]
    cb, _ = run_copies(device, cases, seed=8)
    assert cb.stats is not None
    assert cb.stats.native_copies == len(cases)
    assert cb.stats.builtin_dispatches == 0


def test_copy_unaligned_uses_builtin(device: hal.Device) -> None:
    """Copies with an unaligned offset or length use the builtin copy kernel only."""
    cases = [(1, 0, 4), (0, 1, 4), (0, 0, 3), (2, 2, 62), (4, 4, 5), (3, 7, 4101)]
    cb, _ = run_copies(device, cases, seed=9)
    assert cb.stats is not None
    assert cb.stats.native_copies == 0
    assert cb.plan is not None and builtin_transfers(cb.plan) >= len(cases)


# Same-allocation copies between disjoint ranges: (source offset, target offset, length)
# within a 16 KiB slot of one buffer.
SAME_BUFFER_CASES = [
    (0, 5, 5),  # adjacent, sharing the word [4, 8) at the boundary
    (5, 0, 5),  # backward, adjacent
    (1, 3, 2),  # both ranges inside one word
    (3, 1, 2),
    (0, 64, 64),  # forward, aligned (a native copy cannot take one buffer twice)
    (64, 0, 64),  # backward, aligned
    (300, 1, 33),  # backward, different byte shifts
    (1, 300, 33),
    (0, 4096, 4096),  # adjacent, aligned, large
    (1, 4102, 4101),  # adjacent, odd, large
    (4103, 2, 4101),  # adjacent backward, shift 1 (source ≡ 3, target ≡ 2 mod 4)
    (8, 4, 4),  # one word forward, adjacent
    (2, 6, 4),
    (7, 3, 4),
]
SAME_SLOT = 16384


def test_copy_same_buffer_disjoint(any_device: hal.Device) -> None:
    """Disjoint ranges of one allocation: forward, backward, adjacent, sharing a word."""
    count = len(SAME_BUFFER_CASES)
    model = random_bytes(SAME_SLOT * count, seed=10)
    original = model.copy()
    buffer = any_device.buffer_from_numpy(model)
    with any_device.record() as cb:
        for i, (s, t, n) in enumerate(SAME_BUFFER_CASES):
            base = i * SAME_SLOT
            cb.copy_buffer(buffer, base + s, buffer, base + t, n)
            model[base + t : base + t + n] = original[base + s : base + s + n]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_copy_between_subspans_of_one_allocation(any_device: hal.Device) -> None:
    """Subspans and BufferRefs of one allocation: offsets relative to each view."""
    model = random_bytes(4096, seed=11)
    original = model.copy()
    buffer = any_device.buffer_from_numpy(model)
    low, high = buffer.subspan(3, 100), buffer.subspan(103, 200)
    with any_device.record() as cb:
        cb.copy_buffer(low, 1, high, 0, 99)  # [4, 103) -> [103, 202): adjacent
        cb.copy_buffer(hal.BufferRef(buffer, 1001, 100), 0, buffer.subspan(1500), 7, 100)
        cb.copy_buffer(buffer.subspan(2048, 512).subspan(5, 64), 0, buffer, 2700, 64)
    model[103:202] = original[4:103]
    model[1507:1607] = original[1001:1101]
    model[2700:2764] = original[2053:2117]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_unaligned_copy_in_16_byte_accesses(any_device: hal.Device) -> None:
    """Copies whose offsets differ modulo 4 run the 16-byte-access kernel (allocations are
    padded to whole blocks): one ending at the last byte of an odd-sized buffer (its window
    reaches into the hidden padding), one between far-apart ranges of one allocation, one
    between subspans; every byte outside the ranges keeps its value."""
    source_model, target_model = random_bytes(70_001, seed=70), random_bytes(50_003, seed=71)
    one_model = random_bytes(340_001, seed=72)
    source = any_device.buffer_from_numpy(source_model)
    target = any_device.buffer_from_numpy(target_model)
    one = any_device.buffer_from_numpy(one_model)
    original = one_model.copy()
    with any_device.record() as cb:
        cb.copy_buffer(source, 1, target, 3, 50_000)
        cb.copy_buffer(one, 5, one, 150_002, 100_000)
        cb.copy_buffer(one.subspan(250_007, 40_000), 2, one.subspan(300_000), 18, 39_983)
    target_model[3:] = source_model[1:50_001]
    one_model[150_002:250_002] = original[5:100_005]
    one_model[300_018:340_001] = original[250_009:289_992]
    submit_and_wait(any_device, cb)
    assert_bytes_equal(target.to_numpy(), target_model)
    assert_bytes_equal(source.to_numpy(), source_model)
    assert_bytes_equal(one.to_numpy(), one_model)
    assert cb.plan is not None
    kernels = [d.kernel for p in cb.plan.passes for d in p.dispatches]
    assert kernels.count(BuiltinKernel.COPY16) == 3, kernels


def test_copy_whole_range_length(device: hal.Device) -> None:
    """length=None copies to the end of the source range (a view's end, not the buffer's)."""
    source_model, target_model = random_bytes(512, seed=12), random_bytes(512, seed=13)
    source = device.buffer_from_numpy(source_model)
    target = device.buffer_from_numpy(target_model)
    with device.record() as cb:
        cb.copy_buffer(hal.BufferRef(source, 3, 10), 0, target, 5, None)
        cb.copy_buffer(source.subspan(100, 40), 7, target.subspan(200, 100), 1, None)
        cb.copy_buffer(source.subspan(300, 64), 0, hal.BufferRef(target, 400, 64), 0, None)
    target_model[5:15] = source_model[3:13]
    target_model[201:234] = source_model[107:140]
    target_model[400:464] = source_model[300:364]
    submit_and_wait(device, cb)
    assert_bytes_equal(target.to_numpy(), target_model)


def test_copy_overlap_rejected(device: hal.Device) -> None:
    """Overlapping ranges of one allocation are rejected at record time; adjacent are not."""
    buffer = device.buffer_from_numpy(random_bytes(256, seed=14))
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError):
        cb.copy_buffer(buffer, 0, buffer, 3, 5)
    with pytest.raises(hal.InvalidArgumentError):
        cb.copy_buffer(buffer.subspan(0, 10), 0, buffer.subspan(5, 10), 0, 10)
    with pytest.raises(hal.InvalidArgumentError):
        cb.copy_buffer(hal.BufferRef(buffer, 8, 8), 0, buffer, 15, 8)
    assert len(cb.segments) == 0
    cb.copy_buffer(buffer, 0, buffer, 5, 5)
    cb.copy_buffer(buffer.subspan(20, 10), 0, buffer.subspan(30, 10), 0, 10)
    assert len(cb.segments) == 2
    cb.end()


def test_copy_chain_with_barriers(any_device: hal.Device) -> None:
    """A → B, barrier, B → C, barrier, C → A (disjoint range): each copy sees the previous."""
    a_model = random_bytes(1024, seed=15)
    b_model, c_model = random_bytes(1024, seed=16), random_bytes(1024, seed=17)
    a, b, c = (any_device.buffer_from_numpy(m) for m in (a_model, b_model, c_model))
    with any_device.record() as cb:
        cb.copy_buffer(a, 3, b, 130, 301)
        cb.execution_barrier()
        cb.copy_buffer(b, 130, c, 64, 301)
        cb.execution_barrier()
        cb.copy_buffer(c, 60, a, 501, 310)
        cb.execution_barrier()
        cb.copy_buffer(a, 500, b, 0, 100)
    b_model[130:431] = a_model[3:304]
    c_model[64:365] = b_model[130:431]
    a_model[501:811] = c_model[60:370]
    b_model[0:100] = a_model[500:600]
    submit_and_wait(any_device, cb)
    for buffer, model in ((a, a_model), (b, b_model), (c, c_model)):
        assert_bytes_equal(buffer.to_numpy(), model)


def test_copy_zero_length_is_noop(device: hal.Device) -> None:
    """A zero-length copy records nothing and touches nothing."""
    model = random_bytes(64, seed=18)
    buffer = device.buffer_from_numpy(model)
    with device.record() as cb:
        cb.copy_buffer(buffer, 3, buffer, 17, 0)
        cb.copy_buffer(buffer.subspan(1, 8), 8, buffer, 64, 0)  # both at their very end
    assert len(cb.segments) == 0
    submit_and_wait(device, cb)
    assert_bytes_equal(buffer.to_numpy(), model)


def test_copy_reusable_command_buffer(any_device: hal.Device) -> None:
    """A DEFAULT command buffer copies on every submission, reading the source as it is
    when the copy executes."""
    source_model, target_model = random_bytes(8192, seed=19), random_bytes(8192, seed=20)
    source = any_device.buffer_from_numpy(source_model)
    target = any_device.buffer_from_numpy(target_model)
    ranges = [(1, 2, 33), (64, 128, 256), (301, 1000, 4101)]
    with any_device.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        for s, t, n in ranges:
            cb.copy_buffer(source, s, target, t, n)
    for submission in range(2):
        if submission:
            source_model = random_bytes(8192, seed=21)
            any_device.transfer_h2d(source_model, source)
            any_device.transfer_h2d(target_model, target)
        expected = target_model.copy()
        for s, t, n in ranges:
            expected[t : t + n] = source_model[s : s + n]
        submit_and_wait(any_device, cb)
        assert_bytes_equal(target.to_numpy(), expected)


ODD_SIZES = (1, 2, 3, 5, 6, 7, 37, 38, 39)


def test_copy_to_end_of_odd_sized_buffers(any_device: hal.Device) -> None:
    """Copies ending at the last byte of buffers whose size is not a multiple of 4: into
    another buffer, and between the two halves of one buffer."""
    checks: list[tuple[hal.Buffer, np.ndarray]] = []
    with any_device.record() as cb:
        for i, size in enumerate(ODD_SIZES):
            source_model = random_bytes(size, seed=40 + i)
            target_model = random_bytes(size, seed=50 + i)
            halves_model = random_bytes(size, seed=60 + i)
            source = any_device.buffer_from_numpy(source_model)
            target = any_device.buffer_from_numpy(target_model)
            halves = any_device.buffer_from_numpy(halves_model)
            half = size // 2
            cb.copy_buffer(source, 0, target, half, size - half)
            target_model[half:] = source_model[: size - half]
            cb.copy_buffer(halves, 0, halves, size - half, half)
            halves_model[size - half :] = halves_model[:half].copy()
            checks += [(source, source_model), (target, target_model), (halves, halves_model)]
    submit_and_wait(any_device, cb)
    for buffer, model in checks:
        assert_bytes_equal(buffer.to_numpy(), model)


def test_table_replay_keeps_16_byte_windows_inside_allocations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A binding table's plan is rebased only onto allocations padded like the ones it was
    lowered for: a slot on an allocation padded to words only (within 16 bytes of
    max-buffer-size) gets a plan of its own, with the word kernel."""
    import dataclasses

    import hal.runtime.programs as programs

    lowered: list[int] = []
    original = programs._plan

    def counted(segments: Any, caps: Any) -> Any:
        lowered.append(len(segments))
        return original(segments, caps)

    monkeypatch.setattr(programs, "_plan", counted)
    with hal.create_device(implementation="null", backend="null") as own:
        assert 32 % max(own.caps.storage_alignment, own.caps.uniform_alignment, 16) == 0
        own.caps = dataclasses.replace(own.caps, max_buffer_size=100_012)
        cb = own.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=2)
        cb.begin()
        cb.copy_buffer(hal.SlotRef(0), 1, hal.SlotRef(1), 4, 39_998)
        cb.end()
        source = own.allocate_buffer(50_000)
        kernels = []
        # Targets ending at their buffer's end, at one offset modulo 32: 100_008 bytes are
        # padded to words only; 91_304 has the first table's shape (a rebased plan).
        for size in (60_008, 100_008, 91_304):
            target = own.allocate_buffer(size)
            done = own.create_semaphore()
            table = [source, hal.BufferRef(target, size - 40_002, 40_002)]
            own.queue_execute(cb, signal=[(done, 1)], binding_table=table)
            done.wait(1, timeout=30)
            assert cb.plan is not None
            (d,) = [d for p in cb.plan.passes for d in p.dispatches]
            kernels.append(d.kernel)
            assert d.bindings[1][2].resource is target
            assert d.bindings[1][2].offset + d.bindings[1][2].size <= target.allocation.size
    assert kernels == [BuiltinKernel.COPY16, BuiltinKernel.COPY, BuiltinKernel.COPY16]
    assert len(lowered) == 2  # the third table reused the first one's plan


def test_block_copy_on_a_two_dimensional_grid() -> None:
    """Past the per-dimension workgroup limit the 16-byte block copy runs one invocation per
    block on a second grid dimension (hal.core.builtins.block_grid), and past the limit
    squared it loops over the grid: bytes exact both ways, edges included. A device whose
    caps claim a limit of 7 workgroups and a native copy slow enough that every aligned copy
    is a kernel."""
    with hal.create_device() as device:
        device.caps = dataclasses.replace(
            device.caps,
            max_workgroups=7,
            costs=TransferCosts(name="kernels only", native_copy_gbps=1e-3),
        )
        # 3000 blocks: 12 workgroups on 6 x 2; 13544 blocks: 53 > 7 * 7, so 7 x 7 and a loop.
        cases = [(0, 0, 3000 * 16), (16, 48, 13544 * 16 + 5)]
        cb, _ = run_copies(device, cases, seed=11)
        plan = cb.prepare(None).plan
        shapes = [
            d.workgroups
            for step in plan.steps
            if isinstance(step, ComputePass)
            for d in step.dispatches
            if d.kernel is BuiltinKernel.COPY4
        ]
        assert shapes == [(6, 2, 1), (7, 7, 1)]


def test_block_grid_shapes() -> None:
    """block_grid: one dimension up to the limit, then the fewest rows that fit, capped at
    the limit on both dimensions."""
    assert block_grid(1) == (1, 1, 1)
    assert block_grid(256) == (1, 1, 1)
    assert block_grid(257) == (2, 1, 1)
    assert block_grid(65535 * 256) == (65535, 1, 1)
    assert block_grid(65535 * 256 + 1) == (32768, 2, 1)
    assert block_grid(1 << 26) == (52429, 5, 1)  # 1 GiB: 262145 workgroups for 262144
    assert block_grid(3000, 7) == (6, 2, 1)
    assert block_grid(10**9, 7) == (7, 7, 1)
