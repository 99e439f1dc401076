"""WGSL constant expressions: what attributes, array sizes and overrides evaluate to.

Covers the subset kernels use in those places: integer and float literals (``i``/``u``/
``f``/``h`` suffixes, hex), ``true``/``false``, module-scope ``const`` (and ``override``
defaults where the grammar allows override-expressions), unary ``- ! ~``, binary
``+ - * / % << >> & | ^ && || == != < <= > >=``, parentheses, ``min``/``max``/``abs``/
``select`` and the scalar conversions ``u32 i32 f32 f16 bool``. Anything else is
:class:`NotConstant`, which callers treat as "unknown" or turn into an error.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from hal.core.wgsl_tokens import Token

__all__ = ["Env", "NotConstant", "Value", "convert", "evaluate", "literal_value"]

Value = tuple[str, "int | float | bool"]
"""(type, value): type is "int"/"float" (abstract), "i32", "u32", "f32", "f16" or "bool"."""

_MAX_DEPTH = 64
_RANGES = {
    "i32": (-(1 << 31), (1 << 31) - 1),
    "u32": (0, (1 << 32) - 1),
    "int": (-(1 << 63), (1 << 63) - 1),
}
_FLOAT_MAX = {"f32": 3.4028234663852886e38, "f16": 65504.0, "float": 1.7976931348623157e308}


class NotConstant(Exception):
    """An expression this evaluator cannot reduce to a value (unsupported, invalid or
    referring to something unknown). Internal: callers convert it."""


@dataclass(slots=True)
class Env:
    """Names an expression may refer to: ``lookup(name, allow_overrides)`` returns the
    value of a module-scope ``const`` (or an ``override`` default), or raises
    NotConstant."""

    lookup: Callable[[str, bool], Value]
    allow_overrides: bool = False


def literal_value(kind: str, text: str) -> Value:
    """The typed value of an "int" or "float" token. Raises NotConstant when out of range."""
    if kind == "int":
        suffix = text[-1] if text[-1] in "iu" else ""
        body = text[:-1] if suffix else text
        value = int(body, 16) if body[:2].lower() == "0x" else int(body)
        return _checked(("i32" if suffix == "i" else "u32" if suffix == "u" else "int", value))
    if text[:2].lower() == "0x":
        suffix = text[-1] if "p" in text.lower() and text[-1] in "fh" else ""
    else:
        suffix = text[-1] if text[-1] in "fh" else ""
    body = text[:-1] if suffix else text
    number = float.fromhex(body) if body[:2].lower() == "0x" else float(body)
    return _checked({"f": "f32", "h": "f16"}.get(suffix, "float"), number)


def _checked(t: str | Value, number: float | None = None) -> Value:
    value: Value = t if isinstance(t, tuple) else (t, number)  # type: ignore[assignment]
    kind, v = value
    if kind in _RANGES:
        lo, hi = _RANGES[kind]
        if not lo <= v <= hi:
            raise NotConstant(f"{v} does not fit in {kind}")
    elif kind in _FLOAT_MAX and not abs(v) <= _FLOAT_MAX[kind]:
        raise NotConstant(f"{v} is not a finite {kind}")
    return value


def evaluate(tokens: list[Token], start: int, end: int, env: Env) -> Value:
    """The value of the expression ``tokens[start:end]``. Raises NotConstant."""
    parser = _Expr(tokens, end, env)
    parser.i = start
    value = parser.binary(0, 0)
    if parser.i != end:
        raise NotConstant("trailing tokens")
    return value


_BINARY = {
    "||": 1,
    "&&": 2,
    "|": 3,
    "^": 4,
    "&": 5,
    "==": 6,
    "!=": 6,
    "<": 7,
    "<=": 7,
    ">": 7,
    ">=": 7,
    "<<": 8,
    ">>": 8,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
}


class _Expr:
    """A precedence-climbing evaluator over a token slice."""

    def __init__(self, tokens: list[Token], end: int, env: Env) -> None:
        self.tokens = tokens
        self.end = end
        self.env = env
        self.i = 0

    def _peek_op(self) -> tuple[str, int]:
        """The operator at the cursor and how many tokens it spans ('' if none)."""
        if self.i >= self.end:
            return "", 0
        kind, text, pos = self.tokens[self.i]
        if kind != "op":
            return "", 0
        if text == ">" and self.i + 1 < self.end:
            _, ntext, npos = self.tokens[self.i + 1]
            if npos == pos + 1 and ntext in (">", "="):
                return (">>" if ntext == ">" else ">="), 2
        return text, 1

    def binary(self, min_prec: int, depth: int) -> Value:
        if depth > _MAX_DEPTH:
            raise NotConstant("expression nests too deeply")
        left = self.unary(depth + 1)
        while True:
            op, width = self._peek_op()
            prec = _BINARY.get(op, 0)
            if prec <= min_prec:
                return left
            self.i += width
            right = self.binary(prec, depth + 1)
            left = _apply(op, left, right)

    def unary(self, depth: int) -> Value:
        if depth > _MAX_DEPTH or self.i >= self.end:
            raise NotConstant("incomplete expression")
        kind, text, _ = self.tokens[self.i]
        if kind == "op" and text in ("-", "!", "~"):
            self.i += 1
            return _unary(text, self.unary(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Value:
        kind, text, _ = self.tokens[self.i]
        self.i += 1
        if kind in ("int", "float"):
            return literal_value(kind, text)
        if kind == "op" and text == "(":
            value = self.binary(0, depth + 1)
            self._expect(")")
            return value
        if kind != "ident":
            raise NotConstant(f"unexpected {text!r}")
        if text in ("true", "false"):
            return ("bool", text == "true")
        if self.i < self.end and self.tokens[self.i][1] == "(":
            self.i += 1
            return _call(text, self._arguments(depth))
        return self.env.lookup(text, self.env.allow_overrides)

    def _arguments(self, depth: int) -> list[Value]:
        args: list[Value] = []
        while self.i < self.end and self.tokens[self.i][1] != ")":
            args.append(self.binary(0, depth + 1))
            if self.i < self.end and self.tokens[self.i][1] == ",":
                self.i += 1
            elif self.i >= self.end or self.tokens[self.i][1] != ")":
                raise NotConstant("malformed call")
        self._expect(")")
        return args

    def _expect(self, text: str) -> None:
        if self.i >= self.end or self.tokens[self.i][1] != text:
            raise NotConstant(f"expected {text!r}")
        self.i += 1


def _unify(a: Value, b: Value) -> tuple[str, int | float | bool, int | float | bool]:
    """The common type of two operands (abstract ones convert to the concrete one)."""
    (ka, va), (kb, vb) = a, b
    if ka == kb:
        return ka, va, vb
    order = {"int": 0, "float": 1}
    if ka in order and kb in order:
        return "float", float(va), float(vb)
    if ka in order:
        return kb, convert(kb, a)[1], vb
    if kb in order:
        return ka, va, convert(ka, b)[1]
    raise NotConstant(f"{ka} and {kb} do not mix")


def _apply(op: str, a: Value, b: Value) -> Value:
    if op in ("<<", ">>"):
        return _shift(op, a, b)
    kind, x, y = _unify(a, b)
    if op in ("&&", "||"):
        if kind != "bool":
            raise NotConstant(f"{op} needs bools")
        return ("bool", (x and y) if op == "&&" else (x or y))
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return ("bool", _compare(op, x, y))
    if kind == "bool":
        if op in ("&", "|", "^"):
            return ("bool", bool({"&": x & y, "|": x | y, "^": x ^ y}[op]))  # type: ignore[operator]
        raise NotConstant(f"{op} on bools")
    is_int = kind in _RANGES
    if op in ("&", "|", "^"):
        if not is_int:
            raise NotConstant(f"{op} on floats")
        result: int | float = {"&": x & y, "|": x | y, "^": x ^ y}[op]  # type: ignore[operator]
        return _checked((kind, result))
    if op in ("/", "%"):
        if y == 0:
            raise NotConstant("division by zero")
        if is_int:
            q = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
            result = q if op == "/" else x - y * q
        else:
            result = x / y if op == "/" else math.fmod(x, y)
        return _checked((kind, result))
    result = {"+": x + y, "-": x - y, "*": x * y}[op]
    return _checked((kind, result))


def _compare(op: str, x: object, y: object) -> bool:
    if op == "==":
        return x == y
    if op == "!=":
        return x != y
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]  # type: ignore[operator]


def _shift(op: str, a: Value, b: Value) -> Value:
    (ka, x), (kb, y) = a, b
    if ka not in _RANGES or kb not in _RANGES or kb == "i32":
        raise NotConstant(f"{op} needs integers and an unsigned shift")
    if y < 0 or (ka != "int" and y >= 32):
        raise NotConstant(f"shift by {y}")
    if op == ">>":
        return (ka, x >> y)  # type: ignore[operator]
    return _checked((ka, x << y))  # type: ignore[operator]


def _unary(op: str, a: Value) -> Value:
    kind, x = a
    if op == "!":
        if kind != "bool":
            raise NotConstant("! needs a bool")
        return ("bool", not x)
    if op == "~":
        if kind not in _RANGES:
            raise NotConstant("~ needs an integer")
        return (kind, (~x) & 0xFFFFFFFF if kind == "u32" else ~x)  # type: ignore[operator]
    if kind == "bool" or kind == "u32":
        raise NotConstant(f"- on {kind}")
    return _checked((kind, -x))


def convert(target: str, a: Value) -> Value:
    """The WGSL scalar conversion ``target(a)`` in a constant expression."""
    kind, x = a
    if target == "bool":
        return ("bool", bool(x))
    if target in ("f32", "f16"):
        return _checked((target, float(x)))
    if kind == "bool":
        return (target, int(bool(x)))
    if isinstance(x, float):
        if not math.isfinite(x):
            raise NotConstant("not finite")
        return _checked((target, math.trunc(x)))
    if target == "u32" and kind == "i32":
        return ("u32", x & 0xFFFFFFFF)
    if target == "i32" and kind == "u32":
        return ("i32", struct.unpack("<i", struct.pack("<I", x))[0])
    return _checked((target, x))


def _call(name: str, args: list[Value]) -> Value:
    if name in ("u32", "i32", "f32", "f16", "bool"):
        if len(args) != 1:
            raise NotConstant(f"{name}() takes one value here")
        return convert(name, args[0])
    if name in ("min", "max") and len(args) == 2:
        kind, x, y = _unify(args[0], args[1])
        if kind == "bool":
            raise NotConstant(f"{name} on bools")
        return (kind, min(x, y) if name == "min" else max(x, y))
    if name == "abs" and len(args) == 1 and args[0][0] != "bool":
        kind, x = args[0]
        return (kind, x if kind == "u32" else abs(x))
    if name == "select" and len(args) == 3 and args[2][0] == "bool":
        kind, f, t = _unify(args[0], args[1])
        return (kind, t if args[2][1] else f)
    raise NotConstant(f"{name}() is not supported in a constant expression here")
