"""A small WGSL reflector: global bindings, immediates and which entry point uses what.

wgpu-py exposes no shader reflection, so this reads the source itself. It understands what
HAL kernels use (module-scope ``var`` declarations, ``struct``s of scalars/vectors/matrices/
arrays, ``fn`` bodies and calls) and is deliberately conservative: a binding referenced
anywhere in an entry point's call graph counts as used. One type sizer gives both the
immediate block's size and each binding's minimum binding size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BindingDecl", "EntryPointDecl", "ModuleInfo", "reflect", "rewrite_immediates"]

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_VAR = re.compile(
    r"(?P<attrs>(?:@\w+\s*(?:\([^)]*\))?\s*)*)var\s*<(?P<space>[^>]*)>\s*(?P<name>\w+)\s*:"
    r"\s*(?P<type>[^;=]+?)\s*;"
)
_FN = re.compile(r"(?P<attrs>(?:@\w+\s*(?:\([^)]*\))?\s*)*)\bfn\s+(?P<name>\w+)\s*\(")
_STRUCT = re.compile(r"\bstruct\s+(?P<name>\w+)\s*\{(?P<body>[^}]*)\}")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_ATTR_INT = r"@{}\s*\(\s*(\d+)\s*\)"

_SCALARS = {"u32": 4, "i32": 4, "f32": 4, "f16": 2}


@dataclass(frozen=True, slots=True)
class BindingDecl:
    """A ``@group(g) @binding(b) var<space[, access]> name`` declaration.

    ``kind`` is the bind-group-layout type: "storage", "read-only-storage" or "uniform";
    ``min_size`` the smallest byte length it can be bound with (a runtime-sized array counts
    one element), 0 when the type could not be sized.
    """

    group: int
    binding: int
    name: str
    kind: str
    min_size: int = 0


@dataclass(frozen=True, slots=True)
class EntryPointDecl:
    """A ``@compute`` function: its name, workgroup size expression and the module-scope
    names its call graph references."""

    name: str
    uses: frozenset[str]


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What :func:`reflect` found in a module."""

    bindings: tuple[BindingDecl, ...]
    entry_points: tuple[EntryPointDecl, ...]
    immediate_name: str | None
    immediate_type: str | None
    immediate_size: int


def _strip_comments(source: str) -> str:
    return _COMMENT.sub(lambda m: " " * len(m.group(0)), source)


