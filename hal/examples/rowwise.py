"""Composition of the row-wise and elementwise kernels (softmax, layer norm, GELU): each
``shaders/<name>.wgsl`` body is written once against an element type ``V`` and a reduction
module, and compiled per variant: ``vec4`` elements where the row length (element count) is a
multiple of 4, else scalars; subgroup reductions where the device has ``subgroup``, else
workgroup-memory trees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hal.core.builtins import shader_source

if TYPE_CHECKING:
    from hal.runtime.device import Device
    from hal.runtime.executable import Executable

__all__ = ["ROW_GROUP", "RowKernel", "kernel_source", "load_kernel", "uses_subgroups"]

ROW_GROUP = 256
"""Invocations per workgroup of every row-wise kernel (RWG in the reduction modules)."""

_VEC4 = """alias V = vec4<f32>;
const WIDTH: u32 = 4u;
fn hsum(v: V) -> f32 { return v.x + v.y + v.z + v.w; }
fn hmax(v: V) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn first(v: V) -> f32 { return v.x; }
"""

_SCALAR = """alias V = f32;
const WIDTH: u32 = 1u;
fn hsum(v: V) -> f32 { return v; }
fn hmax(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }
"""


def uses_subgroups(device: Device) -> bool:
    """Whether the row kernels of ``device`` reduce with subgroup operations."""
    return "subgroup" in device.features


def kernel_source(name: str, vec4: bool, subgroups: bool, reduces: bool = True) -> str:
    """The WGSL module of ``shaders/<name>.wgsl`` for ``vec4`` or scalar elements, with the
    subgroup or workgroup reduction module when ``reduces``. Raises InvalidArgumentError for
    a body that is not shipped."""
    parts = ["enable subgroups;\n"] if subgroups and reduces else []
    parts.append(_VEC4 if vec4 else _SCALAR)
    if reduces:
        parts.append(
            shader_source("reduce_subgroup.wgsl" if subgroups else "reduce_workgroup.wgsl")
        )
    parts.append(shader_source(f"{name}.wgsl"))
    return "\n".join(parts)


def load_kernel(device: Device, name: str, vec4: bool, reduces: bool = True) -> Executable:
    """The compiled variant of ``name`` for ``device`` (cached by the device).

    Raises InvalidArgumentError when it does not compile, UnimplementedError when it would
    need a feature the device lacks."""
    source = kernel_source(name, vec4, uses_subgroups(device), reduces)
    variant = ("vec4" if vec4 else "f32") + (
        "+subgroups" if uses_subgroups(device) and reduces else ""
    )
    return device.create_executable(source, label=f"{name}[{variant}]")


@dataclass(frozen=True, slots=True)
class RowKernel:
    """One row-wise or elementwise kernel (``name``: "softmax", "layernorm", "gelu") of
    ``device``; its vec4 and scalar variants compile on first use."""

    device: Device
    name: str

    def executable(self, vec4: bool) -> Executable:
        """The compiled variant (see :func:`load_kernel`)."""
        return load_kernel(self.device, self.name, vec4, reduces=self.name != "gelu")
