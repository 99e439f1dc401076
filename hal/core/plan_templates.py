"""Template plans: a plan with placeholders for the objects it names, and the substitution
that puts actual objects back (hal/core/single_plans.py, hal/core/dispatch_plans.py).

A small eager program's plan depends on its objects (allocations, executables) only through
which of them each region and dispatch names, so such a plan is lowered once per shape, kept
with placeholders (holding no object: templates outlive buffers and executables), and
:func:`substitute` makes later plans of the shape: everything but the named objects is
shared with the template.
"""

from __future__ import annotations

from typing import Any

from hal.core.plan import ClearBuffer, ComputePass, CopyBuffer, Dispatch, Plan, Region, Step

__all__ = ["Placeholder", "substitutable", "substitute"]


class Placeholder:
    """Stands for one object of a template plan (holds none)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<placeholder {self.name}>"


Mapping = dict[int, Any]
"""id() of an object (or placeholder) to what replaces it; objects not named stay."""


def _region(region: Region, mapping: Mapping) -> Region:
    new = mapping.get(id(region.resource))
    return region if new is None else Region(new, region.offset, region.size)


def _dispatch(d: Dispatch, mapping: Mapping) -> Dispatch:
    bindings = tuple([(b, kind, _region(r, mapping)) for b, kind, r in d.bindings])
    indirect = None if d.indirect is None else _region(d.indirect, mapping)
    return Dispatch(
        mapping.get(id(d.kernel), d.kernel), d.entry_point, bindings, d.constants,
        d.constants_offset, d.workgroups, indirect, d.label,
    )  # fmt: skip


def _step(step: Step, mapping: Mapping) -> Step:
    if type(step) is ComputePass:
        return ComputePass(tuple([_dispatch(d, mapping) for d in step.dispatches]))
    if type(step) is ClearBuffer:
        return ClearBuffer(_region(step.target, mapping))
    if type(step) is CopyBuffer:
        return CopyBuffer(_region(step.source, mapping), _region(step.target, mapping))
    raise TypeError(f"substitute: a {type(step).__name__} step is not substituted")


def substitutable(plan: Plan) -> bool:
    """Whether every step of ``plan`` is of a kind :func:`substitute` covers."""
    return all(type(s) in (ComputePass, ClearBuffer, CopyBuffer) for s in plan.steps)


def substitute(plan: Plan, mapping: Mapping) -> Plan:
    """``plan`` with the objects ``mapping`` names replaced in every region, dispatch kernel
    and the resources; everything else shared. Raises TypeError for a step of another kind
    (callers check :func:`substitutable` when they make a template)."""
    steps = tuple([_step(s, mapping) for s in plan.steps])
    resources = frozenset([mapping.get(id(r), r) for r in plan.resources])
    return Plan(
        steps, plan.staging, plan.constants, plan.scratch_size, plan.read_scratch_size,
        resources, plan.stats, plan.notes,
    )  # fmt: skip
