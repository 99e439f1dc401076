"""Transfer-only programs planned in one pass (hal/core/transfer_plans.py): the plan must
equal the lowering's plan after batching, field by field, for every program it accepts; and
the recording/compile caches of the eager path must not change what a submission does."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

import hal
from hal.core.batching import batch_transfers
from hal.core.builtins import BuiltinKernel
from hal.core.caps import DeviceCaps
from hal.core.cost import TransferCosts
from hal.core.lowering import lower
from hal.core.plan import ClearBuffer, ComputePass, CopyBuffer, Plan
from hal.core.refs import Ref
from hal.core.segments import BarrierSegment, CopySegment, FillSegment, Segment, UpdateSegment
from hal.core.transfer_plans import direct_plan

NATIVE_FIRST = TransferCosts(name="native-first", pass_switch_us=0.0, dispatch_us=1e9)
KERNEL_FIRST = TransferCosts(name="kernel-first", pass_switch_us=1e9, dispatch_us=0.0)


class Alloc:
    """A stand-in root buffer (hashed by identity)."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = size, name

    def __repr__(self) -> str:
        return f"<Alloc {self.name}>"


def caps(costs: TransferCosts | None = None, **overrides: Any) -> DeviceCaps:
    values: dict[str, Any] = {"storage_alignment": 32}
    values.update(overrides)
    if costs is not None:
        values["costs"] = costs
    return DeviceCaps(**values)


def ref(buffer: Alloc, offset: int, length: int) -> Ref:
    return Ref(buffer, None, offset, length)  # type: ignore[arg-type]


def general(segments: list[Segment], c: DeviceCaps) -> Plan:
    return batch_transfers(lower(segments, c), c)


def shape(plan: Plan) -> str:
    """Which branch a plan came from: batched or not, builtin or native."""
    kinds = {type(s) for s in plan.steps}
    tables = [
        d
        for s in plan.steps
        if isinstance(s, ComputePass)
        for d in s.dispatches
        if d.kernel in (BuiltinKernel.FILL_TABLE, BuiltinKernel.COPY_TABLE)
    ]
    # Batched native transfers leave no native step; their decision notes say native.
    native = bool(kinds & {CopyBuffer, ClearBuffer}) or any(": native" in n for n in plan.notes)
    return f"{'table' if tables else 'plain'}-{'native' if native else 'pass'}"


