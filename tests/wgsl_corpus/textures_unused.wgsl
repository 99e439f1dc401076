// Textures and samplers may be declared (for another pipeline) but not used by compute
// entry points: HAL binds buffers only.
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var tex: texture_2d<f32>;
@group(0) @binding(2) var samp: sampler;
@group(1) @binding(0) var storage_tex: texture_storage_2d<rgba8unorm, write>;

@compute @workgroup_size(64)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&out)) {
    out[gid.x] = 1.0;
  }
}
