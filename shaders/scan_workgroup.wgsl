// Workgroup-wide exclusive scan in workgroup memory (prefix_sum.wgsl, adapters without
// subgroups): a Hillis-Steele inclusive scan of the 256 values, 8 steps between barriers.
// Call in uniform control flow, at most once per dispatch (the scratch is not reused).
struct WgScan {
  before: T,  // sum over the invocations before this one
  total: T,   // sum over the workgroup
}
var<workgroup> scan_values: array<T, 256>;

fn wg_scan(v: T, lid: u32) -> WgScan {
  scan_values[lid] = v;
  workgroupBarrier();
  for (var offset = 1u; offset < 256u; offset = offset * 2u) {
    var t = scan_values[lid];
    if (lid >= offset) {
      t = t + scan_values[lid - offset];
    }
    workgroupBarrier();
    scan_values[lid] = t;
    workgroupBarrier();
  }
  var before = T(0);
  if (lid > 0u) {
    before = scan_values[lid - 1u];
  }
  return WgScan(before, scan_values[255]);
}
