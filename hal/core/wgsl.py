"""A WGSL reflector: buffer bindings, the immediate block, overrides and entry points.

wgpu-py exposes no shader reflection, so this reads the source itself: a tokenizer that
respects nested comments (:mod:`hal.core.wgsl_tokens`), a module-scope parser
(:mod:`hal.core.wgsl_parse`), constant expressions for attributes and array sizes
(:mod:`hal.core.wgsl_consts`) and the spec's layout rules (:mod:`hal.core.wgsl_types`).
A binding referenced anywhere in an entry point's call graph counts as used. Malformed
WGSL raises :class:`~hal.errors.InvalidArgumentError` and nothing else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hal.core.wgsl_consts import Env, NotConstant, Value, convert, evaluate
from hal.core.wgsl_parse import Attribute, FnDecl, Module, VarDecl, parse_module
from hal.core.wgsl_tokens import WgslError
from hal.core.wgsl_types import ImmediateField, Span, TypeRef, TypeSizer, Unsized

__all__ = [
    "BindingDecl",
    "EntryPointDecl",
    "ImmediateField",
    "ModuleInfo",
    "OverrideDecl",
    "ResourceDecl",
    "WgslError",
    "reflect",
    "rewrite_immediates",
]

OVERRIDE_TYPES = ("bool", "i32", "u32", "f32", "f16")
_RESOURCE_PREFIXES = ("texture_", "sampler")
_MAX_FLATTENED_BYTES = 1024


@dataclass(frozen=True, slots=True)
class BindingDecl:
    """A ``@group(g) @binding(b) var<space[, access]> name`` buffer declaration.

    ``kind`` is the bind-group-layout type: "storage", "read-only-storage" or "uniform";
    ``min_size`` the smallest byte length it can be bound with (a runtime-sized array counts
    one element), 0 when the type could not be sized; ``access`` is "read" or
    "read_write"."""

    group: int
    binding: int
    name: str
    kind: str
    min_size: int = 0
    access: str = "read"


@dataclass(frozen=True, slots=True)
class ResourceDecl:
    """A non-buffer binding (texture or sampler): HAL kernels may declare it but not use
    it."""

    group: int
    binding: int
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class EntryPointDecl:
    """A ``@compute`` function: its name, the module-scope names its call graph references
    and its ``@workgroup_size`` (None where it depends on an override without a default
    or cannot be evaluated here; override defaults are used otherwise)."""

    name: str
    uses: frozenset[str]
    workgroup_size: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class OverrideDecl:
    """An ``override`` declaration: name, scalar type (declared, or inferred from the
    default; None when neither is known), ``@id`` and default value (None when there is
    none or it cannot be evaluated here)."""

    name: str
    type: str | None
    id: int | None
    default: bool | int | float | None
    has_default: bool


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What :func:`reflect` found in a module. ``immediate_fields`` flattens the
    immediate block into scalars with byte offsets; ``graphics_entry_points`` names the
    ``@vertex``/``@fragment`` functions, which HAL ignores; ``immediate_kind`` is the
    binding kind the block becomes where the adapter lacks immediates: "uniform" for a
    scalar, vector, matrix or struct of those, else "read-only-storage" (uniform arrays
    and nested structs would need 16-byte strides, changing the kernel's view)."""

    bindings: tuple[BindingDecl, ...]
    entry_points: tuple[EntryPointDecl, ...]
    immediate_name: str | None
    immediate_type: str | None
    immediate_size: int
    immediate_fields: tuple[ImmediateField, ...] = ()
    overrides: tuple[OverrideDecl, ...] = ()
    resources: tuple[ResourceDecl, ...] = ()
    graphics_entry_points: tuple[str, ...] = ()
    enables: frozenset[str] = frozenset()
    immediate_span: tuple[int, int] | None = None
    immediate_kind: str = "uniform"


def reflect(source: str) -> ModuleInfo:
    """Reflect bindings, the immediate block, overrides and entry points out of WGSL
    ``source`` (cached per source).

    Raises InvalidArgumentError (:class:`WgslError`) for text that is not WGSL, a module
    this reflector finds invalid (a recursive struct, a bad attribute, f16 without
    ``enable f16;``) or an immediate block it cannot lay out."""
    if not isinstance(source, str):
        raise WgslError(f"WGSL source must be str, not {type(source).__name__}")
    return _reflect_cached(source)


@functools.lru_cache(maxsize=256)
def _reflect_cached(source: str) -> ModuleInfo:
    return reflect_uncached(source)


def reflect_uncached(source: str) -> ModuleInfo:
    """:func:`reflect` without the cache (for measuring). Raises as :func:`reflect`."""
    try:
        return _Reflector(parse_module(source)).info()
    except RecursionError:
        raise WgslError("the module nests declarations too deeply") from None
    except (NotConstant, Unsized) as error:  # an internal signal that escaped: still bad WGSL
        raise WgslError(f"cannot reflect the module: {error}") from None


