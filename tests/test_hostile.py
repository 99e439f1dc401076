"""Hostile programs: sequences of public API calls that would abort the process if any misuse
reached wgpu (wgpu-native aborts on submit-time errors). Each group runs in a subprocess with a
timeout; the process must exit cleanly (0) and every call must either work or raise a HalError
— any other exception escaping the API also fails the group.

Run one group by hand: ``python tests/test_hostile.py GROUP``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).parent
KERNELS = HERE / "kernels"
TIMEOUT = 150


# -- the hostile programs (run inside the subprocess) -----------------------------------------


def expect(error: type[BaseException], call: Callable[[], Any]) -> BaseException:
    """Run ``call``; it must raise ``error`` (AssertionError otherwise)."""
    try:
        call()
    except error as raised:
        return raised
    raise AssertionError(f"{call} did not raise {error.__name__}")


def submit(device: Any, cb: Any, table: Any = None, timeout: float = 30.0) -> None:
    import hal

    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, 1)], binding_table=table)
    hal.Fence([(done, 1)]).wait(timeout)


def resubmission(device: Any, other: Any) -> None:
    """ONE_SHOT resubmitted, from one thread and from eight at once."""
    import hal

    buffer = device.allocate_buffer(64)
    with device.record() as cb:
        cb.fill_buffer(buffer, 0, 64, 7, 1)
    submit(device, cb)
    for _ in range(20):
        expect(hal.FailedPreconditionError, lambda: device.queue_execute(cb))
    expect(hal.FailedPreconditionError, lambda: device.queue_execute([cb, cb]))
    with device.record() as racer:
        racer.fill_buffer(buffer, 0, 64, 9, 1)
    results: list[str] = []

    def go() -> None:
        try:
            device.queue_execute(racer)
            results.append("ok")
        except hal.FailedPreconditionError:
            results.append("refused")

    threads = [threading.Thread(target=go) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["ok"] + ["refused"] * 7, results
    device.wait_idle(30)
    unended = device.create_command_buffer()
    expect(hal.FailedPreconditionError, lambda: device.queue_execute(unended))
    unended.begin()
    expect(hal.FailedPreconditionError, lambda: device.queue_execute(unended))


def released_buffers(device: Any, other: Any) -> None:
    """Buffers released before, during and after the work that uses them."""
    import hal

    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    a, b = device.allocate_buffer(256), device.allocate_buffer(256)
    view = a.subspan(8, 64)
    with device.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        cb.copy_buffer(view, 0, b, 1, 64)
        cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=[3], bindings=[view, b])
    submit(device, cb)
    view.release()
    expect(hal.FailedPreconditionError, lambda: device.queue_execute(cb))
    with device.record(mode=hal.CommandBufferMode.DEFAULT) as cb2:
        cb2.copy_buffer(a, 0, b, 0, 256)
    b.release()
    expect(hal.FailedPreconditionError, lambda: device.queue_execute(cb2))
    expect(hal.FailedPreconditionError, lambda: device.transfer_d2h(b))
    expect(hal.FailedPreconditionError, lambda: b.subspan(0, 4))
    # Released while the work that uses it is held back, then in flight: deferred.
    gate = device.create_semaphore()
    src, dst = device.allocate_buffer(1 << 20), device.allocate_buffer(1 << 20)
    device.transfer_h2d(np.full(1 << 20, 5, np.uint8), src)
    with device.record() as cb3:
        for _ in range(8):
            cb3.copy_buffer(src, 0, dst, 0, 1 << 20)
    done = device.create_semaphore()
    device.queue_execute(cb3, wait=[(gate, 1)], signal=[(done, 1)])
    src.release()
    gate.signal(1)
    src2 = device.allocate_buffer(1 << 20)
    src2.release()
    done.wait(1, timeout=30)
    assert device.transfer_d2h(dst, 0, 4) == b"\x05" * 4
    # Released table entries.
    t = device.allocate_buffer(16)
    with device.record(binding_capacity=1) as slot_cb:
        slot_cb.fill_buffer(hal.SlotRef(0), 0, 16, 1)
    t.release()
    expect(hal.FailedPreconditionError, lambda: device.queue_execute(slot_cb, binding_table=[t]))
    expect(
        hal.FailedPreconditionError,
        lambda: device.queue_execute(slot_cb, binding_table=[hal.BufferRef(t, 4)]),
    )
    # queue_dealloca, then work that uses the buffer.
    c = device.allocate_buffer(64)
    freed = device.create_semaphore()
    device.queue_dealloca(c, signal=[(freed, 1)])
    freed.wait(1, timeout=30)
    expect(hal.FailedPreconditionError, lambda: device.queue_fill(c, 0, 4, 0))


def foreign_objects(device: Any, other: Any) -> None:
    """Buffers, executables and events of another device everywhere."""
    import hal

    mine, theirs = device.allocate_buffer(64), other.allocate_buffer(64)
    their_xor = other.create_executable(str(KERNELS / "xor_words.wgsl"))
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    cb = device.create_command_buffer(binding_capacity=2)
    cb.begin()
    expect(hal.InvalidArgumentError, lambda: cb.copy_buffer(theirs, 0, mine, 0, 8))
    expect(hal.InvalidArgumentError, lambda: cb.fill_buffer(hal.BufferRef(theirs, 4), 0, 4, 0))
    expect(hal.InvalidArgumentError, lambda: cb.update_buffer(b"1234", 0, theirs, 0, 4))
    expect(
        hal.InvalidArgumentError,
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=[1], bindings=[mine, theirs]),
    )
    expect(
        hal.InvalidArgumentError,
        lambda: cb.dispatch(their_xor, "xor_copy", (1, 1, 1), constants=[1], bindings=[mine] * 2),
    )
    expect(hal.InvalidArgumentError, lambda: cb.signal_event(other.create_event()))
    cb.copy_buffer(hal.SlotRef(0), 0, hal.SlotRef(1), 0, 8)
    cb.end()
    expect(hal.InvalidArgumentError, lambda: device.queue_execute(cb, binding_table=[theirs, mine]))
    expect(
        hal.InvalidArgumentError,
        lambda: device.queue_execute(cb, binding_table=[mine, hal.BufferRef(theirs, 8)]),
    )
    expect(hal.InvalidArgumentError, lambda: other.queue_execute(cb))
    # A foreign source is a peer copy (API.md, Devices); a foreign target is still refused.
    expect(hal.InvalidArgumentError, lambda: device.queue_copy(mine, 0, theirs, 0, 8))
    expect(hal.InvalidArgumentError, lambda: device.queue_fill(theirs, 0, 8, 0))
    expect(hal.InvalidArgumentError, lambda: device.queue_update(bytes(64), 0, theirs, 0, 64))
    expect(hal.InvalidArgumentError, lambda: device.queue_read(bytes(64), 0, theirs, 0, 64))
    expect(hal.InvalidArgumentError, lambda: device.queue_write(theirs, 0, bytearray(64), 0, 64))
    expect(hal.InvalidArgumentError, lambda: device.transfer_h2d(b"abcd", theirs))
    expect(hal.InvalidArgumentError, lambda: device.transfer_d2h(hal.BufferRef(theirs, 4)))
    submit(device, cb, [mine.subspan(0, 16), mine.subspan(32, 16)])


def unvalidated(device: Any, other: Any) -> None:
    """UNVALIDATED skips the rules but never lets wgpu see an invalid command."""
    import hal

    mode = hal.CommandBufferMode.ONE_SHOT | hal.CommandBufferMode.UNVALIDATED
    uniform = device.create_executable(str(KERNELS / "uniform_scale.wgsl"))
    transfer_only = device.allocate_buffer(64, usage=hal.BufferUsage.TRANSFER)
    storage_only = device.allocate_buffer(64, usage=hal.BufferUsage.DISPATCH_STORAGE)
    data = device.allocate_buffer(256)
    coefficients = device.allocate_buffer(
        16, usage=hal.BufferUsage.TRANSFER | hal.BufferUsage.DISPATCH_UNIFORM_READ
    )
    cb = device.create_command_buffer(mode, hal.CommandCategory.TRANSFER)
    cb.begin()
    cb.fill_buffer(storage_only, 3, 5, 0x1234, 2)  # usage, alignment and category unchecked
    cb.copy_buffer(data, 0, data, 8, 64)  # overlap unchecked: results are undefined
    cb.dispatch(uniform, "affine", (1, 1, 1), bindings=[coefficients, data, transfer_only])
    expect(  # uniform needs a wgpu UNIFORM buffer: still refused
        hal.PermissionDeniedError,
        lambda: cb.dispatch(uniform, "affine", (1, 1, 1), bindings=[storage_only, data, data]),
    )
    expect(hal.OutOfRangeError, lambda: cb.fill_buffer(data, 250, 8, 0, 1))  # ranges: checked
    expect(hal.InvalidArgumentError, lambda: cb.dispatch(uniform, "affine", (1, 1, 1)))
    expect(
        hal.InvalidArgumentError,
        lambda: cb.dispatch(
            uniform, "affine", (1, 1, 1), constants=[1], bindings=[data, data, data]
        ),
    )
    cb.end()
    submit(device, cb)


def shapes_wgpu_rejects(device: Any, other: Any) -> None:
    """Bindings and sizes wgpu rejects at encoding: refused (or shadowed) before it."""
    import hal

    usage = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_UNIFORM_READ
    uniform = device.create_executable(str(KERNELS / "uniform_scale.wgsl"))
    count = device.create_executable(str(KERNELS / "count_workgroups.wgsl"))
    coefficients = device.allocate_buffer(64, usage=usage)
    data = device.allocate_buffer(300, usage=usage | hal.BufferUsage.DISPATCH_INDIRECT_PARAMS)
    empty = device.allocate_buffer(0, usage=usage)
    cb = device.create_command_buffer()
    cb.begin()
    for short in (empty, hal.BufferRef(coefficients, 0, 8), hal.BufferRef(coefficients, 60)):
        expect(
            hal.OutOfRangeError,
            lambda s=short: cb.dispatch(uniform, "affine", (1, 1, 1), bindings=[s, data, data]),
        )
    # Unaligned, odd-sized, empty and aliased bindings are shadowed, never rejected.
    cb.dispatch(
        uniform, "affine", (1, 1, 1),
        bindings=[hal.BufferRef(coefficients, 3, 16), hal.BufferRef(data, 1, 5), empty],
    )  # fmt: skip
    cb.dispatch(count, "count", (2, 1, 1), bindings=[hal.BufferRef(data, 0, 4), data])
    cb.dispatch_indirect(count, "count", hal.BufferRef(data, 0, 12), bindings=[data, empty])
    cb.dispatch_indirect(count, "count", hal.BufferRef(data, 288), bindings=[data, data])
    expect(
        hal.InvalidArgumentError,
        lambda: cb.dispatch_indirect(count, "count", hal.BufferRef(data, 2), bindings=[data] * 2),
    )
    expect(
        hal.OutOfRangeError,
        lambda: cb.dispatch_indirect(count, "count", hal.BufferRef(data, 292), bindings=[data] * 2),
    )
    limit = device.limits["max-compute-workgroups-per-dimension"]
    expect(
        hal.InvalidArgumentError,
        lambda: cb.dispatch(count, "count", (1, limit + 1, 1), bindings=[data, data]),
    )
    cb.fill_buffer(empty, 0, 0, 0)
    cb.copy_buffer(data, 300, data, 0, 0)
    cb.update_buffer(b"", 0, empty, 0, 0)
    cb.end()
    submit(device, cb)
    # Garbage counts in indirect parameters: wgpu validates them on the GPU.
    device.transfer_h2d(np.array([0xFFFFFFFF, 70000, 1], np.uint32), data)
    with device.record() as garbage:
        garbage.dispatch_indirect(count, "count", data, bindings=[hal.BufferRef(data, 16, 4)] * 2)
    submit(device, garbage)
    # Far more than one storage binding may hold.
    big = device.allocate_buffer(device.caps.max_binding_size + 256)
    oversized = device.create_command_buffer()
    oversized.begin()
    expect(
        hal.InvalidArgumentError,
        lambda: oversized.dispatch(count, "count", (1, 1, 1), bindings=[data, big]),
    )
    oversized.copy_buffer(big, 1, big, device.caps.max_binding_size // 2 + 7, 4099)
    oversized.end()
    submit(device, oversized)
    big.release()
    too_big = "var<immediate> x: array<u32, 64>; @compute @workgroup_size(1) fn f() { _ = x[0]; }"
    for bad in ("@compute fn f( {", too_big):
        expect(hal.InvalidArgumentError, lambda b=bad: device.create_executable(b))


def garbage_arguments(device: Any, other: Any) -> None:
    """Wrong types and values: every one a HalError."""
    import hal

    buffer = device.allocate_buffer(32)
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    cb = device.create_command_buffer(binding_capacity=1)
    cb.begin()
    calls: list[Callable[[], Any]] = [
        lambda: cb.fill_buffer(buffer, 1.5, 4, 0),
        lambda: cb.fill_buffer(buffer, True, 4, 0),
        lambda: cb.fill_buffer(buffer, 0, 4, 1.0),
        lambda: cb.fill_buffer(buffer, 0, 4, 1 << 40),
        lambda: cb.fill_buffer("buffer", 0, 4, 0),
        lambda: cb.fill_buffer(hal.SlotRef(-1), 0, 4, 0),
        lambda: cb.fill_buffer(hal.BufferRef(buffer, -1), 0, 4, 0),
        lambda: cb.fill_buffer(hal.BufferRef("x"), 0, 4, 0),  # type: ignore[arg-type]
        lambda: cb.update_buffer(object(), 0, buffer, 0, 4),
        lambda: cb.update_buffer(b"abcd", -1, buffer, 0, 4),
        lambda: cb.copy_buffer(buffer, 0, None, 0, 4),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1), constants=[1], bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, "xor_copy", "abc", constants=[1], bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, "xor_copy", (-1, 1, 1), constants=[1], bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, 7, (1, 1, 1), constants=[1], bindings=[buffer] * 2),
        lambda: cb.dispatch("xor", "xor_copy", (1, 1, 1)),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=["a"], bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=[1.0j], bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=7, bindings=[buffer] * 2),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=[1], bindings=[buffer, 3]),
        lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), constants=[1], bindings=[None, buffer]),
        lambda: cb.wait_events([buffer]),
        lambda: device.allocate_buffer(-1),
        lambda: device.allocate_buffer(16, usage=1 << 30),
        lambda: device.create_command_buffer(binding_capacity=-1),
        lambda: device.create_command_buffer(mode=hal.CommandBufferMode.ALLOW_INLINE_EXECUTION),
        lambda: device.create_semaphore(-1),
        lambda: device.create_semaphore().signal(1 << 64),
        lambda: device.queue_barrier(signal=[(buffer, 1)]),
        lambda: device.queue_barrier(wait=[1, 2]),
        lambda: device.wait_semaphores([], mode="some"),
        lambda: device.queue_execute([cb, "cb"]),
        lambda: device.create_executable(12),
        lambda: device.create_executable("/nonexistent/kernel"),
        lambda: buffer.map_read(),
        lambda: buffer.subspan(40),
        lambda: device.transfer_h2d(b"x" * 64, buffer),
        lambda: device.transfer_d2h(buffer, 30, 8),
    ]
    for call in calls:
        try:
            call()
        except hal.HalError:
            continue
        raise AssertionError("accepted garbage")
    cb.fill_buffer(hal.SlotRef(0), 0, 4, 0)
    cb.end()
    for table in ([], None, [None], ["x"], [hal.SlotRef(0)], [hal.BufferRef(buffer, 40)]):
        expect(hal.HalError, lambda t=table: device.queue_execute(cb, binding_table=t))
    expect(hal.HalError, lambda: device.queue_execute(cb, binding_table=[buffer.subspan(0, 2)]))


def reported_misuse(device: Any, other: Any) -> None:
    """The misuses issue 12 lists: each a HalError (no raw TypeError/ValueError/...), and a
    rejected call writes nothing (the staged queue_update path used to write first)."""
    import math

    import hal

    big = 1 << 16
    buffer = device.allocate_buffer(big)
    pattern = np.arange(big, dtype=np.uint32).astype(np.uint8)
    device.transfer_h2d(pattern, buffer)
    semaphore = device.create_semaphore()
    event = device.create_event()
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    cb = device.create_command_buffer()
    cb.begin()
    objects = np.array([object()] * 16)
    calls: list[tuple[type[BaseException], Callable[[], Any]]] = [
        (
            hal.InvalidArgumentError,
            lambda: device.queue_update(
                np.zeros(big, np.uint8), 0, buffer, 0, big, signal=[("x", 1)]
            ),
        ),
        (
            hal.InvalidArgumentError,
            lambda: device.queue_update(np.zeros(big, np.uint8), 0, buffer, 0, big, signal=5),
        ),
        (
            hal.InvalidArgumentError,
            lambda: device.queue_update(
                np.zeros(big, np.uint8), 0, buffer, 0, big, wait=[(semaphore, -1)]
            ),
        ),
        (hal.InvalidArgumentError, lambda: cb.execution_barrier(source_stage="x")),
        (hal.InvalidArgumentError, lambda: cb.dispatch(xor, "xor_copy", (1, 1, 1), bindings=None)),
        (hal.InvalidArgumentError, lambda: cb.wait_events(event)),
        (hal.InvalidArgumentError, lambda: device.allocate_buffer(4, usage="x")),
        (hal.InvalidArgumentError, lambda: device.allocate_buffer(4, usage=1.5)),
        (hal.InvalidArgumentError, lambda: buffer.to_numpy(np.dtype([]))),
        (hal.InvalidArgumentError, lambda: buffer.to_numpy(object)),
        (hal.InvalidArgumentError, lambda: hal.BufferView(5, (1,), np.uint8)),
        (hal.InvalidArgumentError, lambda: semaphore.wait(1, timeout="1")),
        (hal.InvalidArgumentError, lambda: semaphore.wait(1, timeout=-1)),
        (hal.InvalidArgumentError, lambda: semaphore.wait(1, timeout=math.nan)),
        (hal.InvalidArgumentError, lambda: device.queue_execute(5)),
        (hal.InvalidArgumentError, lambda: hal.Fence(5)),
        (hal.InvalidArgumentError, lambda: cb.update_buffer(objects, 0, buffer, 0, 16)),
        (hal.InvalidArgumentError, lambda: device.transfer_h2d(objects, buffer)),
        (hal.InvalidArgumentError, lambda: device.queue_update(objects, 0, buffer, 0, 16)),
        (hal.OutOfRangeError, lambda: cb.fill_buffer(hal.BufferRef(buffer, big + 100), 0, None, 0)),
    ]
    for error, call in calls:
        expect(error, call)
    for value in ("x", 1.5, None, -1):
        assert device.allocator.query_buffer_compatibility(4, usage=value) is False
    assert cb.segments == ()
    device.wait_idle(30)
    assert device.transfer_d2h(buffer) == pattern.tobytes(), "a rejected call wrote"
    semaphore.signal(1)
    semaphore.wait(1, timeout=math.inf)  # was an OverflowError
    semaphore.wait(1, timeout=1e10)
    cb.end()


def closing(device: Any, other: Any) -> None:
    """Work in flight and held back when the device closes; everything after raises
    UnavailableError, waiters see the failure instead of hanging."""
    import hal

    own = hal.create_device()
    a, b = own.allocate_buffer(1 << 22), own.allocate_buffer(1 << 22)
    with own.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        for _ in range(4):
            cb.copy_buffer(a, 0, b, 0, 1 << 22)
    recording = own.create_command_buffer()
    recording.begin()
    gate, held, ran = own.create_semaphore(), own.create_semaphore(), own.create_semaphore()
    own.queue_execute(cb, signal=[(ran, 1)])
    own.queue_execute(cb, wait=[(gate, 1)], signal=[(held, 1)])
    own.close()
    ran.wait(1, timeout=30)
    expect(hal.AbortedError, lambda: held.wait(1, timeout=30))
    gate.signal(1)  # host semaphores outlive the device
    for call in (
        lambda: own.queue_execute(cb),
        lambda: recording.fill_buffer(a, 0, 4, 0),
        lambda: recording.end(),
        lambda: own.allocate_buffer(4),
        lambda: own.transfer_d2h(a),
        lambda: a.map_read(),
        lambda: own.queue_copy(a, 0, b, 0, 4),
        lambda: own.create_executable(str(KERNELS / "xor_words.wgsl")),
    ):
        expect(hal.UnavailableError, call)
    a.release()  # cleanup after close is allowed
    own.close()


def device_loss(device: Any, other: Any) -> None:
    """The wgpu device is destroyed under the HAL (a lost GPU): held-back work fails its
    semaphores instead of being submitted (which would abort), nothing hangs, and every
    later operation raises UnavailableError."""
    import hal

    own = hal.create_device()
    a, b = own.allocate_buffer(1 << 22), own.allocate_buffer(1 << 22)
    with own.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        for _ in range(8):
            cb.copy_buffer(a, 0, b, 0, 1 << 22)
    gate, held, flying = own.create_semaphore(), own.create_semaphore(), own.create_semaphore()
    own.queue_execute(cb, wait=[(gate, 1)], signal=[(held, 1)])
    own.queue_execute(cb, signal=[(flying, 1)])
    own.backend.device.destroy()  # what a GPU reset looks like to wgpu
    gate.signal(1)
    error = expect(hal.AbortedError, lambda: held.wait(1, timeout=30))
    assert isinstance(error.__cause__, hal.UnavailableError), repr(error.__cause__)
    # Already finished, or failed with the loss: either way it does not hang.
    with contextlib.suppress(hal.AbortedError):
        flying.wait(1, timeout=30)
    for call in (
        lambda: own.queue_execute(cb),
        lambda: own.allocate_buffer(4),
        lambda: own.queue_fill(a, 0, 4, 0),
        lambda: own.wait_idle(5),
    ):
        expect(hal.UnavailableError, call)
    own.close()


def lost_then_submitted(device: Any, other: Any) -> None:
    """Loss found by the first submission after it: UnavailableError, not an abort."""
    import hal

    own = hal.create_device()
    buffer = own.allocate_buffer(64)
    with own.record() as cb:
        cb.fill_buffer(buffer, 1, 7, 3, 1)
    own.backend.device.destroy()
    expect(hal.UnavailableError, lambda: own.queue_execute(cb))
    expect(hal.UnavailableError, lambda: own.queue_barrier())
    own.close()


def lost_then_transfers(device: Any, other: Any) -> None:
    """Loss found by a host transfer or an allocation: UnavailableError, not a wgpu error."""
    import hal

    def calls(own: Any, buffer: Any) -> list[Callable[[], Any]]:
        return [
            lambda: own.transfer_h2d(np.ones(1 << 16, np.uint8), buffer),
            lambda: own.transfer_d2h(buffer),
            lambda: own.allocate_buffer(64),
            lambda: own.queue_update(bytes(1 << 16), 0, buffer, 0, 1 << 16),
        ]

    for first in range(4):
        own = hal.create_device()
        buffer = own.allocate_buffer(1 << 16)
        own.backend.device.destroy()
        order = calls(own, buffer)
        for call in order[first:] + order[:first]:
            expect(hal.UnavailableError, call)
        own.close()


def exit_with_work_pending(device: Any, other: Any) -> None:
    """Leaves work in flight and held back forever, and an unclosed device: interpreter exit
    must still be clean."""
    import hal

    own = hal.create_device()
    a, b = own.allocate_buffer(1 << 22), own.allocate_buffer(1 << 22)
    with own.record(mode=hal.CommandBufferMode.DEFAULT) as cb:
        for _ in range(8):
            cb.copy_buffer(a, 0, b, 0, 1 << 22)
    never = own.create_semaphore()
    own.queue_execute(cb)
    own.queue_execute(cb, wait=[(never, 1)])
    device.queue_execute(None, wait=[(never, 1)])
    globals()["_keep"] = (own, cb)


def release_races_transfers(device: Any, other: Any) -> None:
    """release() from one thread while another transfers to or from the buffer: the release
    is deferred past the transfer or the transfer raises FailedPreconditionError."""
    import random

    import hal

    data = np.ones(1 << 20, np.uint8)
    for i in range(40):
        buffer = device.allocate_buffer(1 << 20)

        def transfer(b: Any = buffer, write: bool = bool(i % 2)) -> None:
            for _ in range(4):
                try:
                    device.transfer_h2d(data, b) if write else device.transfer_d2h(b)
                except hal.FailedPreconditionError:
                    return

        thread = threading.Thread(target=transfer)
        thread.start()
        threading.Event().wait(random.random() * 0.003)
        buffer.release()
        thread.join(30)


def monkey(device: Any, other: Any, seed: int = 0, steps: int = 3000) -> None:
    """Random public API calls, valid and not, on random buffers, views, command buffers,
    tables and semaphores (some never signalled); every call works or raises a HalError."""
    import random

    import hal

    rng = random.Random(seed)
    xor = device.create_executable(str(KERNELS / "xor_words.wgsl"))
    count = device.create_executable(str(KERNELS / "count_workgroups.wgsl"))
    usages = [
        hal.BufferUsage.DEFAULT,
        hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_INDIRECT_PARAMS,
        hal.BufferUsage.TRANSFER,
        hal.BufferUsage.DISPATCH_STORAGE,
        hal.BufferUsage.DEFAULT | hal.BufferUsage.MAPPING,
    ]
    buffers: list[Any] = [device.allocate_buffer(64), other.allocate_buffer(64)]
    cbs: list[Any] = []
    sems = [device.create_semaphore() for _ in range(4)]

    def number(limit: int = 300) -> int:
        return rng.choice([0, 1, 2, 3, 4, 8, 12, rng.randrange(limit), -1, limit * 10])

    def target() -> Any:
        buffer = rng.choice(buffers)
        kind = rng.randrange(4)
        if kind == 0:
            return buffer
        if kind == 1:
            return hal.BufferRef(buffer, number(), rng.choice([None, number()]))
        if kind == 2:
            return hal.SlotRef(rng.randrange(4), number(), rng.choice([None, number()]))
        return rng.choice([None, 5, "x"])

    def points() -> list[Any]:
        return [(rng.choice(sems), rng.randrange(1, 6)) for _ in range(rng.randrange(3))]

    def record(cb: Any) -> None:
        choice = rng.randrange(8)
        if choice == 0:
            cb.fill_buffer(target(), number(), rng.choice([None, number()]), number(1 << 16),
                           rng.choice([None, 1, 2, 4, 3]))  # fmt: skip
        elif choice == 1:
            cb.update_buffer(bytes(rng.randrange(64)), number(8), target(), number(), number(64))
        elif choice == 2:
            cb.copy_buffer(target(), number(), target(), number(), rng.choice([None, number()]))
        elif choice == 3:
            cb.dispatch(xor, "xor_copy", (rng.randrange(3), 1, 1), constants=[number()],
                        bindings=[target(), target()])  # fmt: skip
        elif choice == 4:
            cb.dispatch_indirect(count, "count", target(), bindings=[target(), target()])
        elif choice == 5:
            cb.execution_barrier()
        elif choice == 6:
            cb.dispatch(count, "count", (number(4), number(4), 1), bindings=[target(), target()])
        else:
            cb.advise_buffer(target())

    def step() -> None:
        action = rng.randrange(14)
        if action == 0:
            buffers.append(device.allocate_buffer(number(4096), usage=rng.choice(usages)))
        elif action == 1 and len(buffers) > 2:
            rng.choice(buffers).release()
        elif action == 2:
            buffers.append(rng.choice(buffers).subspan(number(), rng.choice([None, number()])))
        elif action == 3:
            mode = rng.choice(list(hal.CommandBufferMode)) | rng.choice([0, 1])
            cb = device.create_command_buffer(mode, rng.choice([1, 2, 3]), rng.choice([0, 0, 1, 4]))
            cb.begin()
            cbs.append(cb)
        elif action in (4, 5, 6) and cbs:
            record(rng.choice(cbs))
        elif action == 7 and cbs:
            rng.choice(cbs).end()
        elif action == 8 and cbs:
            table = [rng.choice(buffers) for _ in range(rng.randrange(5))]
            device.queue_execute(
                rng.sample(cbs, min(len(cbs), rng.randrange(1, 3))),
                wait=points(), signal=points(), binding_table=table,
            )  # fmt: skip
        elif action == 9:
            semaphore = rng.choice(sems)
            if rng.randrange(10) == 0:
                semaphore.fail("monkey")
            else:
                semaphore.signal(semaphore.query() + 1)
        elif action == 10:
            device.queue_copy(target(), number(), target(), number(), number(),
                              wait=points(), signal=points())  # fmt: skip
        elif action == 11:
            device.transfer_h2d(bytes(max(0, number(64))), target(), number())
        elif action == 12:
            device.transfer_d2h(target(), number(), rng.choice([None, number()]))
        else:
            device.wait_semaphores(points(), rng.choice(["all", "any"]), timeout=0)

    outcomes: dict[str, int] = {}
    for _ in range(steps):
        try:
            step()
            outcome = "ok"
        except hal.HalError as error:
            outcome = type(error).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"  monkey seed {seed}: {outcomes}", flush=True)
    for semaphore in sems:
        with contextlib.suppress(hal.HalError):
            semaphore.signal(100)
    device.wait_idle(60)


GROUPS: dict[str, list[Callable[[Any, Any], None]]] = {
    "submission": [resubmission, released_buffers, foreign_objects],
    "recording": [unvalidated, shapes_wgpu_rejects, garbage_arguments, reported_misuse],
    "monkey": [functools.partial(monkey, seed=seed) for seed in range(4)],
    "lifetime": [
        release_races_transfers,
        closing,
        device_loss,
        lost_then_submitted,
        lost_then_transfers,
        exit_with_work_pending,
    ],
}


def main(group: str) -> int:
    """Run one group in this process; 0 when every program behaved."""
    import hal

    device, other = hal.create_device(), hal.create_device()
    for program in GROUPS[group]:
        name = getattr(program, "__name__", None) or program.func.__name__  # type: ignore[attr-defined]
        print(f"start {name}", flush=True)
        try:
            program(device, other)
        except Exception:
            traceback.print_exc()
            print(f"FAILED {name}", flush=True)
            return 3
        print(f"ok {name}", flush=True)
    print("all programs ran", flush=True)
    return 0


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("group", list(GROUPS))
def test_hostile_programs_exit_cleanly(group: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), group],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    report = f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert result.returncode == 0, report
    assert "all programs ran" in result.stdout, report


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
