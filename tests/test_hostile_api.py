"""Every public callable against wrong types and values, table-driven.

Each case calls one public function or method with one bad argument and must raise the HalError
subclass API.md names (InvalidArgumentError for a wrong type or value unless a more specific
class applies) with a message naming the command and the argument. After every case, every
buffer involved is byte-for-byte what it was (a known pattern, read back with numpy), the
recording command buffer recorded nothing and the semaphores kept their values.
:func:`test_the_table_covers_every_public_callable` fails when a public method has no case.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import hal
from hal.runtime.allocator import Allocator
from tests.conftest import random_bytes

U = hal.BufferUsage
A = hal.MemoryAccess
BIG = 128 * 1024  # past queue_update's staged-path threshold (64 KiB)

KERNEL = """
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
var<immediate> k: u32;
@compute @workgroup_size(1) fn main() { data[0] = data[0] + k; }
"""


@dataclass
class World:
    """What the cases act on; ``patterns`` holds each guarded buffer's expected bytes."""

    device: hal.Device
    closed: hal.Device
    big: hal.Buffer
    small: hal.Buffer
    mapped: hal.Buffer
    read_only: hal.Buffer
    write_only: hal.Buffer
    indirect: hal.Buffer
    released: hal.Buffer
    foreign: hal.Buffer
    closed_buffer: hal.Buffer
    exe: hal.Executable
    sem: hal.Semaphore
    event: hal.Event
    foreign_event: hal.Event
    cb: hal.CommandBuffer
    slot_cb: hal.CommandBuffer
    fence: hal.Fence
    view: hal.BufferView
    patterns: dict[str, np.ndarray]

    def guarded(self) -> Iterator[tuple[str, hal.Buffer]]:
        for name in self.patterns:
            yield name, getattr(self, name)


@pytest.fixture(scope="module")
def world(device: hal.Device) -> Iterator[World]:
    closed = hal.create_device(implementation="null", backend="null")
    closed_buffer = closed.allocate_buffer(64)
    closed.close()
    other = hal.create_device(implementation="null", backend="null")
    d = device
    buffers = {
        "big": d.allocate_buffer(BIG),
        "small": d.allocate_buffer(64),
        "mapped": d.allocate_buffer(64, usage=U.DEFAULT | U.MAPPING),
        "read_only": d.allocate_buffer(64, usage=U.DEFAULT | U.MAPPING, access=A.READ),
        "write_only": d.allocate_buffer(64, usage=U.DEFAULT | U.MAPPING, access=A.WRITE),
        "indirect": d.allocate_buffer(16, usage=U.DEFAULT | U.DISPATCH_INDIRECT_PARAMS),
    }
    patterns = {}
    for seed, (name, buffer) in enumerate(buffers.items()):
        patterns[name] = random_bytes(buffer.byte_length, seed)
        if name == "read_only":  # no WRITE access: filled behind the API's back
            buffer.allocation.host.write(buffer, 0, patterns[name])
        else:
            d.transfer_h2d(patterns[name], buffer)
    d.wait_idle(60)
    released = d.allocate_buffer(64)
    released.release()
    cb = d.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    slot_cb = d.create_command_buffer(binding_capacity=1)
    slot_cb.begin()
    slot_cb.fill_buffer(hal.SlotRef(0), 0, 64, 0)
    slot_cb.end()
    sem = d.create_semaphore(3)
    w = World(
        device=d,
        closed=closed,
        released=released,
        foreign=other.allocate_buffer(64),
        closed_buffer=closed_buffer,
        exe=d.create_executable(KERNEL),
        sem=sem,
        event=d.create_event(),
        foreign_event=other.create_event(),
        cb=cb,
        slot_cb=slot_cb,
        fence=hal.Fence([(sem, 1)]),
        view=hal.BufferView(buffers["small"], (16,), np.uint32),
        patterns=patterns,
        **buffers,
    )
    yield w
    cb.end()
    other.close()


@dataclass(frozen=True)
class Case:
    """``call(world)`` must raise ``error`` whose message contains every one of ``words``."""

    id: str
    target: str  # "Class.method" or "hal.function": what the coverage check counts
    call: Callable[[World], Any]
    error: type[hal.HalError]
    words: tuple[str, ...]


CASES: list[Case] = []

IAE = hal.InvalidArgumentError
OOR = hal.OutOfRangeError

# Bad values for a non-negative int argument (None excluded: it means "to the end" for
# lengths; cases for int arguments that refuse None add it). 2**70 is a valid int far
# past any limit: ``huge`` says what it raises.
BAD_INTS: list[tuple[str, Any]] = [
    ("str", "1"),
    ("float", 1.5),
    ("nan", math.nan),
    ("object", object()),
    ("negative", -1),
    ("bool", True),
    ("list", [1]),
]


def case(
    target: str,
    label: str,
    call: Callable[[World], Any],
    error: type[hal.HalError],
    *words: str,
) -> None:
    ident = f"{target}[{label}]"
    taken = {c.id for c in CASES}
    serial = 2
    while ident in taken:  # the same argument name twice (e.g. "source" and its offset)
        ident = f"{target}[{label}#{serial}]"
        serial += 1
    CASES.append(Case(ident, target, call, error, words))


def ints(
    target: str,
    command: str,
    argument: str,
    call: Callable[[World, Any], Any],
    huge: type[hal.HalError] | None = OOR,
    none: bool = False,
) -> None:
    """Cases for an int argument: ``call(world, value)`` with each bad value."""
    values = [*BAD_INTS, *([("None", None)] if none else [])]
    for label, value in values:
        case(target, f"{argument}={label}", lambda w, v=value: call(w, v), IAE, command, argument)
    if huge is not None:
        # A huge length is reported as the range it makes: "target range [0, 2**70) is past…".
        word = "range" if argument == "length" and huge is OOR else argument
        case(target, f"{argument}=2**70", lambda w: call(w, 2**70), huge, command, word)


def flags(
    target: str, command: str, argument: str, call: Callable[[World, Any], Any], none: bool = False
) -> None:
    """Cases for an enum (IntFlag) argument: the enum, its int and no other type is valid
    (None too where ``none``: a default)."""
    bad: list[tuple[str, Any]] = [
        ("str", "x"),
        ("float", 1.5),
        *([] if none else [("None", None)]),
        ("object", object()),
        ("negative", -1),
        ("bool", True),
        ("list", [1]),
        ("2**70", 2**70),
    ]
    for label, value in bad:
        case(target, f"{argument}={label}", lambda w, v=value: call(w, v), IAE, command, argument)


