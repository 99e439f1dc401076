"""WGSL tokens: the one lexer behind the reflector.

Comments are blanked first (block comments nest, as the WGSL grammar says), so a
declaration inside any comment never reaches the parser. ``>`` is always its own token —
``>>``, ``>=`` and ``>>=`` come out as adjacent ``>``/``=`` tokens — because WGSL's template
lists close on ``>``; the expression evaluator joins adjacent ones back into operators.
"""

from __future__ import annotations

import re

from hal.errors import InvalidArgumentError

__all__ = ["Token", "WgslError", "line_col", "tokenize"]

Token = tuple[str, str, int]
"""(kind, text, offset): kind is "ident", "int", "float" or "op"."""

_MARKER = re.compile(r"//|/\*|\*/")
_LINE_END = re.compile(r"[\n\r\x0b\x0c\x85\u2028\u2029]")
_DEC_EXP = r"[eE][+-]?[0-9]+"
_HEX_EXP = r"[pP][+-]?[0-9]+"
_FLOAT = (
    r"0[xX](?:[0-9a-fA-F]*\.[0-9a-fA-F]+|[0-9a-fA-F]+\.[0-9a-fA-F]*)(?:" + _HEX_EXP + r"[fh]?)?"
    r"|0[xX][0-9a-fA-F]+" + _HEX_EXP + r"[fh]?"
    r"|(?:[0-9]*\.[0-9]+|[0-9]+\.[0-9]*)(?:" + _DEC_EXP + r")?[fh]?"
    r"|[0-9]+" + _DEC_EXP + r"[fh]?"
    r"|(?:0|[1-9][0-9]*)[fh]"
)
_INT = r"0[xX][0-9a-fA-F]+[iu]?|(?:0|[1-9][0-9]*)[iu]?"
# One match per token: (skipped blankspace and line comments, ident, float, int, op, end,
# bad). findall over plain groups is much faster than match objects; offsets are rebuilt
# from the lengths.
_TOKEN = re.compile(
    r"((?:\s|//[^\n\r\x0b\x0c\x85\u2028\u2029]*)*)(?:"
    r"([^\W\d]\w*)"
    r"|(?=\.?[0-9])(?:(" + _FLOAT + r")|(" + _INT + r"))"
    r"|(->|<<=|<<|<=|==|!=|&&|\|\||\+\+|--|[-+*/%&|^]=|[@()\[\]{}<>,;:=+\-*/%&|^~!.])"
    r"|(\Z)"
    r"|(.))",
    re.S,
)


class WgslError(InvalidArgumentError):
    """Malformed or unsupported WGSL found while reflecting a module."""


def line_col(source: str, offset: int) -> str:
    """``line L, column C`` of ``offset`` in ``source`` (1-based), for messages."""
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _blank_comments(source: str) -> str:
    """``source`` with every comment replaced by spaces (offsets are kept).

    Raises WgslError for an unterminated block comment."""
    parts: list[str] = []
    keep_from = 0
    pos = 0
    while True:
        m = _MARKER.search(source, pos)
        if m is None:
            break
        if m.group() == "*/":
            pos = m.start() + 1  # a stray ``*/`` outside comments is ``*`` then ``/``
            continue
        start = m.start()
        if m.group() == "//":
            end_m = _LINE_END.search(source, m.end())
            end = end_m.start() if end_m else len(source)
        else:
            end = _block_end(source, m.end(), start)
        parts.append(source[keep_from:start])
        parts.append(_spaces(source[start:end]))
        keep_from = pos = end
    parts.append(source[keep_from:])
    return "".join(parts)


def _block_end(source: str, pos: int, start: int) -> int:
    """The offset just past the block comment opened before ``pos`` (comments nest)."""
    depth = 1
    while depth:
        m = _MARKER.search(source, pos)
        if m is None:
            raise WgslError(f"unterminated block comment at {line_col(source, start)}")
        if m.group() == "/*":
            depth += 1
        elif m.group() == "*/":
            depth -= 1
        pos = m.end() if m.group() != "//" else m.start() + 1
    return pos


def _spaces(text: str) -> str:
    # Keep line breaks so that line numbers in messages stay right.
    return re.sub(r"[^\n]", " ", text)


def tokenize(source: str) -> list[Token]:
    """The tokens of WGSL ``source``, comments and blankspace dropped.

    Raises WgslError (an InvalidArgumentError) for a character WGSL does not allow or an
    unterminated block comment."""
    text = _blank_comments(source) if "/*" in source else source
    tokens: list[Token] = []
    append = tokens.append
    pos = 0
    for skip, ident, real, integer, op, _, bad in _TOKEN.findall(text):
        pos += len(skip)
        if ident:
            append(("ident", ident, pos))
            pos += len(ident)
        elif op:
            append(("op", op, pos))
            pos += len(op)
        elif integer:
            append(("int", integer, pos))
            pos += len(integer)
        elif real:
            append(("float", real, pos))
            pos += len(real)
        elif bad:
            raise WgslError(f"unexpected character {bad!r} at {line_col(source, pos)}")
        else:
            break  # the end of the text
    return tokens
