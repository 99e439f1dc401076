// Row-broadcast bias and optional ReLU, in place: x[r, c] = act(x[r, c] + bias[c]) for a
// row-major [rows, cols] f32 matrix; act is max(0, .) when `relu` is non-zero, else identity.
//
// Dispatch: one invocation per element, 256 per workgroup, on a 2-D grid of workgroups
// (x * 256 * y >= rows * cols) so any size fits under the per-dimension limit.
struct Params {
  rows: u32,
  cols: u32,
  relu: u32,  // 0: bias only; otherwise bias then ReLU
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> bias: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn bias_relu(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
  let i = gid.y * groups.x * 256u + gid.x;
  if (i >= params.rows * params.cols) {
    return;
  }
  var v = x[i] + bias[i % params.cols];
  if (params.relu != 0u) {
    v = max(v, 0.0);
  }
  x[i] = v;
}
