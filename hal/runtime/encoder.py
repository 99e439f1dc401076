"""The encoder: replays a :class:`~hal.core.plan.Plan` onto a wgpu device. It makes no decisions.

``compile_plan`` resolves a plan once into a flat list of native encoder calls with every wgpu
object bound (pipelines, cached bind groups, the plan's own buffers); ``Program.encode``
replays that list into a fresh command encoder for each submission, because wgpu command
buffers are single-use.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import wgpu

from hal.backends import wgpu_native as native
from hal.core.builtins import BuiltinKernel
from hal.core.plan import AuxBuffer, ClearBuffer, ComputePass, CopyBuffer, Plan, Region
from hal.errors import InvalidArgumentError

if TYPE_CHECKING:
    from hal.runtime.buffer import Buffer
    from hal.runtime.device import Device

__all__ = ["BindGroupCache", "Program", "compile_plan"]


class BindGroupCache:
    """Bind groups keyed by (layout, (binding, buffer, offset, size)...), shared by every
    command buffer of a device; entries of a buffer are dropped when it is released."""

    def __init__(self, wgpu_device: Any) -> None:
        self._device = wgpu_device
        # Re-entrant: a Program's finaliser (forget_wgpu) can run from garbage collection
        # inside get() while the lock is held, which deadlocked an 8-thread stress test.
        self._lock = threading.RLock()
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

    ``steps`` is the flat call list: for each compute pass the calls made inside it, for each
    transfer the one encoder call. Owns the plan's STAGING/CONSTANTS buffers (uploaded once
    at compile time) and scratch buffers, and keeps every wgpu object its calls use alive.
    """

    __slots__ = ("__weakref__", "_keepalive", "_steps", "aux", "plan")

    def __init__(
        self,
        plan: Plan,
        steps: list[tuple[bool, list[native.Call]]],
        aux: dict[AuxBuffer, Any],
        keepalive: list[Any],
        cache: BindGroupCache,
    ) -> None:
        self.plan = plan
        self._steps = steps
        self.aux = aux
        self._keepalive = keepalive
        for buffer in aux.values():
            weakref.finalize(self, cache.forget_wgpu, buffer)

    def encode(self, wgpu_device: Any, label: str = "hal") -> Any:
        """Record the program into a new wgpu command buffer. Raises InvalidArgumentError
        if wgpu rejects it (errors surface at ``encoder.finish()``)."""
        encoder = wgpu_device.create_command_encoder(label=label)
        target = native.handle(encoder)
        for is_pass, calls in self._steps:
            if is_pass:
                compute = encoder.begin_compute_pass()
                inside = native.handle(compute)
                for function, args in calls:
                    function(inside, *args)
                compute.end()
            else:
                for function, args in calls:
                    function(target, *args)
        try:
            return encoder.finish()
        except wgpu.GPUError as error:
            raise InvalidArgumentError(f"queue_execute: wgpu rejected the plan: {error}") from None

    def encode_profiled(self, wgpu_device: Any, timer: Any, label: str = "hal") -> Any:
        """``encode`` with ``timer`` (a profiler's ``_CommandTimer``, hal/profiling.py) called
        around every dispatch and native transfer to write timestamps. A separate path, used
        only while a profile is active, so ``encode`` itself stays as it is. Raises
        InvalidArgumentError if wgpu rejects it."""
        encoder = wgpu_device.create_command_encoder(label=label)
        target = native.handle(encoder)
        for (is_pass, calls), step in zip(self._steps, self.plan.steps, strict=True):
            if is_pass:
                assert isinstance(step, ComputePass)
                compute = encoder.begin_compute_pass(timestamp_writes=timer.pass_writes(step))
                inside = native.handle(compute)
                dispatches = iter(step.dispatches)  # one dispatch call per plan dispatch
                for call in calls:
                    if native.is_dispatch(call):
                        timer.before(compute, step, next(dispatches))
                        call[0](inside, *call[1])
                        timer.after(compute)
                    else:
                        call[0](inside, *call[1])
                compute.end()
            else:
                timer.before(encoder, step, None)
                for function, args in calls:
                    function(target, *args)
                timer.after(encoder)
        timer.close(encoder)
        try:
            return encoder.finish()
        except wgpu.GPUError as error:
            raise InvalidArgumentError(f"queue_execute: wgpu rejected the plan: {error}") from None


