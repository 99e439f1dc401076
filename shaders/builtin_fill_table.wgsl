// hal builtin: many small fills of one buffer in one dispatch (hal/core/batching.py).
// Table entry k is (begin, end, pattern, unused), bytes relative to the bound window; the
// table binding holds exactly the entries. Workgroup g does entries g, g + groups, ... (a CPU
// adapter dispatches few workgroups, a GPU one per entry). Interior words are stored; the
// first and last words are read-modify-written with a byte mask, so no byte outside the range
// changes. The lowering only batches fills that touch pairwise distinct words, so no two
// invocations ever write one word.
@group(0) @binding(0) var<storage, read_write> target_words: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<vec4<u32>>;

// Invocations per workgroup: 256 on GPUs, fewer on CPU adapters (hal/runtime/executable.py).
override lanes: u32 = 256u;

// Bytes [lo, hi) of word w (lo < hi, both inside it) set to the pattern's bytes there.
fn patch_word(w: u32, lo: u32, hi: u32, pattern: u32) {
  let mask = (0xffffffffu >> (32u - (hi - lo) * 8u)) << ((lo - w * 4u) * 8u);
  target_words[w] = (target_words[w] & ~mask) | (pattern & mask);
}

@compute @workgroup_size(lanes)
fn fill_table(@builtin(workgroup_id) group: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
  let entries = arrayLength(&table);
  for (var k = group.x; k < entries; k += groups.x) {
    let entry = table[k];
    let begin = entry.x;
    let end = entry.y;
    let pattern = entry.z;
    // Whole words [inner, outer) are stored; a partial first or last word is patched by
    // lane 0 (both in one word when the range lies inside it).
    let inner = (begin + 3u) / 4u;
    let outer = end / 4u;
    for (var w = inner + lane; w < outer; w += lanes) {
      target_words[w] = pattern;
    }
    if (lane == 0u) {
      let head = begin / 4u;
      if ((begin & 3u) != 0u) {
        patch_word(head, begin, min(end, head * 4u + 4u), pattern);
      }
      if ((end & 3u) != 0u && (end / 4u != head || (begin & 3u) == 0u)) {
        patch_word(outer, max(begin, outer * 4u), end, pattern);
      }
    }
  }
}
