"""Adapters: what the WebGPU implementations can open, and which one hal picks."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from hal.backends import DEFAULT_IMPLEMENTATION, GPU_IMPLEMENTATIONS, adapters
from hal.backends.protocol import AdapterDescription, BackendError
from hal.errors import InvalidArgumentError, UnavailableError

__all__ = [
    "AdapterInfo",
    "ImplementationListing",
    "available_adapters",
    "describe",
    "enumerate_adapters",
    "implementation_name",
    "list_implementations",
    "pick_adapter",
]

_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3}
_BACKEND_RANK = {"vulkan": 0, "metal": 0, "d3d12": 0, "gl": 2}


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """What an adapter is: ``name``, ``backend`` ("vulkan", "metal", "d3d12", "gl"),
    ``adapter_type`` ("discrete", "integrated", "cpu", …), ``vendor`` and the WebGPU
    ``implementation`` that opens it ("wgpu-native" or "dawn")."""

    name: str
    backend: str
    adapter_type: str
    vendor: str
    implementation: str = DEFAULT_IMPLEMENTATION

    def __str__(self) -> str:
        return f"{self.name} ({self.adapter_type}, {self.backend})"


def describe(adapter: AdapterDescription) -> AdapterInfo:
    """The public description of an enumerated adapter."""
    return AdapterInfo(
        adapter.name, adapter.backend, adapter.adapter_type, adapter.vendor, adapter.implementation
    )


def _prepare_environment() -> None:
    # Mesa prints errors on every adapter creation when XDG_RUNTIME_DIR is unset or invalid.
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current):
        return
    if not hasattr(os, "getuid"):
        return
    private = Path(f"/tmp/hal-runtime-{os.getuid()}")
    private.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(private)


_lock = threading.Lock()
_enumerated: dict[str, list[AdapterDescription]] = {}


def implementation_name(implementation: str | None) -> str:
    """``implementation``, else ``HAL_IMPLEMENTATION``, else the default."""
    return implementation or os.environ.get("HAL_IMPLEMENTATION") or DEFAULT_IMPLEMENTATION


def enumerate_adapters(implementation: str | None = None) -> list[AdapterDescription]:
    """The adapters of ``implementation`` (enumerated once per process). Raises
    UnavailableError when the implementation is unknown or cannot load."""
    name = implementation_name(implementation)
    with _lock:
        found = _enumerated.get(name)
        if found is None:
            _prepare_environment()
            try:
                found = adapters(name)
            except BackendError as error:
                raise UnavailableError(f"create_device: implementation {name!r}: {error}") from None
            _enumerated[name] = found
        return found


@dataclass(frozen=True, slots=True)
class ImplementationListing:
    """One WebGPU implementation as ``python -m hal devices`` shows it: its ``adapters``, or
    why it is ``unavailable`` (None when it loaded)."""

    implementation: str
    adapters: tuple[AdapterDescription, ...]
    unavailable: str | None


def list_implementations() -> list[ImplementationListing]:
    """Every GPU implementation hal knows ("wgpu-native", "dawn"), with its adapters or the
    reason it cannot load. Never raises."""
    listed = []
    for name in GPU_IMPLEMENTATIONS:
        try:
            found = tuple(enumerate_adapters(name))
        except UnavailableError as error:
            listed.append(ImplementationListing(name, (), str(error)))
            continue
        listed.append(ImplementationListing(name, found, None))
    return listed


def available_adapters(implementation: str | None = None) -> list[AdapterInfo]:
    """List the adapters ``implementation`` can open, in enumeration order. Never raises."""
    try:
        return [describe(a) for a in enumerate_adapters(implementation)]
    except Exception:
        return []


def pick_adapter(
    adapter: int | str | None, backend: str | None, implementation: str | None = None
) -> AdapterDescription:
    """The adapter ``create_device`` opens: by index, by name substring, or the best one
    (discrete > integrated > cpu; Vulkan/Metal/D3D12 before GL), optionally of ``backend``.
    Raises UnavailableError (no match) and InvalidArgumentError (index out of range)."""
    found = enumerate_adapters(implementation)
    candidates = list(enumerate(found))
    if backend is not None:
        want = {"opengl": "gl", "opengles": "gl", "gles": "gl"}.get(
            backend.lower(), backend.lower()
        )
        candidates = [(i, a) for i, a in candidates if a.backend == want]
        if not candidates:
            raise UnavailableError(
                f"create_device: no adapter with backend {backend!r} (backends: vulkan, metal, "
                f"d3d12, gl; here: {', '.join(sorted({a.backend for a in found})) or 'none'})"
            )
    if isinstance(adapter, int):
        if not 0 <= adapter < len(found):
            raise InvalidArgumentError(
                f"create_device: adapter index {adapter} is not in [0, {len(found)})"
            )
        return found[adapter]
    if isinstance(adapter, str):
        named = [(i, a) for i, a in candidates if adapter.lower() in a.summary.lower()]
        if not named:
            raise UnavailableError(f"create_device: no adapter name contains {adapter!r}")
        candidates = named
    if not candidates:
        raise UnavailableError("create_device: wgpu found no adapter")

    def rank(item: tuple[int, AdapterDescription]) -> tuple[int, int, int]:
        info = item[1]
        return (_TYPE_RANK.get(info.adapter_type, 4), _BACKEND_RANK.get(info.backend, 3), item[0])

    return min(candidates, key=rank)[1]
