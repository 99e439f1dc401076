"""Identical fills and copies of one program lower once (hal/core/lowering.py's transfer
memo): the plan equals the one lowered without the memo, field by field, with every
decision note, region and count in place."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import hal
from hal.core.batching import batch_transfers
from hal.core.caps import DeviceCaps
from hal.core.layout import BindingLayout, EntryPointLayout
from hal.core.lowering import _MEMO_TRIAL, DEFAULT_OPTIONS, _PlanBuilder, lower
from hal.core.plan import Plan
from hal.core.refs import Ref
from hal.core.segments import (
    BarrierSegment,
    CopySegment,
    DispatchSegment,
    FillSegment,
    Segment,
    UpdateSegment,
)


class Alloc:
    """A stand-in root buffer (hashed by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name


def ref(buffer: Alloc, offset: int, length: int) -> Ref:
    return Ref(buffer, None, offset, length)


def program(rng: random.Random) -> list[Segment]:
    """A few distinct transfers, each recorded many times (new segment objects, equal
    content), with barriers and updates between them."""
    a, b = Alloc("a"), Alloc("b")
    kinds = [
        lambda: FillSegment(ref(a, 0, 4096), b"\0"),
        lambda: FillSegment(ref(a, 8192, 60), b"\x12"),
        lambda: FillSegment(ref(b, 3, 70000), b"ab"),
        lambda: CopySegment(ref(a, 0, 256), ref(b, 256, 256)),
        lambda: CopySegment(ref(a, 2, 100), ref(b, 4097, 100)),
        lambda: CopySegment(ref(a, 0, 512), ref(a, 1024, 512)),
        lambda: UpdateSegment(bytes(range(16)), ref(b, 64, 16)),
    ]
    segments: list[Segment] = []
    for _ in range(rng.choice([10, 60])):
        if rng.random() < 0.2:
            segments.append(BarrierSegment(63, 63, 0))
        else:
            segments.append(rng.choice(kinds)())
    return segments


@pytest.mark.parametrize("immediates", [True, False])
def test_repeated_transfers_lower_as_without_the_memo(
    immediates: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps = DeviceCaps(immediates=immediates, storage_alignment=32)
    programs = [program(random.Random(seed)) for seed in range(40)]
    hits: list[int] = []
    replay = _PlanBuilder.replay

    def counted(self: _PlanBuilder, memo: tuple[list[Any], int]) -> None:
        hits.append(len(memo[0]))
        replay(self, memo)

    monkeypatch.setattr(_PlanBuilder, "replay", counted)
    with_memo = [lower(p, caps) for p in programs]
    batched = [batch_transfers(plan, caps) for plan in with_memo]
    monkeypatch.setattr(_PlanBuilder, "fill", _PlanBuilder.fill_once)
    monkeypatch.setattr(_PlanBuilder, "copy_segment", _PlanBuilder.copy_once)
    for i, p in enumerate(programs):
        expected: Plan = lower(p, caps)
        assert with_memo[i] == expected, f"program {i}"
        assert batched[i] == batch_transfers(expected, caps), f"program {i}"
    # Most transfers were repeats; without immediates the builtins' staged parameters
    # keep them out of the memo (native transfers still hit).
    transfers = sum(type(s) in (FillSegment, CopySegment) for p in programs for s in p)
    assert len(hits) > (transfers // 2 if immediates else 40), (len(hits), transfers)


def test_a_program_without_repeats_stops_memoising() -> None:
    # After _MEMO_TRIAL distinct transfers without a hit the memo is off; the plan is the
    # same either way.
    a = Alloc("a")
    segments: list[Segment] = [FillSegment(ref(a, 4 * i, 4), b"\x01") for i in range(600)]
    segments += segments[:10]  # repeats after the trial: lowered again, same result
    builder = _PlanBuilder(DeviceCaps(), DEFAULT_OPTIONS)
    for segment in segments:
        builder.fill(segment)  # type: ignore[arg-type]
    assert not builder.memo and builder.memo_hits == 0
    assert len(builder.transfers) == _MEMO_TRIAL
    assert [i.op for i in builder.items[600:]] == [i.op for i in builder.items[:10]]


def test_dispatches_sharing_binding_refs_lower_as_without_the_memo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Recording shares one Ref per (buffer, binding): dispatches that differ in constants
    # or grid share their binding Refs, and their bindings are lowered once. Some share a
    # buffer read-only and read-write, or bind it misaligned: shadowed, never memoised.
    a, b = Alloc("a"), Alloc("b")
    refs = [ref(a, 0, 256), ref(b, 512, 256), ref(a, 4, 60), ref(b, 0, 4096)]
    rw = layout(["read-only-storage", "storage"], constants_size=16)
    one = layout(["storage"])
    for immediates in (True, False):
        caps = DeviceCaps(immediates=immediates, storage_alignment=256)
        rng = random.Random(immediates)
        segments: list[Segment] = []
        for i in range(80):
            if rng.random() < 0.5:
                pair = (rng.choice(refs), rng.choice(refs))
                segments.append(dispatch(rw, pair, i.to_bytes(4, "little"), (1 + i % 3, 1, 1)))
            else:
                segments.append(dispatch(one, (rng.choice(refs),), b"", (2, 1, 1)))
            if rng.random() < 0.3:
                segments.append(BarrierSegment(63, 63, 0))
        plan = lower(segments, caps)
        with monkeypatch.context() as patch:
            patch.setattr(_PlanBuilder, "lower_dispatch", _PlanBuilder.lower_bindings)
            expected = lower(segments, caps)
        assert plan == expected, f"immediates={immediates}"
        assert plan.stats.shadowed_bindings > 0


EXECUTABLE = type("Executable", (), {"label": "fake"})()


def layout(kinds: list[str], constants_size: int = 0) -> EntryPointLayout:
    bindings = tuple(BindingLayout(i, kind, f"b{i}") for i, kind in enumerate(kinds))
    return EntryPointLayout("main", bindings, len(kinds), constants_size)


def dispatch(
    entry: EntryPointLayout, refs: tuple[Ref, ...], constants: bytes, grid: tuple[int, int, int]
) -> DispatchSegment:
    return DispatchSegment(EXECUTABLE, "main", entry, grid, None, constants, refs)


def test_records_beside_dispatches_plan_and_run_as_their_segments(device: Any) -> None:
    # Fast-path fills and copies beside dispatches are lowered from the records themselves
    # (their segments made only where the memo misses): the plan is the one their segments
    # give, and the bytes are right.
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 4096, dtype=np.uint8)
    source = device.buffer_from_numpy(data)
    target = device.buffer_from_numpy(np.zeros(4096, np.uint8))
    counter = device.buffer_from_numpy(np.zeros(4, np.uint32))
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for i in range(30):
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])
        cb.fill_buffer(target, 0, 256, 0x01010101)
        cb.copy_buffer(source, 256 * (i % 3), target, 1024 + 256 * (i % 3), 256)
        cb.fill_buffer(target, 2048 + 4 * i, 4, i)
        cb.execution_barrier()
    cb.end()
    assert cb.plan == batch_transfers(lower(cb.segments, device.caps), device.caps)
    device.queue_execute(cb)
    device.wait_idle(30)
    expected = np.zeros(4096, np.uint8)
    expected[:256] = 1
    expected[1024:1792] = data[:768]
    expected[2048:2168] = np.arange(30, dtype=np.uint32).view(np.uint8)
    np.testing.assert_array_equal(target.to_numpy(), expected)
    assert counter.to_numpy()[0] == 30
