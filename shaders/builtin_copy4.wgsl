// hal builtin: copy `count` 16-byte blocks from block `src_begin` of the source window to
// block `dst_begin` of the target window. Used for the body of large copies whose source and
// target offsets agree modulo 16 (the edges go through builtin_copy.wgsl). Both bindings are
// read_write so that one buffer may be bound twice (disjoint ranges of one allocation).
//
// One block per invocation on an exact grid: the lowering dispatches one invocation per
// block, on a second grid dimension where one would exceed the per-dimension limit
// (hal.core.builtins.block_grid), so the loop below runs once; it strides over the whole
// grid only for a smaller grid. On the H200 at 1 GiB (benchmarks/kernel_sweep.py --only
// tracker, raw back-to-back submissions, 7 rounds in one process) this ran at 2116 GB/s
// (2114-2119) against 2077 (2075-2079) for the previous kernel (a capped 65535-workgroup
// grid, two blocks a grid apart per step), level with torch's copy_ (2117); two blocks an
// invocation on an exact grid 2094, workgroups of 128 2117.
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
fn copy4(@builtin(local_invocation_index) lane: u32,
         @builtin(workgroup_id) group: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>) {
  let stride = groups.x * groups.y * 256u;
  let count = params.count;
  let s = params.src_begin;
  let d = params.dst_begin;
  for (var i = (group.y * groups.x + group.x) * 256u + lane; i < count; i += stride) {
    target_blocks[d + i] = source_blocks[s + i];
  }
}
