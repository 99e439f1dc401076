// hal builtin: many small copies between two buffers in one dispatch (hal/core/batching.py).
// Table entry k is (source begin, target begin, length, unused), bytes relative to the bound
// windows, at any alignment; the table binding holds exactly the entries. Workgroup g does
// entries g, g + groups, ... (a CPU adapter dispatches few workgroups, a GPU one per entry).
// Interior target words are assembled from two source words with a funnel shift, the first
// and last are patched byte by byte. The lowering only batches copies whose target words are
// pairwise distinct and never read by another entry. Both buffer bindings are read_write so
// one buffer may be bound twice.
@group(0) @binding(0) var<storage, read_write> source_words: array<u32>;
@group(0) @binding(1) var<storage, read_write> target_words: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<vec4<u32>>;

// Invocations per workgroup: 256 on GPUs, fewer on CPU adapters (hal/runtime/executable.py).
override lanes: u32 = 256u;

fn source_byte(p: u32) -> u32 {
  return (source_words[p >> 2u] >> ((p & 3u) * 8u)) & 0xffu;
}

fn copy_entry(entry: vec4<u32>, lane: u32) {
  let src_begin = entry.x;
  let dst_begin = entry.y;
  let dst_end = dst_begin + entry.z;
  let first = dst_begin / 4u;
  let count = (dst_end + 3u) / 4u - first;
  for (var i = lane; i < count; i += lanes) {
    let w = first + i;
    let t = w * 4u;
    if (t >= dst_begin && t + 4u <= dst_end) {
      let s = t - dst_begin + src_begin;
      let shift = (s & 3u) * 8u;
      let low = source_words[s >> 2u];
      if (shift == 0u) {
        target_words[w] = low;
      } else {
        let high = source_words[(s >> 2u) + 1u];
        target_words[w] = (low >> shift) | (high << (32u - shift));
      }
    } else {
      var value = target_words[w];
      for (var k = 0u; k < 4u; k++) {
        let p = t + k;
        if (p >= dst_begin && p < dst_end) {
          let b = source_byte(p - dst_begin + src_begin);
          value = (value & ~(0xffu << (k * 8u))) | (b << (k * 8u));
        }
      }
      target_words[w] = value;
    }
  }
}

@compute @workgroup_size(lanes)
fn copy_table(@builtin(workgroup_id) group: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
  let entries = arrayLength(&table);
  for (var k = group.x; k < entries; k += groups.x) {
    copy_entry(table[k], lane);
  }
}