def _create_aux(plan: Plan, device: Device) -> dict[AuxBuffer, Any]:
    """Create the plan's own buffers: upload STAGING and CONSTANTS, zero the scratch ones."""
    wgpu_device = device._wgpu
    usage = (
        wgpu.BufferUsage.STORAGE
        | wgpu.BufferUsage.UNIFORM
        | wgpu.BufferUsage.COPY_SRC
        | wgpu.BufferUsage.COPY_DST
        | wgpu.BufferUsage.INDIRECT
    )
    aux: dict[AuxBuffer, Any] = {}
    for kind, data in ((AuxBuffer.STAGING, plan.staging), (AuxBuffer.CONSTANTS, plan.constants)):
        if data:
            buffer = wgpu_device.create_buffer(
                size=max(4, -(-len(data) // 4) * 4), usage=usage, label=f"hal.{kind.value}"
            )
            wgpu_device.queue.write_buffer(buffer, 0, data + bytes(-len(data) % 4))
            aux[kind] = buffer
    for kind, size in (
        (AuxBuffer.SCRATCH, plan.scratch_size),
        (AuxBuffer.READ_SCRATCH, plan.read_scratch_size),
    ):
        if size:
            buffer = wgpu_device.create_buffer(size=size, usage=usage, label=f"hal.{kind.value}")
            device._queue.zero_new_wgpu_buffer(buffer)
            aux[kind] = buffer
    return aux


def compile_plan(plan: Plan, device: Device) -> Program:
    """Bind ``plan`` to ``device``: look up pipelines and bind groups, create the plan's own
    buffers, and flatten every step into native calls. Redundant pipeline and bind group
    changes inside a pass are dropped here, once, instead of at every submission."""
    aux = _create_aux(plan, device)

    def wgpu_buffer(region: Region) -> Any:
        resource = region.resource
        if isinstance(resource, AuxBuffer):
            return aux[resource]
        return resource._allocation.wgpu_buffer

    bind_groups = device._bind_groups
    keepalive: list[Any] = []
    steps: list[tuple[bool, list[native.Call]]] = []
    for step in plan.steps:
        if isinstance(step, CopyBuffer):
            source, target = wgpu_buffer(step.source), wgpu_buffer(step.target)
            keepalive += (source, target)
            steps.append(
                (
                    False,
                    [
                        native.copy_buffer(
                            source, step.source.offset, target, step.target.offset, step.target.size
                        )
                    ],
                )
            )
            continue
        if isinstance(step, ClearBuffer):
            target = wgpu_buffer(step.target)
            keepalive.append(target)
            steps.append(
                (False, [native.clear_buffer(target, step.target.offset, step.target.size)])
            )
            continue
        assert isinstance(step, ComputePass)
        calls: list[native.Call] = []
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
                calls.append(native.set_pipeline(pipeline))
                keepalive.append(pipeline)
                current_pipeline = pipeline
                current_groups = {}
            if d.bindings:
                group = bind_groups.get(
                    layout, tuple((b, wgpu_buffer(r), r.offset, r.size) for b, _, r in d.bindings)
                )
                if current_groups.get(0) is not group:
                    calls.append(native.set_bind_group(0, group))
                    keepalive.append(group)
                    current_groups[0] = group
            if d.constants_offset is not None and constants_layout is not None:
                size = executable.layout(d.entry_point).constants_size
                group = bind_groups.get(constants_layout, ((0, aux[AuxBuffer.CONSTANTS], 0, size),))
                calls.append(native.set_bind_group(1, group, (d.constants_offset,)))
                keepalive.append(group)
            elif d.constants:
                calls.append(native.set_immediates(d.constants))
            if d.indirect is not None:
                buffer = wgpu_buffer(d.indirect)
                keepalive.append(buffer)
                calls.append(native.dispatch_indirect(buffer, d.indirect.offset))
            else:
                assert d.workgroups is not None
                calls.append(native.dispatch(*d.workgroups))
        steps.append((True, calls))
    return Program(plan, steps, aux, keepalive, bind_groups)
