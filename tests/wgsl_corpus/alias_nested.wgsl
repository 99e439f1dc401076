// Aliases, nested structs, matrices and arrays of structs.
alias Vec = vec4<f32>;
alias Count = u32;
alias Pair = array<Inner, 2>;
struct Inner {
  a: Count,
  v: Vec,
}
struct Outer {
  head: u32,
  inner: Inner,
  items: Pair,
  m: mat3x3<f32>,
  tail: vec2u,
}
@group(0) @binding(0) var<storage, read_write> outer: Outer;
@group(0) @binding(1) var<uniform> basis: mat2x3f;

@compute @workgroup_size(1)
fn main() {
  outer.head = outer.inner.a + outer.items[1].a;
  outer.m[0] = basis[1];
}
