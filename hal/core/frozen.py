"""Fast positional constructors of frozen, slotted dataclasses, for the hot paths.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__`` (its own ``__setattr__`` refuses), ~0.1 µs a field; the eager round
trip makes a few such objects per call (a binding's Ref, a DispatchSegment, a
DispatchTemplate). :func:`constructor` returns a function that builds the same object — equal,
hashing alike, every field set — through the slots' own descriptors instead, at about half
the cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["constructor"]

_T = TypeVar("_T")


def constructor(cls: type[_T]) -> Callable[..., _T]:
    """A function taking ``cls``'s fields positionally, in declaration order, and returning
    the instance its ``__init__`` would (without ``__init__``'s checks: the caller passes
    every field, of the right type). Raises TypeError for a class that is not a frozen,
    slotted dataclass, or that has a ``__post_init__``, a field that is not an init field
    (its ``__init__`` does more than set the fields), an inherited field, or a field named
    ``self`` or starting with ``_`` (the generated code's own names)."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} is not frozen")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__} has a field that __init__ does not take")
    names = [f.name for f in fields]
    for name in names:
        # The generated function's own names: a field called so would shadow them.
        if name == "self" or name.startswith("_"):
            raise TypeError(f"{cls.__name__}: field {name!r} clashes with the generated code")
        if name not in cls.__dict__:
            raise TypeError(f"{cls.__name__}: field {name!r} is inherited, not its own slot")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for i, name in enumerate(names):
        scope[f"_set{i}"] = cls.__dict__[name].__set__
    body = "".join(f"    _set{i}(self, {name})\n" for i, name in enumerate(names))
    source = f"def make({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n"
    exec(source, scope)  # generated from the class's own field names
    make: Callable[..., _T] = scope["make"]
    make.__doc__ = f"A {cls.__name__} of these fields (see hal.core.frozen.constructor)."
    return make
