// Example kernels used by the demo, tests and benchmarks.
struct Params {
  count: u32,   // elements to process
  scale: f32,   // multiplier for `scale`
  bias: f32,    // addend for `scale`
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;

// output[i] = input[i] * scale + bias
@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < params.count) {
    output[i] = input[i] * params.scale + params.bias;
  }
}

// output[i] = input[i] * input[i]
@compute @workgroup_size(64)
fn square(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < params.count) {
    output[i] = input[i] * input[i];
  }
}

// output[i] = output[i] + input[i]   (accumulates in place)
@compute @workgroup_size(64)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < params.count) {
    output[i] = output[i] + input[i];
  }
}
