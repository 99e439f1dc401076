// An immediate block {n: u32, a: f32, b: f32} written back as raw bits.
struct Params {
  n: u32,
  a: f32,
  b: f32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> out: array<u32, 3>;

@compute @workgroup_size(1)
fn dump() {
  out[0] = params.n;
  out[1] = bitcast<u32>(params.a);
  out[2] = bitcast<u32>(params.b);
}
