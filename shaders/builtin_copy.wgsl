// hal builtin: copy `length` bytes from byte `src_begin` of the source window to byte
// `dst_begin` of the target window, at any alignment. Whole target words are assembled from
// two source words with a funnel shift (one word when the offsets agree modulo 4); the (at
// most two) target words only partly inside the range are patched byte by byte so bytes
// outside it keep their values. Both bindings are read_write so that one buffer may be bound
// twice (a copy between disjoint ranges of one buffer): WebGPU forbids binding a buffer
// read-only and read-write in one dispatch. Offsets that differ modulo 4 go to
// builtin_copy16.wgsl (16-byte accesses) wherever both windows can be whole 16-byte blocks;
// this kernel does them only where not (a plan's own buffers, the end of a buffer at
// max-buffer-size, windows within one allocation that would overlap).
//
// Grid-stride loops; all source words of a step are loaded before any store (the bindings
// may alias, so the compiler may not hoist a load above an earlier store, and one word at a
// time would leave one load in flight): with equal offsets modulo 4, four words a step each
// a whole grid apart (coalesced); otherwise through workgroup memory (copy_shifted).
struct CopyParams {
  src_begin: u32,
  dst_begin: u32,
  length: u32,
  word_count: u32,  // target words touched (the grid's size; the kernel derives its range)
}
var<immediate> params: CopyParams;
@group(0) @binding(0) var<storage, read_write> source_words: array<u32>;
@group(0) @binding(1) var<storage, read_write> target_words: array<u32>;

fn source_byte(p: u32) -> u32 {
  return (source_words[p >> 2u] >> ((p & 3u) * 8u)) & 0xffu;
}

// A target word only partly inside the range: patched byte by byte (read-modify-write).
fn patch_word(w: u32, dst_begin: u32, dst_end: u32, src_begin: u32) {
  let t = w * 4u;
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

// Source word holding the first byte of whole target word w (byte 4w - dst_begin + src_begin).
fn source_word(w: u32) -> u32 {
  return (w * 4u - params.dst_begin + params.src_begin) >> 2u;
}

// Offsets that differ modulo 4: tiles of TILE target words, one tile per workgroup per step
// (grid stride). The tile's TILE + 1 source words are loaded once each, coalesced, into
// workgroup memory, then every target word is assembled from two neighbouring staged words:
// global traffic is the aligned copy's (one load per word). The four loads of a step are
// written out and all issued before any is stored: in a loop the driver kept one in flight.
// H200, 1 GiB from byte 1 to byte 3 (benchmarks/kernel_sweep.py, two passes): this kernel
// 1734 / 1751 GB/s; the previous one (four consecutive words from five source words, no
// workgroup memory) 1613 / 1600; 8 words per invocation 1660 / 1648 (and 20x slower on
// lavapipe); the looped loads 1165 / 1200.
const TILE: u32 = 1024u;  // 256 invocations x 4 words
var<workgroup> staged: array<u32, 1025>;  // TILE + 1

fn source_or_zero(s0: u32, i: u32, count: u32) -> u32 {
  // Source word s0 + count is the second half of the last whole target word: in range.
  var v = 0u;
  if (i <= count) { v = source_words[s0 + i]; }
  return v;
}

fn copy_shifted(lo: u32, count: u32, shift: u32, group: u32, groups: u32, lane: u32) {
  let back = 32u - shift;
  let s0 = source_word(lo);
  let tiles = (count + TILE - 1u) / TILE;
  for (var t = group; t < tiles; t += groups) {
    let base = t * TILE + lane;
    let a = source_or_zero(s0, base, count);
    let b = source_or_zero(s0, base + 256u, count);
    let c = source_or_zero(s0, base + 512u, count);
    let d = source_or_zero(s0, base + 768u, count);
    var e = 0u;
    if (lane == 0u) { e = source_or_zero(s0, base + TILE, count); }
    staged[lane] = a;
    staged[lane + 256u] = b;
    staged[lane + 512u] = c;
    staged[lane + 768u] = d;
    if (lane == 0u) { staged[TILE] = e; }
    workgroupBarrier();
    for (var j = 0u; j < 4u; j++) {
      let k = j * 256u + lane;
      if (base + j * 256u < count) {
        target_words[lo + base + j * 256u] = (staged[k] >> shift) | (staged[k + 1u] << back);
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lane: u32,
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
      let a = source_words[source_word(w)];
      let b = source_words[source_word(w + stride)];
      let c = source_words[source_word(w + 2u * stride)];
      let d = source_words[source_word(w + 3u * stride)];
      target_words[w] = a;
      target_words[w + stride] = b;
      target_words[w + 2u * stride] = c;
      target_words[w + 3u * stride] = d;
    }
    for (; i < count; i += stride) {
      target_words[lo + i] = source_words[source_word(lo + i)];
    }
  } else {
    copy_shifted(lo, count, shift, wid.x, groups.x, lane);
  }
  if (gid.x == 0u && dst_begin / 4u < lo) {
    patch_word(dst_begin / 4u, dst_begin, dst_end, src_begin);
  }
  if (gid.x == 1u && hi < (dst_end + 3u) / 4u) {
    patch_word(hi, dst_begin, dst_end, src_begin);
  }
}
