"""The transfer cost model: when a native wgpu transfer beats a builtin kernel.

A native ``copy_buffer_to_buffer``/``clear_buffer`` must sit outside compute passes, so in a
command buffer with dispatches it costs a pass switch; a builtin kernel runs inside the
current pass but costs a dispatch and moves bytes at shader bandwidth. Which one wins depends
on the adapter: on an NVIDIA H100 a shader copy moves 2,660 GB/s against 831 GB/s for wgpu's
copy, so large copies should be kernels; elsewhere the native copy can be faster.

The constants are measured per adapter by ``benchmarks/calibrate.py`` and shipped as JSON in
``hal/cost_models/``; :func:`load_costs` picks the file of the device's WebGPU implementation
(its ``implementation`` key, "wgpu-native" where absent; Dawn's files are ``dawn-*.json``)
whose ``match`` strings occur in the adapter's description, else the generic model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources

__all__ = ["TransferCosts", "load_costs"]


@dataclass(frozen=True, slots=True)
class TransferCosts:
    """Measured costs of one adapter (times in µs, bandwidths in GB/s counting bytes moved
    once, i.e. a copy of n bytes moves n bytes)."""

    name: str = "generic"
    pass_switch_us: float = 20.0
    dispatch_us: float = 3.0
    native_copy_gbps: float = 100.0
    kernel_copy_gbps: float = 100.0
    clear_gbps: float = 200.0
    kernel_fill_gbps: float = 200.0

    def copy_us(self, size: int, native: bool) -> float:
        """Estimated µs to copy ``size`` bytes natively (plus a pass switch) or by kernel."""
        if native:
            return self.pass_switch_us + size / (self.native_copy_gbps * 1e3)
        return self.dispatch_us + size / (self.kernel_copy_gbps * 1e3)

    def fill_us(self, size: int, native: bool) -> float:
        """Estimated µs to zero ``size`` bytes natively (plus a pass switch) or by kernel."""
        if native:
            return self.pass_switch_us + size / (self.clear_gbps * 1e3)
        return self.dispatch_us + size / (self.kernel_fill_gbps * 1e3)

    def as_dict(self) -> dict[str, float | str]:
        """The model as plain data (for JSON)."""
        return asdict(self)


def load_costs(description: str, implementation: str = "wgpu-native") -> TransferCosts:
    """The shipped cost model of ``implementation`` (a file's ``implementation`` key,
    "wgpu-native" where it has none) whose ``match`` strings all occur in ``description``
    (adapter name, backend, vendor; case-insensitive), else the generic one. Never raises."""
    text = description.lower()
    names = {f.name for f in fields(TransferCosts)}
    try:
        files = sorted(resources.files("hal.cost_models").iterdir(), key=lambda f: f.name)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return TransferCosts()
    for entry in files:
        if not entry.name.endswith(".json"):
            continue
        try:
            data = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if str(data.get("implementation", "wgpu-native")) != implementation:
            continue
        match = [m.lower() for m in data.get("match", [])]
        if match and all(m in text for m in match):
            return TransferCosts(**{k: v for k, v in data.items() if k in names})
    return TransferCosts()