def buffers(
    target: str,
    command: str,
    argument: str,
    call: Callable[[World, Any], Any],
    slot_ok: bool = True,
    buffers_only: bool = False,
    peer: bool = False,
) -> None:
    """Cases for a Buffer/BufferRef(/SlotRef) argument (``buffers_only``: a Buffer of any
    device, nothing else; ``peer``: a buffer of another device is a peer copy's source, so
    only one of a closed device is refused, with UnavailableError)."""
    bad: list[tuple[str, Any, type[hal.HalError]]] = [
        ("None", lambda w: None, IAE),
        ("int", lambda w: 5, IAE),
        ("str", lambda w: "buffer", IAE),
        ("object", lambda w: object(), IAE),
        ("array", lambda w: np.zeros(4, np.uint8), IAE),
        ("ref-to-int", lambda w: hal.BufferRef(5), IAE),
        ("ref-offset-past-end", lambda w: hal.BufferRef(w.small, 100), OOR),
        ("ref-negative-offset", lambda w: hal.BufferRef(w.small, -4), IAE),
        ("released", lambda w: w.released, hal.FailedPreconditionError),
        ("foreign-device", lambda w: w.foreign, IAE),
        ("closed-device", lambda w: w.closed_buffer, IAE),
    ]
    if not slot_ok:
        bad.append(("slot-ref", lambda w: hal.SlotRef(0), IAE))
    if buffers_only:
        bad = [
            (label, make, IAE if label.startswith("ref") else error) for label, make, error in bad
        ]
        bad = [b for b in bad if b[0] not in ("foreign-device", "closed-device")]
    if peer:
        bad = [
            (label, make, hal.UnavailableError if label == "closed-device" else error)
            for label, make, error in bad
            if label != "foreign-device"
        ]
    for label, make, error in bad:
        words = (command, argument) if label != "released" else (command, argument, "released")
        case(
            target,
            f"{argument}={label}",
            lambda w, m=make: call(w, m(w)),
            error,
            *words,
        )


def point_lists(target: str, command: str, call: Callable[[World, str, Any], Any]) -> None:
    """Cases for the ``wait=``/``signal=`` lists of a queue operation (checked before the
    operation does anything: the staged queue_update path used to write first)."""
    bad: list[tuple[str, Callable[[World], Any], type[hal.HalError]]] = [
        ("int", lambda w: 5, IAE),
        ("str", lambda w: "x", IAE),
        ("semaphore", lambda w: w.sem, IAE),
        ("pair-not-in-list", lambda w: (w.sem, 1), IAE),
        ("not-a-semaphore", lambda w: [("x", 1)], IAE),
        ("negative-value", lambda w: [(w.sem, -1)], IAE),
        ("float-value", lambda w: [(w.sem, 1.5)], IAE),
        ("bool-value", lambda w: [(w.sem, True)], IAE),
        ("huge-value", lambda w: [(w.sem, 2**70)], OOR),
        ("triple", lambda w: [(w.sem, 1, 2)], IAE),
    ]
    for which in ("wait", "signal"):
        for label, make, error in bad:
            case(
                target,
                f"{which}={label}",
                lambda w, m=make, k=which: call(w, k, m(w)),
                error,
                command,
                which,
            )


def timeouts(target: str, command: str, call: Callable[[World, Any], Any]) -> None:
    """Cases for a ``timeout`` (seconds; None waits forever, 0 polls)."""
    for label, value in [
        ("str", "1"),
        ("negative", -1),
        ("nan", math.nan),
        ("bool", True),
        ("object", object()),
        ("list", [1]),
    ]:
        case(target, f"timeout={label}", lambda w, v=value: call(w, v), IAE, command, "timeout")


# -- hal functions and constructors -----------------------------------------------------------

for _argument in ("backend", "label", "implementation"):
    for _label, _value in [("int", 5), ("object", object()), ("list", ["vulkan"])]:
        case(
            "hal.create_device",
            f"{_argument}={_label}",
            lambda w, a=_argument, v=_value: hal.create_device(**{a: v}),
            IAE,
            "create_device",
            _argument,
        )
for _label, _adapter in [("float", 1.5), ("negative", -1), ("bool", True), ("list", [0])]:
    case(
        "hal.create_device",
        f"adapter={_label}",
        lambda w, a=_adapter: hal.create_device(a),
        IAE,
        "create_device",
        "adapter",
    )
case(
    "hal.create_device",
    "adapter=past-the-end",
    lambda w: hal.create_device(10_000),
    IAE,
    "create_device",
    "adapter",
)

buffers(
    "hal.BufferView",
    "BufferView",
    "buffer",
    lambda w, b: hal.BufferView(b, (4,), np.uint8),
    buffers_only=True,
)
case(
    "hal.BufferView",
    "shape=str",
    lambda w: hal.BufferView(w.small, "x", np.uint8),
    IAE,
    "BufferView",
    "shape",
)
case(
    "hal.BufferView",
    "shape=float",
    lambda w: hal.BufferView(w.small, (1.5,), np.uint8),
    IAE,
    "BufferView",
    "shape",
)
case(
    "hal.BufferView",
    "shape=negative",
    lambda w: hal.BufferView(w.small, (-1,), np.uint8),
    IAE,
    "BufferView",
    "shape",
)
case(
    "hal.BufferView",
    "shape=too-big",
    lambda w: hal.BufferView(w.small, (2**40,), np.uint8),
    OOR,
    "BufferView",
    "shape",
)
for _label, _dtype in [("empty", np.dtype([])), ("object", object), ("bogus", "nope"), ("int", 5)]:
    case(
        "hal.BufferView",
        f"dtype={_label}",
        lambda w, t=_dtype: hal.BufferView(w.small, (1,), t),
        IAE,
        "BufferView",
        "dtype",
    )

for _label, _points in [("int", 5), ("str", "ab"), ("semaphore", None), ("bad-pair", [(1, 2)])]:
    case(
        "hal.Fence",
        f"points={_label}",
        lambda w, p=_points: hal.Fence(w.sem if p is None else p),
        IAE,
        "Fence",
    )
case("hal.Fence", "points=negative", lambda w: hal.Fence([(w.sem, -1)]), IAE, "Fence", "value")

# -- Device ---------------------------------------------------------------------------------

timeouts("Device.wait_idle", "wait_idle", lambda w, t: w.device.wait_idle(t))
timeouts(
    "Device.wait_idle_async",
    "wait_idle_async",
    lambda w, t: asyncio.run(w.device.wait_idle_async(t)),
)
for _label, _clock in [("int", 5), ("unknown", "sundial"), ("None", None)]:
    case(
        "Device.profile",
        f"clock={_label}",
        lambda w, c=_clock: w.device.profile(c),
        IAE,
        "profile",
        "clock",
    )
for _target, _command, _call in [
    ("Device.allocate_buffer", "allocate_buffer", lambda w, **k: w.device.allocate_buffer(**k)),
    (
        "Allocator.allocate_buffer",
        "allocate_buffer",
        lambda w, **k: w.device.allocator.allocate_buffer(**k),
    ),
    ("Device.queue_alloca", "queue_alloca", lambda w, **k: w.device.queue_alloca(**k)),
]:
    ints(
        _target,
        _command,
        "size",
        lambda w, v, c=_call: c(w, size=v),
        hal.ResourceExhaustedError,
        none=True,
    )
    flags(_target, _command, "usage", lambda w, v, c=_call: c(w, size=4, usage=v))
    flags(_target, _command, "memory_type", lambda w, v, c=_call: c(w, size=4, memory_type=v))
    case(
        _target,
        "usage=unknown-bit",
        lambda w, c=_call: c(w, size=4, usage=1 << 20),
        IAE,
        _command,
        "usage",
    )
