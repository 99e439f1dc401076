// Test kernel with the largest allowed constants block: array<u32, 32> (128 bytes).
var<immediate> words: array<u32, 32>;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

// out[i] = words[i] + i * 0x01000000 for i < 32 (one invocation per word).
@compute @workgroup_size(32)
fn dump_words(@builtin(local_invocation_index) i: u32) {
  out[i] = words[i] + i * 0x01000000u;
}