def _body_after(source: str, start: int) -> tuple[int, int]:
    """Span of the brace-delimited body that begins at the first ``{`` after ``start``."""
    open_at = source.find("{", start)
    if open_at < 0:
        return start, start
    depth = 0
    for i in range(open_at, len(source)):
        c = source[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return open_at, i + 1
    return open_at, len(source)


def _type_layout(type_text: str, structs: dict[str, str], binding: bool) -> tuple[int, int]:
    """(minimum size, alignment) of a host-shareable WGSL type under the storage/uniform
    layout rules: the one sizer for immediate blocks and binding minimum sizes.

    With ``binding``, atomics and runtime-sized arrays (counted as one element) are allowed,
    as in a buffer binding. Raises ValueError (or KeyError) for a type it cannot size."""
    t = re.sub(r"\s+", "", type_text)
    atomic = re.fullmatch(r"atomic<(\w+)>", t) if binding else None
    if atomic:
        t = atomic.group(1)
    if t in _SCALARS:
        return _SCALARS[t], _SCALARS[t]
    vec = re.fullmatch(r"vec([234])<(\w+)>|vec([234])([fiuh])", t)
    if vec:
        n = int(vec.group(1) or vec.group(3))
        scalar = vec.group(2) or {"f": "f32", "i": "i32", "u": "u32", "h": "f16"}[vec.group(4)]
        size = _SCALARS[scalar]
        return size * n, size * (4 if n == 3 else n)
    matrix = re.fullmatch(r"mat([234])x([234])(?:<(\w+)>|([fh]))", t)
    if matrix:
        scalar = matrix.group(3) or {"f": "f32", "h": "f16"}[matrix.group(4)]
        rows = int(matrix.group(2))
        column = _SCALARS[scalar] * (4 if rows == 3 else rows)
        return int(matrix.group(1)) * column, column
    array = re.fullmatch(r"array<(.+?)(?:,(\w+))?>", t)
    if array and (array.group(2) or binding):
        size, align = _type_layout(array.group(1), structs, binding)
        stride = -(-size // align) * align
        count = int(array.group(2).rstrip("ui"), 0) if array.group(2) else 1
        return stride * count, align
    if t in structs:
        offset, align = 0, 1
        for field in structs[t].split(","):
            if ":" in field:
                size, field_align = _type_layout(field.split(":", 1)[1], structs, binding)
                offset = -(-offset // field_align) * field_align + size
                align = max(align, field_align)
        return -(-offset // align) * align, align
    raise ValueError(f"unsupported type {type_text.strip()!r}")


def _min_binding_size(type_text: str, structs: dict[str, str]) -> int:
    """The smallest byte length a binding of ``type_text`` can be bound with; 0 when the
    type cannot be sized here (wgpu then checks it when the command buffer is encoded)."""
    try:
        return _type_layout(type_text, structs, binding=True)[0]
    except (ValueError, KeyError):
        return 0


def reflect(source: str) -> ModuleInfo:
    """Reflect bindings, the immediate block and entry points out of WGSL ``source``.

    Raises ValueError for an immediate block of a type it cannot size."""
    text = _strip_comments(source)
    structs = {
        m.group("name"): re.sub(r"@\w+\s*(\([^)]*\))?", "", m.group("body"))
        for m in _STRUCT.finditer(text)
    }
    functions: dict[str, tuple[str, bool]] = {}
    fn_spans: list[tuple[int, int]] = []
    for m in _FN.finditer(text):
        _, end = _body_after(text, m.end())
        functions[m.group("name")] = (text[m.end() : end], "@compute" in m.group("attrs"))
        fn_spans.append((m.start(), end))
    bindings: list[BindingDecl] = []
    globals_: set[str] = set()
    immediate_name = immediate_type = None
    immediate_size = 0
    for m in _VAR.finditer(text):
        if any(s <= m.start() < e for s, e in fn_spans):
            continue  # a function-scope variable
        name = m.group("name")
        globals_.add(name)
        if m.group("space").split(",")[0].strip() == "immediate":
            immediate_name, immediate_type = name, m.group("type").strip()
            try:
                immediate_size = _type_layout(immediate_type, structs, binding=False)[0]
            except (ValueError, KeyError):
                raise ValueError(
                    f"unsupported type {immediate_type!r} in the immediate block"
                ) from None
            continue
        decl = _binding_decl(m, structs)
        if decl is not None:
            bindings.append(decl)
    return ModuleInfo(
        tuple(bindings),
        _entry_points(functions, globals_),
        immediate_name,
        immediate_type,
        immediate_size,
    )


def _binding_decl(m: re.Match[str], structs: dict[str, str]) -> BindingDecl | None:
    """The binding a module-scope ``var`` match declares; None unless it is a storage or
    uniform buffer with ``@group`` and ``@binding``."""
    space = [p.strip() for p in m.group("space").split(",")]
    group = re.search(_ATTR_INT.format("group"), m.group("attrs"))
    binding = re.search(_ATTR_INT.format("binding"), m.group("attrs"))
    if group is None or binding is None or space[0] not in ("storage", "uniform"):
        return None
    if space[0] == "uniform":
        kind = "uniform"
    else:
        kind = "storage" if len(space) > 1 and space[1] == "read_write" else "read-only-storage"
    return BindingDecl(
        int(group.group(1)),
        int(binding.group(1)),
        m.group("name"),
        kind,
        _min_binding_size(m.group("type"), structs),
    )


def _entry_points(
    functions: dict[str, tuple[str, bool]], globals_: set[str]
) -> tuple[EntryPointDecl, ...]:
    """Each ``@compute`` function with the module-scope names its call graph references."""
    references = {name: set(_IDENT.findall(body)) for name, (body, _) in functions.items()}
    entry_points = []
    for name, (_, is_compute) in functions.items():
        if not is_compute:
            continue
        seen: set[str] = set()
        todo = [name]
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.add(fn)
            todo.extend(r for r in references.get(fn, ()) if r in functions)
        used = set().union(*(references[f] for f in seen)) & globals_
        entry_points.append(EntryPointDecl(name, frozenset(used)))
    return tuple(entry_points)


def rewrite_immediates(source: str, info: ModuleInfo, group: int) -> str:
    """Replace the ``var<immediate>`` declaration by a buffer binding at ``@group(group)
    @binding(0)``: ``var<uniform>`` for a struct, ``var<storage, read>`` otherwise (uniform
    arrays would need a 16-byte stride, which would change the kernel's view)."""
    if info.immediate_name is None:
        return source
    space = (
        "uniform"
        if info.immediate_type and not info.immediate_type.startswith("array")
        else "storage, read"
    )
    pattern = re.compile(r"var\s*<\s*immediate\s*>\s*" + re.escape(info.immediate_name) + r"\s*:")
    return pattern.sub(
        f"@group({group}) @binding(0) var<{space}> {info.immediate_name}:", source, count=1
    )
