// Property-test kernel: output word i = input word i XOR key, for every word of the output
// binding (its length rounded up to words).
struct Key { key: u32 }
var<immediate> k: Key;
@group(0) @binding(0) var<storage, read> input_words: array<u32>;
@group(0) @binding(1) var<storage, read_write> output_words: array<u32>;

@compute @workgroup_size(64)
fn xor_words(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < arrayLength(&output_words) && i < arrayLength(&input_words)) {
    output_words[i] = input_words[i] ^ k.key;
  }
}