def random_program(rng: random.Random) -> tuple[list[Segment], DeviceCaps]:
    """Fills or copies of two buffers, with barriers; sizes mostly small, some large."""
    a, b = Alloc(1 << 17, "a"), Alloc(1 << 17, "b")
    c = caps(
        rng.choice([None, NATIVE_FIRST, KERNEL_FIRST]),
        storage_alignment=rng.choice([4, 32, 256]),
        immediates=rng.random() < 0.85,  # without: declined where a builtin stays alone
    )
    fills = rng.random() < 0.5
    zero = rng.random() < 0.4
    segments: list[Segment] = []
    for _ in range(rng.choice([1, 2, 7, 8, 9, 30, 200])):
        if rng.random() < 0.1:
            segments.append(BarrierSegment(63, 63, 0))
            continue
        target = rng.choice([a, b])
        offset = rng.choice([0, 1, 4, 300, 512, 2048]) + 256 * rng.randint(0, 60)
        if rng.random() < 0.97:
            length = rng.choice([1, 3, 4, 16, 64, 100, 256, 512, 4092])
        else:
            length = rng.choice([8192, 20000])
        if fills:
            pattern = rng.choice([b"\0", b"\0\0\0\0"] if zero else [b"\x12", b"\x01\x02", b"abcd"])
            length = max(len(pattern), length // len(pattern) * len(pattern))
            offset = offset // len(pattern) * len(pattern)
            segments.append(FillSegment(ref(target, offset, length), pattern))
        else:
            other = b if target is a else a
            if rng.random() < 0.03:
                other = target  # same allocation: declined
            other_offset = rng.choice([0, 2, 4, 4096]) + 256 * rng.randint(0, 60)
            segments.append(
                CopySegment(ref(target, offset, length), ref(other, other_offset, length))
            )
    return segments, c


def test_direct_plans_equal_the_lowering_then_batching_on_random_programs() -> None:
    seen: Counter[str] = Counter()
    declined = 0
    for seed in range(1500):
        segments, c = random_program(random.Random(seed))
        plan = direct_plan(segments, c)
        if plan is None:
            declined += 1
            continue
        expected = general(segments, c)
        assert plan == expected, f"seed {seed}:\n{plan.describe()}\n---\n{expected.describe()}"
        seen[shape(plan)] += 1
    # Every branch is exercised, and most programs are covered.
    assert set(seen) == {"table-pass", "plain-pass", "table-native", "plain-native"}, seen
    assert min(seen.values()) >= 20, seen
    assert declined < 1000, (declined, seen)


def test_thousand_disjoint_fills_make_one_table_dispatch_directly() -> None:
    buffer = Alloc(1 << 20, "a")
    segments: list[Segment] = [
        FillSegment(ref(buffer, 256 * i, 256), b"\x78\x56\x34\x12") for i in range(1000)
    ]
    c = caps()
    plan = direct_plan(segments, c)
    assert plan is not None and plan == general(segments, c)
    [step] = plan.steps
    assert isinstance(step, ComputePass)
    [table] = step.dispatches
    assert table.kernel is BuiltinKernel.FILL_TABLE and table.workgroups == (1000, 1, 1)
    assert plan.notes[-1] == "batched: 1000 small transfers into 1 table dispatch(es)"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a, b: [UpdateSegment(b"abcd", ref(a, 0, 4))], id="update"),
        pytest.param(lambda a, b: [FillSegment(ref(a, 0, 8192), b"\x01")], id="large builtin fill"),
        pytest.param(lambda a, b: [CopySegment(ref(a, 0, 64), ref(a, 128, 64))], id="same alloc"),
        pytest.param(lambda a, b: [FillSegment(Ref(None, 0, 0, 64), b"\x01")], id="slot reference"),
        pytest.param(lambda a, b: [], id="empty"),
        pytest.param(
            # A native clear (zero, aligned) beside a builtin fill: the lowering may reorder.
            lambda a, b: [FillSegment(ref(a, 0, 64), b"\0"), FillSegment(ref(b, 1, 7), b"\x01")],
            id="native and builtin",
        ),
    ],
)
def test_direct_plan_declines_what_it_does_not_cover(make: Any) -> None:
    a, b = Alloc(1 << 16, "a"), Alloc(1 << 16, "b")
    assert direct_plan(make(a, b), caps(NATIVE_FIRST)) is None


def test_direct_plan_without_immediates() -> None:
    # Every builtin in a table: the plan holds only the table in CONSTANTS, as the general
    # path's does; a builtin left alone would stage its parameters there: declined.
    a = Alloc(1 << 16, "a")
    c = caps(immediates=False)
    segments: list[Segment] = [FillSegment(ref(a, 4 * i, 3), b"\x01") for i in range(4)]
    plan = direct_plan(segments, c)
    assert plan is not None and plan == batch_transfers(lower(segments, c), c)
    assert len(plan.constants) == 4 * 16 and plan.stats.staged_bytes == 0
    assert direct_plan(segments[:1], c) is None
    alone = [*segments, FillSegment(ref(a, 0, 4), b"\x02")]  # rewrites a word: alone
    assert direct_plan(alone, c) is None


# -- on the device: the eager path's caches ---------------------------------------------------


def test_one_shot_fills_and_copies_through_the_direct_plan(device: Any) -> None:
    data = np.random.default_rng(1).integers(0, 256, 1 << 16, dtype=np.uint8)
    source = device.buffer_from_numpy(data)
    target = device.buffer_from_numpy(np.zeros(1 << 16, np.uint8))
    with device.record() as cb:
        for i in range(100):
            cb.fill_buffer(target, 512 * i, 256, 0x01020304 + i)
    with device.record() as cb2:
        for i in range(100):
            cb2.copy_buffer(source, 512 * i + 3, target, 512 * i + 259, 50)
    for recorded in (cb, cb2):
        assert recorded.plan == batch_transfers(lower(recorded.segments, device.caps), device.caps)
    device.queue_execute([cb, cb2])
    device.wait_idle(30)
    expected = np.zeros(1 << 16, dtype=np.uint8)
    for i in range(100):
        word = np.frombuffer((0x01020304 + i).to_bytes(4, "little") * 64, dtype=np.uint8)
        expected[512 * i : 512 * i + 256] = word
        expected[512 * i + 259 : 512 * i + 309] = data[512 * i + 3 : 512 * i + 53]
    np.testing.assert_array_equal(target.to_numpy(), expected)


