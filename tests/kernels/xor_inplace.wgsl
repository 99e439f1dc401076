// XORs a key into every u32 word of one read_write binding, in place (see xor_words.wgsl
// for the byte convention).
struct Params {
  key: u32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> data: array<u32>;

@compute @workgroup_size(64)
fn xor_inplace(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < arrayLength(&data)) {
    data[i] = data[i] ^ params.key;
  }
}
