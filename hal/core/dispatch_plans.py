"""Plans of small dispatch programs, made from a template (the eager dispatch of issue 10).

A one-shot command buffer of one dispatch and a barrier (or a few such pairs) is what an
eager framework submits for nearly every kernel call, and lowering it costs far more than the
plan it makes: a lowering state, regions, an item per dispatch, scheduling, statistics. Its
plan depends only on the device's caps, each dispatch's executable, entry point, grid,
constants and binding ranges, where the barriers are, and which bindings name the same
allocation, never on anything else of the allocations. :func:`dispatch_plan` therefore
lowers each such shape once, on the general path, keeps that plan with its allocations
replaced by placeholders, and makes later plans of the same shape by putting the actual
allocations back: equal, field by field, to what the general path returns.

Shapes whose plan uses the plan's own buffers (shadowed bindings, staged constants) or notes
are not templated: those plans go down the general path every time.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hal.core.batching import batch_transfers
from hal.core.caps import DeviceCaps
from hal.core.frozen import constructor
from hal.core.lowering import log_plan, lower
from hal.core.plan import ComputePass, Plan
from hal.core.plan_templates import Placeholder, substitute
from hal.core.segments import BarrierSegment, DispatchSegment, Segment

__all__ = [
    "DispatchTemplate",
    "dispatch_plan",
    "dispatch_program",
    "dispatch_template",
    "placeholder_index",
]

_log = logging.getLogger("hal")

_MAX_SEGMENTS = 32
"""Programs longer than this are lowered (a template per long program would rarely repeat)."""

_TEMPLATES: dict[tuple[Any, ...], tuple[DeviceCaps, list[weakref.ref[Any]], Plan | None]] = {}
"""Template plans by (id(caps), program shape); each entry keeps the caps (so their id stays
theirs) and weak references to the executables whose ids the key names (checked on use: a
template keeps no executable alive). None: a shape that is not templated (the general
path)."""
_TEMPLATES_MAX = 1024


_PLACEHOLDERS = [Placeholder(f"object {i}") for i in range(_MAX_SEGMENTS * 8)]
"""The i-th distinct object (executable or allocation) of a template plan."""
_INDEX = {id(p): i for i, p in enumerate(_PLACEHOLDERS)}


def dispatch_program(segments: Sequence[Segment]) -> bool:
    """Whether ``segments`` are a short program of static dispatches and plain barriers,
    every binding resolved: the programs :func:`dispatch_plan` takes."""
    if not segments or len(segments) > _MAX_SEGMENTS:
        return False
    for s in segments:
        kind = type(s)
        if kind is DispatchSegment:
            if s.indirect is not None or s.workgroups is None:  # type: ignore[union-attr]
                return False
        elif kind is not BarrierSegment or s.buffer_barriers:  # type: ignore[union-attr]
            return False
    return True


def _shape(
    segments: Sequence[Segment], caps: DeviceCaps
) -> tuple[tuple[Any, ...], list[Any], list[Any], list[Any]] | None:
    """The template key of ``segments``, the distinct objects it names (executables and
    allocations, in order of first appearance: the key names them by position), the
    executables among them, each once (the key holds their ids), and the allocations among
    them (in the same order); None where
    a binding is unresolved or the program names more objects than there are placeholders."""
    key: list[Any] = [id(caps)]
    objects: list[Any] = []
    executables: list[Any] = []
    buffers: list[Any] = []
    index: dict[int, int] = {}
    barrier: Any = None
    barrier_key: Any = None
    for s in segments:
        if type(s) is BarrierSegment:
            if s is not barrier:  # a program repeats one barrier object: keyed once
                barrier = s
                barrier_key = (s.source_stage, s.target_stage, s.flags, s.memory_barriers)
            key.append(barrier_key)
            continue
        assert type(s) is DispatchSegment
        bindings: list[Any] = []
        for ref in s.bindings:
            if ref is None:
                bindings.append(None)
                continue
            buffer = ref.buffer
            if buffer is None or ref.length is None:
                return None
            found = index.get(id(buffer))
            if found is None:
                found = index[id(buffer)] = len(objects)
                objects.append(buffer)
                buffers.append(buffer)
            bindings.append((found, ref.offset, ref.length))
        # The layout is the executable's own for the entry point: named by the two.
        executable = s.executable
        kernel = index.get(id(executable))
        if kernel is None:
            kernel = index[id(executable)] = len(objects)
            objects.append(executable)
            executables.append(executable)
        key.append((id(executable), kernel, s.entry_point, s.workgroups, s.constants, *bindings))
    if len(objects) > len(_PLACEHOLDERS):
        return None
    return tuple(key), objects, executables, buffers


def _same(held: list[weakref.ref[Any]], executables: list[Any]) -> bool:
    """Whether a template's executables are still these (ids may be reused once dead)."""
    if len(held) != len(executables):
        return False
    # A loop, not all() over a generator: this runs at every end() of an eager call.
    for w, e in zip(held, executables):  # noqa: B905, SIM110 - equal lengths; no generator
        if w() is not e:
            return False
    return True


