"""Override constants: ``create_executable(constants=...)`` checked against the module's
reflected ``override`` declarations before anything is compiled."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from hal.core.wgsl import ModuleInfo, OverrideDecl
from hal.errors import InvalidArgumentError

__all__ = ["check_override_constants"]

_INT_RANGES = {"u32": (0, (1 << 32) - 1), "i32": (-(1 << 31), (1 << 31) - 1)}


def check_override_constants(
    what: str, info: ModuleInfo, constants: Any
) -> dict[str, bool | int | float]:
    """``constants`` (override name or ``@id`` → value) checked and normalised to plain
    Python bool/int/float values.

    Each key must name an ``override`` of the module (by name, or its ``@id`` as a
    string), at most once; a bool override takes a bool, an i32/u32 override an int in
    range (bools count as 0/1; floats are rejected), an f32/f16 override a finite int or
    float within its range. Raises InvalidArgumentError naming ``what``,
    ``constants[key]`` and the rule."""
    if constants is None:
        return {}
    if not isinstance(constants, Mapping):
        raise InvalidArgumentError(
            f"{what}: constants must be a dict of override values, not {type(constants).__name__}"
        )
    by_key: dict[str, OverrideDecl] = {o.name: o for o in info.overrides}
    by_key.update({str(o.id): o for o in info.overrides if o.id is not None})
    declared = ", ".join(o.name for o in info.overrides) or "none"
    seen: dict[str, str] = {}
    out: dict[str, bool | int | float] = {}
    for key, value in constants.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(
                f"{what}: constants[{key!r}]: keys must be override names (str), not "
                f"{type(key).__name__}"
            )
        decl = by_key.get(key)
        if decl is None:
            raise InvalidArgumentError(
                f"{what}: constants[{key!r}]: the module declares no override {key!r} "
                f"(overrides: {declared})"
            )
        if decl.name in seen:
            raise InvalidArgumentError(
                f"{what}: constants[{key!r}]: override {decl.name!r} is already set by "
                f"constants[{seen[decl.name]!r}]"
            )
        seen[decl.name] = key
        out[key] = _override_value(what, key, decl, value)
    return out


def _override_value(what: str, key: str, decl: OverrideDecl, value: Any) -> bool | int | float:
    """``value`` for override ``decl``, or InvalidArgumentError."""
    argument = f"{what}: constants[{key!r}] = {value!r}"
    kind = decl.type
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidArgumentError(f"{argument}: override {decl.name!r} is bool; pass a bool")
        return bool(value)
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if kind in _INT_RANGES:
        if not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(f"{argument}: override {decl.name!r} is {kind}; pass an int")
        lo, hi = _INT_RANGES[kind]
        if not lo <= int(value) <= hi:
            raise InvalidArgumentError(
                f"{argument}: does not fit in {kind} override {decl.name!r} ({lo}..{hi})"
            )
        return int(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(
            f"{argument}: override {decl.name!r} takes a number, not {type(value).__name__}"
        )
    if kind is None:
        return int(value) if isinstance(value, (int, np.integer)) else float(value)
    try:
        number = float(value)
        struct.pack("<e" if kind == "f16" else "<f", number)
    except (OverflowError, struct.error):
        number = math.inf
    if not math.isfinite(number):
        raise InvalidArgumentError(
            f"{argument}: override {decl.name!r} is {kind}; pass a finite value in its range"
        )
    return number
