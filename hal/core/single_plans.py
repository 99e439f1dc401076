"""Plans of one-command programs, made from a template (the eager round trip of issue 10).

A command buffer of one small fill or copy is the most common eager program, and lowering
it costs far more than the plan it makes (a plan builder, a segment, cost-model lookups,
statistics and notes): 15-20 µs of the round trip. Its plan depends only on the device's caps,
the transfer's offsets, length and pattern, and which allocations it names, never on anything
else of them. :func:`single_plan` therefore lowers each such shape once, on the general path,
keeps that plan with its allocations replaced by placeholders, and makes later plans of the
same shape by putting the actual allocations back: equal, field by field, to what the general
path returns, on every kind of caps (with or without immediates).
"""

from __future__ import annotations

import logging
from typing import Any

from hal.core.batching import batch_transfers
from hal.core.caps import DeviceCaps
from hal.core.lowering import log_plan, lower
from hal.core.plan import ClearBuffer, CopyBuffer, Plan
from hal.core.plan_templates import Mapping, Placeholder, substitutable, substitute
from hal.core.segments import TransferRecord, record_segment
from hal.core.transfer_plans import direct_plan

__all__ = ["NativeStep", "native_steps", "single_plan"]

_log = logging.getLogger("hal")


_TARGET = Placeholder("target")
_SOURCE = Placeholder("source")

_TEMPLATES: dict[tuple[Any, ...], tuple[DeviceCaps, Plan | None]] = {}
"""Template plans by (id(caps), record shape); the caps are kept so their id stays theirs.
None: a shape whose plan has a step the substitution does not cover (the general path)."""
_TEMPLATES_MAX = 4096

NativeStep = tuple[int, int, int, int, int]
"""One native transfer of a template: (role, offset, role, offset, size) of a copy, or
(role, offset, -1, 0, size) of a clear; role 0 is the record's target, 1 its source."""

_NATIVE: dict[tuple[Any, ...], tuple[DeviceCaps, tuple[NativeStep, ...] | None]] = {}
"""By the same keys as ``_TEMPLATES``: the template's steps where they are all native
transfers and the plan has no buffers of its own; None where not."""


def _key(caps: DeviceCaps, record: TransferRecord) -> tuple[Any, ...]:
    if len(record) == 4:
        _, offset, length, word = record
        return (id(caps), offset, length, word)
    source, source_offset, target, target_offset, length = record
    return (id(caps), source_offset, target_offset, length, source is target)


def _mapping(record: TransferRecord, to_placeholders: bool) -> Mapping:
    """Allocation ids to placeholders (making a template) or placeholder ids to allocations."""
    if len(record) == 4:
        target = record[0]
        return {id(target): _TARGET} if to_placeholders else {id(_TARGET): target}
    source, target = record[0], record[2]
    if to_placeholders:
        return {id(source): _SOURCE, id(target): _TARGET}
    return {id(_SOURCE): source, id(_TARGET): target}


def _template(record: TransferRecord, caps: DeviceCaps) -> Plan | None:
    """The plan of ``record`` on the general path, with placeholders for its allocations;
    None where a step is of a kind the substitution does not cover, or an allocation
    appears where the substitution would not find it (then every call lowers)."""
    segments = [record_segment(record)]
    plan = direct_plan(segments, caps)
    if plan is None:
        plan = batch_transfers(lower(segments, caps), caps)
    if not substitutable(plan):
        return None
    template = substitute(plan, _mapping(record, True))
    if any(not isinstance(r, Placeholder) for r in template.resources):
        return None
    return template


def _role(resource: Any) -> int:
    return 0 if resource is _TARGET else 1


def _native(template: Plan | None) -> tuple[NativeStep, ...] | None:
    if template is None or template.staging or template.constants:
        return None
    if template.scratch_size or template.read_scratch_size:
        return None
    steps: list[NativeStep] = []
    for step in template.steps:
        if type(step) is CopyBuffer:
            source, target = step.source, step.target
            roles = (_role(source.resource), source.offset, _role(target.resource))
            steps.append((*roles, target.offset, target.size))
        elif type(step) is ClearBuffer:
            steps.append((_role(step.target.resource), step.target.offset, -1, 0, step.target.size))
        else:
            return None
    return tuple(steps)


def native_steps(record: TransferRecord, caps: DeviceCaps) -> tuple[NativeStep, ...] | None:
    """The native transfers that :func:`single_plan` plans for ``record`` when that plan is
    nothing else (no dispatch, no buffers of its own), by role (see :data:`NativeStep`), so
    a caller can encode them straight into backend calls; None where the plan is more.
    With the ``hal`` logger at debug, logs the plan's lowering record. Pure but for the
    caches and that record; raises nothing (``record`` passed recording's checks)."""
    # _key, inlined (every eager fill or copy asks).
    if len(record) == 4:
        key: tuple[Any, ...] = (id(caps), record[1], record[2], record[3])
    else:
        key = (id(caps), record[1], record[3], record[4], record[0] is record[2])
    entry = _NATIVE.get(key)
    if entry is None or entry[0] is not caps:
        if len(_NATIVE) >= _TEMPLATES_MAX:
            _NATIVE.clear()
        entry = _NATIVE[key] = (caps, _native(_template_of(key, record, caps)))
    steps = entry[1]
    if steps is not None and _log.isEnabledFor(logging.DEBUG):
        single_plan(record, caps)  # the lowering record its plan logs, as the general path
    return steps


def _template_of(key: tuple[Any, ...], record: TransferRecord, caps: DeviceCaps) -> Plan | None:
    entry = _TEMPLATES.get(key)
    if entry is None or entry[0] is not caps:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        entry = _TEMPLATES[key] = (caps, _template(record, caps))
    return entry[1]


def single_plan(record: TransferRecord, caps: DeviceCaps) -> Plan:
    """The plan ``batch_transfers(lower([record_segment(record)], caps), caps)`` returns (or
    :func:`direct_plan`'s, which equals it), from a template per shape. Pure but for the
    template cache; raises nothing of its own (``record`` passed recording's checks)."""
    template = _template_of(_key(caps, record), record, caps)
    if template is None:
        segments = [record_segment(record)]
        plan = direct_plan(segments, caps)
        return batch_transfers(lower(segments, caps), caps) if plan is None else plan
    plan = substitute(template, _mapping(record, False))
    if _log.isEnabledFor(logging.DEBUG):
        log_plan(1, plan, caps)
    return plan
