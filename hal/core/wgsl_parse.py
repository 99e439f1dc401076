"""WGSL module-scope parser: declarations, attributes and function bodies as token spans.

It reads the module-scope grammar (directives, ``alias``, ``const``, ``override``, ``var``,
``struct``, ``fn``, ``const_assert``) and keeps function bodies only as the set of
identifiers they mention, which is all the reflector needs. Expressions stay token spans,
evaluated later where a value is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hal.core.wgsl_tokens import Token, WgslError, line_col, tokenize
from hal.core.wgsl_types import MemberDecl, Span, TypeRef

__all__ = ["Attribute", "FnDecl", "Module", "VarDecl", "parse_module"]

_MAX_TYPE_DEPTH = 32
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}


@dataclass(frozen=True, slots=True)
class Attribute:
    """``@name(args...)``: argument expression spans and the offset of the ``@``."""

    name: str
    args: tuple[Span, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class VarDecl:
    """A module-scope ``var``: template words (address space, access), name, type, and
    the source range from ``var`` to the end of the name (for rewriting)."""

    attrs: tuple[Attribute, ...]
    template: tuple[str, ...]
    name: str
    type: TypeRef | None
    type_text: str
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FnDecl:
    """A function: attributes, name and the identifiers its body mentions (member names
    after ``.`` excluded)."""

    attrs: tuple[Attribute, ...]
    name: str
    idents: frozenset[str]


@dataclass(slots=True)
class Module:
    """The module-scope declarations of a WGSL source."""

    source: str
    tokens: list[Token]
    enables: set[str] = field(default_factory=set)
    aliases: dict[str, TypeRef] = field(default_factory=dict)
    consts: dict[str, tuple[TypeRef | None, Span]] = field(default_factory=dict)
    overrides: dict[str, tuple[tuple[Attribute, ...], TypeRef | None, Span | None, int]] = field(
        default_factory=dict
    )
    structs: dict[str, tuple[MemberDecl, ...]] = field(default_factory=dict)
    variables: list[VarDecl] = field(default_factory=list)
    functions: list[FnDecl] = field(default_factory=list)

    def where(self, offset: int) -> str:
        """``line L, column C`` of a source offset."""
        return line_col(self.source, offset)


class _Parser:
    def __init__(self, source: str) -> None:
        tokens = tokenize(source)
        self.eof = len(tokens)
        tokens.append(("eof", "", len(source)))
        self.m = Module(source, tokens)
        self.t = tokens
        self.i = 0

    def fail(self, message: str, index: int | None = None) -> WgslError:
        kind, text, pos = self.t[self.i if index is None else index]
        found = "the end of the module" if kind == "eof" else repr(text)
        return WgslError(f"{message} at {self.m.where(pos)} (found {found})")

    def text(self) -> str:
        return self.t[self.i][1]

    def accept(self, text: str) -> bool:
        if self.t[self.i][1] == text and self.t[self.i][0] != "eof":
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.fail(f"expected {text!r}")

    def ident(self) -> str:
        kind, text, _ = self.t[self.i]
        if kind != "ident":
            raise self.fail("expected a name")
        self.i += 1
        return text

    def until(self, stops: tuple[str, ...]) -> Span:
        """Skip to the first of ``stops`` outside brackets (not consumed); its span."""
        start, t = self.i, self.t
        depth: list[str] = []
        while True:
            kind, text, _ = t[self.i]
            if kind == "eof":
                raise self.fail(f"expected {' or '.join(map(repr, stops))}")
            if kind == "op":
                if not depth and text in stops:
                    return start, self.i
                if text in _OPEN:
                    depth.append(_OPEN[text])
                elif text in _CLOSE and (not depth or depth.pop() != text):
                    raise self.fail("unbalanced bracket")
            self.i += 1

    def attributes(self) -> tuple[Attribute, ...]:
        attrs = []
        while self.t[self.i][1] == "@" and self.t[self.i][0] == "op":
            pos = self.t[self.i][2]
            self.i += 1
            name = self.ident()
            args: list[Span] = []
            if self.accept("("):
                while not self.accept(")"):
                    args.append(self.until((",", ")")))
                    self.accept(",")
            attrs.append(Attribute(name, tuple(args), pos))
        return tuple(attrs)

    def type_(self, depth: int = 0) -> TypeRef:
        if depth > _MAX_TYPE_DEPTH:
            raise self.fail("the type nests too deeply")
        pos = self.t[self.i][2]
        name = self.ident()
        args: list[TypeRef | Span] = []
        if self.accept("<"):
            while not self.accept(">"):
                if self.t[self.i][0] == "ident" and self.t[self.i + 1][1] == "<":
                    args.append(self.type_(depth + 1))
                else:
                    start = self.i
                    args.append(self.until((",", ">")))
                    if self.i == start:
                        raise self.fail("expected a template argument")
                if not self.accept(","):
                    self.expect(">")
                    break
        return TypeRef(name, tuple(args), pos)

    def parse(self) -> Module:
        while self.i < self.eof:
            self.declaration()
        return self.m

    def declaration(self) -> None:
        attrs = self.attributes()
        kind, word, pos = self.t[self.i]
        if kind == "op" and word == ";" and not attrs:
            self.i += 1
            return
        if kind != "ident":
            raise self.fail("expected a module-scope declaration")
        self.i += 1
        handler = _HANDLERS.get(word)
        if handler is None:
            raise self.fail("expected a module-scope declaration", self.i - 1)
        handler(self, attrs, pos)

    def directive(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        word = self.t[self.i - 1][1]
        start, end = self.until((";",))
        if word == "enable":
            self.m.enables.update(t[1] for t in self.t[start:end] if t[0] == "ident")
        self.i += 1

    def alias(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        name = self.ident()
        self.expect("=")
        self.m.aliases[name] = self.type_()
        self.expect(";")

    def constant(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        is_override = self.t[self.i - 1][1] == "override"
        name = self.ident()
        type_ = self.type_() if self.accept(":") else None
        value: Span | None = None
        if self.accept("="):
            value = self.until((";",))
            if value[0] == value[1]:
                raise self.fail("expected an initializer")
        elif not is_override:
            raise self.fail("expected '=' (a const needs a value)")
        self.expect(";")
        if is_override:
            self.m.overrides[name] = (attrs, type_, value, pos)
        else:
            assert value is not None
            self.m.consts[name] = (type_, value)

    def variable(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        template: list[str] = []
        if self.accept("<"):
            while not self.accept(">"):
                template.append(self.ident())
                if not self.accept(","):
                    self.expect(">")
                    break
        name = self.ident()
        name_end = self.t[self.i - 1][2] + len(name)
        type_, type_text = None, ""
        if self.accept(":"):
            type_start = self.t[self.i][2]
            type_ = self.type_()
            type_text = self.m.source[type_start : self.t[self.i][2]].strip()
        if self.accept("="):
            self.until((";",))
        self.expect(";")
        self.m.variables.append(
            VarDecl(attrs, tuple(template), name, type_, type_text, (pos, name_end))
        )

    def struct(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        name = self.ident()
        self.expect("{")
        members = []
        while not self.accept("}"):
            member_attrs = self.attributes()
            member = self.ident()
            self.expect(":")
            type_ = self.type_()
            found = {a.name: a.args for a in member_attrs}
            members.append(
                MemberDecl(
                    member, type_, _one_arg(self, found, "size"), _one_arg(self, found, "align")
                )
            )
            if not self.accept(","):
                self.expect("}")
                break
        self.accept(";")
        if name in self.m.structs:
            raise WgslError(f"struct {name!r} is declared twice")
        self.m.structs[name] = tuple(members)

    def function(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        name = self.ident()
        self.expect("(")
        self.until((")",))
        self.i += 1
        self.until(("{",))
        self.m.functions.append(FnDecl(attrs, name, self.body()))

    def body(self) -> frozenset[str]:
        """Identifiers of the brace-delimited body at the cursor, which it skips."""
        t, i, depth = self.t, self.i, 0
        idents = set()
        after_dot = False
        while True:
            kind, text, _ = t[i]
            if kind == "ident":
                if not after_dot:
                    idents.add(text)
            elif kind == "op":
                if text == "{":
                    depth += 1
                elif text == "}":
                    depth -= 1
                    if depth == 0:
                        self.i = i + 1
                        return frozenset(idents)
            else:
                if kind == "eof":
                    self.i = i
                    raise self.fail("unterminated function body")
            after_dot = text == "." and kind == "op"
            i += 1

    def const_assert(self, attrs: tuple[Attribute, ...], pos: int) -> None:
        self.until((";",))
        self.i += 1


def _one_arg(parser: _Parser, found: dict[str, tuple[Span, ...]], name: str) -> Span | None:
    args = found.get(name)
    if args is None:
        return None
    if len(args) != 1:
        raise parser.fail(f"@{name} takes one value")
    return args[0]


_HANDLERS = {
    "enable": _Parser.directive,
    "requires": _Parser.directive,
    "diagnostic": _Parser.directive,
    "alias": _Parser.alias,
    "const": _Parser.constant,
    "override": _Parser.constant,
    "var": _Parser.variable,
    "struct": _Parser.struct,
    "fn": _Parser.function,
    "const_assert": _Parser.const_assert,
}


def parse_module(source: str) -> Module:
    """The module-scope declarations of WGSL ``source``. Raises WgslError (an
    InvalidArgumentError) for text that is not a WGSL module."""
    return _Parser(source).parse()
