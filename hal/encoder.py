"""The encoder: replays a :class:`~hal.plan.Plan` onto a wgpu device. It makes no decisions.

``compile_plan`` resolves a plan once into a flat list of encoder calls with every wgpu object
bound (pipelines, bind groups, the plan's STAGING and SCRATCH buffers); ``Program.encode``
replays that list into a fresh command encoder for each submission, because wgpu command
buffers are single-use.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import wgpu

from hal.builtins import BuiltinKernel
from hal.errors import InvalidArgumentError
from hal.plan import AuxBuffer, ClearBuffer, ComputePass, CopyBuffer, Plan, Region

if TYPE_CHECKING:
    from hal.buffer import Buffer
    from hal.device import Device

__all__ = ["BindGroupCache", "Program", "compile_plan"]

# Opcodes of a compiled program.
_BEGIN_PASS, _END_PASS, _PIPELINE, _BIND, _IMMEDIATES, _DISPATCH, _INDIRECT, _COPY, _CLEAR = range(
    9
)


class BindGroupCache:
    """Bind groups keyed by (layout, (binding, buffer, offset, size)...), shared by every
    command buffer of a device; entries of a buffer are dropped when it is released."""

    def __init__(self, wgpu_device: Any) -> None:
        self._device = wgpu_device
        self._lock = threading.Lock()
        self._groups: dict[tuple[Any, ...], Any] = {}
        self._by_buffer: dict[int, set[tuple[Any, ...]]] = {}

    def get(self, layout: Any, entries: tuple[tuple[int, Any, int, int], ...]) -> Any:
        """The bind group of ``layout`` for (binding, wgpu buffer, offset, size) entries."""
        key = (id(layout), *((b, id(buf), off, size) for b, buf, off, size in entries))
        found = self._groups.get(key)
        if found is not None:
            return found[0]
        group = self._device.create_bind_group(
            layout=layout,
            entries=[
                {"binding": b, "resource": {"buffer": buf, "offset": off, "size": size}}
                for b, buf, off, size in entries
            ],
        )
        with self._lock:
            # Holding the layout and buffers keeps their ids from being reused by new objects
            # while the entry exists.
            self._groups[key] = (group, layout, tuple(e[1] for e in entries))
            for _, buf, _, _ in entries:
                self._by_buffer.setdefault(id(buf), set()).add(key)
        return group

    def forget(self, buffer: Buffer) -> None:
        """Drop the bind groups that reference ``buffer``'s allocation."""
        self.forget_wgpu(buffer._allocation.wgpu_buffer)

    def forget_wgpu(self, wgpu_buffer: Any) -> None:
        """Drop the bind groups that reference ``wgpu_buffer``."""
        with self._lock:
            for key in self._by_buffer.pop(id(wgpu_buffer), ()):
                self._groups.pop(key, None)

    def clear(self) -> None:
        """Drop every cached bind group."""
        with self._lock:
            self._groups.clear()
            self._by_buffer.clear()


class Program:
    """A plan bound to wgpu objects, ready to be encoded any number of times.

    Owns the plan's STAGING buffer (uploaded once at compile time) and scratch buffers.
    """

    __slots__ = ("__weakref__", "_ops", "aux", "plan")

    def __init__(
        self,
        plan: Plan,
        ops: list[tuple[Any, ...]],
        aux: dict[AuxBuffer, Any],
        cache: BindGroupCache,
    ) -> None:
        self.plan = plan
        self._ops = ops
        self.aux = aux
        for buffer in aux.values():
            weakref.finalize(self, cache.forget_wgpu, buffer)

    def encode(self, wgpu_device: Any, label: str = "hal") -> Any:
        """Record the program into a new wgpu command buffer. Raises InvalidArgumentError
        if wgpu rejects it (mapped back from ``encoder.finish()``)."""
        encoder = wgpu_device.create_command_encoder(label=label)
        compute: Any = None
        for op in self._ops:
            code = op[0]
            if code == _DISPATCH:
                compute.dispatch_workgroups(op[1], op[2], op[3])
            elif code == _BIND:
                compute.set_bind_group(op[1], op[2], op[3])
            elif code == _PIPELINE:
                compute.set_pipeline(op[1])
            elif code == _IMMEDIATES:
                compute.set_immediates(0, op[1], 0, len(op[1]))
            elif code == _BEGIN_PASS:
                compute = encoder.begin_compute_pass()
            elif code == _END_PASS:
                compute.end()
                compute = None
            elif code == _INDIRECT:
                compute.dispatch_workgroups_indirect(op[1], op[2])
            elif code == _COPY:
                encoder.copy_buffer_to_buffer(op[1], op[2], op[3], op[4], op[5])
            else:
                encoder.clear_buffer(op[1], op[2], op[3])
        try:
            return encoder.finish()
        except wgpu.GPUError as error:
            raise InvalidArgumentError(f"queue_execute: wgpu rejected the plan: {error}") from None


