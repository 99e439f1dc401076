// hal builtin: fill `count` 16-byte blocks starting at block `begin` of the bound window with
// a word pattern. Used for the 16-byte aligned body of large fills (the edges go through
// builtin_fill.wgsl); vec4 stores, four a step, each a whole grid apart (coalesced).
struct Fill4Params {
  begin: u32,    // first block, relative to the binding window
  count: u32,    // blocks to fill
  pattern: u32,  // the pattern replicated to a word
  _pad: u32,
}
var<immediate> params: Fill4Params;
@group(0) @binding(0) var<storage, read_write> target_blocks: array<vec4<u32>>;

@compute @workgroup_size(256)
fn fill4(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>) {
  let value = vec4<u32>(params.pattern);
  let stride = groups.x * 256u;
  let count = params.count;
  let b = params.begin;
  var i = gid.x;
  for (; i + 3u * stride < count; i += 4u * stride) {
    target_blocks[b + i] = value;
    target_blocks[b + i + stride] = value;
    target_blocks[b + i + 2u * stride] = value;
    target_blocks[b + i + 3u * stride] = value;
  }
  for (; i < count; i += stride) {
    target_blocks[b + i] = value;
  }
}
