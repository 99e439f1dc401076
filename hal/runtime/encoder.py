"""The encoder: replays a :class:`~hal.core.plan.Plan` onto a backend. It makes no decisions.

``compile_plan`` resolves a plan once into a flat list of recorded backend calls with every
object bound (pipelines, cached bind groups, the plan's own buffers); ``Program.encode``
replays that list into a fresh command buffer for each submission, because WebGPU command
buffers are single-use.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from hal.core.builtins import BuiltinKernel
from hal.core.plan import AuxBuffer, ClearBuffer, ComputePass, CopyBuffer, Plan, Region
from hal.core.rebase import Rebase, rebase_region

if TYPE_CHECKING:
    from hal.backends.protocol import Backend, Call, Step, Timer
    from hal.runtime.executable import BuiltinKernels
    from hal.runtime.zeroing import PendingClears

__all__ = ["BindGroupCache", "Encoding", "Program", "compile_plan"]


class BindGroupCache:
    """Bind groups keyed by (layout, (binding, buffer, offset, size)...), shared by every
    command buffer of a device; entries of a buffer are dropped when it is released.

    An entry is (group, layout, buffers, the call setting the group at index 0): holding the
    layout and buffers keeps their ids from being reused by new objects while it exists.
    One-entry groups (most: a slot binding, a dispatch's one buffer) are kept per buffer,
    under (id of the layout, binding, offset, size), so that a rebase finds a moved
    allocation's groups with one lookup of the buffer and one C-level map over keys its
    patch holds (:meth:`singles_of`); the others under (id of the layout, (binding, id of
    the buffer, offset, size)...)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # Re-entrant: a Program's finaliser (forget) can run from garbage collection
        # inside get() while the lock is held, which deadlocked an 8-thread stress test.
        self._lock = threading.RLock()
        self._groups: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._by_buffer: dict[int, set[tuple[Any, ...]]] = {}
        self._singles: dict[int, dict[tuple[int, int, int, int], tuple[Any, ...]]] = {}
        # id of a backend buffer -> its one-entry groups' entries by (id of the layout,
        # binding, offset, size), or None: the dict's own get (no Python frame), for
        # Program.rebased. A dict it returns may be dropped by a concurrent forget; it stays
        # valid to read (its entries hold their groups).
        self.singles_of: Callable[[int], dict[tuple[int, int, int, int], Any] | None] = (
            self._singles.get
        )

    def get(self, layout: Any, entries: tuple[tuple[int, Any, int, int], ...]) -> Any:
        """The bind group of ``layout`` for (binding, wgpu buffer, offset, size) entries."""
        if len(entries) == 1:  # most groups: no list to build
            b, buf, off, size = entries[0]
            per = self._singles.get(id(buf))
            if per is not None:
                found = per.get((id(layout), b, off, size))
                if found is not None:
                    return found[0]
        else:
            found = self._groups.get(
                (id(layout), *[(b, id(buf), off, size) for b, buf, off, size in entries])
            )
            if found is not None:
                return found[0]
        return self._make(layout, entries)[0]

    def entry(self, layout: Any, entries: tuple[tuple[int, Any, int, int], ...]) -> tuple[Any, ...]:
        """The cache entry of :meth:`get`'s group: (group, layout, buffers, the call setting
        the group at index 0). Raises BackendError (the group could not be made)."""
        if len(entries) == 1:
            b, buf, off, size = entries[0]
            per = self._singles.get(id(buf))
            found = None if per is None else per.get((id(layout), b, off, size))
        else:
            found = self._groups.get(
                (id(layout), *[(b, id(buf), off, size) for b, buf, off, size in entries])
            )
        return self._make(layout, entries) if found is None else found

    def _make(self, layout: Any, entries: tuple[tuple[int, Any, int, int], ...]) -> tuple[Any, ...]:
        """A new group's entry, cached. Raises BackendError."""
        group = self._backend.create_bind_group(layout, entries)
        with self._lock:
            # With the call that sets it at index 0 (the usual one), made once: a rebase
            # for a new table takes it from here.
            entry = (
                group,
                layout,
                tuple([e[1] for e in entries]),
                self._backend.set_bind_group(0, group),
            )
            if len(entries) == 1:
                b, buf, off, size = entries[0]
                self._singles.setdefault(id(buf), {})[(id(layout), b, off, size)] = entry
            else:
                key = (id(layout), *[(b, id(buf), off, size) for b, buf, off, size in entries])
                self._groups[key] = entry
                for _, buf, _, _ in entries:
                    self._by_buffer.setdefault(id(buf), set()).add(key)
        return entry

    def fill(
        self,
        handle: Any,
        layouts: Sequence[Any],
        keys: Sequence[tuple[int, int, int, int]],
        found: list[Any],
    ) -> None:
        """Make the one-entry groups on the backend buffer ``handle`` that ``found`` misses
        (None; one per key, (id of the layout, binding, offset, size), of ``layouts`` in
        turn) and put their entries there, cached under one lock (a new buffer's groups:
        no lookups again). Raises BackendError (the ones made before are cached)."""
        backend = self._backend
        made = []
        try:
            for number, entry in enumerate(found):
                if entry is None:
                    layout = layouts[number]
                    key = keys[number]
                    group = backend.create_bind_group(layout, ((key[1], handle, key[2], key[3]),))
                    entry = (group, layout, (handle,), backend.set_bind_group(0, group))
                    made.append((key, entry))
                    found[number] = entry
        finally:
            if made:
                with self._lock:
                    self._singles.setdefault(id(handle), {}).update(made)

    def forget(self, handle: Any) -> None:
        """Drop the bind groups that reference the backend buffer ``handle``."""
        with self._lock:
            self._singles.pop(id(handle), None)
            for key in self._by_buffer.pop(id(handle), ()):
                self._groups.pop(key, None)

    def clear(self) -> None:
        """Drop every cached bind group."""
        with self._lock:
            self._groups.clear()
            self._by_buffer.clear()
            self._singles.clear()


@dataclass(frozen=True, slots=True)
class Encoding:
    """What compiling a plan needs of a device: its backend, bind group cache, builtin
    kernels and the zeroing of new internal buffers (built by the device)."""

    backend: Backend
    bind_groups: BindGroupCache
    builtins: BuiltinKernels
    clears: PendingClears


_GroupSites = tuple[Any, tuple[tuple[int, int, Any, int, int], ...], tuple[tuple[int, int], ...]]
"""A bind group's sites in a program: its layout, per entry (binding, id of the resource,
its handle, offset, size), and the (step index, call position) pairs that set it."""


@dataclass(frozen=True, slots=True)
class _Patch:
    """What rebasing a program onto a set of moved allocations remakes: the moved bind
    groups of one entry (layout, id of its resource, and its key in the bind group cache's
    one-entry groups before the shift: id of the layout, binding, offset, size), the other
    moved groups (layout, per entry (binding, id of its resource, its handle, offset,
    size)), per step that sets one how its new call list is made from its old calls and the
    groups' new calls (``singles`` then ``groups`` in order: :func:`_pick`), and the
    transfer sites that move. ``sole`` is the id of the one allocation every moved group
    is on when they are all one-entry groups (the usual slot bindings), with their keys
    in ``keys`` and layouts in ``layouts``; else None."""

    singles: tuple[tuple[Any, int, tuple[int, int, int, int]], ...]
    groups: tuple[tuple[Any, tuple[tuple[int, int, Any, int, int], ...]], ...]
    picks: tuple[tuple[int, Pick], ...]
    transfers: tuple[tuple[Any, ...], ...]
    sole: int | None
    keys: tuple[tuple[int, int, int, int], ...]
    layouts: tuple[Any, ...]


Pick = Callable[[Sequence["Call"], list["Call"]], Sequence["Call"]]
"""A step's new calls from its old calls and the moved groups' new calls (see _pick)."""

_CALL = itemgetter(3)
"""A bind group cache entry's call setting the group at index 0."""


def _items(order: Sequence[int]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """A function taking a sequence to the sequence of its items at ``order``. Where
    ``order`` repeats a shorter order (groups cycled: dispatch i binds group i % k), the
    short gather repeated (list repetition is a C copy); else itemgetter (one C loop; it
    returns a bare item for one index, hence the wrapper)."""
    count = len(order)
    if count == 1:
        only = order[0]
        return lambda items: (items[only],)
    period = _period(order)
    if period <= count // 2:
        times, rest = divmod(count, period)
        if list(order[:period]) == list(range(period)):  # the first items, in order

            def repeated(items: Sequence[Any]) -> list[Any]:
                head = list(items[:period])
                return head * times + head[:rest]

            return repeated
        short = _items(order[:period])

        def gathered(items: Sequence[Any]) -> list[Any]:
            head = list(short(items))
            return head * times + head[:rest]

        return gathered
    return itemgetter(*order)


def _period(order: Sequence[int]) -> int:
    """The smallest p with order[i] == order[i - p] for every i >= p (the prefix function's
    last value: linear, at patch time)."""
    border = [0] * len(order)
    k = 0
    for i in range(1, len(order)):
        while k and order[i] != order[k]:
            k = border[k - 1]
        if order[i] == order[k]:
            k += 1
        border[i] = k
    return len(order) - border[-1]


def _pick(count: int, sites: dict[int, int], groups: int) -> Pick:
    """How a step of ``count`` calls whose positions ``sites`` (position -> group number of
    ``groups``) set a moved group gets its new calls. Where the sites are evenly spaced (a
    group before each dispatch), a copy and one slice assignment of the groups' calls in
    site order; else one gather from the old calls followed by the new ones."""
    positions = sorted(sites)
    order = [sites[p] for p in positions]
    values = _items(order)
    if len(positions) > 1:
        start, step = positions[0], positions[1] - positions[0]
        stop = positions[-1] + 1
        if positions == list(range(start, stop, step)):
            times, rest = divmod(len(order), groups)
            if order == list(range(groups)) * times + list(range(rest)):
                # The groups in turn (dispatch i binds group i % groups): the new calls
                # repeated, with no gather.

                def cycled(calls: Sequence[Call], new_calls: list[Call]) -> Sequence[Call]:
                    out = list(calls)
                    out[start:stop:step] = new_calls * times + new_calls[:rest]
                    return out

                return cycled

            def spaced(calls: Sequence[Call], new_calls: list[Call]) -> Sequence[Call]:
                out = list(calls)
                out[start:stop:step] = values(new_calls)
                return out

            return spaced
    gather = _items([count + sites[p] if p in sites else p for p in range(count)])

    def gathered(calls: Sequence[Call], new_calls: list[Call]) -> Sequence[Call]:
        return gather([*calls, *new_calls])

    return gathered


def _handle(region: Region, aux: dict[AuxBuffer, Any]) -> Any:
    """The backend buffer of ``region``: the plan's own (``aux``) or its allocation's."""
    resource = region.resource
    return aux[resource] if isinstance(resource, AuxBuffer) else resource.allocation.handle


class Program:
    """A plan bound to backend objects, ready to be encoded any number of times.

    ``steps`` is the flat call list: for each compute pass the calls made inside it, for each
    transfer the one encoder call. Owns the plan's STAGING/CONSTANTS buffers (uploaded once
    at compile time) and scratch buffers, and keeps every object its calls use alive.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_encoding",
        "_grouped",
        "_keepalive",
        "_patches",
        "_sites",
        "_steps",
        "aux",
        "plan",
    )

    def __init__(
        self,
        plan: Plan,
        steps: list[Step],
        aux: dict[AuxBuffer, Any],
        keepalive: list[Any],
        encoding: Encoding,
        sites: list[tuple[Any, ...]] | None = None,
        *,
        owns_aux: bool = True,
    ) -> None:
        self.plan = plan
        self._steps = steps
        self.aux = aux
        self._keepalive = keepalive
        self._backend = encoding.backend
        self._encoding = encoding
        # Where each call that names a buffer sits (see rebased()).
        self._sites: Sequence[tuple[Any, ...]] = sites or ()
        self._grouped: tuple[list[_GroupSites], list[tuple[Any, ...]]] | None = None
        self._patches: dict[tuple[int, ...], _Patch] = {}
        if owns_aux:
            # A rebased program shares its template's aux buffers: only the owner's end may
            # drop their bind groups (the template's calls still use them).
            for buffer in aux.values():
                weakref.finalize(self, encoding.bind_groups.forget, buffer)

    def rebased(self, rebase: Rebase) -> Program:
        """This program moved onto other buffers by ``rebase`` (hal/core/rebase.py), with
        only the calls that name a rebased allocation remade: a new binding table costs what
        its slots' bind groups cost, not a compilation. Its :attr:`plan` is this program's
        (the step structure both share; hal/core/rebase.py ``rebase_plan`` makes the moved
        one). Shares the aux buffers (queue order keeps submissions from overlapping; this
        program keeps owning them). Raises BackendError."""
        patch = self._patches.get(tuple(rebase)) or self._patch_for(rebase)
        bind_groups = self._encoding.bind_groups
        singles = patch.singles
        # One-entry groups on a moved allocation (the usual slot binding): what
        # rebase_region makes of each region, without the Region; their cache entries
        # (BindGroupCache: group first, the call setting it last), made on a miss.
        found: list[Any]
        sole = patch.sole
        if sole is not None:
            # All on one allocation: one lookup of its groups, one C-level map over the keys.
            root, shift = rebase[sole]
            handle = root.allocation.handle
            keys = patch.keys
            if shift:
                keys = tuple(
                    [(layout_id, b, offset + shift, size) for layout_id, b, offset, size in keys]
                )
            per = bind_groups.singles_of(id(handle))
            found = [None] * len(keys) if per is None else list(map(per.get, keys))
            if not all(found):  # entries are non-empty tuples: a miss is the only false one
                bind_groups.fill(handle, patch.layouts, keys, found)
        else:
            # Each moved allocation's new backend buffer and the offset shift, once.
            moved = {}
            for key, (root, shift) in rebase.items():
                moved[key] = (root.allocation.handle, shift)
            found = []
            for layout, resource, (layout_id, b, offset, size) in singles:
                handle, shift = moved[resource]
                per = bind_groups.singles_of(id(handle))
                entry = None if per is None else per.get((layout_id, b, offset + shift, size))
                if entry is None:
                    entry = bind_groups.entry(layout, ((b, handle, offset + shift, size),))
                found.append(entry)
            for layout, specs in patch.groups:
                entries = []
                for b, resource, fixed, offset, size in specs:
                    new = moved.get(resource)
                    if new is None:
                        entries.append((b, fixed, offset, size))
                    else:
                        entries.append((b, new[0], offset + new[1], size))
                found.append(bind_groups.entry(layout, tuple(entries)))
        new_calls: list[Call] = list(map(_CALL, found))
        # The new groups (their cache entries hold them), then this program's objects by
        # reference (not copied: a long program keeps hundreds).
        keepalive: list[Any] = found
        found.append(self._keepalive)
        steps = list(self._steps)
        for index, pick in patch.picks:
            # C-level copies per step: the old calls, each moved group's site taking the
            # group's new call.
            is_pass, calls = steps[index]
            steps[index] = (is_pass, pick(calls, new_calls))
        if patch.transfers:
            handle = functools.partial(_handle, aux=self.aux)
            copied: dict[int, list[Call]] = {}
            for kind, index, position, regions in patch.transfers:
                moved_call = self._rebased_transfer(kind, regions, rebase, handle, keepalive)
                assert moved_call is not None  # the patch keeps only transfers that move
                own = copied.get(index)
                if own is None:
                    own = copied[index] = list(steps[index][1])
                    steps[index] = (steps[index][0], own)
                own[position] = moved_call
        # As the constructor makes it with owns_aux=False (no sites: never rebased again).
        program = _new_program(Program)
        program.plan = self.plan
        program._steps = steps
        program.aux = self.aux
        program._keepalive = keepalive
        program._backend = self._backend
        program._encoding = self._encoding
        program._sites = ()
        program._grouped = None
        program._patches = {}
        return program

    def _patch_for(self, rebase: Rebase) -> _Patch:
        """What rebasing by ``rebase`` remakes, which depends only on the allocations it
        moves (a template is rebased for every new table, always moving its slots' own):
        made once per set of moved allocations."""
        key = tuple(rebase)
        patch = self._patches.get(key)
        if patch is None:
            groups, transfers = self._grouped_sites()
            singles: list[tuple[Any, int, tuple[int, int, int, int]]] = []
            general: list[tuple[Any, tuple[tuple[int, int, Any, int, int], ...]]] = []
            sites: list[tuple[tuple[int, int], ...]] = []
            general_sites: list[tuple[tuple[int, int], ...]] = []
            for layout, specs, places in groups:
                if not any(resource in rebase for _, resource, _, _, _ in specs):
                    continue
                if len(specs) == 1:
                    b, resource, _, offset, size = specs[0]
                    singles.append((layout, resource, (id(layout), b, offset, size)))
                    sites.append(places)
                else:
                    general.append((layout, specs))
                    general_sites.append(places)
            # New calls are made singles first, then the others: number the groups so.
            targets: dict[int, dict[int, int]] = {}
            for number, places in enumerate([*sites, *general_sites]):
                for index, position in places:
                    targets.setdefault(index, {})[position] = number
            picks = []
            for index, positions in sorted(targets.items()):
                picks.append(
                    (
                        index,
                        _pick(len(self._steps[index][1]), positions, len(singles) + len(general)),
                    )
                )
            moved_transfers = tuple(
                site
                for site in transfers
                if any(id(region.resource) in rebase for _, region in site[3])
            )
            on = {resource for _, resource, _ in singles}
            sole = next(iter(on)) if len(on) == 1 and not general else None
            if len(self._patches) >= 8:  # a template sees one set; other callers, a few
                self._patches.clear()
            patch = self._patches[key] = _Patch(
                tuple(singles),
                tuple(general),
                tuple(picks),
                moved_transfers,
                sole,
                tuple([key for _, _, key in singles]),
                tuple([layout for layout, _, _ in singles]),
            )
        return patch

    def _grouped_sites(self) -> tuple[list[_GroupSites], list[tuple[Any, ...]]]:
        """The sites by bind group (layout, per entry (binding, id of its resource, its
        handle, offset, size), the (step index, call position) pairs that set it), and the
        transfer sites; made on the first rebase (a template is rebased for every new
        table: per group, not per site)."""
        grouped = self._grouped
        if grouped is None:
            aux = self.aux
            by_group: dict[int, tuple[Any, tuple[Any, ...], list[tuple[int, int]]]] = {}
            transfers: list[tuple[Any, ...]] = []
            for kind, index, position, *rest in self._sites:
                if kind != "group":
                    transfers.append((kind, index, position, rest[-1]))
                    continue
                entry = by_group.get(id(rest[1]))
                if entry is None:
                    specs = tuple(
                        (b, id(r.resource), _handle(r, aux), r.offset, r.size) for b, r in rest[2]
                    )
                    entry = by_group[id(rest[1])] = (rest[0], specs, [])
                entry[2].append((index, position))
            groups = [(layout, specs, tuple(places)) for layout, specs, places in by_group.values()]
            grouped = self._grouped = (groups, transfers)
        return grouped

    def _rebased_transfer(
        self,
        kind: str,
        regions: tuple[tuple[int, Region], ...],
        rebase: Rebase,
        handle: Callable[[Region], Any],
        keepalive: list[Any],
    ) -> Call | None:
        """The indirect dispatch, copy or clear call of ``regions`` moved by ``rebase``;
        None if none moves."""
        if not any(id(r.resource) in rebase for _, r in regions):
            return None
        moved = [rebase_region(r, rebase) for _, r in regions]
        handles = [handle(r) for r in moved]
        keepalive.extend(handles)
        backend = self._backend
        if kind == "indirect":
            return backend.dispatch_indirect(handles[0], moved[0].offset)
        if kind == "copy":
            source, target = moved
            return backend.copy_buffer(
                handles[0], source.offset, handles[1], target.offset, target.size
            )
        return backend.clear_buffer(handles[0], moved[0].offset, moved[0].size)

    def encode(self, label: str = "hal") -> Any:
        """Record the program into a new backend command buffer. Raises BackendError if the
        implementation rejects it (errors surface when the command buffer is finished)."""
        return self._backend.encode(self._steps, label)

    def encode_profiled(self, timer: Timer, label: str = "hal") -> Any:
        """``encode`` with ``timer`` (hal/runtime/profiling.py) called around every dispatch
        and native transfer to write timestamps. Raises BackendError."""
        return self._backend.encode_profiled(self._steps, timer, label)


_new_program = object.__new__


def _create_aux(plan: Plan, encoding: Encoding) -> dict[AuxBuffer, Any]:
    """Create the plan's own buffers: upload STAGING and CONSTANTS, zero the scratch ones."""
    backend = encoding.backend
    aux: dict[AuxBuffer, Any] = {}
    for kind, data in ((AuxBuffer.STAGING, plan.staging), (AuxBuffer.CONSTANTS, plan.constants)):
        if data:
            buffer = backend.create_buffer(
                max(4, -(-len(data) // 4) * 4), uniform=True, label=f"hal.{kind.value}"
            )
            backend.write_buffer(buffer, 0, data + bytes(-len(data) % 4))
            aux[kind] = buffer
    for kind, size in (
        (AuxBuffer.SCRATCH, plan.scratch_size),
        (AuxBuffer.READ_SCRATCH, plan.read_scratch_size),
    ):
        if size:
            buffer = backend.create_buffer(size, uniform=True, label=f"hal.{kind.value}")
            encoding.clears.add_internal(buffer)
            aux[kind] = buffer
    return aux


def compile_plan(plan: Plan, encoding: Encoding) -> Program:
    """Bind ``plan`` to a device's ``encoding``: look up pipelines and bind groups, create the
    plan's own buffers, and flatten every step into recorded calls. Redundant pipeline and
    bind group changes inside a pass are dropped here, once, instead of at every submission.
    Raises BackendError."""
    aux = _create_aux(plan, encoding)
    backend = encoding.backend

    handle = functools.partial(_handle, aux=aux)
    keepalive: list[Any] = []
    steps: list[Step] = []
    sites: list[tuple[Any, ...]] = []
    for index, step in enumerate(plan.steps):
        if isinstance(step, CopyBuffer):
            source, target = handle(step.source), handle(step.target)
            keepalive += (source, target)
            call = backend.copy_buffer(
                source, step.source.offset, target, step.target.offset, step.target.size
            )
            steps.append((False, [call]))
            sites.append(("copy", index, 0, ((0, step.source), (1, step.target))))
        elif isinstance(step, ClearBuffer):
            target = handle(step.target)
            keepalive.append(target)
            steps.append(
                (False, [backend.clear_buffer(target, step.target.offset, step.target.size)])
            )
            sites.append(("clear", index, 0, ((0, step.target),)))
        else:
            assert isinstance(step, ComputePass)
            calls = _pass_calls(step, encoding, aux, handle, keepalive, sites, index)
            steps.append((True, calls))
    return Program(plan, steps, aux, keepalive, encoding, sites)


def _pass_calls(
    step: ComputePass,
    encoding: Encoding,
    aux: dict[AuxBuffer, Any],
    handle: Any,
    keepalive: list[Any],
    sites: list[tuple[Any, ...]],
    index: int,
) -> list[Call]:
    """The recorded calls of one compute pass (step ``index``); appends to ``sites`` where
    each call that names buffers sits."""
    backend, bind_groups = encoding.backend, encoding.bind_groups
    builtins = encoding.builtins
    calls: list[Call] = []
    current_pipeline = None
    current_group = None
    # Per compile, the lookups and calls that repeat from dispatch to dispatch are made once:
    # recorded calls are immutable, so one call object may sit at many positions.
    pipelines: dict[tuple[int, str], tuple[Any, Any, Any, Any]] = {}
    group_calls: dict[int, Call] = {}
    groups: dict[int, tuple[Any, tuple[tuple[int, Region], ...]]] = {}
    dispatch_calls: dict[tuple[int, int, int], Call] = {}
    immediate_calls: dict[bytes, Call] = {}
    for d in step.dispatches:
        kernel = d.kernel
        key = (id(kernel), d.entry_point)
        found = pipelines.get(key)
        if found is None:
            executable = (
                builtins.executable(kernel) if isinstance(kernel, BuiltinKernel) else kernel
            )
            found = pipelines[key] = (executable, *executable.pipeline(d.entry_point))
        executable, pipeline, layout, constants_layout = found
        if pipeline is not current_pipeline:
            calls.append(backend.set_pipeline(pipeline))
            keepalive.append(pipeline)
            current_pipeline = pipeline
            current_group = None
        if d.bindings:
            # By id(d): a plan repeats one dispatch object for a dispatch recorded again.
            bound = groups.get(id(d))
            if bound is None:
                entries = tuple([(b, handle(r), r.offset, r.size) for b, _, r in d.bindings])
                regions = tuple([(b, r) for b, _, r in d.bindings])
                bound = groups[id(d)] = (bind_groups.get(layout, entries), regions)
            group, regions = bound
            if current_group is not group:
                sites.append(("group", index, len(calls), layout, group, regions))
                call = group_calls.get(id(group))
                if call is None:
                    call = group_calls[id(group)] = backend.set_bind_group(0, group)
                    keepalive.append(group)
                calls.append(call)
                current_group = group
        if d.constants_offset is not None and constants_layout is not None:
            size = executable.layout(d.entry_point).constants_size
            group = bind_groups.get(constants_layout, ((0, aux[AuxBuffer.CONSTANTS], 0, size),))
            calls.append(backend.set_bind_group(1, group, (d.constants_offset,)))
            keepalive.append(group)
        elif d.constants:
            call = immediate_calls.get(d.constants)
            if call is None:
                call = immediate_calls[d.constants] = backend.set_immediates(d.constants)
            calls.append(call)
        if d.indirect is not None:
            buffer = handle(d.indirect)
            keepalive.append(buffer)
            sites.append(("indirect", index, len(calls), ((0, d.indirect),)))
            calls.append(backend.dispatch_indirect(buffer, d.indirect.offset))
        else:
            workgroups = d.workgroups
            assert workgroups is not None
            call = dispatch_calls.get(workgroups)
            if call is None:
                call = dispatch_calls[workgroups] = backend.dispatch(*workgroups)
            calls.append(call)
    return calls