def compile_plan(plan: Plan, device: Device) -> Program:
    """Bind ``plan`` to ``device``: look up pipelines and bind groups, create and upload the
    STAGING buffer and create the SCRATCH buffer."""
    wgpu_device = device._wgpu
    aux: dict[AuxBuffer, Any] = {}
    for kind, data in ((AuxBuffer.STAGING, plan.staging), (AuxBuffer.CONSTANTS, plan.constants)):
        if data:
            buffer = wgpu_device.create_buffer(
                size=max(4, -(-len(data) // 4) * 4),
                usage=wgpu.BufferUsage.STORAGE
                | wgpu.BufferUsage.UNIFORM
                | wgpu.BufferUsage.COPY_SRC
                | wgpu.BufferUsage.COPY_DST,
                label=f"hal.{kind.value}",
            )
            wgpu_device.queue.write_buffer(buffer, 0, data + bytes(-len(data) % 4))
            aux[kind] = buffer
    for kind, size in (
        (AuxBuffer.SCRATCH, plan.scratch_size),
        (AuxBuffer.READ_SCRATCH, plan.read_scratch_size),
    ):
        if size:
            scratch = wgpu_device.create_buffer(
                size=size,
                usage=wgpu.BufferUsage.STORAGE
                | wgpu.BufferUsage.UNIFORM
                | wgpu.BufferUsage.COPY_SRC
                | wgpu.BufferUsage.COPY_DST
                | wgpu.BufferUsage.INDIRECT,
                label=f"hal.{kind.value}",
            )
            device._queue.zero_new_wgpu_buffer(scratch)
            aux[kind] = scratch

    def wgpu_buffer(region: Region) -> Any:
        resource = region.resource
        if isinstance(resource, AuxBuffer):
            return aux[resource]
        return resource._allocation.wgpu_buffer

    bind_groups = device._bind_groups
    ops: list[tuple[Any, ...]] = []
    for step in plan.steps:
        if isinstance(step, CopyBuffer):
            ops.append(
                (
                    _COPY,
                    wgpu_buffer(step.source),
                    step.source.offset,
                    wgpu_buffer(step.target),
                    step.target.offset,
                    step.target.size,
                )
            )
            continue
        if isinstance(step, ClearBuffer):
            ops.append((_CLEAR, wgpu_buffer(step.target), step.target.offset, step.target.size))
            continue
        assert isinstance(step, ComputePass)
        ops.append((_BEGIN_PASS,))
        current_pipeline = None
        current_groups: dict[int, Any] = {}
        for d in step.dispatches:
            executable = (
                device._builtins.executable(d.kernel)
                if isinstance(d.kernel, BuiltinKernel)
                else d.kernel
            )
            pipeline, layout, constants_layout = executable.pipeline(d.entry_point)
            if pipeline is not current_pipeline:
                ops.append((_PIPELINE, pipeline))
                current_pipeline = pipeline
                current_groups = {}
            if d.bindings:
                group = bind_groups.get(
                    layout, tuple((b, wgpu_buffer(r), r.offset, r.size) for b, _, r in d.bindings)
                )
                if current_groups.get(0) is not group:
                    ops.append((_BIND, 0, group, ()))
                    current_groups[0] = group
            if d.constants_offset is not None and constants_layout is not None:
                size = executable.layout(d.entry_point).constants_size
                group = bind_groups.get(constants_layout, ((0, aux[AuxBuffer.CONSTANTS], 0, size),))
                ops.append((_BIND, 1, group, (d.constants_offset,)))
                current_groups[1] = None
            elif d.constants:
                ops.append((_IMMEDIATES, d.constants))
            if d.indirect is not None:
                ops.append((_INDIRECT, wgpu_buffer(d.indirect), d.indirect.offset))
            else:
                assert d.workgroups is not None
                ops.append((_DISPATCH, *d.workgroups))
        ops.append((_END_PASS,))
    return Program(plan, ops, aux, bind_groups)
