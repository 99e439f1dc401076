"""Small dispatch programs from templates (hal/core/dispatch_plans.py): equal to the general
path's plan field by field, for random programs and caps; they hold no executable or
allocation; and they run the right bytes."""

from __future__ import annotations

import gc
import random
import weakref
from pathlib import Path
from typing import Any

import numpy as np

import hal
from hal.core.batching import batch_transfers
from hal.core.caps import DeviceCaps
from hal.core.dispatch_plans import _TEMPLATES, dispatch_plan, dispatch_program
from hal.core.lowering import lower
from hal.core.plan import Plan

KERNELS = Path(__file__).parent / "kernels"


def general(segments: Any, c: DeviceCaps) -> Plan:
    return batch_transfers(lower(segments, c), c)


def random_caps(rng: random.Random) -> DeviceCaps:
    return DeviceCaps(storage_alignment=rng.choice([4, 32, 256]), immediates=rng.random() < 0.6)


def record(device: hal.Device, rng: random.Random, kernels: Any, buffers: list[Any]) -> Any:
    """A random one-shot program of up to 6 dispatches and barriers (aliased, unaligned and
    overlapping bindings included: those shadow and go down the general path)."""
    noop, xor = kernels
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.3:
            cb.execution_barrier()
            continue
        offset = rng.choice([0, 256, 512, 4, 36])
        if rng.random() < 0.4:
            view = hal.BufferRef(rng.choice(buffers), offset, 256)
            cb.dispatch(noop, "touch", (rng.randint(1, 3), 1, 1), bindings=[view])
        else:
            source = hal.BufferRef(rng.choice(buffers), offset, rng.choice([256, 1024]))
            target = hal.BufferRef(rng.choice(buffers), rng.choice([0, 1024, 2048]), 1024)
            key = rng.choice([0, 7, 0x12345678])
            cb.dispatch(xor, "xor_words", (4, 1, 1), constants=[key], bindings=[source, target])
    return cb


def test_dispatch_plans_equal_the_general_path_on_random_programs() -> None:
    device = hal.create_device(implementation="null", backend="null")
    rng = random.Random(11)
    kernels = (
        device.create_executable(hal.shader_path("noop.wgsl")),
        device.create_executable(str(KERNELS / "xor_bytes.wgsl")),
    )
    caps_pool = [device.caps, *(random_caps(rng) for _ in range(6))]
    templated = 0
    for i in range(600):
        # Few shapes, fresh buffers: most plans come from a template made for others.
        buffers = [device.allocate_buffer(4096) for _ in range(rng.randint(1, 3))]
        cb = record(device, rng, kernels, buffers)
        segments = list(cb.segments)
        if not dispatch_program(segments):
            continue
        c = rng.choice(caps_pool)
        plan = dispatch_plan(segments, c)
        expected = general(segments, c)
        assert plan == expected, f"program {i}:\n{plan.describe()}\n---\n{expected.describe()}"
        assert plan.resources == expected.resources
        assert plan.stats == expected.stats and plan.notes == expected.notes
        templated += sum(1 for _, _, t in _TEMPLATES.values() if t is not None) > 0
        cb.end()
        assert cb.plan == general(segments, device.caps)
    assert templated > 500
    assert any(t is None for _, _, t in _TEMPLATES.values())  # shadowing shapes exist


def test_dispatch_program_takes_only_static_dispatches_and_plain_barriers() -> None:
    device = hal.create_device(implementation="null", backend="null")
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    buffer = device.allocate_buffer(4096)
    cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    cb.begin()
    cb.dispatch(noop, "touch", (1, 1, 1), bindings=[buffer])
    cb.execution_barrier()
    assert dispatch_program(list(cb.segments))
    cb.fill_buffer(buffer, 0, 4, 0)
    assert not dispatch_program(list(cb.segments))
    assert not dispatch_program([])


def test_templates_hold_no_allocation_and_executables_weakly() -> None:
    device = hal.create_device(implementation="null", backend="null")
    noop = device.create_executable(hal.shader_path("noop.wgsl"))
    buffer = device.allocate_buffer(4096)
    for _ in range(2):
        cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[hal.BufferRef(buffer, 256, 256)])
        cb.execution_barrier()
        cb.end()
        (pass_,) = cb.plan.steps
        (dispatch,) = pass_.dispatches
        assert dispatch.kernel is noop and dispatch.bindings[0][2].resource is buffer
    # The device keeps executables by source; the templates name them only weakly.
    for _, held, template in _TEMPLATES.values():
        assert all(type(w) is weakref.ref for w in held)
        if template is not None:
            kernels = [d.kernel for s in template.steps for d in s.dispatches]  # type: ignore[union-attr]
            assert not any(isinstance(k, hal.Executable) for k in kernels)
            assert not any(isinstance(r, hal.Buffer) for r in template.resources)
    buffer_ref = weakref.ref(buffer)
    del cb, pass_, dispatch, buffer
    gc.collect()
    assert buffer_ref() is None


def test_each_executable_of_one_shape_gets_its_own_plan(tmp_path: Path) -> None:
    device = hal.create_device(implementation="null", backend="null")
    buffer = device.allocate_buffer(4096)
    source = Path(hal.shader_path("noop.wgsl")).read_text()
    for i in range(6):  # same entry point and bindings: one key shape but for the executable
        path = tmp_path / f"noop{i}.wgsl"
        path.write_text(f"// copy {i}\n{source}")
        noop = device.create_executable(str(path))
        cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.dispatch(noop, "touch", (1, 1, 1), bindings=[buffer])
        cb.end()
        (dispatch,) = cb.plan.steps[0].dispatches
        assert dispatch.kernel is noop
        assert cb.plan == general(list(cb.segments), device.caps)


def test_templated_dispatch_programs_write_the_right_bytes(device: Any) -> None:
    xor = device.create_executable(str(KERNELS / "xor_bytes.wgsl"))
    data = np.random.default_rng(5).integers(0, 1 << 32, 1024, dtype=np.uint32)
    source = device.buffer_from_numpy(data)
    for key in (3, 0x5A5A5A5A, 9):  # the second and third use the first's template
        target = device.buffer_from_numpy(np.zeros(1024, np.uint32))
        cb = device.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        for half in (0, 2048):
            views = [hal.BufferRef(source, half, 2048), hal.BufferRef(target, half, 2048)]
            cb.dispatch(xor, "xor_words", (8, 1, 1), constants=[key], bindings=views)
            cb.execution_barrier()
        cb.end()
        assert cb.plan == general(list(cb.segments), device.caps)
        device.queue_execute(cb)
        device.wait_idle(30)
        np.testing.assert_array_equal(target.to_numpy(np.uint32), data ^ np.uint32(key))