def test_a_remembered_binding_is_refused_once_its_buffer_is_released(device: Any) -> None:
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    counters = device.allocate_buffer(256)
    view = hal.BufferRef(counters, 0, 256)
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    cb.dispatch(noop, "touch", (1, 1, 1), bindings=[view])  # checked, then remembered
    counters.release()
    with pytest.raises(hal.FailedPreconditionError, match="released"):
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[view])
    assert len(cb.segments) == 1


def test_repeated_dispatches_share_calls_and_count_right(device: Any) -> None:
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    counters = device.buffer_from_numpy(np.zeros(8 * 64, np.uint32))
    views = [hal.BufferRef(counters, 256 * i, 256) for i in range(8)]
    with device.record() as cb:
        for i in range(80):
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[views[i % 8]])
            cb.execution_barrier()
    # One compiled pass: 80 bind group changes made of 8 calls, 80 dispatches of one call.
    [(is_pass, calls)] = cb.prepare(None)._program._steps
    assert is_pass and len(calls) == 1 + 80 + 80
    assert len({id(call) for call in calls[1::2]}) == 8
    assert len({id(call) for call in calls[2::2]}) == 1
    device.queue_execute(cb)
    device.wait_idle(30)
    got = counters.to_numpy().view(np.uint32)
    assert got[::64].tolist() == [10] * 8
    assert int(got.sum()) == 80


# -- shared dispatch segments lower as distinct ones ------------------------------------------


@pytest.mark.parametrize("immediates", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_repeated_dispatch_segments_lower_like_distinct_ones(seed: int, immediates: bool) -> None:
    """One segment object recorded many times (as recording now shares them) lowers to the
    plan of as many equal but distinct segments: shadows, staged constants and indirect
    parameters included, where the lowering must not reuse a dispatch."""
    import dataclasses

    from hal.core.layout import BindingLayout, EntryPointLayout
    from hal.core.segments import DispatchSegment

    class Kernel:
        label = "k"

    rng = random.Random(seed)
    a, b = Alloc(1 << 16, "a"), Alloc(1 << 16, "b")
    kernel = Kernel()
    shared: list[DispatchSegment] = []
    for _ in range(6):
        kinds = [rng.choice(["storage", "read-only-storage", "uniform"]) for _ in range(2)]
        bindings = tuple(BindingLayout(i, kind, f"b{i}") for i, kind in enumerate(kinds))
        size = rng.choice([0, 16])
        layout = EntryPointLayout("main", bindings, 2, size)
        refs = (
            ref(rng.choice([a, b]), rng.choice([0, 256, 4, 512]), rng.choice([256, 6, 64])),
            ref(rng.choice([a, b]), rng.choice([0, 1024, 2048]), 256),
        )
        indirect = ref(b, rng.choice([0, 8, 4096]), 12) if rng.random() < 0.3 else None
        shared.append(
            DispatchSegment(
                kernel,
                "main",
                layout,
                None if indirect else (1, 1, 1),
                indirect,
                bytes(range(size)),
                refs,
            )
        )
    program: list[Segment] = []
    for _ in range(60):
        program.append(rng.choice(shared))
        if rng.random() < 0.3:
            program.append(BarrierSegment(63, 63, 0))
        if rng.random() < 0.1:
            program.append(FillSegment(ref(a, 4096 + 4 * rng.randint(0, 9), 4), b"\x01"))
    distinct = [dataclasses.replace(s) if isinstance(s, DispatchSegment) else s for s in program]
    c = caps(immediates=immediates)
    assert lower(program, c) == lower(distinct, c)
    assert general(program, c) == general(distinct, c)


def test_identical_dispatches_share_one_segment(device: Any) -> None:
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    counters = device.buffer_from_numpy(np.zeros(128, np.uint32))
    view, other = hal.BufferRef(counters, 0, 256), hal.BufferRef(counters, 256, 256)
    with device.record() as cb:
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[view])
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[view])
        cb.dispatch(noop, "touch", (2, 1, 1), bindings=[view])
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[other])
    first, second, wider, elsewhere = cb.segments
    assert first is second
    assert wider is not first and wider.workgroups == (2, 1, 1)
    assert elsewhere is not first and elsewhere.bindings[0].offset == 256
    device.queue_execute(cb)
    device.wait_idle(30)
    got = counters.to_numpy().view(np.uint32)
    # (2, 1, 1) runs touch twice; its two workgroups may race on a real GPU (a plain
    # read-modify-write), so they add one or two.
    assert got[0] in (3, 4) and got[64] == 1, got[[0, 64]]
