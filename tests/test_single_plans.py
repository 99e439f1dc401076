"""One-command plans from templates (hal/core/single_plans.py): equal to the general path's
plan field by field, for every shape and caps, and they write the right bytes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

import hal
from hal.core.batching import batch_transfers
from hal.core.caps import DeviceCaps
from hal.core.cost import TransferCosts
from hal.core.lowering import lower
from hal.core.plan import ComputePass, CopyBuffer, Plan
from hal.core.segments import TransferRecord, record_segment
from hal.core.single_plans import _TEMPLATES, single_plan

NATIVE_FIRST = TransferCosts(name="native-first", pass_switch_us=0.0, dispatch_us=1e9)
KERNEL_FIRST = TransferCosts(name="kernel-first", pass_switch_us=1e9, dispatch_us=0.0)


class Alloc:
    """A stand-in root buffer (hashed by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name


def general(record: TransferRecord, c: DeviceCaps) -> Plan:
    segments = [record_segment(record)]
    return batch_transfers(lower(segments, c), c)


def random_caps(rng: random.Random) -> DeviceCaps:
    values: dict[str, Any] = {
        "storage_alignment": rng.choice([4, 32, 256]),
        "immediates": rng.random() < 0.6,
    }
    costs = rng.choice([None, NATIVE_FIRST, KERNEL_FIRST])
    if costs is not None:
        values["costs"] = costs
    if rng.random() < 0.3:
        values["max_binding_size"] = rng.choice([4096, 1 << 14])
    return DeviceCaps(**values)


def random_record(rng: random.Random, buffers: list[Alloc]) -> TransferRecord:
    length = rng.choice([4, 16, 64, 252, 256, 4092, 8192, 20000, 70000])
    offset = 4 * rng.randint(0, 300)
    if rng.random() < 0.5:
        return (rng.choice(buffers), offset, length, rng.choice([0, 1, 0x12345678]))
    source, target = rng.sample(buffers, 2) if rng.random() < 0.8 else [buffers[0]] * 2
    source_offset = rng.choice([0, 2, 4, 4096]) + 256 * rng.randint(0, 20)
    return (source, source_offset, target, offset + rng.choice([0, 0, 1, 2]), length)


def test_single_plans_equal_the_general_path_on_random_records() -> None:
    rng = random.Random(7)
    kinds: set[str] = set()
    caps_pool = [random_caps(rng) for _ in range(12)]
    for i in range(3000):
        # Few caps and buffers, many records: most plans come from a template made for
        # other allocations.
        buffers = [Alloc(f"{i}{n}") for n in "abc"]
        record = random_record(rng, buffers)
        c = rng.choice(caps_pool)
        plan = single_plan(record, c)
        expected = general(record, c)
        assert plan == expected, f"record {i}:\n{plan.describe()}\n---\n{expected.describe()}"
        assert plan.resources == expected.resources
        for step in plan.steps:
            kinds.add(type(step).__name__)
            if type(step) is ComputePass and len(step.dispatches) > 1:
                kinds.add("pieces")
            if type(step) is ComputePass and step.dispatches[0].constants_offset is not None:
                kinds.add("staged constants")
    assert kinds >= {"ComputePass", "ClearBuffer", "CopyBuffer", "pieces", "staged constants"}


def test_templates_hold_no_allocation() -> None:
    c = DeviceCaps()
    a, b = Alloc("a"), Alloc("b")
    single_plan((a, 0, 256, 0x01), c)
    single_plan((a, 0, b, 256, 256), c)
    for _, template in _TEMPLATES.values():
        assert template is not None
        regions = [
            r
            for s in template.steps
            for r in (
                [w for d in s.dispatches for _, _, w in d.bindings]
                if isinstance(s, ComputePass)
                else [s.target] + ([s.source] if isinstance(s, CopyBuffer) else [])
            )
        ]
        assert all(r.resource is not a and r.resource is not b for r in regions)
        assert a not in template.resources and b not in template.resources


def test_one_command_buffers_write_the_right_bytes(device: Any) -> None:
    data = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)
    source = device.buffer_from_numpy(data)
    expected = np.zeros(4096, np.uint8)
    targets = [device.buffer_from_numpy(expected) for _ in range(3)]
    for i, target in enumerate(targets):  # the second and third use the first's template
        for work in ("fill", "zero", "copy"):
            cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
            cb.begin()
            if work == "fill":
                cb.fill_buffer(target, 64, 256, 0x01020304 + i)
            elif work == "zero":
                cb.fill_buffer(target, 128, 64, 0)
            else:
                cb.copy_buffer(source, 1024, target, 512, 252)
            cb.end()
            assert cb.plan == general(record_segment_of(cb), device.caps), f"{work} {i}"
            device.queue_execute(cb)
            device.wait_idle(30)
        want = expected.copy()
        want[64:320] = np.frombuffer((0x01020304 + i).to_bytes(4, "little") * 64, np.uint8)
        want[128:192] = 0
        want[512:764] = data[1024:1276]
        np.testing.assert_array_equal(target.to_numpy(), want)


def record_segment_of(cb: Any) -> TransferRecord:
    """The record a one-command buffer's segment stands for."""
    (segment,) = cb.segments
    if hasattr(segment, "pattern"):
        ref = segment.target
        return (ref.buffer, ref.offset, ref.length, int.from_bytes(segment.pattern, "little"))
    s, t = segment.source, segment.target
    return (s.buffer, s.offset, t.buffer, t.offset, t.length)
