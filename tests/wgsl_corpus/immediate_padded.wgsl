// An immediate block with padding (vec3 alignment) and a matrix, written back as raw bits.
struct Push {
  i: i32,
  v: vec3<f32>,
  u: u32,
  m: mat2x2<f32>,
}
var<immediate> push: Push;
@group(0) @binding(0) var<storage, read_write> out: array<u32, 9>;

@compute @workgroup_size(1)
fn dump() {
  out[0] = bitcast<u32>(push.i);
  out[1] = bitcast<u32>(push.v.x);
  out[2] = bitcast<u32>(push.v.y);
  out[3] = bitcast<u32>(push.v.z);
  out[4] = push.u;
  out[5] = bitcast<u32>(push.m[0][0]);
  out[6] = bitcast<u32>(push.m[0][1]);
  out[7] = bitcast<u32>(push.m[1][0]);
  out[8] = bitcast<u32>(push.m[1][1]);
}
