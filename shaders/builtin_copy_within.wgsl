// hal builtin: copy `length` bytes from byte `src_begin` to byte `dst_begin` of ONE bound
// window, at any alignment: a copy between disjoint ranges of one buffer whose windows would
// overlap. WebGPU forbids two writable bindings of one buffer with overlapping ranges in a
// dispatch (Dawn enforces it), so source and target share this one binding. Otherwise as
// builtin_copy.wgsl: funnel-shifted interior words, byte-patched first and last words.
struct CopyParams {
  src_begin: u32,
  dst_begin: u32,
  length: u32,
  word_count: u32,  // target words touched
}
var<immediate> params: CopyParams;
@group(0) @binding(0) var<storage, read_write> words: array<u32>;

fn source_byte(p: u32) -> u32 {
  return (words[p >> 2u] >> ((p & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(256)
fn copy_within(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let first = params.dst_begin / 4u;
  let dst_end = params.dst_begin + params.length;
  let stride = groups.x * 256u;
  for (var i = gid.x; i < params.word_count; i += stride) {
    let w = first + i;
    let t = w * 4u;
    if (t >= params.dst_begin && t + 4u <= dst_end) {
      let s = t - params.dst_begin + params.src_begin;
      let shift = (s & 3u) * 8u;
      let low = words[s >> 2u];
      if (shift == 0u) {
        words[w] = low;
      } else {
        let high = words[(s >> 2u) + 1u];
        words[w] = (low >> shift) | (high << (32u - shift));
      }
    } else {
      var value = words[w];
      for (var k = 0u; k < 4u; k++) {
        let p = t + k;
        if (p >= params.dst_begin && p < dst_end) {
          let b = source_byte(p - params.dst_begin + params.src_begin);
          value = (value & ~(0xffu << (k * 8u))) | (b << (k * 8u));
        }
      }
      words[w] = value;
    }
  }
}
