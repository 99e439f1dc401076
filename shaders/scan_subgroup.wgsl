// Workgroup-wide exclusive scan with subgroup operations (prefix_sum.wgsl): a subgroup scan,
// one total per subgroup in workgroup memory, then each invocation adds the totals of the
// subgroups before its own. The workgroup is 256 invocations wide, a multiple of every
// subgroup size (4..128); subgroups are taken to be consecutive ranges of
// local_invocation_index (as in reduce_subgroup.wgsl; the tests check the results). Call in
// uniform control flow, at most once per dispatch (the scratch is not reused).
struct WgScan {
  before: T,  // sum over the invocations before this one
  total: T,   // sum over the workgroup
}
var<workgroup> scan_totals: array<T, 64>;

fn wg_scan(v: T, lid: u32) -> WgScan {
  let size = subgroupAdd(1u);
  let before = subgroupExclusiveAdd(v);
  let inclusive = subgroupInclusiveAdd(v);
  if (lid % size == size - 1u) {
    scan_totals[lid / size] = inclusive;
  }
  workgroupBarrier();
  let mine = lid / size;
  var prefix = T(0);
  var total = T(0);
  for (var s = 0u; s < 256u / size; s = s + 1u) {
    let t = scan_totals[s];
    if (s < mine) {
      prefix = prefix + t;
    }
    total = total + t;
  }
  return WgScan(prefix + before, total);
}
