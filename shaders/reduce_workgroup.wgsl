// Workgroup-wide reductions through workgroup memory, for adapters without subgroups.
// The workgroup is RWG = 256 invocations wide; every invocation must call these in uniform
// control flow (they contain barriers); every one gets the result.
const RWG: u32 = 256u;
var<workgroup> reduce_scratch: array<f32, 256>;

fn wg_reduce(v: f32, lid: u32, take_max: bool) -> f32 {
  reduce_scratch[lid] = v;
  workgroupBarrier();
  for (var stride = RWG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      let other = reduce_scratch[lid + stride];
      if (take_max) {
        reduce_scratch[lid] = max(reduce_scratch[lid], other);
      } else {
        reduce_scratch[lid] = reduce_scratch[lid] + other;
      }
    }
    workgroupBarrier();
  }
  let result = reduce_scratch[0];
  workgroupBarrier();  // everyone read the result before the scratch is reused
  return result;
}

fn wg_sum(v: f32, lid: u32) -> f32 {
  return wg_reduce(v, lid, false);
}

fn wg_max(v: f32, lid: u32) -> f32 {
  return wg_reduce(v, lid, true);
}
