"""Batched small transfers (issue 10, item 3): runs of small builtin fills and copies become
one table dispatch, with the same bytes as one dispatch each."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest

import hal
from hal.core.batching import BATCH_MAX_BYTES, batch_transfers, table_entries
from hal.core.builtins import BuiltinKernel
from hal.core.caps import DeviceCaps
from hal.core.lowering import lower
from hal.core.plan import ComputePass, Plan
from hal.core.refs import Ref
from hal.core.segments import BarrierSegment, CopySegment, FillSegment

CAPS = DeviceCaps(storage_alignment=32)


class Alloc:
    """A stand-in root buffer for pure lowering tests (hashed by identity)."""

    def __init__(self, size: int) -> None:
        self.size = size


def ref(buffer: Alloc, offset: int, length: int) -> Ref:
    return Ref(buffer, None, offset, length)


def fill(buffer: Alloc, offset: int, length: int, pattern: bytes = b"\x12\x34\x56\x78") -> Any:
    return FillSegment(ref(buffer, offset, length), pattern)


def dispatches(plan: Plan) -> list[Any]:
    return [d for s in plan.steps if isinstance(s, ComputePass) for d in s.dispatches]


def test_disjoint_small_fills_become_one_table_dispatch() -> None:
    buffer = Alloc(1 << 20)
    segments = [fill(buffer, 256 * i, 256) for i in range(1000)]
    plan = batch_transfers(lower(segments, CAPS), CAPS)
    [table] = dispatches(plan)
    assert table.kernel is BuiltinKernel.FILL_TABLE
    assert table.workgroups == (1000, 1, 1)
    entries = table_entries(plan, table)
    window = table.bindings[0][2]
    assert [(window.offset + b, window.offset + e) for b, e, _, _ in entries] == [
        (256 * i, 256 * i + 256) for i in range(1000)
    ]
    assert plan.stats.dispatches == 1 and plan.stats.builtin_dispatches == 1


def test_fills_sharing_a_word_are_not_merged() -> None:
    buffer = Alloc(4096)
    # [0, 3) and [3, 6) share word 0: concurrent read-modify-writes would race.
    segments = [fill(buffer, 0, 3, b"\x01"), fill(buffer, 3, 3, b"\x02"), fill(buffer, 64, 8)]
    plan = batch_transfers(lower(segments, CAPS), CAPS)
    kernels = [d.kernel for d in dispatches(plan)]
    assert kernels.count(BuiltinKernel.FILL_TABLE) <= 1
    for d in dispatches(plan):
        if d.kernel is BuiltinKernel.FILL_TABLE:
            words = sorted((b // 4, (e + 3) // 4) for b, e, _, _ in table_entries(plan, d))
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(words))


def test_a_copy_reading_what_another_writes_is_not_merged() -> None:
    buffer = Alloc(8192)
    segments = [
        CopySegment(ref(buffer, 1, 100), ref(buffer, 2001, 100)),
        BarrierSegment(0, 0, 0),
        CopySegment(ref(buffer, 2001, 100), ref(buffer, 4001, 100)),
    ]
    plan = batch_transfers(lower(segments, CAPS), CAPS)
    assert BuiltinKernel.COPY_TABLE not in [d.kernel for d in dispatches(plan)]


def test_large_transfers_are_not_batched() -> None:
    buffer = Alloc(1 << 22)
    size = 2 * BATCH_MAX_BYTES
    segments = [fill(buffer, size * i, size) for i in range(4)]
    plan = batch_transfers(lower(segments, CAPS), CAPS)
    assert BuiltinKernel.FILL_TABLE not in [d.kernel for d in dispatches(plan)]


def random_program(
    device: Any, rng: random.Random, size: int, barriers: bool
) -> tuple[hal.CommandBuffer, hal.Buffer, np.ndarray]:
    """Small fills, copies and updates with their expected result (in program order: with
    ``barriers`` a barrier follows each command; without, every target range is disjoint)."""
    init = np.frombuffer(rng.randbytes(size), np.uint8).copy()
    target = device.buffer_from_numpy(init)
    source = device.buffer_from_numpy(np.frombuffer(rng.randbytes(size), np.uint8).copy())
    expected, source_bytes = init.copy(), source.to_numpy()
    free = size // 512  # disjoint 512-byte slots when there are no barriers
    slots = rng.sample(range(free), free)
    with device.record() as cb:
        for k in range(rng.randrange(1, 80)):
            if not barriers and k >= len(slots):
                break
            base = rng.randrange(0, size - 512) if barriers else slots[k] * 512
            offset, length = base + rng.randrange(0, 64), rng.randrange(0, 400)
            kind = rng.randrange(3)
            if kind == 0:
                width = rng.choice([1, 2, 4])
                offset -= offset % width
                length -= length % width
                pattern = rng.randrange(1, 1 << (8 * width))
                cb.fill_buffer(target, offset, length, pattern, width)
                word = pattern.to_bytes(width, "little")
                expected[offset : offset + length] = np.frombuffer(
                    (word * (length // width + 1))[:length], np.uint8
                )
            elif kind == 1:
                start = rng.randrange(0, size - 400)
                cb.copy_buffer(source, start, target, offset, length)
                expected[offset : offset + length] = source_bytes[start : start + length]
            else:
                data = rng.randbytes(length)
                cb.update_buffer(data, 0, target, offset, length)
                expected[offset : offset + length] = np.frombuffer(data, np.uint8)
            if barriers:
                cb.execution_barrier()
    return cb, target, expected


@pytest.mark.parametrize("barriers", [True, False])
@pytest.mark.parametrize("immediates", [True, False])
def test_batched_programs_match_program_order(
    device: Any, device_no_immediates: Any, barriers: bool, immediates: bool
) -> None:
    gpu = device if immediates else device_no_immediates
    rng = random.Random(7 + barriers + 2 * immediates)
    batched = 0
    for _ in range(12):
        cb, target, expected = random_program(gpu, rng, 16384, barriers)
        batched += sum(
            d.kernel in (BuiltinKernel.FILL_TABLE, BuiltinKernel.COPY_TABLE)
            for d in dispatches(cb.plan)
        )
        gpu.queue_execute(cb)
        gpu.wait_idle(30)
        got = target.to_numpy()
        assert np.array_equal(got, expected), np.nonzero(got != expected)[0][:8]
    assert batched > 0  # the programs did exercise the table kernels


def test_thousand_fills_and_copies_on_the_gpu(device: Any) -> None:
    target = device.allocate_buffer(1 << 19)
    source = device.buffer_from_numpy(np.arange(1 << 18, dtype=np.uint32).view(np.uint8)[: 1 << 18])
    with device.record() as cb:
        for i in range(1000):
            cb.fill_buffer(target, 256 * i, 256, 0x01020304 + i)
        for i in range(1000):
            cb.copy_buffer(source, 256 * i + 1, target, (1 << 18) + 256 * i + 2, 200)
    kernels = [d.kernel for d in dispatches(cb.plan)]
    assert len(kernels) <= 4, kernels
    device.queue_execute(cb)
    device.wait_idle(30)
    got = target.to_numpy()
    words = got[: 1000 * 256].view(np.uint32).reshape(1000, 64)
    assert np.array_equal(
        words, np.repeat(np.arange(1000, dtype=np.uint32) + 0x01020304, 64).reshape(1000, 64)
    )
    src = source.to_numpy()
    for i in range(0, 1000, 37):
        base = (1 << 18) + 256 * i
        assert np.array_equal(got[base + 2 : base + 202], src[256 * i + 1 : 256 * i + 201])
        assert not got[base : base + 2].any() and not got[base + 202 : base + 256].any()


def test_runs_of_small_native_copies_and_clears_become_table_dispatches(device: Any) -> None:
    source = device.buffer_from_numpy(np.arange(1 << 16, dtype=np.uint32).view(np.uint8))
    target = device.buffer_from_numpy(np.full(1 << 18, 0xEE, np.uint8))
    with device.record() as cb:
        for i in range(500):
            cb.copy_buffer(source, 256 * i, target, 512 * i, 256)  # aligned: native copies
        cb.execution_barrier()
        for i in range(500):
            cb.fill_buffer(target, 512 * i + 256, 128, 0)  # aligned zeros: native clears
    plan = cb.plan
    assert plan is not None
    kernels = [d.kernel for d in dispatches(plan)]
    assert plan.stats.native_copies == plan.stats.native_clears == 0, plan.describe()
    assert (
        kernels.count(BuiltinKernel.COPY_TABLE) == 1
        and kernels.count(BuiltinKernel.FILL_TABLE) == 1
    )
    device.queue_execute(cb)
    device.wait_idle(30)
    got = target.to_numpy().reshape(512, 512)
    src = source.to_numpy()[: 500 * 256].reshape(500, 256)
    assert np.array_equal(got[:500, :256], src[:500])
    assert not got[:500, 256:384].any()
    assert (got[:500, 384:] == 0xEE).all() and (got[500:] == 0xEE).all()


def test_few_native_copies_stay_native() -> None:
    a, b = Alloc(1 << 16), Alloc(1 << 16)
    segments = [CopySegment(ref(a, 256 * i, 256), ref(b, 256 * i, 256)) for i in range(3)]
    plan = batch_transfers(lower(segments, CAPS), CAPS)
    assert plan.stats.native_copies == 3


def test_word_sets_stay_disjoint_when_reads_overlap() -> None:
    """Overlapping reads are merged: a later write inside the first read is still seen."""
    from hal.core.batching import _WordSets

    sets = _WordSets()
    buffer = object()
    sets.add(buffer, 0, 16384)  # words [0, 4096)
    sets.add(buffer, 40, 48)  # inside it
    assert sets.hits(buffer, 12000, 12008)
    other = _WordSets()
    other.add(buffer, 0, 160)  # words [0, 40)
    other.add(buffer, 80, 800)  # words [20, 200): the largest end must rise to 200
    assert other.hits(buffer, 600, 608)
    assert not other.hits(buffer, 800, 804)


def independent(plan: Plan) -> bool:
    """Every table dispatch's entries touch disjoint target words, and no entry writes a word
    that another entry of the table reads (same buffer)."""
    for d in dispatches(plan):
        if d.kernel is not BuiltinKernel.COPY_TABLE:
            continue
        source, target = d.bindings[0][2], d.bindings[1][2]
        entries = table_entries(plan, d)
        for i, (_s1, t1, n1, _) in enumerate(entries):
            w = ((target.offset + t1) // 4, (target.offset + t1 + n1 + 3) // 4)
            for j, (s2, t2, n2, _) in enumerate(entries):
                if i == j:
                    continue
                if source.resource is target.resource:
                    r = ((source.offset + s2) // 4, (source.offset + s2 + n2 + 3) // 4)
                    if w[0] < r[1] and r[0] < w[1]:
                        return False
                w2 = ((target.offset + t2) // 4, (target.offset + t2 + n2 + 3) // 4)
                if w[0] < w2[1] and w2[0] < w[1]:
                    return False
    return True


def test_a_copy_writing_what_an_earlier_one_reads_is_not_merged() -> None:
    """Found in review: overlapping reads hid a write-after-read inside one table dispatch."""
    buffer = Alloc(1 << 17)
    segments = [
        CopySegment(ref(buffer, 0, 16384), ref(buffer, 16384, 16384)),
        BarrierSegment(0, 0, 0),
        CopySegment(ref(buffer, 40, 8), ref(buffer, 40000, 8)),
        BarrierSegment(0, 0, 0),
        CopySegment(ref(buffer, 50000, 8), ref(buffer, 12000, 8)),
    ]
    assert independent(batch_transfers(lower(segments, CAPS), CAPS))
    variant = [
        CopySegment(ref(buffer, 0, 160), ref(buffer, 16384, 160)),
        BarrierSegment(0, 0, 0),
        CopySegment(ref(buffer, 80, 720), ref(buffer, 40000, 720)),
        BarrierSegment(0, 0, 0),
        CopySegment(ref(buffer, 50000, 8), ref(buffer, 600, 8)),
    ]
    assert independent(batch_transfers(lower(variant, CAPS), CAPS))


def test_random_same_buffer_copies_batch_only_independent_entries() -> None:
    rng = random.Random(3)
    buffer = Alloc(1 << 16)
    for _ in range(200):
        segments: list[Any] = []
        for _ in range(rng.randrange(2, 12)):
            n = rng.randrange(1, 600)
            src, dst = rng.randrange(0, (1 << 16) - n), rng.randrange(0, (1 << 16) - n)
            if src < dst + n and dst < src + n:
                continue
            segments += [
                CopySegment(ref(buffer, src, n), ref(buffer, dst, n)),
                BarrierSegment(0, 0, 0),
            ]
        assert independent(batch_transfers(lower(segments, CAPS), CAPS))
