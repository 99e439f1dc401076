"""Differential fuzzing: random command buffers on the GPU against hal.reference.

Valid programs mix every command (fills of every pattern length, updates, copies, dispatches,
indirect dispatches with GPU-computed parameters, barriers, events, advice) over root
buffers, subspans, buffer references and binding-table slots at random offsets and sizes
(0 and 1 included), in ONE_SHOT and reusable command buffers, on a device with immediates and
one without. The generator inserts a barrier wherever a command would race with one since the
last barrier, so every program respects API.md's ordering rules; the GPU result must equal
the reference's in-order run byte for byte.

Invalid calls are drawn from every rule of API.md's error table: each must raise its HalError
subclass naming the command, record nothing, and leave every buffer unchanged; invalid
submissions must change no buffer either.

CI runs HAL_FUZZ_EXAMPLES (default 300) examples per test and device kind, with a fixed seed;
``make fuzz`` runs 5,000 per test and device kind (10,000 valid command buffers and 10,000
invalid-call examples) with random seeds and prints the counts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import WAIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_kernels import TEST_KERNELS, kernel_path

import hal
from hal.core.reference import HostMemory, execute

U = hal.BufferUsage
EXAMPLES = int(os.environ.get("HAL_FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("HAL_FUZZ_RANDOM", "") == "1"
COUNTS: dict[str, int] = {"valid": 0, "invalid": 0, "bad_submissions": 0, "commands": 0}

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


# -- the world an example records into ------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """``size`` bytes at absolute ``base`` of allocation ``root``."""

    root: hal.Buffer
    base: int
    size: int

    def sub(self, offset: int, length: int) -> Range:
        return Range(self.root, self.base + offset, length)

    def overlaps(self, other: Range) -> bool:
        return (
            self.root is other.root
            and self.base < other.base + other.size
            and other.base < self.base + self.size
        )


@dataclass
class Kit:
    """Executables and devices shared by all examples."""

    device: hal.Device
    other: hal.Device
    xor: hal.Executable
    inplace: hal.Executable
    count: hal.Executable
    params: hal.Executable
    uniform: hal.Executable


@dataclass
class World:
    """Fresh buffers, a binding table and hazard tracking for one example."""

    kit: Kit
    data: st.DataObject
    roots: list[hal.Buffer]
    subspans: list[hal.Buffer]
    params: hal.Buffer  # only ever holds small workgroup counts
    sizes: hal.Buffer  # input of make_params: small values
    table: list[hal.Buffer | hal.BufferRef] = field(default_factory=list)
    table_ranges: list[Range] = field(default_factory=list)
    hazards: list[tuple[Range, bool]] = field(default_factory=list)
    event: Any = None

    @property
    def device(self) -> hal.Device:
        return self.kit.device

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def integer(self, low: int, high: int) -> int:
        return int(self.draw(st.integers(low, max(low, high))))

    # -- targets ----------------------------------------------------------------------------

    def target(self, slots: bool = True) -> tuple[Any, Range]:
        """A random Buffer, subspan, BufferRef or SlotRef over data memory, and its range."""
        kinds = ["root", "subspan", "ref"] + (["slot"] if slots and self.table else [])
        kind = self.draw(st.sampled_from(kinds))
        if kind == "root":
            buffer = self.draw(st.sampled_from(self.roots))
            return buffer, Range(buffer, 0, buffer.byte_length)
        if kind == "subspan":
            buffer = self.draw(st.sampled_from(self.subspans))
            return buffer, Range(buffer.allocated_buffer, buffer.byte_offset, buffer.byte_length)
        if kind == "ref":
            buffer = self.draw(st.sampled_from(self.roots + self.subspans))
            whole = Range(buffer.allocated_buffer, buffer.byte_offset, buffer.byte_length)
            offset, length = self.span(whole.size)
            ref = hal.BufferRef(buffer, offset, length)
            return ref, whole.sub(offset, whole.size - offset if length is None else length)
        slot = self.integer(0, len(self.table) - 1)
        whole = self.table_ranges[slot]
        offset, length = self.span(whole.size)
        size = whole.size - offset if length is None else length
        return hal.SlotRef(slot, offset, length), whole.sub(offset, size)

    def span(self, size: int, align: int = 1) -> tuple[int, int | None]:
        """A random (offset, length or None) inside ``size`` bytes, multiples of ``align``."""
        offset = self.integer(0, size // align) * align
        rest = size - offset
        if rest % align == 0 and self.draw(st.integers(0, 3)) == 0:
            return offset, None
        return offset, self.integer(0, rest // align) * align

    # -- ordering ---------------------------------------------------------------------------

    def access(self, cb: hal.CommandBuffer, reads: list[Range], writes: list[Range]) -> None:
        """Insert a barrier before a command that would race with one since the last."""
        touched = [(r, False) for r in reads] + [(w, True) for w in writes]
        if any(
            mine.overlaps(theirs) and (write or their_write)
            for mine, write in touched
            for theirs, their_write in self.hazards
        ):
            self.barrier(cb)
        self.hazards += [(r, w) for r, w in touched if r.size]

    def barrier(self, cb: hal.CommandBuffer) -> None:
        if self.event is not None and self.draw(st.booleans()):
            cb.signal_event(self.event)
            cb.wait_events([self.event])
            cb.reset_event(self.event)
        else:
            cb.execution_barrier()
        self.hazards = []


def make_world(kit: Kit, data: st.DataObject) -> World:
    device = kit.device
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    roots = []
    for _ in range(data.draw(st.integers(1, 4))):
        size = data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 33, 64, 100, 257]))
        buffer = device.allocate_buffer(size)
        if size:
            device.transfer_h2d(rng.integers(0, 256, size, dtype=np.uint8), buffer)
        roots.append(buffer)
    subspans = []
    for root in roots:
        offset = data.draw(st.integers(0, root.byte_length))
        length = data.draw(st.integers(0, root.byte_length - offset))
        subspans.append(root.subspan(offset, length))
    params = device.allocate_buffer(64, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS)
    sizes = device.allocate_buffer(16)
    world = World(kit, data, roots, subspans, params, sizes)
    if data.draw(st.booleans()):
        world.event = device.create_event()
    for _ in range(data.draw(st.integers(0, 3))):
        buffer = data.draw(st.sampled_from(roots + subspans))
        whole = Range(buffer.allocated_buffer, buffer.byte_offset, buffer.byte_length)
        if data.draw(st.booleans()):
            world.table.append(buffer)
            world.table_ranges.append(whole)
        else:
            offset, length = world.span(whole.size)
            world.table.append(hal.BufferRef(buffer, offset, length))
            world.table_ranges.append(
                whole.sub(offset, whole.size - offset if length is None else length)
            )
    return world


# -- valid commands ---------------------------------------------------------------------------


def cmd_fill(w: World, cb: hal.CommandBuffer) -> None:
    target, whole = w.target()
    n = w.draw(st.sampled_from([1, 2, 4]))
    offset, length = w.span(whole.size, n)
    value = w.integer(0, (1 << (8 * n)) - 1)
    pattern: int | bytes = value.to_bytes(n, "little") if w.draw(st.booleans()) else value
    size = whole.size - offset if length is None else length
    w.access(cb, [], [whole.sub(offset, size)])
    cb.fill_buffer(target, offset, length, pattern, None if isinstance(pattern, bytes) else n)


def cmd_update(w: World, cb: hal.CommandBuffer) -> None:
    target, whole = w.target()
    offset, length = w.span(whole.size)
    size = whole.size - offset if length is None else length
    source_offset = w.integer(0, 5)
    source = bytes(w.draw(st.binary(min_size=source_offset + size, max_size=source_offset + size)))
    w.access(cb, [], [whole.sub(offset, size)])
    cb.update_buffer(source, source_offset, target, offset, size)


def cmd_copy(w: World, cb: hal.CommandBuffer) -> None:
    source, src_whole = w.target()
    target, dst_whole = w.target()
    src_offset = w.integer(0, src_whole.size)
    dst_offset = w.integer(0, dst_whole.size)
    length = w.integer(0, min(src_whole.size - src_offset, dst_whole.size - dst_offset))
    src, dst = src_whole.sub(src_offset, length), dst_whole.sub(dst_offset, length)
    if src.overlaps(dst):
        return
    w.access(cb, [src], [dst])
    whole_rest = isinstance(source, hal.Buffer) and length == src_whole.size - src_offset
    cb.copy_buffer(source, src_offset, target, dst_offset, None if whole_rest else length)


def workgroups(w: World, limit: int) -> tuple[int, int, int]:
    if w.draw(st.integers(0, 9)) == 0:
        return w.draw(st.sampled_from([(0, 0, 0), (0, 1, 1), (1, 0, 2)]))
    return (w.integer(1, limit), 1, 1)


def cmd_xor(w: World, cb: hal.CommandBuffer) -> None:
    (a, ra), (b, rb) = w.target(), w.target()
    if ra.size < rb.size:
        (a, ra), (b, rb) = (b, rb), (a, ra)
    # dst (b) never longer than src (a): its bytes then depend only on bound source bytes.
    if ra.overlaps(rb):
        return
    w.access(cb, [ra], [rb])
    key = w.integer(0, 2**32 - 1)
    cb.dispatch(w.kit.xor, "xor_copy", workgroups(w, 2), constants=[key], bindings=[a, b])


def cmd_inplace(w: World, cb: hal.CommandBuffer) -> None:
    target, whole = w.target()
    w.access(cb, [], [whole])
    key = w.integer(0, 2**32 - 1).to_bytes(4, "little")
    count = workgroups(w, 2)
    cb.dispatch(w.kit.inplace, "xor_inplace", count, constants=key, bindings=[target])


def counts(w: World) -> tuple[int, int, int]:
    return (w.integer(0, 3), w.integer(0, 3), w.integer(0, 2))


def cmd_count(w: World, cb: hal.CommandBuffer) -> None:
    (counter, rc), (seen, rs) = w.target(), w.target()
    if rc.overlaps(rs):
        return
    w.access(cb, [], [rc, rs])
    cb.dispatch(w.kit.count, "count", counts(w), bindings=[counter, seen])


def cmd_indirect(w: World, cb: hal.CommandBuffer) -> None:
    """Workgroup counts written by update_buffer or computed by make_params, then read by
    dispatch_indirect, directly or through a binding-table slot."""
    offset = w.integer(0, 13) * 4
    params = Range(w.params, offset, 12)
    if w.draw(st.booleans()):
        w.access(cb, [], [params])
        data = np.array(counts(w), np.uint32).tobytes()
        cb.update_buffer(data, 0, w.params, offset, 12)
    else:
        sizes = Range(w.sizes, 0, 12)
        w.access(cb, [], [sizes])
        x, y, z = counts(w)
        small = np.array([max(0, x - 1), y // 2, z], np.uint32)  # make_params: (+1, *2, =)
        cb.update_buffer(small.tobytes(), 0, w.sizes, 0, 12)
        w.access(cb, [sizes], [params])
        cb.dispatch(
            w.kit.params, "make_params", (1, 1, 1),
            bindings=[hal.BufferRef(w.sizes, 0, 12), hal.BufferRef(w.params, offset, 12)],
        )  # fmt: skip
    (counter, rc), (seen, rs) = w.target(), w.target()
    if rc.overlaps(rs):
        return
    w.access(cb, [params], [rc, rs])
    length = None if w.draw(st.booleans()) else 12
    if w.table and w.draw(st.booleans()):
        indirect: Any = hal.SlotRef(len(w.table), offset, length)  # the params slot
    else:
        indirect = hal.BufferRef(w.params, offset, length)
    cb.dispatch_indirect(w.kit.count, "count", indirect, bindings=[counter, seen])


def cmd_barrier(w: World, cb: hal.CommandBuffer) -> None:
    w.barrier(cb)


def cmd_advise(w: World, cb: hal.CommandBuffer) -> None:
    target, _ = w.target()
    if w.draw(st.booleans()):
        cb.advise_buffer(target)
    else:
        cb.discard_buffer(target)


COMMANDS: list[Callable[[World, hal.CommandBuffer], None]] = [
    cmd_fill,
    cmd_update,
    cmd_copy,
    cmd_xor,
    cmd_inplace,
    cmd_count,
    cmd_indirect,
    cmd_barrier,
    cmd_advise,
]


def record_valid(w: World, cb: hal.CommandBuffer, max_commands: int) -> None:
    for _ in range(w.integer(0, max_commands)):
        w.draw(st.sampled_from(COMMANDS))(w, cb)
        COUNTS["commands"] += 1


# -- running and comparing -------------------------------------------------------------------


def all_roots(w: World) -> list[hal.Buffer]:
    return [*w.roots, w.params, w.sizes]


def table_for(w: World) -> list[Any] | None:
    return [*w.table, w.params] if w.table else None


def read_all(w: World) -> list[bytes]:
    return [w.device.transfer_d2h(b) for b in all_roots(w)]


def run_and_compare(w: World, cb: hal.CommandBuffer) -> None:
    """Submit ``cb`` (twice if reusable) and compare every allocation with the reference."""
    table = table_for(w)
    memory = HostMemory.snapshot(all_roots(w))
    runs = 1 if cb.mode & hal.CommandBufferMode.ONE_SHOT else 2
    for _ in range(runs):
        execute(cb, memory, table, TEST_KERNELS)
        done = w.device.create_semaphore()
        w.device.queue_execute(cb, signal=[(done, 1)], binding_table=table)
        done.wait(1, timeout=WAIT)
    for buffer, got in zip(all_roots(w), read_all(w), strict=True):
        want = memory.read(buffer)
        if got != want:
            diff = [i for i, (g, e) in enumerate(zip(got, want, strict=True)) if g != e]
            pytest.fail(f"GPU and reference differ in {buffer!r} at bytes {diff[:16]}\n{cb.dump()}")


def release(w: World) -> None:
    for buffer in all_roots(w):
        buffer.release()


@pytest.fixture(scope="module", params=["immediates", "no_immediates"])
def kit(request: pytest.FixtureRequest) -> Kit:
    device = request.getfixturevalue("device")
    other = request.getfixturevalue("device_no_immediates")
    if request.param == "no_immediates":
        device, other = other, device

    def load(name: str) -> hal.Executable:
        return device.create_executable(kernel_path(name))

    return Kit(
        device,
        other,
        load("xor_words.wgsl"),
        load("xor_inplace.wgsl"),
        load("count_workgroups.wgsl"),
        load("make_params.wgsl"),
        load("uniform_scale.wgsl"),
    )


def new_command_buffer(w: World) -> hal.CommandBuffer:
    mode = w.draw(st.sampled_from([hal.CommandBufferMode.ONE_SHOT, hal.CommandBufferMode.DEFAULT]))
    capacity = len(w.table) + 1 if w.table else w.draw(st.sampled_from([0, 2]))
    cb = w.device.create_command_buffer(mode, hal.CommandCategory.ANY, capacity)
    cb.begin()
    return cb


@FUZZ
@given(data=st.data())
def test_random_valid_command_buffers_match_the_reference(kit: Kit, data: st.DataObject) -> None:
    w = make_world(kit, data)
    try:
        cb = new_command_buffer(w)
        record_valid(w, cb, 12)
        cb.end()
        run_and_compare(w, cb)
        COUNTS["valid"] += 1
    finally:
        release(w)


# -- invalid calls -----------------------------------------------------------------------------

Invalid = tuple[str, type[hal.HalError], Callable[[hal.CommandBuffer], None]]


def invalid_calls(w: World) -> list[Callable[[], Invalid | None]]:
    """Generators of invalid calls: each returns (command, error class, call) or None when
    the world cannot express it."""
    device, kit = w.device, w.kit
    big = max(w.roots, key=lambda b: b.byte_length)
    n_big = big.byte_length

    def pattern_length() -> Invalid:
        n = w.draw(st.sampled_from([0, 3, 5, 8]))
        return "fill_buffer", hal.InvalidArgumentError, lambda cb: cb.fill_buffer(big, 0, 0, 1, n)

    def pattern_bytes() -> Invalid:
        p = bytes(w.draw(st.sampled_from([0, 3, 5, 8])))
        return "fill_buffer", hal.InvalidArgumentError, lambda cb: cb.fill_buffer(big, 0, 0, p)

    def misaligned_fill() -> Invalid | None:
        n = w.draw(st.sampled_from([2, 4]))
        if n_big < n:
            return None
        offset = w.integer(0, n_big - 1)
        if offset % n == 0:
            offset += 1
            if offset > n_big:
                return None
        return (
            "fill_buffer",
            hal.InvalidArgumentError,
            lambda cb: cb.fill_buffer(big, offset, 0, 0, n),
        )

    def fill_past_end() -> Invalid:
        offset = w.integer(0, n_big + 3)
        length = max(1, n_big - offset + w.integer(1, 9))
        return (
            "fill_buffer",
            hal.OutOfRangeError,
            lambda cb: cb.fill_buffer(big, offset, length, 0, 1),
        )

    def update_source_past_end() -> Invalid:
        source = bytes(w.integer(0, 8))
        start = w.integer(0, len(source))
        length = len(source) - start + w.integer(1, 4)
        return (
            "update_buffer",
            hal.OutOfRangeError,
            lambda cb: cb.update_buffer(source, start, big, 0, length),
        )

    def update_target_past_end() -> Invalid:
        offset = w.integer(0, n_big)
        length = n_big - offset + w.integer(1, 5)
        return (
            "update_buffer",
            hal.OutOfRangeError,
            lambda cb: cb.update_buffer(bytes(length), 0, big, offset, length),
        )

    def overlapping_copy() -> Invalid | None:
        if n_big < 2:
            return None
        length = w.integer(1, n_big - 1)
        src = w.integer(0, n_big - length)
        dst = w.integer(max(0, src - length + 1), min(n_big - length, src + length - 1))
        return (
            "copy_buffer",
            hal.InvalidArgumentError,
            lambda cb: cb.copy_buffer(big, src, big, dst, length),
        )

    def copy_past_end() -> Invalid:
        other = w.draw(st.sampled_from(w.roots))
        length = other.byte_length + w.integer(1, 4)
        return (
            "copy_buffer",
            hal.OutOfRangeError,
            lambda cb: cb.copy_buffer(big, 0, other, 0, length),
        )

    def no_transfer_target() -> Invalid:
        denied = device.allocate_buffer(16, usage=U.DISPATCH_STORAGE)
        return (
            "fill_buffer",
            hal.PermissionDeniedError,
            lambda cb: cb.fill_buffer(denied, 0, 4, 0),
        )

    def no_transfer_source() -> Invalid:
        denied = device.allocate_buffer(16, usage=U.TRANSFER_TARGET | U.DISPATCH_STORAGE)
        return (
            "copy_buffer",
            hal.PermissionDeniedError,
            lambda cb: cb.copy_buffer(denied, 0, big, 0, 0),
        )

    def read_only_access() -> Invalid:
        denied = device.allocate_buffer(16, access=hal.MemoryAccess.READ)
        return (
            "update_buffer",
            hal.PermissionDeniedError,
            lambda cb: cb.update_buffer(b"ab", 0, denied, 0, 2),
        )

    def no_storage() -> Invalid:
        denied = device.allocate_buffer(16, usage=U.TRANSFER)
        return (
            "dispatch",
            hal.PermissionDeniedError,
            lambda cb: cb.dispatch(
                kit.inplace, "xor_inplace", (1, 1, 1), constants=[1], bindings=[denied]
            ),
        )

    def no_indirect_usage() -> Invalid:
        return (
            "dispatch_indirect",
            hal.PermissionDeniedError,
            lambda cb: cb.dispatch_indirect(
                kit.count, "count", hal.BufferRef(w.sizes, 0, 12), bindings=[big, big]
            ),
        )

    def indirect_misaligned() -> Invalid:
        offset = w.integer(0, 10) * 4 + w.integer(1, 3)
        return (
            "dispatch_indirect",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch_indirect(
                kit.count, "count", hal.BufferRef(w.params, offset), bindings=[big, big]
            ),
        )

    def indirect_short() -> Invalid:
        offset = w.integer(14, 16) * 4
        return (
            "dispatch_indirect",
            hal.OutOfRangeError,
            lambda cb: cb.dispatch_indirect(
                kit.count, "count", hal.BufferRef(w.params, offset), bindings=[big, big]
            ),
        )

    def binding_count() -> Invalid:
        n = w.draw(st.sampled_from([0, 1, 3]))
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(
                kit.xor, "xor_copy", (1, 1, 1), constants=[1], bindings=[big] * n
            ),
        )

    def constants_unaligned() -> Invalid:
        data = bytes(w.draw(st.sampled_from([1, 2, 3, 5, 7])))
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(
                kit.inplace, "xor_inplace", (1, 1, 1), constants=data, bindings=[big]
            ),
        )

    def constants_too_long() -> Invalid:
        words = [1] * w.integer(2, 40)
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(
                kit.inplace, "xor_inplace", (1, 1, 1), constants=words, bindings=[big]
            ),
        )

    def slot_beyond_capacity() -> Invalid:
        return (
            "fill_buffer",
            hal.OutOfRangeError,
            lambda cb: cb.fill_buffer(hal.SlotRef(cb.binding_capacity + w.integer(0, 3)), 0, 0, 0),
        )

    def released() -> Invalid:
        gone = device.allocate_buffer(8)
        gone.release()
        return (
            "copy_buffer",
            hal.FailedPreconditionError,
            lambda cb: cb.copy_buffer(gone, 0, big, 0, 0),
        )

    def foreign() -> Invalid:
        stranger = kit.other.allocate_buffer(8)
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(
                kit.inplace, "xor_inplace", (1, 1, 1), constants=[1], bindings=[stranger]
            ),
        )

    def too_many_workgroups() -> Invalid:
        limit = device.limits["max-compute-workgroups-per-dimension"]
        count = [1, 1, 1]
        count[w.integer(0, 2)] = limit + w.integer(1, 9)
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(kit.count, "count", tuple(count), bindings=[big, big]),
        )

    def unknown_entry_point() -> Invalid:
        return (
            "dispatch",
            hal.InvalidArgumentError,
            lambda cb: cb.dispatch(kit.count, "counting", (1, 1, 1), bindings=[big, big]),
        )

    def short_uniform() -> Invalid:
        small = device.allocate_buffer(w.integer(0, 12), usage=U.DEFAULT | U.DISPATCH_UNIFORM_READ)
        return (
            "dispatch",
            hal.OutOfRangeError,
            lambda cb: cb.dispatch(kit.uniform, "affine", (1, 1, 1), bindings=[small, big, big]),
        )

    def negative_offset() -> Invalid:
        return "fill_buffer", hal.InvalidArgumentError, lambda cb: cb.fill_buffer(big, -4, 4, 0)

    def not_a_buffer() -> Invalid:
        thing = w.draw(st.sampled_from([None, 3, "buffer", b"bytes"]))
        return (
            "copy_buffer",
            hal.InvalidArgumentError,
            lambda cb: cb.copy_buffer(thing, 0, big, 0, 0),
        )

    def foreign_event() -> Invalid:
        event = kit.other.create_event()
        return "signal_event", hal.InvalidArgumentError, lambda cb: cb.signal_event(event)

    def wrong_category() -> Invalid:
        transfer_only = device.create_command_buffer(categories=hal.CommandCategory.TRANSFER)
        transfer_only.begin()
        return (
            "dispatch",
            hal.FailedPreconditionError,
            lambda cb: transfer_only.dispatch(
                kit.inplace, "xor_inplace", (1, 1, 1), constants=[1], bindings=[big]
            ),
        )

    def not_recording() -> Invalid:
        fresh = device.create_command_buffer()
        return (
            "fill_buffer",
            hal.FailedPreconditionError,
            lambda cb: fresh.fill_buffer(big, 0, 0, 0),
        )

    return [
        wrong_category,
        not_recording,
        pattern_length,
        pattern_bytes,
        misaligned_fill,
        fill_past_end,
        update_source_past_end,
        update_target_past_end,
        overlapping_copy,
        copy_past_end,
        no_transfer_target,
        no_transfer_source,
        read_only_access,
        no_storage,
        no_indirect_usage,
        indirect_misaligned,
        indirect_short,
        binding_count,
        constants_unaligned,
        constants_too_long,
        slot_beyond_capacity,
        released,
        foreign,
        too_many_workgroups,
        unknown_entry_point,
        short_uniform,
        negative_offset,
        not_a_buffer,
        foreign_event,
    ]


def uses_slots(cb: hal.CommandBuffer) -> bool:
    """True if a recorded command names a binding-table slot (else the table is ignored)."""
    for segment in cb.segments:
        for name in ("target", "source", "indirect"):
            ref = getattr(segment, name, None)
            if ref is not None and ref.slot is not None:
                return True
        if any(r is not None and r.slot is not None for r in getattr(segment, "bindings", ())):
            return True
    return False


def bad_submissions(w: World, cb: hal.CommandBuffer) -> list[tuple[type[hal.HalError], Any]]:
    """Submissions that must be rejected before anything reaches the GPU."""
    out: list[tuple[type[hal.HalError], Any]] = []
    table = table_for(w)
    if table and uses_slots(cb):
        gone = w.device.allocate_buffer(64)
        gone.release()
        stranger = w.kit.other.allocate_buffer(64)
        out.append((hal.OutOfRangeError, []))
        out.append((hal.FailedPreconditionError, [gone] * len(table)))
        out.append((hal.InvalidArgumentError, [stranger] * len(table)))
    return out


@FUZZ
@given(data=st.data())
def test_random_invalid_calls_raise_and_change_nothing(kit: Kit, data: st.DataObject) -> None:
    w = make_world(kit, data)
    try:
        cb = new_command_buffer(w)
        generators = invalid_calls(w)
        for _ in range(w.integer(1, 3)):
            record_valid(w, cb, 3)
            invalid = w.draw(st.sampled_from(generators))()
            if invalid is None:
                continue
            command, error, call = invalid
            before = cb.segments
            with pytest.raises(error) as info:
                call(cb)
            assert str(info.value).startswith(f"{command}:") or command in str(info.value), (
                info.value
            )
            assert cb.segments == before
            assert cb.state is hal.CommandBufferState.RECORDING
            COUNTS["invalid"] += 1
        record_valid(w, cb, 3)
        # Submitting before end() is refused and changes nothing.
        with pytest.raises(hal.FailedPreconditionError):
            w.device.queue_execute(cb, binding_table=table_for(w))
        cb.end()
        state = read_all(w)
        for error, table in bad_submissions(w, cb):
            with pytest.raises(error):
                w.device.queue_execute(cb, binding_table=table)
            COUNTS["bad_submissions"] += 1
        w.device.wait_idle(WAIT)
        assert read_all(w) == state
        run_and_compare(w, cb)
        if cb.mode & hal.CommandBufferMode.ONE_SHOT:
            state = read_all(w)
            with pytest.raises(hal.FailedPreconditionError):
                w.device.queue_execute(cb, binding_table=table_for(w))
            w.device.wait_idle(WAIT)
            assert read_all(w) == state
    finally:
        release(w)


def test_report_fuzz_counts() -> None:
    """Prints how many examples ran (``make fuzz`` shows it with -s)."""
    print(
        f"\nfuzz: {COUNTS['valid']} valid command buffers ({COUNTS['commands']} commands) "
        f"matched the reference; {COUNTS['invalid']} invalid calls and "
        f"{COUNTS['bad_submissions']} invalid submissions were rejected with nothing changed"
    )
