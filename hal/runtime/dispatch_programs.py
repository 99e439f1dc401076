"""Programs of a short dispatch program planned from a template (the eager kernel call of
issue 10), encoded straight into backend calls.

A one-shot command buffer of a few dispatches and barriers has a plan made from its shape's
template (hal/core/dispatch_plans.py). Compiling it is the same work for every program of
the shape but for the bind groups: the pipelines, immediates and dispatch calls, and where a
bind group is set (redundant changes dropped), depend only on the template. A device keeps
each template's :class:`Recipe` — those calls, and per bind group the layout and which
template object, offset and size each entry names — so a submission costs one lookup in the
device's bind group cache per group and a list per pass. The plan itself (``cb.plan``,
``cb.stats``, ``dump``), the compiled program a profile needs and the culprit search of a
wgpu rejection are the general path's (:class:`hal.runtime.programs.Programs`), made on
first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.core.dispatch_plans import DispatchTemplate, placeholder_index
from hal.core.plan import ComputePass
from hal.runtime.call_programs import CallsProgram
from hal.runtime.executable import Executable
from hal.runtime.programs import CheckedProgram, Programs, wgpu_failure

if TYPE_CHECKING:
    from hal.core.plan import Plan
    from hal.core.refs import BufferLike
    from hal.core.segments import Segment
    from hal.runtime.buffer import Buffer
    from hal.runtime.device import Device

__all__ = ["DispatchProgram", "DispatchPrograms", "GroupSite", "Recipe", "recipe_for"]

_WHAT = "queue_execute"
_RECIPES_MAX = 1024
"""Recipes a device keeps (all dropped when full: a shape rarely stops repeating)."""


class GroupSite:
    """Where a pass sets a bind group: its layout and (binding, object index, offset, size)
    entries (the object is the template's, an allocation)."""

    __slots__ = ("entries", "layout")

    def __init__(self, layout: Any, entries: tuple[tuple[int, int, int, int], ...]) -> None:
        self.layout = layout
        self.entries = entries


class Recipe:
    """The compiled form of one template plan on one device: per compute pass its calls
    (a :class:`GroupSite` at each position that sets a bind group, listed in ``sites`` as
    (pass, position, site)), the object indices of the allocations it binds and of the
    plan's resources. Holds pipelines and calls; ``last`` the latest program's calls and
    the allocations they bind (never a hal Buffer)."""

    __slots__ = ("allocations", "last", "passes", "resource_indices", "sites", "template")

    def __init__(
        self,
        template: Plan,
        passes: list[list[Any]],
        sites: list[tuple[int, int, GroupSite]],
        allocations: tuple[int, ...],
        resource_indices: tuple[int, ...],
    ) -> None:
        self.template = template
        self.passes = passes
        self.sites = sites
        self.allocations = allocations
        self.resource_indices = resource_indices
        # The latest program's (allocations, calls). The allocations are held, so an
        # identity match is the same live buffers: a released one fails check_alive first,
        # and a new buffer never has a held allocation. Not the backend handles: the free
        # pool (hal/runtime/buffer_pool.py) gives a released buffer's handle to a new
        # allocation, whose bind groups are new (the old ones were forgotten at release).
        self.last: tuple[tuple[Any, ...], list[Any]] | None = None


def _index(thing: Any) -> int:
    index = placeholder_index(thing)
    assert index is not None, "a template names only placeholders"
    return index


def _pass(
    step: ComputePass, objects: tuple[Any, ...], device: Device, index: int,
    sites: list[tuple[int, int, GroupSite]],
) -> list[Any] | None:  # fmt: skip
    """The calls of one templated pass (step ``index``), as ``compile_plan``'s
    ``_pass_calls`` makes them, a GroupSite where a bind group is set (appended to
    ``sites``); None for a dispatch a recipe does not cover."""
    backend = device.encoding.backend
    calls: list[Any] = []
    current_pipeline = None
    current_group: tuple[Any, ...] | None = None
    made: dict[tuple[Any, ...], GroupSite] = {}
    immediates: dict[bytes, Any] = {}
    dispatches: dict[tuple[int, int, int], Any] = {}
    for d in step.dispatches:
        executable = objects[_index(d.kernel)]
        if d.indirect is not None or d.constants_offset is not None or d.workgroups is None:
            return None
        if type(executable) is not Executable or executable.device is not device:
            return None
        pipeline, layout, _ = executable.pipeline(d.entry_point)
        if pipeline is not current_pipeline:
            calls.append(backend.set_pipeline(pipeline))
            current_pipeline = pipeline
            current_group = None
        if d.bindings:
            entries = tuple([(b, _index(r.resource), r.offset, r.size) for b, _, r in d.bindings])
            # Equal entries name the same allocations: the cache's one bind group.
            key = (id(layout), entries)
            if key != current_group:
                site = made.get(key)
                if site is None:
                    site = made[key] = GroupSite(layout, entries)
                sites.append((index, len(calls), site))
                calls.append(site)
                current_group = key
        if d.constants:
            call = immediates.get(d.constants)
            if call is None:
                call = immediates[d.constants] = backend.set_immediates(d.constants)
            calls.append(call)
        call = dispatches.get(d.workgroups)
        if call is None:
            call = dispatches[d.workgroups] = backend.dispatch(*d.workgroups)
        calls.append(call)
    return calls


def _build(template: DispatchTemplate, device: Device) -> Recipe | None:
    """The recipe of ``template`` on ``device`` from this program's executables (the key
    names them: every program of the key has the same ones); None where the plan needs the
    plan's own buffers (staged constants) or has a dispatch a recipe does not cover."""
    plan = template.template
    if plan.constants or plan.staging:
        return None
    passes: list[list[Any]] = []
    sites: list[tuple[int, int, GroupSite]] = []
    for index, step in enumerate(plan.steps):
        if type(step) is not ComputePass:
            return None
        calls = _pass(step, template.objects, device, index, sites)
        if calls is None:
            return None
        passes.append(calls)
    allocations = sorted({i for _, _, site in sites for _, i, _, _ in site.entries})
    resources = tuple(sorted({_index(r) for r in plan.resources}))
    return Recipe(plan, passes, sites, tuple(allocations), resources)


_MISSING: Any = object()


def recipe_for(device: Device, template: DispatchTemplate) -> Recipe | None:
    """The device's recipe of ``template`` (built on first use); None where the template
    is not one a recipe covers. Raises BackendError (a pipeline could not be created: the
    device was lost)."""
    recipes: dict[tuple[Any, ...], Recipe | None] = device.dispatch_recipes
    recipe = recipes.get(template.key, _MISSING)
    # The same template plan: a key whose template was remade (its executables' ids reused)
    # gets a new recipe.
    if recipe is None or (recipe is not _MISSING and recipe.template is template.template):
        return recipe
    recipe = _build(template, device)
    if len(recipes) >= _RECIPES_MAX:
        recipes.clear()
    recipes[template.key] = recipe
    return recipe


class DispatchPrograms:
    """The programs of an ended command buffer of a templated dispatch program: ``segments``
    the recorded ones, ``views`` the subspans they name, ``template`` the program's template
    (its device's recipe is looked up on the first :meth:`prepare`, where the general path
    compiles: a pipeline created there fails there). Raises nothing at construction."""

    __slots__ = ("_full", "_program", "_segments", "device", "resources", "template", "views")

    def __init__(
        self,
        device: Device,
        segments: Sequence[Segment],
        views: tuple[BufferLike, ...],
        template: DispatchTemplate,
    ) -> None:
        self.device = device
        self._segments = segments
        self.views = views
        self.template = template
        # The allocations among the template's objects: the plan's resources.
        self.resources: tuple[Buffer, ...] = template.resources
        self._full: Programs | None = None
        self._program: DispatchProgram | CheckedProgram | None = None

    def full(self) -> Programs:
        """The general path's programs of the same command buffer (made once)."""
        full = self._full
        if full is None:
            full = self._full = Programs(
                self.device, self._segments, self.views, None, self.template.plan()
            )
        return full

    @property
    def plan(self) -> Plan:
        """The plan, as the general path lowers it (made on first use)."""
        plan = self.full().plan
        assert plan is not None
        return plan

    def culprit_segments(self) -> Sequence[Segment]:
        """The command buffer's segments (for naming a rejected command)."""
        return self._segments

    def prepare(self, table: Any) -> DispatchProgram | CheckedProgram:
        """The program to encode (``table`` is ignored: no slots): from the device's recipe,
        or the general path's compiled program where the recipe does not cover the
        template. Raises FailedPreconditionError when a buffer the command buffer uses was
        released, InvalidArgumentError naming the command wgpu rejects, or BackendError if
        the device was lost."""
        for buffer in self.resources:
            if buffer.is_released:  # checked inline: the call only where it raises
                buffer.check_alive(_WHAT, "a buffer the command buffer uses")
        for view in self.views:
            view.check_alive(_WHAT, "a buffer the command buffer uses")
        program = self._program
        if program is None:
            try:
                recipe = recipe_for(self.device, self.template)
                program = None if recipe is None else DispatchProgram(self, recipe)
            except BackendError as error:
                # A buffer released by another thread since the checks: say so.
                for view in (*self.resources, *self.views):
                    view.check_alive(_WHAT, "a buffer the command buffer uses")
                raise wgpu_failure(self.device, self._segments, error) from None
            if program is None:
                program = self.full().prepare(None)
            self._program = program
        return program


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two tuples hold the same objects (by identity, in order)."""
    if len(a) != len(b):
        return False
    # A loop, not all() over a generator: this runs at every eager submission.
    for x, y in zip(a, b):  # noqa: B905, SIM110 - equal lengths; no generator
        if x is not y:
            return False
    return True


class _Steps(list[Any]):
    """A program's steps, holding the bind groups its calls name: a raw call holds only
    the group's C pointer, and the device's cache drops a group when its buffer is
    released (the program may still be encoded meanwhile, from ``Recipe.last``)."""

    __slots__ = ("groups",)

    def __init__(self, steps: list[Any], groups: list[Any]) -> None:
        super().__init__(steps)
        self.groups = groups


def _calls(owner: DispatchPrograms, recipe: Recipe, held: tuple[Any, ...]) -> list[Any]:
    """The recipe's calls with the bind groups of the allocations whose handles are
    ``held`` (in ``recipe.allocations`` order), from the device's bind group cache; the
    list holds the groups. Raises BackendError (a bind group could not be created)."""
    encoding = owner.device.encoding
    get = encoding.bind_groups.get
    set_bind_group = encoding.backend.set_bind_group
    handles: list[Any] = [None] * len(owner.template.objects)
    for i, handle in zip(recipe.allocations, held, strict=True):
        handles[i] = handle
    steps: list[tuple[bool, list[Any]]] = [(True, list(calls)) for calls in recipe.passes]
    made: dict[int, Any] = {}
    groups: list[Any] = []
    for index, position, site in recipe.sites:
        call = made.get(id(site))
        if call is None:
            entries = tuple([(b, handles[i], off, size) for b, i, off, size in site.entries])
            group = get(site.layout, entries)
            groups.append(group)
            call = made[id(site)] = set_bind_group(0, group)
        steps[index][1][position] = call
    return _Steps(steps, groups)


class DispatchProgram(CallsProgram):
    """A submission's program of :class:`DispatchPrograms`: the recipe's calls with this
    program's bind groups (from the device's cache); ``plan`` and ``encode_profiled`` are
    the general path's (made on first use)."""

    __slots__ = ()

    def __init__(self, owner: DispatchPrograms, recipe: Recipe) -> None:
        objects = owner.template.objects
        held = tuple([objects[i].allocation for i in recipe.allocations])
        last = recipe.last
        if last is not None and _same(last[0], held):
            # The same buffers as the recipe's latest program (an eager caller running one
            # kernel again): its calls, bind groups included, are this program's.
            steps = last[1]
        else:
            steps = _calls(owner, recipe, tuple([a.handle for a in held]))
            recipe.last = (held, steps)
        super().__init__(owner, steps, bool(steps))
