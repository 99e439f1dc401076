"""Property test of the optimised lowering (issue 4): random programs that respect barrier
semantics run on the GPU and must equal in-order execution of the same program in numpy.

Programs are sequences of barrier regions; inside a region, commands never touch
overlapping bytes where one of them writes (the API lets the lowering reorder them freely),
so in-order execution defines the result. Commands: fills (pattern 1/2/4 at any alignment),
copies (any alignment, same buffer allowed when disjoint), updates and dispatches of a XOR
kernel with byte-granular binding ranges (exercising binding shadows). Each program runs
with the adapter's cost model and with every transfer forced onto kernels.

A second strategy (:func:`crowded_programs`) writes longer programs — up to 12 regions of
up to 8 commands — whose ranges start at a few hot spots, mostly word aligned, so native
transfers (which the lowering moves across dispatches and regions) keep landing on bytes
that dispatches of neighbouring regions read or write: a wrong link in the conflict
analysis reorders two of them and changes the bytes. Those programs run on the GPU and,
in larger numbers and with every transfer native, on the pure plan interpreter of
tests/test_lowering.py.

``HAL_FUZZ_EXAMPLES`` sets the number of examples (CI default 40; ``make fuzz`` runs
thousands).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import test_lowering as TL
from conftest import WAIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hal
from hal.core.caps import DeviceCaps
from hal.core.lowering import LoweringOptions, lower
from hal.runtime.encoder import compile_plan

SIZES = (600, 1000, 1500)
EXAMPLES = int(os.environ.get("HAL_FUZZ_EXAMPLES", "40"))
KERNEL = Path(__file__).parent / "kernels" / "xor_bytes.wgsl"


@dataclass(frozen=True)
class Fill:
    buffer: int
    offset: int
    length: int
    pattern: bytes


@dataclass(frozen=True)
class Copy:
    source: int
    source_offset: int
    target: int
    target_offset: int
    length: int


@dataclass(frozen=True)
class Update:
    buffer: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Xor:
    source: int
    source_offset: int
    target: int
    target_offset: int
    length: int
    key: int


Command = Fill | Copy | Update | Xor


def _accesses(c: Command) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(reads, writes) as (buffer, start, end)."""
    if isinstance(c, Fill):
        return [], [(c.buffer, c.offset, c.offset + c.length)]
    if isinstance(c, Update):
        return [], [(c.buffer, c.offset, c.offset + len(c.data))]
    return (
        [(c.source, c.source_offset, c.source_offset + c.length)],
        [(c.target, c.target_offset, c.target_offset + c.length)],
    )


def _touch(a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]) -> bool:
    return any(x[0] == y[0] and x[1] < y[2] and y[1] < x[2] for x in a for y in b)


def _conflict(a: Command, b: Command) -> bool:
    ra, wa = _accesses(a)
    rb, wb = _accesses(b)
    return _touch(wa, rb) or _touch(wa, wb) or _touch(ra, wb)


