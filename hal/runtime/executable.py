"""Executables: WGSL modules compiled into one compute pipeline per entry point."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hal.backends.protocol import BackendError
from hal.core.builtins import TABLE_KERNELS, TABLE_LANES, BuiltinKernel, shader_source
from hal.core.layout import BindingLayout, EntryPointLayout, entry_point_layouts
from hal.core.wgsl import ModuleInfo, reflect, rewrite_immediates
from hal.core.wgsl_overrides import check_override_constants
from hal.errors import InvalidArgumentError, UnimplementedError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hal.backends.protocol import Backend
    from hal.runtime.device import Device

__all__ = ["BindingLayout", "BuiltinKernels", "EntryPointLayout", "Executable", "ExecutableCache"]

CONSTANTS_GROUP = 1
"""Bind group that carries dispatch constants where the adapter lacks immediates."""

MAX_CONSTANTS_SIZE = 128


class Executable:
    """A compiled WGSL module. ``entry_points`` names its ``@compute`` functions;
    :meth:`layout` describes each one's bindings and constants."""

    def __init__(
        self,
        device: Device,
        source: str,
        constants: dict[str, Any] | None,
        label: str | None,
        cache: ExecutableCache,
    ) -> None:
        self.device = device
        self._cache = cache
        self.label = label or "executable"
        self.source = source
        info = _reflect(source)
        self._info: ModuleInfo = info
        if not info.entry_points:
            raise InvalidArgumentError("create_executable: the module has no @compute entry point")
        _check_resources(info)
        _check_features(info, self.label, device.features)
        if info.immediate_size > MAX_CONSTANTS_SIZE:
            raise InvalidArgumentError(
                f"create_executable: the immediate block is {info.immediate_size} bytes; at "
                f"most {MAX_CONSTANTS_SIZE} are allowed"
            )
        for decl in info.bindings:
            if decl.group != 0:
                raise InvalidArgumentError(
                    f"create_executable: binding {decl.name!r} is in @group({decl.group}); HAL "
                    "bindings must be in @group(0)"
                )
        self._layouts: dict[str, EntryPointLayout] = entry_point_layouts(info)
        self.entry_points: tuple[str, ...] = tuple(self._layouts)
        self._modules: dict[bool, Any] = {}
        self._pipelines = {
            name: self._create_pipeline(layout, constants) for name, layout in self._layouts.items()
        }

    def __repr__(self) -> str:
        return f"<hal.Executable {self.label!r} {list(self.entry_points)}>"

    def layout(self, entry_point: str) -> EntryPointLayout:
        """The layout of ``entry_point``. Raises InvalidArgumentError if there is none."""
        try:
            return self._layouts[entry_point]
        except (KeyError, TypeError):
            raise InvalidArgumentError(
                f"Executable.layout: entry_point {entry_point!r} is not in {self.label!r} "
                f"(entry points: {', '.join(self.entry_points)})"
            ) from None

    def pipeline(self, entry_point: str) -> tuple[Any, Any, Any]:
        """(compute pipeline, group-0 bind group layout, constants bind group layout or None)
        for ``entry_point``; used by the encoder."""
        return self._pipelines[entry_point]

    def _create_pipeline(
        self, layout: EntryPointLayout, constants: dict[str, Any] | None
    ) -> tuple[Any, Any, Any]:
        cache = self._cache
        staged = None
        if layout.constants_size and not cache.immediates:
            staged = self._info.immediate_kind
        _check_binding_limits(layout, staged, self.device.limits)
        group0 = cache.bind_group_layout(tuple((b.binding, b.kind, False) for b in layout.bindings))
        groups = [group0]
        constants_bgl = None
        immediate_size = 0
        if layout.constants_size and cache.immediates:
            immediate_size = self._info.immediate_size
        elif layout.constants_size:
            kind = self._info.immediate_kind
            constants_bgl = cache.bind_group_layout(((0, kind, True),))
            groups.append(constants_bgl)
        # Without immediates every entry point compiles from the rewritten module: the original
        # declares ``var<immediate>``, which such a device rejects even where it is unused.
        rewritten = self._info.immediate_name is not None and not cache.immediates
        module = self._module(rewritten)
        try:
            pipeline = cache.backend.create_compute_pipeline(
                module,
                layout.name,
                groups,
                immediate_size,
                constants,
                f"{self.label}:{layout.name}",
            )
        except BackendError as error:
            raise InvalidArgumentError(
                f"create_executable: entry point {layout.name!r} of {self.label!r}: {error}"
            ) from None
        return pipeline, group0, constants_bgl

    def _module(self, rewritten: bool) -> Any:
        source = self.source
        if rewritten:
            source = rewrite_immediates(source, self._info, CONSTANTS_GROUP)
        if self.device.info.implementation != "dawn":
            source = _drop_naga_enables(source)
        modules = self._modules
        if rewritten not in modules:
            try:
                modules[rewritten] = self._cache.backend.create_shader_module(source, self.label)
            except BackendError as error:
                raise InvalidArgumentError(
                    f"create_executable: WGSL of {self.label!r} does not compile: {error}"
                ) from None
        return modules[rewritten]


