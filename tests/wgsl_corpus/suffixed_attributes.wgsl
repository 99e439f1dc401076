// Attribute values written with literal suffixes and module-scope constants.
const B = 1;
const C: u32 = 2u;
const WG = 4u;

@group(0i) @binding(0u) var<storage, read> src: array<u32>;
@group(0) @binding(B) var<storage, read_write> dst: array<u32>;
@group(0) @binding(C) var<uniform> scale: vec4<u32>;

@compute @workgroup_size(min(WG, 8), 2 * 1, (3 - 2))
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < arrayLength(&src) && i < arrayLength(&dst)) {
    dst[i] = src[i] * scale.x;
  }
}
