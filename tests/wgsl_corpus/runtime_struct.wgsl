// A storage struct ending in a runtime-sized array, and a fixed uniform array.
struct Buf {
  count: u32,
  data: array<vec2<f32>>,
}
@group(0) @binding(0) var<storage, read_write> buf: Buf;
@group(0) @binding(1) var<uniform> table: array<vec4<u32>, 4>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < buf.count && gid.x < arrayLength(&buf.data)) {
    buf.data[gid.x] = buf.data[gid.x] * f32(table[gid.x % 4u].x);
  }
}