flags(
    "Device.allocate_buffer",
    "allocate_buffer",
    "access",
    lambda w, v: w.device.allocate_buffer(4, access=v),
    none=True,
)
flags(
    "Allocator.allocate_buffer",
    "allocate_buffer",
    "access",
    lambda w, v: w.device.allocator.allocate_buffer(4, access=v),
)
point_lists(
    "Device.queue_alloca",
    "queue_alloca",
    lambda w, k, v: w.device.queue_alloca(4, **{k: v}),
)

for _target, _command in [
    ("Device.buffer_from_numpy", "buffer_from_numpy"),
    ("Device.buffer_view_from_numpy", "buffer_view_from_numpy"),
    ("Allocator.buffer_from_numpy", "buffer_from_numpy"),
]:
    for _label, _array in [
        ("object-array", np.array([object()] * 4)),
        ("None", None),
        ("object", object()),
        ("ragged", [[1], [1, 2]]),
    ]:
        case(
            _target,
            f"array={_label}",
            lambda w, a=_array, c=_command, t=_target: getattr(
                w.device.allocator if t.startswith("Allocator") else w.device, c
            )(a),
            IAE,
            _command,
            "array",
        )
flags(
    "Device.buffer_from_numpy",
    "buffer_from_numpy",
    "usage",
    lambda w, v: w.device.buffer_from_numpy(np.zeros(4, np.uint8), usage=v),
)
flags(
    "Allocator.buffer_from_numpy",
    "buffer_from_numpy",
    "usage",
    lambda w, v: w.device.allocator.buffer_from_numpy(np.zeros(4, np.uint8), usage=v),
)

_BAD_HOST = [
    ("None", None),
    ("int", 5),
    ("str", "abcd"),
    ("object", object()),
    ("object-array", np.array([object()] * 8)),
    ("object-memoryview", memoryview(np.array([object()] * 8))),
]
for _label, _data in _BAD_HOST:
    case(
        "Device.transfer_h2d",
        f"data={_label}",
        lambda w, d=_data: w.device.transfer_h2d(d, w.small),
        IAE,
        "transfer_h2d",
        "data",
    )
buffers(
    "Device.transfer_h2d",
    "transfer_h2d",
    "target",
    lambda w, b: w.device.transfer_h2d(b"\x01\x02\x03\x04", b),
    slot_ok=False,
)
ints(
    "Device.transfer_h2d",
    "transfer_h2d",
    "target",
    lambda w, v: w.device.transfer_h2d(b"\x01\x02\x03\x04", w.small, v),
    none=True,
)
case(
    "Device.transfer_h2d",
    "target=read-only",
    lambda w: w.device.transfer_h2d(b"\x01\x02\x03\x04", w.read_only),
    hal.PermissionDeniedError,
    "transfer_h2d",
    "target",
    "WRITE",
)
case(
    "Device.transfer_h2d",
    "data=past-the-end",
    lambda w: w.device.transfer_h2d(bytes(65), w.small),
    OOR,
    "transfer_h2d",
    "target",
)
buffers(
    "Device.transfer_d2h",
    "transfer_d2h",
    "source",
    lambda w, b: w.device.transfer_d2h(b),
    slot_ok=False,
)
ints(
    "Device.transfer_d2h",
    "transfer_d2h",
    "source",
    lambda w, v: w.device.transfer_d2h(w.small, v),
    none=True,
)
ints(
    "Device.transfer_d2h",
    "transfer_d2h",
    "source",
    lambda w, v: w.device.transfer_d2h(w.small, 0, v),
)
case(
    "Device.transfer_d2h",
    "source=write-only",
    lambda w: w.device.transfer_d2h(w.write_only),
    hal.PermissionDeniedError,
    "transfer_d2h",
    "source",
    "READ",
)

for _label, _source in [("int", 5), ("None", None), ("bad-wgsl", "fn nope(")]:
    case(
        "Device.create_executable",
        f"source={_label}",
        lambda w, s=_source: w.device.create_executable(s),
        IAE,
        "create_executable",
    )
case(
    "Device.create_event",
    "closed-device",
    lambda w: w.closed.create_event(),
    hal.UnavailableError,
    "create_event",
    "closed",
)
ints(
    "Device.create_semaphore",
    "create_semaphore",
    "value",
    lambda w, v: w.device.create_semaphore(v),
    none=True,
)
for _label, _points in [
    ("int", lambda w: 5),
    ("str", lambda w: "x"),
    ("semaphore", lambda w: w.sem),
    ("not-a-semaphore", lambda w: [("x", 1)]),
    ("negative-value", lambda w: [(w.sem, -1)]),
    ("float-value", lambda w: [(w.sem, 1.5)]),
]:
    case(
        "Device.wait_semaphores",
        f"points={_label}",
        lambda w, p=_points: w.device.wait_semaphores(p(w)),
        IAE,
        "wait_semaphores",
    )
timeouts(
    "Device.wait_semaphores",
    "wait_semaphores",
    lambda w, t: w.device.wait_semaphores([(w.sem, 99)], timeout=t),
)
for _label, _mode in [("int", 1), ("unknown", "some"), ("None", None), ("list", ["all"])]:
    case(
        "Device.wait_semaphores",
        f"mode={_label}",
        lambda w, m=_mode: w.device.wait_semaphores([], mode=m),
        IAE,
        "wait_semaphores",
        "mode",
    )

for _target, _call in [
    ("Device.create_command_buffer", lambda w, **k: w.device.create_command_buffer(**k)),
    ("Device.record", lambda w, **k: w.device.record(**k).__enter__()),
]:
    flags(_target, "create_command_buffer", "mode", lambda w, v, c=_call: c(w, mode=v))
    flags(_target, "create_command_buffer", "categories", lambda w, v, c=_call: c(w, categories=v))
    ints(
        _target,
        "create_command_buffer",
        "binding_capacity",
        lambda w, v, c=_call: c(w, binding_capacity=v),
        None,
        none=True,
    )

for _label, _cbs in [("int", 5), ("str", "cb"), ("object", object()), ("list-of-int", [5])]:
    case(
        "Device.queue_execute",
        f"command_buffers={_label}",
        lambda w, c=_cbs: w.device.queue_execute(c),
        IAE,
        "queue_execute",
        "command_buffers",
    )
case(
    "Device.queue_execute",
    "command_buffers=recording",
    lambda w: w.device.queue_execute(w.cb),
    hal.FailedPreconditionError,
    "queue_execute",
    "ended",
)
for _label, _table in [("int", 5), ("str", "t"), ("None-entry", [None])]:
    case(
        "Device.queue_execute",
        f"binding_table={_label}",
        lambda w, t=_table: w.device.queue_execute(w.slot_cb, binding_table=t),
        IAE,
        "queue_execute",
        "binding_table",
    )
case(
    "Device.queue_execute",
    "binding_table=ref-past-end",
    lambda w: w.device.queue_execute(w.slot_cb, binding_table=[hal.BufferRef(w.small, 100)]),
    OOR,
    "queue_execute",
    "binding_table[0]",
    "offset 100",
    "64-byte",
)
point_lists(
    "Device.queue_execute", "queue_execute", lambda w, k, v: w.device.queue_execute(None, **{k: v})
)
point_lists(
    "Device.queue_barrier", "queue_barrier", lambda w, k, v: w.device.queue_barrier(**{k: v})
)