class _Reflector:
    """Turns a parsed :class:`Module` into a :class:`ModuleInfo`."""

    def __init__(self, module: Module) -> None:
        self.m = module
        self._values: dict[tuple[str, bool], Value] = {}
        self._evaluating: set[str] = set()
        self.sizer = TypeSizer(
            module.structs,
            module.aliases,
            module.tokens,
            self.const_int,
            "f16" in module.enables,
            module.where,
        )

    # -- constant expressions ------------------------------------------------------------

    def lookup(self, name: str, allow_overrides: bool) -> Value:
        """The value of module-scope ``name`` (a const, or an override's default)."""
        key = (name, allow_overrides)
        if key in self._values:
            return self._values[key]
        if name in self.m.consts:
            declared, span = self.m.consts[name]
        elif allow_overrides and name in self.m.overrides:
            _, declared, default, _ = self.m.overrides[name]
            if default is None:
                raise NotConstant(f"override {name!r} has no default")
            span = default
        else:
            raise NotConstant(f"{name!r} is not a module-scope constant")
        if name in self._evaluating:
            raise NotConstant(f"{name!r} refers to itself")
        self._evaluating.add(name)
        try:
            value = evaluate(self.m.tokens, *span, Env(self.lookup, allow_overrides))
        finally:
            self._evaluating.discard(name)
        if declared is not None:
            value = convert(self._scalar_name(declared), value)
        self._values[key] = value
        return value

    def _scalar_name(self, t: TypeRef) -> str:
        try:
            name = self.sizer.resolve(t).name
        except Unsized as error:
            raise NotConstant(str(error)) from None
        if name not in OVERRIDE_TYPES or self.sizer.resolve(t).args:
            raise NotConstant(f"type {name!r} is not a scalar")
        return name

    def value(self, span: Span, allow_overrides: bool = False) -> Value:
        """The value of an expression span. Raises NotConstant."""
        return evaluate(self.m.tokens, *span, Env(self.lookup, allow_overrides))

    def const_int(self, span: Span) -> int:
        """An integer constant expression (array counts, @size, @align). Raises Unsized."""
        try:
            kind, value = self.value(span)
        except NotConstant as error:
            raise Unsized(str(error)) from None
        if kind not in ("int", "i32", "u32"):
            raise Unsized(f"{kind} is not an integer")
        return int(value)

    def attr_int(self, attr: Attribute) -> int:
        """The one non-negative integer argument of ``@group``/``@binding``/``@id``."""
        if len(attr.args) != 1:
            raise WgslError(f"@{attr.name} at {self.m.where(attr.pos)} takes one value")
        try:
            kind, value = self.value(attr.args[0])
        except NotConstant as error:
            raise WgslError(
                f"@{attr.name} at {self.m.where(attr.pos)} is not a constant expression ({error})"
            ) from None
        if kind not in ("int", "i32", "u32") or value < 0:
            raise WgslError(
                f"@{attr.name} at {self.m.where(attr.pos)} must be a non-negative integer, "
                f"not {value!r}"
            )
        return int(value)

    # -- declarations --------------------------------------------------------------------

    def info(self) -> ModuleInfo:
        bindings: list[BindingDecl] = []
        resources: list[ResourceDecl] = []
        immediate: VarDecl | None = None
        for var in self.m.variables:
            space = var.template[0] if var.template else ""
            if space == "immediate":
                if immediate is not None:
                    raise WgslError(
                        f"a second var<immediate> ({var.name!r}) at {self.m.where(var.span[0])}"
                        "; a module declares at most one"
                    )
                immediate = var
            elif space in ("storage", "uniform"):
                decl = self._binding(var, space)
                if decl is not None:
                    bindings.append(decl)
            elif not space and var.type is not None:
                resource = self._resource(var)
                if resource is not None:
                    resources.append(resource)
        fields: tuple[ImmediateField, ...] = ()
        size = 0
        kind = "uniform"
        if immediate is not None:
            size, fields = self._immediate(immediate)
            kind = self._immediate_kind(immediate)
        compute, graphics = self._entry_points({v.name for v in self.m.variables})
        return ModuleInfo(
            tuple(bindings),
            compute,
            immediate.name if immediate else None,
            immediate.type_text if immediate else None,
            size,
            fields,
            self._overrides(),
            tuple(resources),
            graphics,
            frozenset(self.m.enables),
            immediate.span if immediate else None,
            kind,
        )

    def _group_binding(self, var: VarDecl) -> tuple[int, int] | None:
        found = {a.name: a for a in var.attrs}
        if "group" not in found or "binding" not in found:
            return None
        return self.attr_int(found["group"]), self.attr_int(found["binding"])

    def _binding(self, var: VarDecl, space: str) -> BindingDecl | None:
        where = self._group_binding(var)
        if where is None or var.type is None:
            return None
        access = var.template[1] if len(var.template) > 1 else "read"
        if (space == "uniform" and len(var.template) > 1) or access not in ("read", "read_write"):
            raise WgslError(
                f"var<{', '.join(var.template)}> {var.name} at {self.m.where(var.span[0])}: "
                "the access mode must be read or read_write (storage only)"
            )
        if space == "uniform":
            kind = "uniform"
        else:
            kind = "storage" if access == "read_write" else "read-only-storage"
        try:
            min_size = self.sizer.layout(var.type, binding=True)[0]
        except Unsized:
            min_size = 0  # wgpu checks it when the command buffer is encoded
        return BindingDecl(where[0], where[1], var.name, kind, min_size, access)

    def _resource(self, var: VarDecl) -> ResourceDecl | None:
        assert var.type is not None
        name = (
            self.m.aliases[var.type.name].name if var.type.name in self.m.aliases else var.type.name
        )
        if not name.startswith(_RESOURCE_PREFIXES) and name != "external_texture":
            return None
        where = self._group_binding(var)
        if where is None:
            return None
        return ResourceDecl(where[0], where[1], var.name, var.type_text)

    def _immediate(self, var: VarDecl) -> tuple[int, tuple[ImmediateField, ...]]:
        if var.type is None:
            raise WgslError(
                f"var<immediate> {var.name} at {self.m.where(var.span[0])} needs a type"
            )
        try:
            size = self.sizer.layout(var.type, binding=False)[0]
        except Unsized as error:
            raise WgslError(
                f"unsupported type {var.type_text!r} in the immediate block ({error})"
            ) from None
        if size > _MAX_FLATTENED_BYTES:
            return size, ()
        try:
            return size, tuple(self.sizer.fields(var.type, var.name, 0))
        except Unsized:
            return size, ()

    def _immediate_kind(self, var: VarDecl) -> str:
        assert var.type is not None
        t = self.sizer.resolve(var.type)
        members = [m.type for m in self.m.structs[t.name]] if t.name in self.m.structs else [t]
        flat = all(
            self.sizer.resolve(m).name not in self.m.structs
            and self.sizer.resolve(m).name != "array"
            for m in members
        )
        return "uniform" if flat else "read-only-storage"

    def _overrides(self) -> tuple[OverrideDecl, ...]:
        out = []
        for name, (attrs, declared, default, pos) in self.m.overrides.items():
            type_name: str | None = None
            if declared is not None:
                try:
                    type_name = self._scalar_name(declared)
                except NotConstant:
                    raise WgslError(
                        f"override {name!r} at {self.m.where(pos)} must have a scalar type "
                        f"({', '.join(OVERRIDE_TYPES)})"
                    ) from None
            value: bool | int | float | None = None
            if default is not None:
                try:
                    kind, value = self.lookup(name, True)
                    type_name = type_name or {"int": "i32", "float": "f32"}.get(kind, kind)
                except NotConstant:
                    value = None
            ids = [self.attr_int(a) for a in attrs if a.name == "id"]
            out.append(
                OverrideDecl(name, type_name, ids[0] if ids else None, value, default is not None)
            )
        return tuple(out)

    def _entry_points(
        self, globals_: set[str]
    ) -> tuple[tuple[EntryPointDecl, ...], tuple[str, ...]]:
        functions: dict[str, FnDecl] = {f.name: f for f in self.m.functions}
        compute, graphics = [], []
        for fn in self.m.functions:
            stages = {a.name for a in fn.attrs}
            if "compute" in stages:
                used = _reachable(fn.name, functions) & globals_
                compute.append(EntryPointDecl(fn.name, frozenset(used), self._workgroup_size(fn)))
            elif stages & {"vertex", "fragment"}:
                graphics.append(fn.name)
        return tuple(compute), tuple(graphics)

    def _workgroup_size(self, fn: FnDecl) -> tuple[int, int, int] | None:
        attr = next((a for a in fn.attrs if a.name == "workgroup_size"), None)
        if attr is None or not 1 <= len(attr.args) <= 3:
            return None
        sizes = []
        for span in attr.args:
            try:
                kind, value = self.value(span, allow_overrides=True)
            except NotConstant:
                return None
            if kind not in ("int", "i32", "u32") or value < 1:
                raise WgslError(
                    f"@workgroup_size at {self.m.where(attr.pos)} of {fn.name!r}: each size "
                    f"must be a positive integer, not {value!r}"
                )
            sizes.append(int(value))
        sizes += [1] * (3 - len(sizes))
        return sizes[0], sizes[1], sizes[2]


def _reachable(name: str, functions: dict[str, FnDecl]) -> set[str]:
    """Every identifier the call graph rooted at function ``name`` mentions."""
    seen: set[str] = set()
    todo = [name]
    idents: set[str] = set()
    while todo:
        fn = todo.pop()
        if fn in seen:
            continue
        seen.add(fn)
        body = functions[fn].idents
        idents |= body
        todo.extend(r for r in body if r in functions)
    return idents


def rewrite_immediates(source: str, info: ModuleInfo, group: int) -> str:
    """Replace the ``var<immediate>`` declaration by a buffer binding at ``@group(group)
    @binding(0)``: ``var<uniform>`` or ``var<storage, read>`` as ``info.immediate_kind``
    says."""
    if info.immediate_name is None or info.immediate_span is None:
        return source
    space = "uniform" if info.immediate_kind == "uniform" else "storage, read"
    start, end = info.immediate_span
    replacement = f"@group({group}) @binding(0) var<{space}> {info.immediate_name}"
    return source[:start] + replacement + source[end:]