@st.composite
def _range(draw: st.DrawFn, size: int, multiple: int = 1, max_len: int = 400) -> tuple[int, int]:
    length = draw(st.integers(1, max_len // multiple)) * multiple
    offset = draw(st.integers(0, (size - length) // multiple)) * multiple
    return offset, length


HOT_SPOTS = (0, 4, 64, 100, 128, 256, 260, 400)
"""Where crowded programs' ranges start (then clipped to the buffer)."""


@st.composite
def _hot_range(draw: st.DrawFn, size: int, multiple: int = 1) -> tuple[int, int]:
    length = draw(st.sampled_from([4, 8, 60, 61, 64, 65, 128, 300])) // multiple * multiple
    offset = draw(st.sampled_from(HOT_SPOTS)) + draw(st.sampled_from([0, 0, 0, 1, 2]))
    offset = min(offset, size - length) // multiple * multiple
    return offset, length


@st.composite
def _crowded_command(draw: st.DrawFn) -> Command:
    """A command whose ranges start at hot spots, of two buffers only."""
    kind = draw(st.sampled_from(["fill", "copy", "update", "xor", "xor"]))
    buffer, other = draw(st.permutations([0, 1]))
    if kind == "fill":
        n = draw(st.sampled_from([1, 2, 4]))
        offset, length = draw(_hot_range(SIZES[buffer], n))
        zero = draw(st.booleans())
        pattern = bytes(n) if zero else draw(st.binary(min_size=n, max_size=n))
        return Fill(buffer, offset, length, pattern)
    offset, length = draw(_hot_range(SIZES[buffer]))
    if kind == "update":
        return Update(buffer, offset, draw(st.binary(min_size=length, max_size=length)))
    target_offset, _ = draw(_hot_range(SIZES[other]))
    target_offset = min(target_offset, SIZES[other] - length)
    if kind == "copy":
        return Copy(buffer, offset, other, target_offset, length)
    return Xor(buffer, offset, other, target_offset, length, draw(st.integers(0, 2**32 - 1)))


@st.composite
def crowded_programs(draw: st.DrawFn) -> list[list[Command]]:
    """Up to 12 barrier regions of up to 8 mutually non-conflicting crowded commands."""
    regions = []
    for _ in range(draw(st.integers(2, 12))):
        region: list[Command] = []
        for _ in range(draw(st.integers(1, 8))):
            command = draw(_crowded_command())
            if not any(_conflict(command, other) for other in region):
                region.append(command)
        regions.append(region)
    return regions


@st.composite
def _command(draw: st.DrawFn) -> Command:
    kind = draw(st.sampled_from(["fill", "copy", "update", "xor", "xor"]))
    if kind == "fill":
        buffer = draw(st.integers(0, 2))
        n = draw(st.sampled_from([1, 2, 4]))
        offset, length = draw(_range(SIZES[buffer], n))
        pattern = draw(st.binary(min_size=n, max_size=n))
        if draw(st.booleans()):
            pattern = bytes(n)  # zero patterns may lower to clear_buffer
        return Fill(buffer, offset, length, pattern)
    if kind == "update":
        buffer = draw(st.integers(0, 2))
        offset, length = draw(_range(SIZES[buffer]))
        return Update(buffer, offset, draw(st.binary(min_size=length, max_size=length)))
    source, target = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    length = draw(st.integers(1, 300))
    if draw(st.booleans()):  # often word aligned, so native copies and unshadowed bindings occur
        length = max(4, length & ~3)
    source_offset = draw(st.integers(0, SIZES[source] - length))
    target_offset = draw(st.integers(0, SIZES[target] - length))
    if draw(st.booleans()):
        source_offset &= ~3
        target_offset &= ~3
    if source == target and (
        source_offset < target_offset + length and target_offset < source_offset + length
    ):
        target_offset = (source_offset + length) % (SIZES[target] - length + 1)
        if source_offset < target_offset + length and target_offset < source_offset + length:
            target = (target + 1) % 3
            target_offset = min(target_offset, SIZES[target] - length)
    if kind == "copy":
        return Copy(source, source_offset, target, target_offset, length)
    return Xor(
        source, source_offset, target, target_offset, length, draw(st.integers(0, 2**32 - 1))
    )


@st.composite
def programs(draw: st.DrawFn) -> list[list[Command]]:
    """Barrier regions of mutually non-conflicting commands."""
    regions = []
    for _ in range(draw(st.integers(1, 5))):
        region: list[Command] = []
        for _ in range(draw(st.integers(1, 5))):
            command = draw(_command())
            if not any(_conflict(command, other) for other in region):
                region.append(command)
        regions.append(region)
    return regions


def _run_model(program: list[list[Command]], memory: list[np.ndarray]) -> None:
    for region in program:
        for c in region:
            if isinstance(c, Fill):
                reps = c.length // len(c.pattern)
                memory[c.buffer][c.offset : c.offset + c.length] = np.frombuffer(
                    c.pattern * reps, np.uint8
                )
            elif isinstance(c, Update):
                memory[c.buffer][c.offset : c.offset + len(c.data)] = np.frombuffer(
                    c.data, np.uint8
                )
            elif isinstance(c, Copy):
                memory[c.target][c.target_offset : c.target_offset + c.length] = memory[c.source][
                    c.source_offset : c.source_offset + c.length
                ].copy()
            else:
                key = np.frombuffer(c.key.to_bytes(4, "little"), np.uint8)
                src = memory[c.source][c.source_offset : c.source_offset + c.length].copy()
                mask = np.resize(key, c.length)
                memory[c.target][c.target_offset : c.target_offset + c.length] = src ^ mask


def _record(
    device: hal.Device,
    executable: hal.Executable,
    buffers: list[hal.Buffer],
    program: list[list[Command]],
) -> hal.CommandBuffer:
    event = device.create_event()
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    for index, region in enumerate(program):
        if index:
            if index % 2:
                cb.execution_barrier()
            else:
                cb.signal_event(event)
                cb.wait_events([event])
        for c in region:
            if isinstance(c, Fill):
                cb.fill_buffer(buffers[c.buffer], c.offset, c.length, c.pattern)
            elif isinstance(c, Update):
                cb.update_buffer(c.data, 0, buffers[c.buffer], c.offset, len(c.data))
            elif isinstance(c, Copy):
                cb.copy_buffer(
                    buffers[c.source], c.source_offset, buffers[c.target], c.target_offset, c.length
                )
            else:
                words = -(-c.length // 4)
                cb.dispatch(
                    executable,
                    "xor_words",
                    (-(-words // 64), 1, 1),
                    constants=[c.key],
                    bindings=[
                        hal.BufferRef(buffers[c.source], c.source_offset, c.length),
                        hal.BufferRef(buffers[c.target], c.target_offset, c.length),
                    ],
                )
    cb.end()
    return cb


@pytest.fixture(scope="module")
def setup(device: hal.Device) -> tuple[hal.Executable, list[hal.Buffer]]:
    return device.create_executable(KERNEL), [device.allocate_buffer(s) for s in SIZES]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs(), seed=st.integers(0, 2**31))
def test_random_programs_match_in_order_execution(
    device: hal.Device,
    setup: tuple[hal.Executable, list[hal.Buffer]],
    program: list[list[Command]],
    seed: int,
) -> None:
    executable, buffers = setup
    rng = np.random.default_rng(seed)
    initial = [rng.integers(0, 256, s, dtype=np.uint8) for s in SIZES]
    expected = [m.copy() for m in initial]
    _run_model(program, expected)
    cb = _record(device, executable, buffers, program)
    for forced in (None, LoweringOptions(transfers="kernel")):
        for buffer, data in zip(buffers, initial, strict=True):
            device.transfer_h2d(data, buffer)
        if forced is None:
            done = device.create_semaphore()
            device.queue_execute(cb, signal=[(done, 1)])
            done.wait(1, timeout=WAIT)
        else:
            program_ = compile_plan(lower(cb.segments, device.caps, forced), device.encoding)
            device._queue.flush_clears()
            device.backend.device.queue.submit([program_.encode()])
        for index, buffer in enumerate(buffers):
            got = buffer.to_numpy()
            assert np.array_equal(got, expected[index]), (
                f"buffer {index} differs ({forced or 'auto'}) at "
                f"{np.flatnonzero(got != expected[index])[:10]}\n{cb.dump()}"
            )


def _check_on_gpu(
    device: hal.Device,
    setup: tuple[hal.Executable, list[hal.Buffer]],
    program: list[list[Command]],
    seed: int,
) -> None:
    executable, buffers = setup
    rng = np.random.default_rng(seed)
    initial = [rng.integers(0, 256, s, dtype=np.uint8) for s in SIZES]
    expected = [m.copy() for m in initial]
    _run_model(program, expected)
    cb = _record(device, executable, buffers, program)
    for buffer, data in zip(buffers, initial, strict=True):
        device.transfer_h2d(data, buffer)
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    for index, buffer in enumerate(buffers):
        got = buffer.to_numpy()
        assert np.array_equal(got, expected[index]), (
            f"buffer {index} differs at {np.flatnonzero(got != expected[index])[:10]}\n{cb.dump()}"
        )


@settings(
    max_examples=max(10, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=crowded_programs(), seed=st.integers(0, 2**31))
def test_crowded_programs_match_in_order_execution(
    device: hal.Device,
    setup: tuple[hal.Executable, list[hal.Buffer]],
    program: list[list[Command]],
    seed: int,
) -> None:
    _check_on_gpu(device, setup, program, seed)


def _xor_kernel(windows: dict[int, memoryview], constants: bytes) -> None:
    """The plan interpreter's xor_words: output byte i = input byte i ^ key byte i % 4."""
    src, dst = windows[0], windows[1]
    for i in range(min(len(src), len(dst))):
        dst[i] = src[i] ^ constants[i % 4]


def _segments(program: list[list[Command]], allocs: list[TL.Alloc]) -> list[TL.Segment]:
    """The program as segments of stand-in allocations, a barrier between regions."""
    executable = TL.FakeExecutable("xor", _xor_kernel)
    out: list[TL.Segment] = []
    for index, region in enumerate(program):
        if index:
            out.append(TL.barrier())
        for c in region:
            if isinstance(c, Fill):
                out.append(TL.fill(allocs[c.buffer], c.offset, c.length, c.pattern))
            elif isinstance(c, Update):
                out.append(TL.update(c.data, allocs[c.buffer], c.offset))
            elif isinstance(c, Copy):
                source, target = allocs[c.source], allocs[c.target]
                out.append(TL.copy(source, c.source_offset, target, c.target_offset, c.length))
            else:
                bindings = [
                    TL.ref(allocs[c.source], c.source_offset, c.length),
                    TL.ref(allocs[c.target], c.target_offset, c.length),
                ]
                out.append(
                    TL.dispatch(
                        bindings,
                        ["read-only-storage", "storage"],
                        constants=c.key.to_bytes(4, "little"),
                        constants_size=4,
                        executable=executable,
                    )
                )
    return out


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(
    program=crowded_programs(),
    seed=st.integers(0, 2**31),
    alignment=st.sampled_from([4, 256]),
)
def test_crowded_programs_match_in_order_execution_on_the_plan_interpreter(
    program: list[list[Command]], seed: int, alignment: int
) -> None:
    """Every aligned transfer native (the most reordering there is), many more examples:
    the plan, replayed by the interpreter that checks wgpu's rules, equals the model."""
    allocs = [TL.Alloc(size, f"b{i}") for i, size in enumerate(SIZES)]
    c = DeviceCaps(
        storage_alignment=alignment,
        uniform_alignment=alignment,
        immediates=True,  # the interpreter's kernels read constants as immediates
        costs=TL.NATIVE_FIRST,
    )
    rng = np.random.default_rng(seed)
    initial = [rng.integers(0, 256, s, dtype=np.uint8) for s in SIZES]
    expected = [m.copy() for m in initial]
    _run_model(program, expected)
    plan = lower(_segments(program, allocs), c)
    memory = {
        a: bytearray(m.tobytes()) + bytearray(-len(m) % 4)
        for a, m in zip(allocs, initial, strict=True)
    }
    TL.execute(plan, c, memory)
    for index, a in enumerate(allocs):
        got = np.frombuffer(bytes(memory[a][: SIZES[index]]), np.uint8)
        assert np.array_equal(got, expected[index]), (
            f"buffer {index} differs at {np.flatnonzero(got != expected[index])[:10]}\n"
            f"{plan.describe()}"
        )
