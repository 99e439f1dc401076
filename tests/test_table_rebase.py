"""Binding-table replay without lowering again (issue 10, item 6): a table of the same shape
reuses the plan of an earlier one, rebased onto its buffers (hal/core/rebase.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hal
import hal.runtime.programs as programs

KERNELS = Path(__file__).parent / "kernels"
KEY = 0x5AC3A53C
WAIT = 30.0


@pytest.fixture
def lowerings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the plans lowered (``programs._plan`` calls)."""
    calls: list[int] = []
    original = programs._plan

    def counted(segments: Any, caps: Any) -> Any:
        calls.append(len(segments))
        return original(segments, caps)

    monkeypatch.setattr(programs, "_plan", counted)
    return calls


def record(device: hal.Device) -> hal.CommandBuffer:
    """slot 0 -> xor -> slot 1, then a fill and an unaligned copy inside slot 1, and a fill of
    slot 2 from its offset 3 to its end."""
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=3)
    cb.begin()
    cb.dispatch(
        xor,
        "xor_copy",
        (4, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0, 0, 1024), hal.SlotRef(1, 0, 1024)],
    )
    cb.execution_barrier()
    cb.fill_buffer(hal.SlotRef(1, 1024, 256), 0, 256, 0x11223344)
    cb.copy_buffer(hal.SlotRef(1), 1, hal.SlotRef(1), 1500, 100)
    cb.fill_buffer(hal.SlotRef(2, 3), 0, None, b"\x7e")
    cb.end()
    return cb


def expected(source: np.ndarray, size: int, slot2: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(size, np.uint8)
    words = source[:1024].view(np.uint32) ^ np.uint32(KEY)
    out[:1024] = words.view(np.uint8)
    out[1024:1280] = np.frombuffer((0x11223344).to_bytes(4, "little") * 64, np.uint8)
    out[1500:1600] = out[1:101]
    third = np.zeros(slot2, np.uint8)
    third[3:] = 0x7E
    return out, third


def run(device: hal.Device, cb: hal.CommandBuffer, table: list[Any]) -> None:
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)], binding_table=table)
    done.wait(1, timeout=WAIT)


def test_tables_of_one_shape_are_lowered_once(device: Any, lowerings: list[int]) -> None:
    cb = record(device)
    # A table's shape takes offsets modulo the larger of the two binding alignments.
    alignment = max(device.caps.storage_alignment, device.caps.uniform_alignment)
    rng = np.random.default_rng(5)
    for round_index in range(12):
        source = rng.integers(0, 256, 2048, np.uint8)
        a = device.buffer_from_numpy(source)
        # Slot 1 at an aligned offset inside a bigger buffer: same offset modulo alignment.
        big = device.allocate_buffer(4096 + alignment * round_index)
        c = device.allocate_buffer(64)
        table = [a, hal.BufferRef(big, alignment * round_index, 4096), c]
        run(device, cb, table)
        want, third = expected(source, 4096, 64)
        got = big.to_numpy()[alignment * round_index : alignment * round_index + 4096]
        assert np.array_equal(got, want), round_index
        assert np.array_equal(c.to_numpy(), third)
        assert not big.to_numpy()[: alignment * round_index].any()  # nothing before the ref
    assert len(lowerings) == 1


def test_another_shape_is_lowered_again(device: Any, lowerings: list[int]) -> None:
    cb = record(device)
    source = np.arange(2048, dtype=np.uint32).astype(np.uint8)
    for offset in (0, 4):  # offset 4 breaks the alignment class: windows differ
        a = device.buffer_from_numpy(source)
        big = device.allocate_buffer(4200)
        c = device.allocate_buffer(64)
        run(device, cb, [hal.BufferRef(a, 0, 2048), hal.BufferRef(big, offset, 4096), c])
        want, third = expected(source, 4096, 64)
        assert np.array_equal(big.to_numpy()[offset : offset + 4096], want)
        assert np.array_equal(c.to_numpy(), third)
    assert len(lowerings) == 2


@pytest.mark.parametrize("aliasing", ["two slots, one buffer", "slot on a direct buffer"])
def test_aliasing_tables_are_lowered_for_their_buffers(
    device: Any, lowerings: list[int], aliasing: str
) -> None:
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    direct = device.allocate_buffer(2048)
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=2)
    cb.begin()
    cb.fill_buffer(direct, 0, 256, 0x01010101)
    cb.execution_barrier()
    cb.dispatch(
        xor,
        "xor_copy",
        (4, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0, 0, 1024), hal.SlotRef(1, 0, 1024)],
    )
    cb.end()
    source = np.arange(1024, dtype=np.uint32).astype(np.uint8)
    for _ in range(3):
        a = device.buffer_from_numpy(np.concatenate([source, np.zeros(1024, np.uint8)]))
        if aliasing == "two slots, one buffer":
            table = [hal.BufferRef(a, 0, 1024), hal.BufferRef(a, 1024, 1024)]
            target, at = a, 1024
        else:
            table = [a, direct]
            target, at = direct, 0
        run(device, cb, table)
        words = (source.view(np.uint32) ^ np.uint32(KEY)).view(np.uint8)
        assert np.array_equal(target.to_numpy()[at : at + 1024], words)
    assert len(lowerings) == 3  # never rebased: each table lowered for its own buffers


def test_cb_plan_shows_the_latest_tables_buffers(device: Any) -> None:
    cb = record(device)
    seen = []
    for _ in range(3):
        a, big, c = (
            device.allocate_buffer(2048),
            device.allocate_buffer(4096),
            device.allocate_buffer(64),
        )
        run(device, cb, [a, big, c])
        plan = cb.plan
        assert plan is not None
        seen.append(plan.resources)
        assert plan.resources == frozenset({a, big, c})
        regions = {
            id(r.resource)
            for step in plan.steps
            if hasattr(step, "dispatches")
            for d in step.dispatches
            for _, _, r in d.bindings
        }
        assert id(a) in regions and id(big) in regions
    assert len({frozenset(map(id, r)) for r in seen}) == 3
