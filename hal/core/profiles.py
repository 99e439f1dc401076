"""Adapter profiles: another platform's typical limits and missing features, imposed on an
adapter so that the paths a Mac (Metal) or a Windows machine (D3D12) takes can be tested on
any adapter. A profile only ever restricts: it lowers ``max-*`` limits, raises ``min-*``
alignments and removes features, and never claims what the adapter lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hal.errors import InvalidArgumentError

__all__ = ["PROFILES", "AdapterProfile", "parse_limits", "restrict"]


@dataclass(frozen=True, slots=True)
class AdapterProfile:
    """A named set of restrictions: ``limits`` (bounds, by WebGPU limit name),
    ``removed_features`` and ``source`` (where the numbers come from)."""

    name: str
    limits: Mapping[str, int] = field(default_factory=dict)
    removed_features: frozenset[str] = frozenset()
    source: str = ""


# wgpu-hal's Metal adapter (wgpu-hal/src/metal/adapter.rs, PrivateCapabilities::new and
# capabilities()): max_buffers_per_stage 31 (storage and uniform buffers per stage),
# buffer_alignment 256 on macOS (both offset alignments), max_total_threadgroup_memory 32 KiB.
# Apple-silicon GPUs sample counters only at stage boundaries, so wgpu exposes timestamp-query
# and -inside-encoders but not -inside-passes there.
_METAL = AdapterProfile(
    name="metal",
    limits={
        "max-storage-buffers-per-shader-stage": 31,
        "max-uniform-buffers-per-shader-stage": 31,
        "min-storage-buffer-offset-alignment": 256,
        "min-uniform-buffer-offset-alignment": 256,
        "max-compute-workgroup-storage-size": 32768,
    },
    removed_features=frozenset({"timestamp-query-inside-passes"}),
    source="wgpu-hal metal/adapter.rs (Apple M-series on macOS)",
)

# wgpu-hal's D3D12 adapter (wgpu-hal/src/dx12/adapter.rs), at resource binding tier 2 (the
# lower of the tiers current GPUs report; tier 3 allows 2**18 storage buffers): uav_count 64,
# of which max-storage-buffers-per-shader-stage is a quarter (16); uniform offsets aligned to
# D3D12_CONSTANT_BUFFER_DATA_PLACEMENT_ALIGNMENT (256); storage offsets to 4; root constants
# capped at 128 bytes of immediates; 32 KiB of groupshared memory; all timestamp features.
_D3D12 = AdapterProfile(
    name="d3d12",
    limits={
        "max-storage-buffers-per-shader-stage": 16,
        "min-storage-buffer-offset-alignment": 4,
        "min-uniform-buffer-offset-alignment": 256,
        "max-immediate-size": 128,
        "max-compute-workgroup-storage-size": 32768,
        "max-buffer-size": (1 << 31) - 1,
        "max-storage-buffer-binding-size": (1 << 31) - 1,
    },
    source="wgpu-hal dx12/adapter.rs (resource binding tier 2)",
)

PROFILES: Mapping[str, AdapterProfile] = {p.name: p for p in (_METAL, _D3D12)}
"""The named profiles ``HAL_ADAPTER_PROFILE`` accepts."""


def parse_limits(text: str, what: str = "HAL_LIMITS") -> dict[str, int]:
    """``"name=value,name=value"`` as a dict. Raises InvalidArgumentError (naming ``what``)
    for an entry without ``=`` or a value that is not a non-negative integer."""
    parsed: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise InvalidArgumentError(f"{what}: entry {entry!r} is not name=value")
        if not value.isdigit():
            raise InvalidArgumentError(f"{what}: {name} = {value!r} must be a non-negative integer")
        parsed[name] = int(value)
    return parsed


def restrict(
    limits: Mapping[str, int],
    features: Iterable[str],
    profile: str | None = None,
    overrides: Mapping[str, int] | None = None,
) -> tuple[dict[str, int], frozenset[str]]:
    """The adapter's ``limits`` and ``features`` under the named ``profile`` and then the
    ``overrides`` (both optional): each ``max-*`` limit becomes the smaller of the two values,
    each ``min-*`` alignment the larger (a power of two), and the profile's features are
    removed (a profile's limits that the adapter does not report are left out). Raises
    InvalidArgumentError for an unknown profile, an override of a limit the adapter does not
    report, or a ``min-*`` alignment that is not a power of two."""
    result = dict(limits)
    removed: frozenset[str] = frozenset()
    bounds: list[tuple[str, Mapping[str, int]]] = []
    if profile:
        chosen = PROFILES.get(profile.lower())
        if chosen is None:
            raise InvalidArgumentError(
                f"HAL_ADAPTER_PROFILE: unknown profile {profile!r} (known: {', '.join(PROFILES)})"
            )
        bounds.append((f"HAL_ADAPTER_PROFILE={chosen.name}", chosen.limits))
        removed = chosen.removed_features
    if overrides:
        bounds.append(("HAL_LIMITS", overrides))
    for what, values in bounds:
        for name, value in values.items():
            if what != "HAL_LIMITS" and name not in result:
                continue  # a profile bounds only the limits this adapter reports
            result[name] = _bounded(what, name, value, result)
    return result, frozenset(f for f in features if f not in removed)


def _bounded(what: str, name: str, value: int, limits: Mapping[str, int]) -> int:
    """``limits[name]`` restricted by ``value``: never better than the adapter's."""
    if name not in limits:
        raise InvalidArgumentError(f"{what}: the adapter reports no limit {name!r}")
    if name.startswith("min-"):
        if value <= 0 or value & (value - 1):
            raise InvalidArgumentError(f"{what}: {name} = {value} must be a power of two")
        return max(limits[name], value)
    return min(limits[name], value)
