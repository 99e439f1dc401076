// hal builtin: many small fills of one buffer in one dispatch (hal/core/batching.py).
// Workgroup k does table entry k: (begin, end, pattern, unused), bytes relative to the bound
// window. Interior words are stored; the first and last words are read-modify-written with a
// byte mask, so no byte outside the range changes. The lowering only batches fills that touch
// pairwise distinct words, so no two invocations ever write one word.
@group(0) @binding(0) var<storage, read_write> target_words: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<vec4<u32>>;

@compute @workgroup_size(256)
fn fill_table(@builtin(workgroup_id) group: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
  let entry = table[group.x];
  let begin = entry.x;
  let end = entry.y;
  let pattern = entry.z;
  let first = begin / 4u;
  let count = (end + 3u) / 4u - first;
  for (var i = lane; i < count; i += 256u) {
    let w = first + i;
    let lo = max(begin, w * 4u);
    let hi = min(end, w * 4u + 4u);
    if (hi - lo == 4u) {
      target_words[w] = pattern;
    } else {
      let mask = (0xffffffffu >> (32u - (hi - lo) * 8u)) << ((lo - w * 4u) * 8u);
      target_words[w] = (target_words[w] & ~mask) | (pattern & mask);
    }
  }
}
