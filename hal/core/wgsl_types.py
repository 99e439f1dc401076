"""WGSL type layout: AlignOf/SizeOf of host-shareable types, as the WGSL spec defines them.

Scalars, ``vecN``, ``matCxR``, ``atomic``, fixed and runtime-sized ``array`` (stride =
roundUp(align, size)), ``alias``es and ``struct``s with ``@size``/``@align`` members. One
sizer gives both the immediate block's layout (with its flattened scalar fields) and each
binding's minimum size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hal.core.wgsl_tokens import Token, WgslError

__all__ = ["ImmediateField", "MemberDecl", "TypeRef", "TypeSizer", "Unsized"]

Span = tuple[int, int]
"""A token range [start, end) holding an expression."""

_SCALARS = {"u32": 4, "i32": 4, "f32": 4, "f16": 2}
_SHORT = {"f": "f32", "i": "i32", "u": "u32", "h": "f16"}
_VEC = re.compile(r"vec([234])([fiuh]?)")
_MAT = re.compile(r"mat([234])x([234])([fh]?)")
_MAX_FIELDS = 512


class Unsized(Exception):
    """A type this sizer cannot lay out (unknown name, an array count that is not a
    constant, a non-host-shareable type). Internal: callers give 0 or an error."""


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A parsed type: its name, template arguments (types, or token spans of
    expressions) and the source offset where it starts."""

    name: str
    args: tuple[TypeRef | Span, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class MemberDecl:
    """A struct member: name, type, and the expression spans of ``@size``/``@align``."""

    name: str
    type: TypeRef
    size: Span | None = None
    align: Span | None = None


@dataclass(frozen=True, slots=True)
class ImmediateField:
    """One scalar of the immediate block, flattened: ``name`` (``n``, ``v[2]``,
    ``s.m[1][0]``), byte ``offset`` and ``scalar`` type ("u32", "i32", "f32" or "f16")."""

    name: str
    offset: int
    scalar: str


class TypeSizer:
    """Lays out types of one module: its ``structs`` and ``aliases``; ``const_int``
    evaluates an expression span to an int (raising Unsized); ``f16`` says whether
    ``enable f16;`` is present; ``where`` turns an offset into a location for messages."""

    def __init__(
        self,
        structs: dict[str, tuple[MemberDecl, ...]],
        aliases: dict[str, TypeRef],
        tokens: list[Token],
        const_int: Callable[[Span], int],
        f16: bool,
        where: Callable[[int], str],
    ) -> None:
        self.structs = structs
        self.aliases = aliases
        self.tokens = tokens
        self.const_int = const_int
        self.f16 = f16
        self.where = where
        self._struct_cache: dict[tuple[str, bool], tuple[int, int, tuple[int, ...]]] = {}
        self._active: set[str] = set()

    def resolve(self, t: TypeRef | Span) -> TypeRef:
        """``t`` as a type with aliases followed. Raises Unsized or WgslError."""
        if not isinstance(t, TypeRef):
            start, end = t
            if end - start != 1 or self.tokens[start][0] != "ident":
                raise Unsized("a type argument that is not a type")
            t = TypeRef(self.tokens[start][1], (), self.tokens[start][2])
        seen = 0
        while not t.args and t.name in self.aliases:
            t = self.aliases[t.name]
            seen += 1
            if seen > 64:
                raise WgslError(f"alias cycle through {t.name!r} at {self.where(t.pos)}")
        return t

    def layout(self, t: TypeRef | Span, binding: bool) -> tuple[int, int]:
        """(size, alignment) of ``t``. With ``binding``, atomics and runtime-sized arrays
        (counted as one element) are allowed, as in a buffer binding. Raises Unsized, or
        WgslError for a module that is invalid (a recursive struct, f16 not enabled, a
        bad ``@size``/``@align``)."""
        t = self.resolve(t)
        name = t.name
        if name in _SCALARS:
            if name == "f16" and not self.f16:
                raise WgslError(f"f16 is used at {self.where(t.pos)} without `enable f16;`")
            return _SCALARS[name], _SCALARS[name]
        if name == "atomic":
            if not binding or len(t.args) != 1:
                raise Unsized("atomic")
            return self.layout(t.args[0], binding)
        if name == "array":
            return self._array(t, binding)
        vec = _VEC.fullmatch(name)
        if vec:
            n = int(vec.group(1))
            size = self._component(t, vec.group(2))
            return size * n, size * (4 if n == 3 else n)
        mat = _MAT.fullmatch(name)
        if mat:
            cols, rows = int(mat.group(1)), int(mat.group(2))
            size = self._component(t, mat.group(3))
            column = size * (4 if rows == 3 else rows)
            return cols * column, column
        if name in self.structs and not t.args:
            size, align, _ = self.struct_layout(name, binding)
            return size, align
        raise Unsized(f"type {name!r}")

    def _component(self, t: TypeRef, short: str) -> int:
        """Byte size of the component type of a vector or matrix type."""
        if short:
            if t.args:
                raise Unsized("template arguments on a shorthand type")
            return self.layout(TypeRef(_SHORT[short], (), t.pos), False)[0]
        if len(t.args) != 1:
            raise Unsized(f"{t.name} needs one component type")
        scalar = self.resolve(t.args[0])
        if scalar.name not in _SCALARS:
            raise Unsized("a vector of a non-numeric type")
        return self.layout(scalar, False)[0]

    def _array(self, t: TypeRef, binding: bool) -> tuple[int, int]:
        if not 1 <= len(t.args) <= 2:
            raise Unsized("array needs an element type")
        size, align = self.layout(t.args[0], binding)
        stride = -(-size // align) * align
        if len(t.args) == 1:
            if not binding:
                raise Unsized("a runtime-sized array")
            return stride, align
        count_arg = t.args[1]
        if isinstance(count_arg, TypeRef):
            raise Unsized("an array count that is a type")
        count = self.const_int(count_arg)
        if count <= 0:
            raise WgslError(f"array count {count} at {self.where(t.pos)} must be positive")
        return stride * count, align

    def struct_layout(self, name: str, binding: bool) -> tuple[int, int, tuple[int, ...]]:
        """(size, alignment, member offsets) of struct ``name``. Raises Unsized or
        WgslError (a struct that contains itself)."""
        key = (name, binding)
        found = self._struct_cache.get(key)
        if found is not None:
            return found
        if name in self._active:
            raise WgslError(f"struct {name!r} contains itself (a recursive struct)")
        self._active.add(name)
        try:
            result = self._lay_out_members(name, binding)
        finally:
            self._active.discard(name)
        self._struct_cache[key] = result
        return result

    def _lay_out_members(self, name: str, binding: bool) -> tuple[int, int, tuple[int, ...]]:
        members = self.structs[name]
        if not members:
            raise Unsized(f"struct {name!r} has no members")
        offset, struct_align = 0, 1
        offsets = []
        for member in members:
            size, align = self.layout(member.type, binding)
            if member.align is not None:
                align = self._member_attribute(member.align, name, member, "align")
                if align & (align - 1):
                    raise WgslError(
                        f"@align({align}) on {name}.{member.name} is not a power of two"
                    )
            if member.size is not None:
                explicit = self._member_attribute(member.size, name, member, "size")
                if explicit < size:
                    raise WgslError(
                        f"@size({explicit}) on {name}.{member.name} is smaller than its type "
                        f"({size} bytes)"
                    )
                size = explicit
            offset = -(-offset // align) * align
            offsets.append(offset)
            offset += size
            struct_align = max(struct_align, align)
        return -(-offset // struct_align) * struct_align, struct_align, tuple(offsets)

    def _member_attribute(self, span: Span, struct: str, member: MemberDecl, attr: str) -> int:
        value = self.const_int(span)
        if value <= 0:
            raise WgslError(f"@{attr}({value}) on {struct}.{member.name} must be positive")
        return value

    def fields(self, t: TypeRef | Span, prefix: str, offset: int) -> list[ImmediateField]:
        """The scalar fields of ``t`` (laid out as for an immediate block) at ``offset``,
        named from ``prefix``. Raises Unsized beyond _MAX_FIELDS fields."""
        out: list[ImmediateField] = []
        self._fields(t, prefix, offset, out)
        return out

    def _fields(
        self, t: TypeRef | Span, prefix: str, offset: int, out: list[ImmediateField]
    ) -> None:
        if len(out) > _MAX_FIELDS:
            raise Unsized("too many fields")
        t = self.resolve(t)
        name = t.name
        if name in _SCALARS:
            out.append(ImmediateField(prefix, offset, name))
            return
        vec, mat = _VEC.fullmatch(name), _MAT.fullmatch(name)
        if vec or mat:
            short = (vec or mat).group(3 if mat else 2)  # type: ignore[union-attr]
            scalar = _SHORT[short] if short else self.resolve(t.args[0]).name
            width = _SCALARS[scalar]
            if vec:
                for k in range(int(vec.group(1))):
                    out.append(ImmediateField(f"{prefix}[{k}]", offset + k * width, scalar))
                return
            assert mat is not None
            rows = int(mat.group(2))
            column = width * (4 if rows == 3 else rows)
            for c in range(int(mat.group(1))):
                for r in range(rows):
                    out.append(
                        ImmediateField(
                            f"{prefix}[{c}][{r}]", offset + c * column + r * width, scalar
                        )
                    )
            return
        if name == "array":
            size, align = self.layout(t.args[0], False)
            stride = -(-size // align) * align
            count = self.layout(t, False)[0] // stride
            for k in range(count):
                self._fields(t.args[0], f"{prefix}[{k}]", offset + k * stride, out)
            return
        _, _, offsets = self.struct_layout(name, False)
        for member, member_offset in zip(self.structs[name], offsets, strict=True):
            self._fields(member.type, f"{prefix}.{member.name}", offset + member_offset, out)
