// An immediate block sized by a module-scope constant expression.
const N = 4u;
var<immediate> words: array<u32, N * 2u>;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(8)
fn copy_words(@builtin(local_invocation_index) i: u32) {
  out[i] = words[i];
}