# -- host calls, channels and collectives -------------------------------------------------------

case(
    "Device.queue_host_call",
    "fn=None",
    lambda w: w.device.queue_host_call(None),
    IAE,
    "queue_host_call",
    "fn",
    "not callable",
)
point_lists(
    "Device.queue_host_call",
    "queue_host_call",
    lambda w, k, v: w.device.queue_host_call(print, **{k: v}),
)
try:
    import mpi4py.MPI  # noqa: F401 - only whether it imports
except ImportError:  # without the `mpi` extra, create_channel says so
    case(
        "Device.create_channel",
        "no-mpi4py",
        lambda w: w.device.create_channel(),
        hal.UnavailableError,
        "create_channel",
        "mpi",
    )
else:
    case(
        "Device.create_channel",
        "group=str",
        lambda w: w.device.create_channel(group="world"),
        IAE,
        "create_channel",
        "group",
    )


class _TwoRanks:
    """A stand-in communicator (rank 0 of 2): record-time checks only read its shape."""

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 2


_K, _R = hal.CollectiveKind, hal.CollectiveReduction


def _collective(w: World, command: str, *args: Any, **kwargs: Any) -> Any:
    if command == "queue_collective":
        return w.device.queue_collective(*args, **kwargs)
    return w.cb.collective(*args, **kwargs)


for _command, _target in (
    ("collective", "CommandBuffer.collective"),
    ("queue_collective", "Device.queue_collective"),
):
    _bad: list[tuple[str, Callable[[World, hal.Channel], tuple[Any, ...]], dict[str, Any], Any]] = [
        ("channel=object", lambda w, c: (object(), _K.ALL_GATHER, w.small, w.big, 1), {}, IAE),
        ("kind=42", lambda w, c: (c, 42, w.small, w.big, 1), {}, IAE),
        (
            "element_type=complex64",
            lambda w, c: (c, _K.ALL_GATHER, w.small, w.big, 1),
            {"element_type": "complex64"},
            IAE,
        ),
        ("reduction=missing", lambda w, c: (c, _K.ALL_REDUCE, w.small, w.big, 1), {}, IAE),
        (
            "reduction=misplaced",
            lambda w, c: (c, _K.ALL_GATHER, w.small, w.big, 1),
            {"reduction": _R.SUM},
            IAE,
        ),
        ("recv=short", lambda w, c: (c, _K.ALL_GATHER, w.small, w.small, 64), {}, OOR),
        ("param=outside", lambda w, c: (c, _K.BROADCAST, w.small, w.big, 1), {"param": 2}, IAE),
        ("send=None", lambda w, c: (c, _K.SEND, None, None, 1), {"param": 1}, IAE),
    ]
    _words = {
        "channel=object": "channel",
        "kind=42": "kind",
        "recv=short": "recv",
        "element_type=complex64": "element_type",
        "reduction=missing": "reduction",
        "reduction=misplaced": "reduction",
        "param=outside": "param",
        "send=None": "send",
    }
    for _label, _args, _kwargs, _error in _bad:
        case(
            _target,
            _label,
            lambda w, a=_args, k=_kwargs, c=_command: _collective(
                w,
                c,
                *a(w, hal.Channel(w.device, _TwoRanks(), None)),
                **{"element_type": "int8", **k},
            ),
            _error,
            _command,
            _words[_label],
        )
point_lists(
    "Device.queue_collective",
    "queue_collective",
    lambda w, k, v: w.device.queue_collective(
        hal.Channel(w.device, _TwoRanks(), None),
        hal.CollectiveKind.ALL_GATHER,
        w.small,
        w.big,
        1,
        element_type="int8",
        **{k: v},
    ),
)

# -- queue transfers and their command-buffer twins -----------------------------------------------


def _fill(w: World, command: str, *args: Any, **kwargs: Any) -> Any:
    if command == "queue_fill":
        return w.device.queue_fill(*args, **kwargs)
    return w.cb.fill_buffer(*args, **kwargs)


def _update(w: World, command: str, *args: Any) -> Any:
    if command == "queue_update":
        return w.device.queue_update(*args)
    return w.cb.update_buffer(*args)


def _copy(w: World, command: str, *args: Any) -> Any:
    if command == "queue_copy":
        return w.device.queue_copy(*args)
    return w.cb.copy_buffer(*args)


for _target, _command in [
    ("Device.queue_fill", "queue_fill"),
    ("CommandBuffer.fill_buffer", "fill_buffer"),
]:
    buffers(_target, _command, "target", lambda w, b, c=_command: _fill(w, c, b, 0, 4, 7))
    ints(
        _target,
        _command,
        "offset",
        lambda w, v, c=_command: _fill(w, c, w.small, v, 4, 7),
        none=True,
    )
    ints(_target, _command, "length", lambda w, v, c=_command: _fill(w, c, w.small, 0, v, 7))
    ints(
        _target,
        _command,
        "pattern_length",
        lambda w, v, c=_command: _fill(w, c, w.small, 0, 4, 7, v),
        IAE,
    )
    for _label, _pattern in [("str", "x"), ("None", None), ("float", 1.5), ("bytes3", b"abc")]:
        case(
            _target,
            f"pattern={_label}",
            lambda w, p=_pattern, c=_command: _fill(w, c, w.small, 0, 4, p),
            IAE,
            _command,
            "pattern",
        )
    case(
        _target,
        "ref-offset-past-end",
        lambda w, c=_command: _fill(w, c, hal.BufferRef(w.small, 100), 0, None, 0),
        OOR,
        _command,
        "offset 100",
        "64-byte buffer",
    )
    case(
        _target,
        "target=read-only",
        lambda w, c=_command: _fill(w, c, w.read_only, 0, 4, 7),
        hal.PermissionDeniedError,
        _command,
        "target",
    )
point_lists(
    "Device.queue_fill",
    "queue_fill",
    lambda w, k, v: w.device.queue_fill(w.small, 0, 4, 7, **{k: v}),
)

for _target, _command in [
    ("Device.queue_update", "queue_update"),
    ("CommandBuffer.update_buffer", "update_buffer"),
]:
    for _label, _data in _BAD_HOST:
        case(
            _target,
            f"source={_label}",
            lambda w, d=_data, c=_command: _update(w, c, d, 0, w.small, 0, 4),
            IAE,
            _command,
            "source",
        )
    ints(
        _target,
        _command,
        "source_offset",
        lambda w, v, c=_command: _update(w, c, bytes(8), v, w.small, 0, 4),
        none=True,
    )
    buffers(
        _target, _command, "target", lambda w, b, c=_command: _update(w, c, bytes(8), 0, b, 0, 4)
    )
    ints(
        _target,
        _command,
        "target",
        lambda w, v, c=_command: _update(w, c, bytes(8), 0, w.small, v, 4),
        none=True,
    )
    ints(
        _target,
        _command,
        "length",
        lambda w, v, c=_command: _update(w, c, bytes(8), 0, w.small, 0, v),
        none=True,
    )
    case(
        _target,
        "source=too-short",
        lambda w, c=_command: _update(w, c, bytes(8), 4, w.small, 0, 8),
        OOR,
        _command,
        "source",
    )
