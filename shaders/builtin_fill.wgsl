// hal builtin: fill [begin, end) bytes of the bound window with a 4-byte word pattern.
// Whole interior words are stored; the first and last words are read-modify-written with a
// byte mask, so no byte outside the range changes. One invocation owns one word at a time
// (grid-stride loop), so the read-modify-write never races with another invocation.
struct FillParams {
  begin: u32,       // first byte, relative to the binding window
  end: u32,         // one past the last byte
  pattern: u32,     // the 1/2/4-byte pattern replicated to a word (little-endian)
  word_count: u32,  // words touched: ceil(end/4) - floor(begin/4)
}
var<immediate> params: FillParams;
@group(0) @binding(0) var<storage, read_write> target_words: array<u32>;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let first = params.begin / 4u;
  let stride = groups.x * 256u;
  for (var i = gid.x; i < params.word_count; i += stride) {
    let w = first + i;
    let lo = max(params.begin, w * 4u);
    let hi = min(params.end, w * 4u + 4u);
    if (hi - lo == 4u) {
      target_words[w] = params.pattern;
    } else {
      let mask = (0xffffffffu >> (32u - (hi - lo) * 8u)) << ((lo - w * 4u) * 8u);
      target_words[w] = (target_words[w] & ~mask) | (params.pattern & mask);
    }
  }
}
