// GELU (the tanh approximation GPT-2 uses), elementwise over `count` f32 values:
//   out[i] = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
//
// Not standalone: hal.examples.rowwise prepends the element prelude (`alias V` = vec4<f32>
// when count % 4 == 0, else f32; WIDTH).
//
// Dispatch: one invocation per V, 256 per workgroup, on a 2-D grid of workgroups
// (x * 256 * y >= count / WIDTH); bindings x (read), out (write), different ranges.
struct Params {
  count: u32,  // f32 elements
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read_write> out: array<V>;

@compute @workgroup_size(256, 1, 1)
fn gelu(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let i = gid.y * groups.x * 256u + gid.x;
  if (i >= params.count / WIDTH) {
    return;
  }
  let v = x[i];
  // clamped: some drivers' tanh returns NaN for large arguments (tanh(15) is 1 in f32)
  let inner = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), V(-15.0), V(15.0));
  out[i] = 0.5 * v * (1.0 + tanh(inner));
}