# The staged (>= 64 KiB) path of queue_update used to write before checking these.
point_lists(
    "Device.queue_update",
    "queue_update",
    lambda w, k, v: w.device.queue_update(np.zeros(BIG, np.uint8), 0, w.big, 0, BIG, **{k: v}),
)
case(
    "Device.queue_update",
    "staged-object-array",
    lambda w: w.device.queue_update(np.array([object()] * BIG), 0, w.big, 0, BIG),
    IAE,
    "queue_update",
    "source",
)

for _target, _command in [
    ("Device.queue_copy", "queue_copy"),
    ("CommandBuffer.copy_buffer", "copy_buffer"),
]:
    buffers(
        _target,
        _command,
        "source",
        lambda w, b, c=_command: _copy(w, c, b, 0, w.small, 0, 4),
        peer=_command == "queue_copy",
    )
    buffers(_target, _command, "target", lambda w, b, c=_command: _copy(w, c, w.big, 0, b, 0, 4))
    ints(
        _target,
        _command,
        "source",
        lambda w, v, c=_command: _copy(w, c, w.big, v, w.small, 0, 4),
        none=True,
    )
    ints(
        _target,
        _command,
        "target",
        lambda w, v, c=_command: _copy(w, c, w.big, 0, w.small, v, 4),
        none=True,
    )
    ints(_target, _command, "length", lambda w, v, c=_command: _copy(w, c, w.big, 0, w.small, 0, v))
    case(
        _target,
        "overlap",
        lambda w, c=_command: _copy(w, c, w.small, 0, w.small, 4, 8),
        IAE,
        _command,
        "overlap",
    )
point_lists(
    "Device.queue_copy",
    "queue_copy",
    lambda w, k, v: w.device.queue_copy(w.big, 0, w.small, 0, 4, **{k: v}),
)

for _label, _buffer in [("int", lambda w: 5), ("subspan", lambda w: w.small.subspan(4))]:
    case(
        "Device.queue_dealloca",
        f"buffer={_label}",
        lambda w, b=_buffer: w.device.queue_dealloca(b(w)),
        IAE,
        "queue_dealloca",
    )
case(
    "Device.queue_dealloca",
    "buffer=foreign",
    lambda w: w.device.queue_dealloca(w.foreign),
    IAE,
    "queue_dealloca",
)
point_lists(
    "Device.queue_dealloca",
    "queue_dealloca",
    lambda w, k, v: w.device.queue_dealloca(w.small, **{k: v}),
)

for _label, _file in [("int", 5), ("None", None), ("object", object())]:
    case(
        "Device.queue_read",
        f"source_file={_label}",
        lambda w, f=_file: w.device.queue_read(f, 0, w.small, 0, 4),
        IAE,
        "queue_read",
        "source_file",
    )
ints(
    "Device.queue_read",
    "queue_read",
    "source_offset",
    lambda w, v: w.device.queue_read(bytes(8), v, w.small, 0, 4),
    None,  # a source shorter than the range fails the signal semaphores (API: Files)
    none=True,
)
ints(
    "Device.queue_read",
    "queue_read",
    "length",
    lambda w, v: w.device.queue_read(bytes(8), 0, w.small, 0, v),
    none=True,
)
buffers(
    "Device.queue_read",
    "queue_read",
    "target",
    lambda w, b: w.device.queue_read(bytes(8), 0, b, 0, 4),
    slot_ok=False,
)
point_lists(
    "Device.queue_read",
    "queue_read",
    lambda w, k, v: w.device.queue_read(bytes(8), 0, w.small, 0, 4, **{k: v}),
)
for _label, _file in [("int", 5), ("None", None), ("read-only-bytes", b"12345678")]:
    case(
        "Device.queue_write",
        f"target_file={_label}",
        lambda w, f=_file: w.device.queue_write(w.small, 0, f, 0, 4),
        IAE,
        "queue_write",
        "target_file",
    )
ints(
    "Device.queue_write",
    "queue_write",
    "target_offset",
    lambda w, v: w.device.queue_write(w.small, 0, bytearray(8), v, 4),
    none=True,
)
buffers(
    "Device.queue_write",
    "queue_write",
    "source",
    lambda w, b: w.device.queue_write(b, 0, bytearray(8), 0, 4),
    slot_ok=False,
)
point_lists(
    "Device.queue_write",
    "queue_write",
    lambda w, k, v: w.device.queue_write(w.small, 0, bytearray(8), 0, 4, **{k: v}),
)

# -- Allocator ------------------------------------------------------------------------------
# query_buffer_compatibility never raises: it answers False (checked in its own test below).

# -- Buffer ---------------------------------------------------------------------------------

ints("Buffer.subspan", "subspan", "offset", lambda w, v: w.small.subspan(v), none=True)
ints("Buffer.subspan", "subspan", "length", lambda w, v: w.small.subspan(0, v))
case(
    "Buffer.subspan",
    "released",
    lambda w: w.released.subspan(0),
    hal.FailedPreconditionError,
    "subspan",
    "released",
)
for _method, _call in [
    ("map_read", lambda w, b, v: b.map_read(v)),
    ("map_zero", lambda w, b, v: b.map_zero(v)),
    ("map_fill", lambda w, b, v: b.map_fill(v, 4, 7)),
    ("map_write", lambda w, b, v: b.map_write(v, b"\x01\x02\x03\x04")),
    ("map_range", lambda w, b, v: b.map_range(A.READ, v).__enter__()),
]:
    ints(f"Buffer.{_method}", _method, "offset", lambda w, v, c=_call: c(w, w.mapped, v), none=True)
    case(
        f"Buffer.{_method}",
        "no-mapping-usage",
        lambda w, c=_call: c(w, w.small, 0),
        hal.PermissionDeniedError,
        _method,
        "MAPPING",
    )
    case(
        f"Buffer.{_method}",
        "released",
        lambda w, c=_call: c(w, w.released, 0),
        hal.FailedPreconditionError,
        _method,
        "released",
    )
case(
    "Buffer.map_read",
    "write-only",
    lambda w: w.write_only.map_read(),
    hal.PermissionDeniedError,
    "map_read",
    "READ",
)
for _method, _call in [
    ("map_zero", lambda w: w.read_only.map_zero()),
    ("map_fill", lambda w: w.read_only.map_fill(0, 4, 7)),
    ("map_write", lambda w: w.read_only.map_write(0, b"\x01\x02\x03\x04")),
]:
    case(f"Buffer.{_method}", "read-only", _call, hal.PermissionDeniedError, _method, "WRITE")
for _label, _data in _BAD_HOST:
    case(
        "Buffer.map_write",
        f"data={_label}",
        lambda w, d=_data: w.mapped.map_write(0, d),
        IAE,
        "map_write",
        "data",
    )
