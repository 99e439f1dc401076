"""Session 22 round-trip fixed cost: the fast constructors and the one-buffer lane keep
results and messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import hal
from hal.core.frozen import constructor
from hal.core.refs import Ref
from hal.core.segments import DispatchSegment


def test_constructor_builds_the_same_object() -> None:
    make = constructor(Ref)
    a, b = make("buf", None, 4, 16), Ref("buf", None, 4, 16)
    assert a == b and hash(a) == hash(b) and type(a) is Ref
    assert (a.buffer, a.slot, a.offset, a.length) == ("buf", None, 4, 16)
    with pytest.raises(AttributeError):
        a.offset = 8  # type: ignore[misc]  # still frozen
    seg = constructor(DispatchSegment)("x", "main", None, (1, 1, 1), None, b"", ())
    assert seg == DispatchSegment("x", "main", None, (1, 1, 1), None, b"", ())  # type: ignore[arg-type]


def test_constructor_refuses_what_init_does_more_for() -> None:
    @dataclass(frozen=True, slots=True)
    class Post:
        x: int

        def __post_init__(self) -> None:
            pass

    @dataclass(slots=True)
    class Mutable:
        x: int

    @dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclass(frozen=True, slots=True)
    class Shadows:
        self: int
        other: int

    @dataclass(frozen=True, slots=True)
    class Private:
        _cls: int

    @dataclass(frozen=True, slots=True)
    class Base:
        x: int

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        y: int

    for cls in (Post, Mutable, NoSlots, int, Shadows, Private, Derived):
        with pytest.raises(TypeError):
            constructor(cls)


def test_timeouts_past_floats_range() -> None:
    """An int timeout too large for a float waits forever (None), a hugely negative one is
    refused like any negative (it raised a bare OverflowError)."""
    from hal.core.checks import timeout_seconds

    assert timeout_seconds("wait", 10**400) is None
    with pytest.raises(hal.InvalidArgumentError, match="non-negative"):
        timeout_seconds("wait", -(10**400))


def _device() -> hal.Device:
    return hal.create_device(implementation="null", backend="null")


def test_one_buffer_round_trips_give_exact_bytes() -> None:
    d = hal.create_device()  # a real implementation (the null backend keeps no bytes)
    exe = d.create_executable(hal.shader_path("noop.wgsl"))
    buf = d.allocate_buffer(4096)
    s = d.create_semaphore()
    for v in range(1, 6):
        cb = d.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
        cb.begin()
        cb.fill_buffer(buf, 0, 4096, v)
        cb.dispatch(exe, "touch", (1, 1, 1), bindings=[buf])
        cb.execution_barrier()
        cb.end()
        d.queue_execute(cb, signal=[(s, v)])
        s.wait(v, timeout=10)
        got = buf.to_numpy(np.uint32)
        # The fill's pattern everywhere, the kernel's increment in word 0.
        assert got[0] == v + 1 and (got[1:] == v).all()
    d.close()


def test_one_buffer_lane_keeps_the_general_messages() -> None:
    d, other = _device(), _device()
    s = d.create_semaphore()
    foreign = other.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    foreign.begin()
    foreign.end()
    with pytest.raises(hal.InvalidArgumentError, match=r"command_buffers\[0\] is not a command"):
        d.queue_execute(foreign, signal=[(s, 1)])
    inline = d.create_command_buffer(
        hal.CommandBufferMode.ONE_SHOT | hal.CommandBufferMode.ALLOW_INLINE_EXECUTION
    )
    inline.begin()
    inline.end()
    with pytest.raises(hal.InvalidArgumentError, match="inline-execution command buffer cannot"):
        d.queue_execute(inline, wait=[(s, 1)])
    with pytest.raises(hal.InvalidArgumentError, match="queue_execute signal"):
        d.queue_execute(inline, signal=[(s, "x")])
    fresh = d.create_command_buffer(hal.CommandBufferMode.ONE_SHOT)
    with pytest.raises(hal.FailedPreconditionError, match="has not been ended"):
        d.queue_execute(fresh, signal=[(s, 1)])
    # Still submittable: the rejected calls claimed nothing.
    d.queue_execute(inline, signal=[(s, 1)])
    s.wait(1, timeout=10)
    with pytest.raises(hal.FailedPreconditionError, match="already submitted"):
        d.queue_execute(inline)
    assert s.value == 1
    d.close()
    other.close()
