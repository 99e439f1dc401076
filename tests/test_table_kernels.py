"""The table kernels (shaders/builtin_{fill,copy}_table.wgsl) on every grid shape a device may
choose (hal/runtime/device.py ``table_grid``): a GPU's 256 lanes and a workgroup per entry,
a CPU adapter's few lanes and few workgroups that loop over the entries, and shapes in between
(one lane, fewer workgroups than entries, lanes that do not divide an entry). Each writes the
bytes numpy says, edge bytes of unaligned ranges included, and the plan dispatches
min(entries, workgroups) workgroups."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import hal
import hal.runtime.device as device_module
from hal.core.builtins import BuiltinKernel
from hal.core.plan import ComputePass

SIZE = 1 << 16
GRIDS = [(256, 65535), (8, 16), (1, 1), (3, 5), (64, 7), (256, 2)]


@pytest.fixture(params=GRIDS, ids=[f"lanes{lanes}-groups{groups}" for lanes, groups in GRIDS])
def gridded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A new default device whose table kernels run on the parameter's (lanes, workgroups)."""
    lanes, groups = request.param
    monkeypatch.setattr(device_module, "table_grid", lambda adapter_type: (lanes, groups))
    with hal.create_device() as dev:
        assert dev.caps.table_workgroups == groups
        yield dev


def _run_and_compare(
    device: hal.Device,
    cb: hal.CommandBuffer,
    kernel: BuiltinKernel,
    target: hal.Buffer,
    expected: np.ndarray,
) -> None:
    """Check that ``cb``'s plan batched into ``kernel`` dispatches on min(entries, the
    device's table workgroups) workgroups, run it, and compare ``target`` with numpy."""
    plan = cb.plan
    assert plan is not None
    tables = [
        d
        for step in plan.steps
        if isinstance(step, ComputePass)
        for d in step.dispatches
        if d.kernel is kernel
    ]
    assert tables, plan
    for d in tables:
        entries = d.bindings[-1][2].size // 16
        assert d.workgroups == (min(entries, device.caps.table_workgroups), 1, 1)
    device.queue_execute(cb)
    device.wait_idle(60)
    np.testing.assert_array_equal(target.to_numpy(), expected)


def _ranges(rng: random.Random, count: int, stride: int) -> list[tuple[int, int]]:
    """``count`` ascending (offset, length) ranges of at most ``stride - 8`` bytes, one per
    ``stride``-byte slot, at any alignment, word-disjoint (what batching needs)."""
    ranges = []
    for i in range(count):
        start = stride * i + rng.randrange(0, 4)
        length = rng.choice([1, 2, 3, 4, 5, 7, 64, 255, 256, 257, stride - 8])
        ranges.append((start, length))
    return ranges


def test_table_fills_write_exact_bytes_on_every_grid(gridded: hal.Device) -> None:
    rng = random.Random(7)
    initial = np.random.default_rng(3).integers(0, 256, SIZE, dtype=np.uint8)
    target = gridded.buffer_from_numpy(initial)
    expected = initial.copy()
    ranges = _ranges(rng, 120, 512)
    cb = gridded.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for k, (start, length) in enumerate(ranges):
        # 1-byte patterns: any offset and length is legal, so the edge words are patched.
        pattern = (k * 37 + 11) & 0xFF
        cb.fill_buffer(target, start, length, pattern, 1)
        expected[start : start + length] = pattern
    cb.end()
    _run_and_compare(gridded, cb, BuiltinKernel.FILL_TABLE, target, expected)


def test_table_copies_write_exact_bytes_on_every_grid(gridded: hal.Device) -> None:
    rng = random.Random(11)
    data = np.random.default_rng(4).integers(0, 256, SIZE, dtype=np.uint8)
    initial = np.random.default_rng(5).integers(0, 256, SIZE, dtype=np.uint8)
    source = gridded.buffer_from_numpy(data)
    target = gridded.buffer_from_numpy(initial)
    expected = initial.copy()
    ranges = _ranges(rng, 120, 512)
    cb = gridded.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for start, length in ranges:
        source_offset = rng.randrange(0, SIZE - length)
        cb.copy_buffer(source, source_offset, target, start, length)
        expected[start : start + length] = data[source_offset : source_offset + length]
    cb.end()
    _run_and_compare(gridded, cb, BuiltinKernel.COPY_TABLE, target, expected)


def test_the_default_grid_follows_the_adapter_type() -> None:
    assert device_module.table_grid("cpu") == (8, 16)
    assert device_module.table_grid("discrete-gpu") == (256, 65535)
    with hal.create_device() as dev:
        _, groups = device_module.table_grid(dev.info.adapter_type)
        assert dev.caps.table_workgroups == groups
