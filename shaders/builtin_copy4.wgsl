// hal builtin: copy `count` 16-byte blocks from block `src_begin` of the source window to
// block `dst_begin` of the target window. Used for the body of large copies whose source and
// target offsets agree modulo 16 (the edges go through builtin_copy.wgsl). Both bindings are
// read_write so that one buffer may be bound twice (disjoint ranges of one allocation).
//
// Grid-stride loop, two blocks a step: each a whole grid apart (so each access is coalesced)
// and both loaded before either is stored. The bindings may alias, so the compiler may not
// hoist a load above an earlier store: without the grouping every invocation would have one
// load in flight at a time. On the H200 at 1 GiB (benchmarks/kernel_sweep.py) two a step ran
// at 2004 / 2003 GB/s in two passes, four 1979 / 1982, one 1967 / 2000, eight 1973 / 1903;
// 512 and 1024 invocations per workgroup were no faster.
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
  for (; i + stride < count; i += 2u * stride) {
    let a = source_blocks[s + i];
    let b = source_blocks[s + i + stride];
    target_blocks[d + i] = a;
    target_blocks[d + i + stride] = b;
  }
  for (; i < count; i += stride) {
    target_blocks[d + i] = source_blocks[s + i];
  }
}
