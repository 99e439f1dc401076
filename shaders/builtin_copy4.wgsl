// hal builtin: copy `count` 16-byte blocks from block `src_begin` of the source window to
// block `dst_begin` of the target window. Used for the body of large copies whose source and
// target offsets agree modulo 16 (the edges go through builtin_copy.wgsl). Both bindings are
// read_write so that one buffer may be bound twice (disjoint ranges of one allocation).
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
  for (var i = gid.x; i < params.count; i += stride) {
    target_blocks[params.dst_begin + i] = source_blocks[params.src_begin + i];
  }
}
