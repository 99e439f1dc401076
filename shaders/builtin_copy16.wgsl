// hal builtin: copy `length` bytes from byte `src_begin` of the source window to byte
// `dst_begin` of the target window, at any alignment, in 16-byte accesses. The lowering uses
// it for copies whose offsets differ modulo 4 when both windows can be whole 16-byte blocks
// (every allocation is padded to whole blocks where max-buffer-size allows); elsewhere the
// word kernel (builtin_copy.wgsl) runs, with the same parameters. Whole target blocks are
// assembled from two neighbouring source blocks (a funnel shift by the offsets' difference
// modulo 16, the same for every block); the (at most two) target blocks only partly inside
// the range are patched byte by byte, so bytes outside it keep their values. Both bindings
// are read_write so that one buffer may be bound twice (disjoint windows of one allocation).
//
// Grid-stride loop, two target blocks a step (each a grid apart, so every access is
// coalesced), all four source loads issued before either store: the bindings may alias, so
// the compiler may not hoist a load above an earlier store. A block's second source block
// is its right neighbour's first: a cache hit, so global traffic is the aligned copy's.
struct CopyParams {
  src_begin: u32,
  dst_begin: u32,
  length: u32,
  word_count: u32,  // target words touched (unused here: the kernel derives its range)
}
var<immediate> params: CopyParams;
@group(0) @binding(0) var<storage, read_write> source_blocks: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> target_blocks: array<vec4<u32>>;

fn source_byte(p: u32) -> u32 {
  return (source_blocks[p >> 4u][(p >> 2u) & 3u] >> ((p & 3u) * 8u)) & 0xffu;
}

// A target block only partly inside the range: patched byte by byte (read-modify-write).
fn patch_block(b: u32, dst_begin: u32, dst_end: u32, src_begin: u32) {
  var value = target_blocks[b];
  for (var k = 0u; k < 16u; k++) {
    let p = b * 16u + k;
    if (p >= dst_begin && p < dst_end) {
      let byte = source_byte(p - dst_begin + src_begin);
      let j = k >> 2u;
      let bit = (k & 3u) * 8u;
      value[j] = (value[j] & ~(0xffu << bit)) | (byte << bit);
    }
  }
  target_blocks[b] = value;
}

// Bytes [m, m + 16) of the 32 bytes a, b (m = 4q + r / 8, the same for every block: the
// switch is uniform). r == 0 takes the words as they are: a shift by 32 is a shift by 0.
fn assemble(a: vec4<u32>, b: vec4<u32>, q: u32, r: u32) -> vec4<u32> {
  var low = a;
  var high = vec4<u32>(a.yzw, b.x);
  switch q {
    case 1u: {
      low = high;
      high = vec4<u32>(a.zw, b.xy);
    }
    case 2u: {
      low = vec4<u32>(a.zw, b.xy);
      high = vec4<u32>(a.w, b.xyz);
    }
    case 3u: {
      low = vec4<u32>(a.w, b.xyz);
      high = b;
    }
    default: {}
  }
  if (r == 0u) {
    return low;
  }
  return (low >> vec4<u32>(r)) | (high << vec4<u32>(32u - r));
}

@compute @workgroup_size(256)
fn copy16(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>) {
  let dst_begin = params.dst_begin;
  let dst_end = dst_begin + params.length;
  let src_begin = params.src_begin;
  // Target blocks [lo, hi) lie wholly inside the range; at most two others are partial.
  let lo = (dst_begin + 15u) / 16u;
  let hi = max(dst_end / 16u, lo);
  let count = hi - lo;
  let stride = groups.x * 256u;
  // Source byte of target byte t: t + delta (mod 2^32, as the offsets may be either way).
  let delta = src_begin - dst_begin;
  let m = delta & 15u;
  let q = m >> 2u;
  let r = (m & 3u) * 8u;
  // Source block holding the first byte of target block lo; with m == 0 the second source
  // block is not needed (and may lie past the window), so it is the first again.
  let s0 = (lo * 16u + delta) >> 4u;
  let next = select(0u, 1u, m != 0u);
  var i = gid.x;
  for (; i + stride < count; i += 2u * stride) {
    let a0 = source_blocks[s0 + i];
    let b0 = source_blocks[s0 + i + next];
    let a1 = source_blocks[s0 + i + stride];
    let b1 = source_blocks[s0 + i + stride + next];
    target_blocks[lo + i] = assemble(a0, b0, q, r);
    target_blocks[lo + i + stride] = assemble(a1, b1, q, r);
  }
  for (; i < count; i += stride) {
    target_blocks[lo + i] = assemble(source_blocks[s0 + i], source_blocks[s0 + i + next], q, r);
  }
  if (gid.x == 0u && dst_begin / 16u < lo) {
    patch_block(dst_begin / 16u, dst_begin, dst_end, src_begin);
  }
  if (gid.x == 1u && hi < (dst_end + 15u) / 16u) {
    patch_block(hi, dst_begin, dst_end, src_begin);
  }
}
