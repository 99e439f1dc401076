// Global directives before the declarations: diagnostics and a language extension
// (pointer_composite_access: `p[i]` on a pointer without dereferencing it).
diagnostic(off, derivative_uniformity);
requires pointer_composite_access;

@group(0) @binding(0) var<storage, read_write> data: array<u32, 16>;

fn sum(p: ptr<function, array<u32, 4>>) -> u32 {
  return p[0] + p[1] + p[2] + p[3];
}

@compute @workgroup_size(16)
fn main(@builtin(local_invocation_index) i: u32) {
  var local = array<u32, 4>(i, 1u, 2u, 3u);
  data[i] = sum(&local);
}
