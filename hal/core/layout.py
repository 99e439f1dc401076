"""Entry-point layouts: what a dispatch of each ``@compute`` function must provide.

Built once per executable from the reflected module (:func:`entry_point_layouts`), so
recording reads per-binding facts (kind, minimum size) instead of re-deriving them.
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.core.wgsl import ImmediateField, ModuleInfo

__all__ = ["BindingLayout", "EntryPointLayout", "entry_point_layouts"]


@dataclass(frozen=True, slots=True)
class BindingLayout:
    """One binding of an entry point: HAL binding index, layout kind ("storage",
    "read-only-storage" or "uniform"), the WGSL variable name and ``min_size``, the smallest
    byte length it can be bound with (0 when unknown)."""

    binding: int
    kind: str
    name: str
    min_size: int = 0

    @property
    def writable(self) -> bool:
        """True for read-write storage."""
        return self.kind == "storage"


@dataclass(frozen=True, slots=True)
class EntryPointLayout:
    """What a dispatch of an entry point must provide.

    ``bindings`` lists the bindings the entry point uses (sorted); ``binding_count`` is the
    number of HAL bindings a dispatch passes (highest used binding + 1; unused indices below
    it are accepted and ignored); ``constants_size`` is the byte size of the module's
    ``var<immediate>`` block if the entry point uses it, else 0; ``constants_fields`` its
    flattened scalar fields (name, byte offset, type) that dispatch constants fill, () when
    unused; ``workgroup_size`` the reflected ``@workgroup_size`` (None when unknown).
    """

    name: str
    bindings: tuple[BindingLayout, ...]
    binding_count: int
    constants_size: int
    constants_fields: tuple[ImmediateField, ...] = ()
    workgroup_size: tuple[int, int, int] | None = None

    def binding(self, index: int) -> BindingLayout | None:
        """The layout of HAL binding ``index``, or None if the entry point ignores it."""
        for b in self.bindings:
            if b.binding == index:
                return b
        return None


def entry_point_layouts(info: ModuleInfo) -> dict[str, EntryPointLayout]:
    """The layout of every entry point of a reflected module, by name (in module order)."""
    layouts: dict[str, EntryPointLayout] = {}
    for ep in info.entry_points:
        used = sorted(
            (
                BindingLayout(d.binding, d.kind, d.name, d.min_size)
                for d in info.bindings
                if d.name in ep.uses
            ),
            key=lambda b: b.binding,
        )
        uses_constants = info.immediate_name is not None and info.immediate_name in ep.uses
        layouts[ep.name] = EntryPointLayout(
            ep.name,
            tuple(used),
            used[-1].binding + 1 if used else 0,
            info.immediate_size if uses_constants else 0,
            info.immediate_fields if uses_constants else (),
            ep.workgroup_size,
        )
    return layouts