def _template(plan: Plan, objects: list[Any]) -> Plan | None:
    """``plan`` (the general path's) with placeholders for ``objects``; None where it is
    not only compute passes of those executables on those allocations (shadowing, notes,
    staged constants, the plan's own buffers)."""
    if plan.notes or plan.scratch_size or plan.read_scratch_size or plan.staging:
        return None
    if any(type(s) is not ComputePass for s in plan.steps):
        return None
    mapping = {id(a): _PLACEHOLDERS[i] for i, a in enumerate(objects)}
    for step in plan.steps:
        for d in step.dispatches:  # type: ignore[union-attr]
            if d.indirect is not None or id(d.kernel) not in mapping:
                return None
            if any(id(r.resource) not in mapping for *_, r in d.bindings):
                return None
    if any(id(r) not in mapping for r in plan.resources):
        return None
    return substitute(plan, mapping)


def _general(segments: Sequence[Segment], caps: DeviceCaps) -> Plan:
    return batch_transfers(lower(segments, caps), caps)


@dataclass(frozen=True, slots=True)
class DispatchTemplate:
    """A program's template: ``key`` names its shape, ``template`` is the shape's plan (shared
    by every program of the shape) with a placeholder for each of ``objects`` (executables
    and allocations in order of first appearance; :func:`placeholder_index` says which);
    ``resources`` the allocations among them, in the same order."""

    key: tuple[Any, ...]
    objects: tuple[Any, ...]
    template: Plan
    resources: tuple[Any, ...]

    def plan(self) -> Plan:
        """The program's plan: the template with its objects put back (what the general
        path lowers, field by field). Raises nothing."""
        return substitute(
            self.template, {id(_PLACEHOLDERS[i]): o for i, o in enumerate(self.objects)}
        )


_make_template = constructor(DispatchTemplate)


def placeholder_index(thing: Any) -> int | None:
    """The index of the template object that ``thing`` stands for, if it is a placeholder
    of a template plan (None otherwise)."""
    return _INDEX.get(id(thing))


def dispatch_template(segments: Sequence[Segment], caps: DeviceCaps) -> DispatchTemplate | Plan:
    """The template of a program that :func:`dispatch_program` accepts (made on first use:
    the general path lowers the shape once), or, for a shape that is not templated, the
    plan the general path lowers. Pure but for the template cache; raises what lowering
    raises (nothing, for recorded segments)."""
    shape = _shape(segments, caps)
    if shape is None:
        return _general(segments, caps)
    key, objects, executables, buffers = shape
    entry = _TEMPLATES.get(key)
    if entry is None or entry[0] is not caps or not _same(entry[1], executables):
        plan = _general(segments, caps)
        entry = _remember(key, caps, executables, plan, objects)
        if entry[2] is None:
            return plan
    template = entry[2]
    if template is None:
        return _general(segments, caps)
    found = _make_template(key, tuple(objects), template, tuple(buffers))
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(len(segments), found.plan(), caps)
    return found


def _remember(
    key: tuple[Any, ...], caps: DeviceCaps, executables: list[Any], plan: Plan, objects: list[Any]
) -> tuple[DeviceCaps, list[weakref.ref[Any]], Plan | None]:
    """Keep the template of ``plan`` (the general path's) under ``key``; returns the entry."""
    if len(_TEMPLATES) >= _TEMPLATES_MAX:
        _TEMPLATES.clear()
    held = [weakref.ref(e) for e in executables]
    entry = _TEMPLATES[key] = (caps, held, _template(plan, objects))
    return entry


def dispatch_plan(segments: Sequence[Segment], caps: DeviceCaps) -> Plan:
    """The plan ``batch_transfers(lower(segments, caps), caps)`` returns for a program that
    :func:`dispatch_program` accepts, from a template per shape. Pure but for the template
    cache (which holds no executable or allocation); raises what lowering raises (nothing,
    for recorded segments)."""
    shape = _shape(segments, caps)
    if shape is None:
        return _general(segments, caps)
    key, objects, executables, _ = shape
    entry = _TEMPLATES.get(key)
    if entry is not None and (entry[0] is not caps or not _same(entry[1], executables)):
        entry = None
    if entry is None:
        plan = _general(segments, caps)
        _remember(key, caps, executables, plan, objects)
        return plan
    template = entry[2]
    if template is None:
        return _general(segments, caps)
    plan = substitute(template, {id(_PLACEHOLDERS[i]): o for i, o in enumerate(objects)})
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(len(segments), plan, caps)
    return plan
