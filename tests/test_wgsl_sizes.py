"""The one WGSL type sizer: immediate block sizes and binding minimum sizes (no device)."""

from __future__ import annotations

import pytest

from hal.core.layout import BindingLayout, entry_point_layouts
from hal.core.wgsl import reflect


def binding_sizes(declarations: str, uses: str = "") -> dict[str, int]:
    source = declarations + "\n@compute @workgroup_size(1) fn main() { " + uses + " }\n"
    return {b.name: b.min_size for b in reflect(source).bindings}


@pytest.mark.parametrize(
    ("type_text", "size"),
    [
        ("u32", 4),
        ("array<u32>", 4),
        ("array<f32, 8>", 32),
        ("array<f32, 8u>", 32),
        ("array<vec3<f32>>", 16),
        ("array<vec2f, 3>", 24),
        ("vec3<f32>", 12),
        ("mat4x4<f32>", 64),
        ("mat3x3f", 48),
        ("mat2x3<f32>", 32),
        ("atomic<u32>", 4),
        ("array<atomic<i32>>", 4),
        ("array<array<u32, 4>, 2>", 32),
        ("Block", 32),  # struct { a: vec3<f32>, b: f32, c: vec4<f32> }
        ("Mixed", 8),  # struct { a: u32, b: vec2<f32> } (b aligned to 8)
    ],
)
def test_binding_minimum_sizes(type_text: str, size: int) -> None:
    structs = (
        "struct Block { a: vec3<f32>, b: f32, c: vec4<f32> }\n"
        "struct Mixed { a: u32, b: vec2<f32> }\n"
    )
    sizes = binding_sizes(
        structs + f"@group(0) @binding(0) var<storage, read_write> x: {type_text};", "_ = &x;"
    )
    assert sizes == {"x": size if type_text != "Mixed" else 16}


def test_types_it_cannot_size_give_zero() -> None:
    """An array count that is not a known constant, or an unknown type name, leaves the
    binding's minimum size to wgpu (0); aliases are followed."""
    sizes = binding_sizes(
        "alias Block = mat4x4<f32>;\n"
        "@group(0) @binding(0) var<uniform> a: Block;\n"
        "@group(0) @binding(1) var<storage> b: array<f32, N>;\n"
        "@group(0) @binding(2) var<storage> c: Unknown;\n"
    )
    assert sizes == {"a": 64, "b": 0, "c": 0}


def test_the_immediate_block_is_sized_by_the_same_sizer() -> None:
    info = reflect(
        "struct P { n: u32, scale: vec2<f32>, m: mat2x2<f32> }\n"
        "var<immediate> p: P;\n"
        "@compute @workgroup_size(1) fn main() { _ = p.n; }\n"
    )
    assert info.immediate_size == 32
    with pytest.raises(ValueError, match="in the immediate block"):
        reflect("var<immediate> p: array<u32>;\n@compute @workgroup_size(1) fn main() {}\n")
    with pytest.raises(ValueError, match="in the immediate block"):
        reflect("var<immediate> p: atomic<u32>;\n@compute @workgroup_size(1) fn main() {}\n")


def test_layouts_carry_the_minimum_sizes() -> None:
    info = reflect(
        "@group(0) @binding(1) var<uniform> k: vec4<f32>;\n"
        "@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n"
        "@group(0) @binding(2) var<storage, read> unused: array<u32>;\n"
        "@compute @workgroup_size(1) fn main() { out[0] = u32(k.x); }\n"
    )
    layout = entry_point_layouts(info)["main"]
    assert layout.bindings == (
        BindingLayout(0, "storage", "out", 4),
        BindingLayout(1, "uniform", "k", 16),
    )
    assert layout.binding_count == 2 and layout.binding(1) == layout.bindings[1]
    assert layout.binding(2) is None
