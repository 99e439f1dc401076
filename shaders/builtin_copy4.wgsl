// hal builtin: copy `count` 16-byte blocks from block `src_begin` of the source window to
// block `dst_begin` of the target window. Used for the body of large copies whose source and
// target offsets agree modulo 16 (the edges go through builtin_copy.wgsl). Both bindings are
// read_write so that one buffer may be bound twice (disjoint ranges of one allocation).
//
// Grid-stride loop, four blocks a step: each a whole grid apart (so each of the four accesses
// is coalesced) and all four loaded before any is stored. The bindings may alias, so the
// compiler may not hoist a load above an earlier store: without the grouping every invocation
// would have one load in flight at a time.
struct Copy4Params {
  src_begin: u32,
  dst_begin: u32,
  count: u32,
  _pad: u32,
}
var<immediate> params: Copy4Params;
@group(0) @binding(0) var<storage, read_write> source_blocks: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> target_blocks: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy4(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>) {
  let stride = groups.x * 256u;
  let count = params.count;
  let s = params.src_begin;
  let d = params.dst_begin;
  var i = gid.x;
  for (; i + 3u * stride < count; i += 4u * stride) {
    let a = source_blocks[s + i];
    let b = source_blocks[s + i + stride];
    let c = source_blocks[s + i + 2u * stride];
    let e = source_blocks[s + i + 3u * stride];
    target_blocks[d + i] = a;
    target_blocks[d + i + stride] = b;
    target_blocks[d + i + 2u * stride] = c;
    target_blocks[d + i + 3u * stride] = e;
  }
  for (; i < count; i += stride) {
    target_blocks[d + i] = source_blocks[s + i];
  }
}
