"""A small WGSL reflector: global bindings, immediates and which entry point uses what.

wgpu-py exposes no shader reflection, so this reads the source itself. It understands what
HAL kernels use (module-scope ``var`` declarations, ``struct``s of scalars/vectors/arrays,
``fn`` bodies and calls) and is deliberately conservative: a binding referenced anywhere in an
entry point's call graph counts as used.
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

    ``kind`` is the bind-group-layout type: "storage", "read-only-storage" or "uniform".
    """

    group: int
    binding: int
    name: str
    kind: str


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


def _type_layout(type_text: str, structs: dict[str, str]) -> tuple[int, int]:
    """(size, alignment) of a host-shareable WGSL type, for the immediate block."""
    t = type_text.strip()
    if t in _SCALARS:
        return _SCALARS[t], _SCALARS[t]
    vec = re.fullmatch(r"vec([234])\s*<\s*(\w+)\s*>|vec([234])([fiuh])", t)
    if vec:
        n = int(vec.group(1) or vec.group(3))
        scalar = vec.group(2) or {"f": "f32", "i": "i32", "u": "u32", "h": "f16"}[vec.group(4)]
        size = _SCALARS.get(scalar, 4)
        align = size * (4 if n == 3 else n)
        return size * n, align
    arr = re.fullmatch(r"array\s*<\s*(.+?)\s*,\s*(\w+)\s*>", t)
    if arr:
        esize, ealign = _type_layout(arr.group(1), structs)
        stride = (esize + ealign - 1) // ealign * ealign
        return stride * int(arr.group(2), 0), ealign
    if t in structs:
        offset, align = 0, 1
        for field in structs[t].split(","):
            if ":" not in field:
                continue
            ftype = field.split(":", 1)[1]
            fsize, falign = _type_layout(ftype, structs)
            offset = (offset + falign - 1) // falign * falign + fsize
            align = max(align, falign)
        return (offset + align - 1) // align * align, align
    raise ValueError(f"unsupported type {t!r} in the immediate block")


def reflect(source: str) -> ModuleInfo:
    """Reflect bindings, the immediate block and entry points out of WGSL ``source``.

    Raises ValueError for an immediate block of a type it cannot size."""
    text = _strip_comments(source)
    structs = {
        m.group("name"): re.sub(r"@\w+\s*(\([^)]*\))?", "", m.group("body"))
        for m in _STRUCT.finditer(text)
    }
    bindings: list[BindingDecl] = []
    globals_: set[str] = set()
    immediate_name = immediate_type = None
    immediate_size = 0
    functions: dict[str, tuple[str, bool]] = {}
    fn_spans: list[tuple[int, int]] = []
    for m in _FN.finditer(text):
        _, end = _body_after(text, m.end())
        functions[m.group("name")] = (text[m.end() : end], "@compute" in m.group("attrs"))
        fn_spans.append((m.start(), end))

    def inside_function(pos: int) -> bool:
        return any(s <= pos < e for s, e in fn_spans)

    for m in _VAR.finditer(text):
        if inside_function(m.start()):
            continue
        name = m.group("name")
        globals_.add(name)
        space = [p.strip() for p in m.group("space").split(",")]
        attrs = m.group("attrs")
        if space[0] == "immediate":
            immediate_name, immediate_type = name, m.group("type").strip()
            immediate_size = _type_layout(immediate_type, structs)[0]
            continue
        group = re.search(_ATTR_INT.format("group"), attrs)
        binding = re.search(_ATTR_INT.format("binding"), attrs)
        if group is None or binding is None or space[0] not in ("storage", "uniform"):
            continue
        if space[0] == "uniform":
            kind = "uniform"
        else:
            kind = "storage" if len(space) > 1 and space[1] == "read_write" else "read-only-storage"
        bindings.append(BindingDecl(int(group.group(1)), int(binding.group(1)), name, kind))

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
    return ModuleInfo(
        tuple(bindings), tuple(entry_points), immediate_name, immediate_type, immediate_size
    )


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
