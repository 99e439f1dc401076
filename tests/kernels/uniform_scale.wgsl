// A kernel that reads its parameters from a uniform binding (binding 0) rather than from
// dispatch constants.
struct Coefficients {
  scale: f32,
  bias: f32,
  count: u32,
  pad: u32,
}
@group(0) @binding(0) var<uniform> coefficients: Coefficients;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

// output[i] = input[i] * scale + bias for i < count
@compute @workgroup_size(64)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < coefficients.count) {
    output[i] = input[i] * coefficients.scale + coefficients.bias;
  }
}
