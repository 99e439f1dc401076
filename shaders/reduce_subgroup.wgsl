// Workgroup-wide reductions with subgroup operations: a subgroup reduction, one partial per
// subgroup in workgroup memory, then every invocation folds the partials (a broadcast read).
// The workgroup is RWG = 256 invocations wide, a multiple of every subgroup size (4..128), and
// subgroups are taken to be consecutive ranges of local_invocation_index (as on every Vulkan,
// Metal and D3D12 driver; the tests check the results). Call in uniform control flow.
const RWG: u32 = 256u;
var<workgroup> reduce_scratch: array<f32, 64>;

fn wg_reduce(v: f32, lid: u32, take_max: bool) -> f32 {
  let size = subgroupAdd(1u);
  // both, unconditionally: subgroup operations belong in uniform control flow
  let part = select(subgroupAdd(v), subgroupMax(v), take_max);
  if (lid % size == 0u) {
    reduce_scratch[lid / size] = part;
  }
  workgroupBarrier();
  var result = reduce_scratch[0];
  for (var i = 1u; i < RWG / size; i = i + 1u) {
    if (take_max) {
      result = max(result, reduce_scratch[i]);
    } else {
      result = result + reduce_scratch[i];
    }
  }
  workgroupBarrier();  // everyone read the partials before the scratch is reused
  return result;
}

fn wg_sum(v: f32, lid: u32) -> f32 {
  return wg_reduce(v, lid, false);
}

fn wg_max(v: f32, lid: u32) -> f32 {
  return wg_reduce(v, lid, true);
}