ints(
    "Buffer.map_fill", "map_fill", "pattern_length", lambda w, v: w.mapped.map_fill(0, 4, 7, v), IAE
)
case(
    "Buffer.map_fill",
    "pattern=str",
    lambda w: w.mapped.map_fill(0, 4, "x"),
    IAE,
    "map_fill",
    "pattern",
)
flags("Buffer.map_range", "map_range", "access", lambda w, v: w.mapped.map_range(v).__enter__())
for _label, _dtype in [("empty", np.dtype([])), ("object", object), ("bogus", "nope")]:
    case(
        "Buffer.to_numpy",
        f"dtype={_label}",
        lambda w, t=_dtype: w.small.to_numpy(t),
        IAE,
        "to_numpy",
        "dtype",
    )
for _label, _shape in [("str", "x"), ("float", (1.5,)), ("negative", (-1,)), ("bool", True)]:
    case(
        "Buffer.to_numpy",
        f"shape={_label}",
        lambda w, s=_shape: w.small.to_numpy(np.uint8, s),
        IAE,
        "to_numpy",
        "shape",
    )
case(
    "Buffer.to_numpy",
    "shape=too-big",
    lambda w: w.small.to_numpy(np.uint8, (65,)),
    OOR,
    "to_numpy",
)
ints(
    "Buffer.to_numpy",
    "to_numpy",
    "offset",
    lambda w, v: w.small.to_numpy(np.uint8, None, v),
    none=True,
)
case(
    "Buffer.to_numpy",
    "write-only",
    lambda w: w.write_only.to_numpy(),
    hal.PermissionDeniedError,
    "to_numpy",
    "READ",
)
case(
    "Buffer.to_numpy",
    "released",
    lambda w: w.released.to_numpy(),
    hal.FailedPreconditionError,
    "to_numpy",
    "released",
)
case(
    "Buffer.to_numpy",
    "closed-device",
    lambda w: w.closed_buffer.to_numpy(),
    hal.UnavailableError,
    "to_numpy",
    "closed",
)


def _released_view(w: World) -> Any:
    view = hal.BufferView(w.device.allocate_buffer(4), (1,), np.uint32)
    view.buffer.release()
    return view.to_numpy()


case(
    "BufferView.to_numpy",
    "released-buffer",
    _released_view,
    hal.FailedPreconditionError,
    "to_numpy",
    "released",
)

# -- CommandBuffer --------------------------------------------------------------------------

for _target, _command, _call in [
    (
        "CommandBuffer.execution_barrier",
        "execution_barrier",
        lambda w, **k: w.cb.execution_barrier(**k),
    ),
    ("CommandBuffer.wait_events", "wait_events", lambda w, **k: w.cb.wait_events([w.event], **k)),
]:
    flags(_target, _command, "source_stage", lambda w, v, c=_call: c(w, source_stage=v))
    flags(_target, _command, "target_stage", lambda w, v, c=_call: c(w, target_stage=v))
    for _argument in ("memory_barriers", "buffer_barriers"):
        for _label, _value in [("int", 5), ("None", None), ("str", "b")]:
            case(
                _target,
                f"{_argument}={_label}",
                lambda w, a=_argument, v=_value, c=_call: c(w, **{a: v}),
                IAE,
                _command,
                _argument,
            )
ints(
    "CommandBuffer.execution_barrier",
    "execution_barrier",
    "flags",
    lambda w, v: w.cb.execution_barrier(flags=v),
    None,
    none=True,
)
for _method in ("signal_event", "reset_event"):
    for _label, _event in [
        ("None", lambda w: None),
        ("int", lambda w: 5),
        ("semaphore", lambda w: w.sem),
        ("foreign-device", lambda w: w.foreign_event),
    ]:
        case(
            f"CommandBuffer.{_method}",
            f"event={_label}",
            lambda w, e=_event, m=_method: getattr(w.cb, m)(e(w)),
            IAE,
            _method,
            "event",
        )
    flags(
        f"CommandBuffer.{_method}",
        _method,
        "source_stage",
        lambda w, v, m=_method: getattr(w.cb, m)(w.event, v),
    )
for _label, _events in [
    ("single-event", lambda w: w.event),
    ("None", lambda w: None),
    ("int", lambda w: 5),
    ("list-of-int", lambda w: [5]),
]:
    case(
        "CommandBuffer.wait_events",
        f"events={_label}",
        lambda w, e=_events: w.cb.wait_events(e(w)),
        IAE,
        "wait_events",
        "event",
    )
for _method in ("advise_buffer", "discard_buffer"):
    buffers(
        f"CommandBuffer.{_method}",
        "advise_buffer",
        "target",
        lambda w, b, m=_method: getattr(w.cb, m)(b),
    )
    ints(
        f"CommandBuffer.{_method}",
        "advise_buffer",
        "flags",
        lambda w, v, m=_method: getattr(w.cb, m)(w.small, v),
        None,
        none=True,
    )


def _dispatch(w: World, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "executable": w.exe,
        "entry_point": "main",
        "workgroup_count": (1, 1, 1),
        "constants": (1,),
        "bindings": (w.small,),
    }
    arguments.update(kwargs)
    return w.cb.dispatch(**arguments)


def _indirect(w: World, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "executable": w.exe,
        "entry_point": "main",
        "workgroups": w.indirect,
        "constants": (1,),
        "bindings": (w.small,),
    }
    arguments.update(kwargs)
    return w.cb.dispatch_indirect(**arguments)


for _target, _command, _call in [
    ("CommandBuffer.dispatch", "dispatch", _dispatch),
    ("CommandBuffer.dispatch_indirect", "dispatch_indirect", _indirect),
]:
    for _label, _exe in [("None", None), ("int", 5), ("str", "main")]:
        case(
            _target,
            f"executable={_label}",
            lambda w, e=_exe, c=_call: c(w, executable=e),
            IAE,
            _command,
            "executable",
        )
    for _label, _entry in [("None", None), ("int", 5), ("unknown", "nope"), ("list", ["main"])]:
        case(
            _target,
            f"entry_point={_label}",
            lambda w, e=_entry, c=_call: c(w, entry_point=e),
            IAE,
            _command,
            "entry_point",
        )
    for _label, _bindings in [("None", None), ("int", 5), ("str", "b"), ("list-of-int", [5])]:
        case(
            _target,
            f"bindings={_label}",
            lambda w, b=_bindings, c=_call: c(w, bindings=b),
            IAE,
            _command,
            "bindings",
        )
    buffers(_target, _command, "bindings[0]", lambda w, b, c=_call: c(w, bindings=(b,)))
    case(
        _target,
        "bindings=too-many",
        lambda w, c=_call: c(w, bindings=(w.small, w.small)),
        IAE,
        _command,
        "bindings",
    )
    case(
        _target,
        "constants=too-many",
        lambda w, c=_call: c(w, constants=(1, 2)),
        IAE,
        _command,
        "constants",
    )
