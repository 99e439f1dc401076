// hal builtin: copy `length` bytes from byte `src_begin` to byte `dst_begin` of ONE bound
// window, at any alignment: a copy between disjoint ranges of one buffer whose windows would
// overlap. WebGPU forbids two writable bindings of one buffer with overlapping ranges in a
// dispatch (Dawn enforces it), so source and target share this one binding. Otherwise as
// builtin_copy.wgsl: funnel-shifted whole words, four a step, byte-patched partial words.
struct CopyParams {
  src_begin: u32,
  dst_begin: u32,
  length: u32,
  word_count: u32,  // target words touched (the grid's size; the kernel derives its range)
}
var<immediate> params: CopyParams;
@group(0) @binding(0) var<storage, read_write> words: array<u32>;

fn source_byte(p: u32) -> u32 {
  return (words[p >> 2u] >> ((p & 3u) * 8u)) & 0xffu;
}

// A target word only partly inside the range: patched byte by byte (read-modify-write).
fn patch_word(w: u32, dst_begin: u32, dst_end: u32, src_begin: u32) {
  let t = w * 4u;
  var value = words[w];
  for (var k = 0u; k < 4u; k++) {
    let p = t + k;
    if (p >= dst_begin && p < dst_end) {
      let b = source_byte(p - dst_begin + src_begin);
      value = (value & ~(0xffu << (k * 8u))) | (b << (k * 8u));
    }
  }
  words[w] = value;
}

// Source word holding the first byte of whole target word w (byte 4w - dst_begin + src_begin).
fn source_word(w: u32) -> u32 {
  return (w * 4u - params.dst_begin + params.src_begin) >> 2u;
}

@compute @workgroup_size(256)
fn copy_within(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let dst_begin = params.dst_begin;
  let dst_end = dst_begin + params.length;
  let src_begin = params.src_begin;
  // Target words [lo, hi) lie wholly inside the range; at most two others are partial.
  let lo = (dst_begin + 3u) / 4u;
  let hi = max(dst_end / 4u, lo);
  let count = hi - lo;
  let stride = groups.x * 256u;
  // The same for every word: the source offset minus the target offset, modulo 4.
  let shift = ((src_begin - dst_begin) & 3u) * 8u;
  var i = gid.x;
  if (shift == 0u) {
    for (; i + 3u * stride < count; i += 4u * stride) {
      let w = lo + i;
      let a = words[source_word(w)];
      let b = words[source_word(w + stride)];
      let c = words[source_word(w + 2u * stride)];
      let d = words[source_word(w + 3u * stride)];
      words[w] = a;
      words[w + stride] = b;
      words[w + 2u * stride] = c;
      words[w + 3u * stride] = d;
    }
    for (; i < count; i += stride) {
      words[lo + i] = words[source_word(lo + i)];
    }
  } else {
    // Four consecutive target words per invocation from five consecutive source words: on
    // the H200 5% faster than four words a grid apart (two loads each).
    let back = 32u - shift;
    let quads = count / 4u;
    for (var j = gid.x; j < quads; j += stride) {
      let w = lo + 4u * j;
      let s = source_word(w);
      let a = words[s];
      let b = words[s + 1u];
      let c = words[s + 2u];
      let d = words[s + 3u];
      let e = words[s + 4u];
      words[w] = (a >> shift) | (b << back);
      words[w + 1u] = (b >> shift) | (c << back);
      words[w + 2u] = (c >> shift) | (d << back);
      words[w + 3u] = (d >> shift) | (e << back);
    }
    for (i = 4u * quads + gid.x; i < count; i += stride) {
      let s = source_word(lo + i);
      words[lo + i] = (words[s] >> shift) | (words[s + 1u] << back);
    }
  }
  if (gid.x == 0u && dst_begin / 4u < lo) {
    patch_word(dst_begin / 4u, dst_begin, dst_end, src_begin);
  }
  if (gid.x == 1u && hi < (dst_end + 3u) / 4u) {
    patch_word(hi, dst_begin, dst_end, src_begin);
  }
}
