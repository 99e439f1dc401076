// Test kernels that treat their bindings as raw bytes read and written as little-endian u32
// words, so a binding at any byte offset or of any length shows exactly which bytes a
// dispatch saw. Word i of a binding covers its bytes [4i, 4i+4).
struct Params {
  key: u32,  // XORed into every word
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

// dst[i] = src[i] ^ key for every word both bindings cover.
@compute @workgroup_size(64)
fn xor_copy(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < arrayLength(&src) && i < arrayLength(&dst)) {
    dst[i] = src[i] ^ params.key;
  }
}