for _label, _counts in [
    ("None", None),
    ("int", 1),
    ("pair", (1, 1)),
    ("str", "abc"),
    ("floats", (1.0, 1.0, 1.0)),
    ("bools", (True, True, True)),
    ("bools-false", (False, False, False)),
    ("negative", (-1, 1, 1)),
    ("huge", (2**70, 1, 1)),
]:
    case(
        "CommandBuffer.dispatch",
        f"workgroup_count={_label}",
        lambda w, c=_counts: _dispatch(w, workgroup_count=c),
        IAE,
        "dispatch",
        "workgroup_count",
    )
buffers(
    "CommandBuffer.dispatch_indirect",
    "dispatch_indirect",
    "workgroups",
    lambda w, b: _indirect(w, workgroups=b),
)
case(
    "CommandBuffer.dispatch_indirect",
    "workgroups=short",
    lambda w: _indirect(w, workgroups=hal.BufferRef(w.indirect, 8)),
    OOR,
    "dispatch_indirect",
    "workgroups",
)
case(
    "CommandBuffer.dispatch_indirect",
    "workgroups=no-indirect-usage",
    lambda w: _indirect(w, workgroups=w.small),
    hal.PermissionDeniedError,
    "dispatch_indirect",
    "workgroups",
)
case(
    "CommandBuffer.begin",
    "recording",
    lambda w: w.cb.begin(),
    hal.FailedPreconditionError,
    "begin",
    "recording",
)
case(
    "CommandBuffer.end",
    "ended",
    lambda w: w.slot_cb.end(),
    hal.FailedPreconditionError,
    "end",
    "recording",
)
case(
    "CommandBuffer.lower_naive",
    "recording",
    lambda w: w.cb.lower_naive(),
    hal.FailedPreconditionError,
    "lower_naive",
    "ended",
)
case(
    "CommandBuffer.lower_naive",
    "uses-slots",
    lambda w: w.slot_cb.lower_naive(),
    hal.FailedPreconditionError,
    "lower_naive",
    "slots",
)

# -- Semaphore, Fence, Executable ----------------------------------------------------------

ints("Semaphore.signal", "signal", "value", lambda w, v: w.sem.signal(v), none=True)
case(
    "Semaphore.signal",
    "value=not-increasing",
    lambda w: w.sem.signal(3),
    OOR,
    "signal",
    "value 3",
)
ints("Semaphore.wait", "Semaphore.wait", "value", lambda w, v: w.sem.wait(v, 0), none=True)
timeouts("Semaphore.wait", "Semaphore.wait", lambda w, t: w.sem.wait(99, t))
ints(
    "Semaphore.wait_async",
    "Semaphore.wait_async",
    "value",
    lambda w, v: asyncio.run(w.sem.wait_async(v, 0)),
    none=True,
)
timeouts(
    "Semaphore.wait_async",
    "Semaphore.wait_async",
    lambda w, t: asyncio.run(w.sem.wait_async(99, t)),
)
for _label, _error in [("int", 5), ("None", None), ("list", ["x"])]:
    case(
        "Semaphore.fail",
        f"error={_label}",
        lambda w, e=_error: w.device.create_semaphore().fail(e),
        IAE,
        "Semaphore.fail",
        "error",
    )
    case(
        "Fence.fail",
        f"error={_label}",
        lambda w, e=_error: hal.Fence([(w.device.create_semaphore(), 1)]).fail(e),
        IAE,
        "Fence.fail",
        "error",
    )
case(
    "Semaphore.query",
    "failed",
    lambda w: (s := w.device.create_semaphore(), s.fail("boom"), s.query()),
    hal.AbortedError,
    "boom",
)
for _label, _semaphore in [("int", 5), ("None", None), ("event", "event")]:
    case(
        "Fence.insert",
        f"semaphore={_label}",
        lambda w, s=_semaphore: hal.Fence().insert(w.event if s == "event" else s, 1),
        IAE,
        "Fence.insert",
        "Semaphore",
    )
ints("Fence.insert", "Fence.insert", "value", lambda w, v: hal.Fence().insert(w.sem, v), none=True)
for _label, _fences in [("int", (5,)), ("list", ([],)), ("None", (None,))]:
    case(
        "Fence.join",
        f"fences={_label}",
        lambda w, f=_fences: hal.Fence.join(w.fence, *f),
        IAE,
        "Fence.join",
        "fences[1]",
    )
timeouts("Fence.wait", "Fence.wait", lambda w, t: hal.Fence([(w.sem, 99)]).wait(t))
timeouts(
    "Fence.wait_async",
    "Fence.wait_async",
    lambda w, t: asyncio.run(hal.Fence([(w.sem, 99)]).wait_async(t)),
)
case(
    "Fence.signal",
    "not-increasing",
    lambda w: hal.Fence([(w.sem, 2)]).signal(),
    OOR,
    "signal",
    "value 2",
)
for _label, _entry in [("None", None), ("int", 5), ("unknown", "nope"), ("list", ["main"])]:
    case(
        "Executable.layout",
        f"entry_point={_label}",
        lambda w, e=_entry: w.exe.layout(e),
        IAE,
        "entry_point",
    )

for _label, _call in (
    ("caps=int", lambda w: hal.lower([], 5)),
    ("segments=int", lambda w: hal.lower(5, w.device.caps)),
    ("segments=[object]", lambda w: hal.lower([object()], w.device.caps)),
    ("options=str", lambda w: hal.lower([], w.device.caps, "naive")),
):
    case("hal.lower", _label, _call, IAE, "lower")
for _label, _name in (("int", 5), ("missing", "no_such_kernel.wgsl"), ("none", None)):
    case(
        "hal.shader_path",
        f"name={_label}",
        lambda w, n=_name: hal.shader_path(n),
        IAE,
        "shader_path",
        "name",
    )
case(
    "Device.queue_alloca",
    "size=negative#named",
    lambda w: w.device.queue_alloca(-1),
    IAE,
    "queue_alloca",
    "size",
)

# Public methods that take no argument that could be wrong, or are runtime hooks (each is
# exercised through the API that calls it), or tools outside the device API.
NO_ARGUMENTS = {
    "Buffer.check_alive": "runtime check; raises FailedPreconditionError by design",
    "Buffer.release": "no arguments; idempotent, never raises",
    "CommandBuffer.claim": "queue_execute's hook",
    "CommandBuffer.unclaim": "queue_execute's hook",
    "CommandBuffer.prepare": "queue_execute's hook (binding tables: Device.queue_execute)",
    "CommandBuffer.dump": "no arguments",
    "Device.check_open": "runtime check; raises UnavailableError by design",
    "Device.close": "no arguments; idempotent, never raises",
    "Executable.pipeline": "the encoder's accessor",
    "Semaphore.advance": "the queue's hook",
    "Semaphore.expect": "the queue's hook",
    "Semaphore.watch": "the queue's hook",
    "Allocator.query_buffer_compatibility": "never raises: see its own test",
    "Allocator.pool_statistics": "no arguments; never raises",
    "Allocator.empty_pool": "no arguments; never raises",
    "hal.available_adapters": "never raises: an unknown implementation lists no adapters",
    "hal.BufferRef": "plain data; checked where used (the buffers() cases of every command)",
    "hal.SlotRef": "plain data; checked where used",
}

PUBLIC_CLASSES = (
    hal.Device,
    Allocator,
    hal.Buffer,
    hal.BufferView,
    hal.CommandBuffer,
    hal.Semaphore,
    hal.Fence,
    hal.Event,
    hal.Executable,
)