class ExecutableCache:
    """Per-device cache of executables (by source and constants) and bind group layouts."""

    def __init__(self, device: Device, backend: Backend, immediates: bool) -> None:
        self._device = device
        self.backend = backend
        self.immediates = immediates
        self._lock = threading.Lock()
        self._executables: dict[tuple[str, tuple[tuple[str, Any], ...]], Executable] = {}
        self._layouts: dict[tuple[tuple[int, str, bool], ...], Any] = {}

    def get(
        self, source: str | os.PathLike[str], constants: dict[str, Any] | None, label: str | None
    ) -> Executable:
        """The executable for ``source`` (WGSL text or a path) and ``constants`` (override
        values, checked against the module's ``override`` declarations first)."""
        text = _read_source(source)
        if label is None and not _looks_like_wgsl(str(source)):
            label = Path(str(source)).stem
        constants = check_override_constants("create_executable", _reflect(text), constants)
        key = (text, tuple(sorted(constants.items())))
        with self._lock:
            found = self._executables.get(key)
        if found is not None:
            return found
        executable = Executable(self._device, text, constants, label, self)
        with self._lock:
            return self._executables.setdefault(key, executable)

    def bind_group_layout(self, entries: tuple[tuple[int, str, bool], ...]) -> Any:
        """A shared bind group layout for (binding, kind, dynamic offset) entries."""
        with self._lock:
            found = self._layouts.get(entries)
            if found is None:
                found = self.backend.create_bind_group_layout(entries)
                self._layouts[entries] = found
            return found


def _reflect(source: str) -> ModuleInfo:
    """The reflected module (cached per source); InvalidArgumentError for bad WGSL."""
    try:
        return reflect(source)
    except ValueError as error:
        raise InvalidArgumentError(f"create_executable: source: {error}") from None


# WGSL ``enable`` extensions and the device feature each needs.
_ENABLE_FEATURES = {
    "f16": "shader-f16",
    "subgroups": "subgroup",
    "chromium_experimental_subgroup_matrix": "chromium-experimental-subgroup-matrix",
}


def _check_features(info: ModuleInfo, label: str, features: frozenset[str]) -> None:
    """UnimplementedError when the module enables an extension (``enable f16;``, ``enable
    subgroups;``) whose device feature this device lacks, before wgpu sees the module."""
    for extension in sorted(info.enables):
        feature = _ENABLE_FEATURES.get(extension)
        if feature is not None and feature not in features:
            raise UnimplementedError(
                f"create_executable: {label!r} has `enable {extension};`, which needs the "
                f"device feature {feature!r}; this device lacks it (features: "
                f"{', '.join(sorted(features)) or 'none'})"
            )


_ENABLE = re.compile(r"\benable\s+([A-Za-z0-9_,\s]+);")
# Extensions naga provides without (and rejects) an ``enable`` directive; Tint requires it.
_NAGA_IMPLICIT = frozenset({"subgroups"})


def _drop_naga_enables(source: str) -> str:
    """``source`` without the ``enable`` names naga rejects, so one module (``enable
    subgroups;``, as the WGSL spec and Dawn require) compiles on both implementations."""

    def keep(match: re.Match[str]) -> str:
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
        kept = [n for n in names if n not in _NAGA_IMPLICIT]
        if len(kept) == len(names):
            return match.group(0)
        return f"enable {', '.join(kept)};" if kept else ""

    return _ENABLE.sub(keep, source)


def _check_resources(info: ModuleInfo) -> None:
    """Textures and samplers may be declared but not used: HAL binds buffers only."""
    for ep in info.entry_points:
        for r in info.resources:
            if r.name in ep.uses:
                raise InvalidArgumentError(
                    f"create_executable: entry point {ep.name!r} uses {r.name!r} "
                    f"(@group({r.group}) @binding({r.binding}), a {r.type}); HAL bindings "
                    "must be storage or uniform buffers"
                )


_PER_STAGE_LIMITS = (
    ("storage", ("storage", "read-only-storage"), "max-storage-buffers-per-shader-stage"),
    ("uniform", ("uniform",), "max-uniform-buffers-per-shader-stage"),
)


def _check_binding_limits(
    layout: EntryPointLayout, staged: str | None, limits: Mapping[str, int]
) -> None:
    """InvalidArgumentError when ``layout`` (plus the staged-constants binding of kind
    ``staged``, if any) binds more buffers of a kind than the device allows per stage, so
    that the pipeline is never handed to the backend."""
    kinds = [b.kind for b in layout.bindings] + ([staged] if staged else [])
    for what, counted, name in _PER_STAGE_LIMITS:
        count = sum(kind in counted for kind in kinds)
        limit = limits.get(name)
        if limit is not None and count > limit:
            raise InvalidArgumentError(
                f"create_executable: entry point {layout.name!r} binds {count} {what} buffers; "
                f"this device allows at most {limit} ({name})"
            )


def _looks_like_wgsl(text: str) -> bool:
    return "\n" in text or "fn " in text or "@" in text


def _read_source(source: str | os.PathLike[str]) -> str:
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and not _looks_like_wgsl(source)
    ):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidArgumentError(f"create_executable: cannot read {path}: {error}") from None
        except UnicodeDecodeError as error:
            raise InvalidArgumentError(
                f"create_executable: source {str(path)!r} is not UTF-8 text (WGSL must be "
                f"UTF-8): {error}"
            ) from None
    if not isinstance(source, str):
        raise InvalidArgumentError(
            f"create_executable: source must be WGSL text or a path, not {type(source).__name__}"
        )
    return source


class BuiltinKernels:
    """The builtin executables of one device (hal/core/builtins.py), compiled at creation;
    the table kernels with ``table_lanes`` invocations per workgroup."""

    def __init__(self, cache: ExecutableCache, table_lanes: int = TABLE_LANES) -> None:
        self._executables: dict[BuiltinKernel, Executable] = {
            kernel: cache.get(
                shader_source(kernel.value[0]),
                {"lanes": table_lanes} if kernel in TABLE_KERNELS else None,
                f"hal.builtin.{kernel.entry_point}",
            )
            for kernel in BuiltinKernel
        }

    def executable(self, kernel: BuiltinKernel) -> Executable:
        """The compiled executable of ``kernel``."""
        return self._executables[kernel]
