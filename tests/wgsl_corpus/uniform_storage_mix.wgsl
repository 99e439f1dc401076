// Uniform and storage buffers side by side; `var<storage>` defaults to read access.
struct Params {
  dims: vec2<u32>,
  scale: f32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage> transforms: array<mat4x4<f32>>;
@group(0) @binding(2) var<storage, read> points: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> result: array<vec4<f32>>;

@compute @workgroup_size(8, 8)
fn transform(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * params.dims.x + gid.x;
  if (gid.x < params.dims.x && gid.y < params.dims.y && i < arrayLength(&points)) {
    result[i] = transforms[0] * points[i] * params.scale;
  }
}