def _public_callables() -> set[str]:
    names = {
        f"hal.{name}"
        for name in hal.__all__
        if inspect.isfunction(getattr(hal, name)) or name in ("BufferView", "Fence", "BufferRef")
    }
    names.add("hal.SlotRef")
    for cls in PUBLIC_CLASSES:
        for name, value in vars(cls).items():
            if not name.startswith("_") and (
                inspect.isfunction(value) or isinstance(value, classmethod)
            ):
                names.add(f"{cls.__name__}.{name}")
    return names


def test_the_table_covers_every_public_callable() -> None:
    covered = {c.target for c in CASES}
    missing = sorted(_public_callables() - covered - set(NO_ARGUMENTS))
    assert not missing, f"public callables without hostile cases: {missing}"
    stale = sorted((covered | set(NO_ARGUMENTS)) - _public_callables())
    assert not stale, f"table entries for callables that do not exist: {stale}"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("hostile", CASES, ids=lambda c: c.id)
def test_bad_arguments_raise_typed_errors_and_change_nothing(world: World, hostile: Case) -> None:
    segments = len(world.cb.segments)
    value = world.sem.value
    with pytest.raises(hal.HalError) as info:
        hostile.call(world)
    assert type(info.value) is hostile.error or isinstance(info.value, hostile.error), (
        f"{type(info.value).__name__}: {info.value}"
    )
    message = str(info.value)
    for word in hostile.words:  # "source_offset" is named "source offset" in some messages
        assert word.replace("_", " ") in message.replace("_", " "), f"{word!r} not in {message!r}"
    assert len(world.cb.segments) == segments
    assert world.sem.value == value and world.sem.failure is None
    world.device.wait_idle(60)
    for name, buffer in world.guarded():
        if name == "write_only":  # no READ access: read behind the API's back
            data = buffer.allocation.host.read(buffer, 0, buffer.byte_length)
        else:
            data = world.device.transfer_d2h(buffer)
        got = np.frombuffer(data, np.uint8)
        assert np.array_equal(got, world.patterns[name]), f"{name} changed"


def test_available_adapters_never_raises() -> None:
    for implementation in ("no-such", 5, object()):
        assert hal.available_adapters(implementation=implementation) == []  # type: ignore[arg-type]


# -- behaviour changes the table cannot show ------------------------------------------------------


@pytest.mark.parametrize("timeout", [math.inf, 1e10, float(2**70)], ids=["inf", "1e10", "2**70"])
def test_huge_timeouts_wait_until_signalled(device: hal.Device, timeout: float) -> None:
    """A huge or infinite timeout waits like None (it used to raise OverflowError)."""
    import threading

    for wait in (
        lambda s: s.wait(1, timeout),
        lambda s: hal.Fence([(s, 1)]).wait(timeout),
        lambda s: device.wait_semaphores([(s, 1)], timeout=timeout),
        lambda s: device.wait_semaphores([(s, 1), (s, 1)], "any", timeout),
    ):
        semaphore = device.create_semaphore()
        timer = threading.Timer(0.05, semaphore.signal, (1,))
        timer.start()
        wait(semaphore)
        timer.join()
        assert semaphore.query() == 1
    device.wait_idle(timeout)


def test_zero_timeout_polls(device: hal.Device) -> None:
    semaphore = device.create_semaphore()
    with pytest.raises(hal.DeadlineExceededError, match=r"within 0\.0 s"):
        semaphore.wait(1, timeout=0)
    semaphore.wait(0, timeout=0)
    semaphore.wait(0, timeout=np.float32(0.5))


def test_query_buffer_compatibility_agrees_with_allocate_buffer(device: hal.Device) -> None:
    """Never raises; True exactly when allocate_buffer accepts (the allocations are made)."""
    allocator = device.allocator
    arguments: list[dict[str, Any]] = [
        {"size": 4},
        {"size": 0},
        {"size": 4, "usage": U.DEFAULT | U.MAPPING},
        {"size": 4, "usage": 3},
        {"size": 4, "usage": "x"},
        {"size": 4, "usage": 1.5},
        {"size": 4, "usage": None},
        {"size": 4, "usage": 1 << 20},
        {"size": 4, "memory_type": "x"},
        {"size": 4, "memory_type": -1},
        {"size": -1},
        {"size": 4.0},
        {"size": True},
        {"size": None},
        {"size": 2**70},
    ]
    for kwargs in arguments:
        answer = allocator.query_buffer_compatibility(**kwargs)
        try:
            allocator.allocate_buffer(**kwargs).release()
        except hal.HalError:
            assert answer is False, kwargs
        else:
            assert answer is True, kwargs


def test_allocations_near_the_limit_agree_with_the_query() -> None:
    """On a device whose max-buffer-size is not a whole number of words, the largest
    allocation is that limit rounded down to words (allocations are padded to whole words);
    the query says so too, and the tail of the largest buffer is usable."""
    import dataclasses

    with hal.create_device(implementation="null", backend="null") as own:
        own.caps = dataclasses.replace(own.caps, max_buffer_size=1003)
        allocator = own.allocator
        for size in range(990, 1010):
            expected = size <= 1000
            assert allocator.query_buffer_compatibility(size) is expected, size
            if expected:
                buffer = allocator.allocate_buffer(size)
                assert buffer.byte_length == size
                assert buffer.allocation.size <= 1003
                buffer.release()
            else:
                with pytest.raises(hal.ResourceExhaustedError, match="1000 bytes") as info:
                    allocator.allocate_buffer(size)
                assert "max-buffer-size 1003" in str(info.value)
        buffer = own.allocate_buffer(1000)
        own.transfer_h2d(np.full(8, 0xAB, np.uint8), buffer, 992)
        expected_bytes = np.zeros(1000, np.uint8)
        expected_bytes[992:] = 0xAB
        assert np.array_equal(buffer.to_numpy(), expected_bytes)


def test_the_largest_allocation_works(device: hal.Device) -> None:
    """The largest size query_buffer_compatibility accepts is allocatable on the real device
    (lavapipe: max-buffer-size 2**31-1, so 2**31-4 bytes) and its last bytes are writable
    and readable; one byte more is refused by both."""
    limit = device.limits["max-buffer-size"]
    largest = limit & ~3
    allocator = device.allocator
    assert allocator.query_buffer_compatibility(largest)
    assert not allocator.query_buffer_compatibility(largest + 1)
    with pytest.raises(hal.ResourceExhaustedError):
        allocator.allocate_buffer(largest + 1)
    if largest > 1 << 32:
        pytest.skip(f"max-buffer-size {limit} is too big to allocate here")  # not lavapipe
    with device.allocate_buffer(largest) as buffer:
        assert buffer.byte_length == largest
        done = device.create_semaphore()
        device.queue_fill(buffer, largest - 8, 8, 0x01020304, signal=[(done, 1)])
        done.wait(1, 120)
        tail = device.transfer_d2h(buffer, largest - 12)
        assert tail == bytes(4) + bytes([4, 3, 2, 1]) * 2
