// Test kernels that write their dispatch constants to memory so a test can compare them
// bit for bit: a struct of mixed 32-bit scalars.
struct Mixed {
  a: i32,
  b: f32,
  c: u32,
  d: f32,
  e: i32,
}
var<immediate> mixed: Mixed;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

// out = [a, b, c, d, e, a+e (as i32), b*d (as f32)] as raw bits.
@compute @workgroup_size(1)
fn dump_mixed() {
  out[0] = bitcast<u32>(mixed.a);
  out[1] = bitcast<u32>(mixed.b);
  out[2] = mixed.c;
  out[3] = bitcast<u32>(mixed.d);
  out[4] = bitcast<u32>(mixed.e);
  out[5] = bitcast<u32>(mixed.a + mixed.e);
  out[6] = bitcast<u32>(mixed.b * mixed.d);
}
