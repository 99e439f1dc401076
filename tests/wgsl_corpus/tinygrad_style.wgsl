fn nan() -> f32 { let bits = 0xffffffffu; return bitcast<f32>(bits); }
fn is_nan(v:f32) -> bool { return min(v, 1.0) == 1.0 && max(v, -1.0) == -1.0; }
@group(0) @binding(0)var<storage,read_write>data0:array<f32>;
@group(0) @binding(1)var<storage,read_write>data1:array<atomic<u32>>;
@group(0) @binding(2)var<storage,read_write>data2:array<i32>;
var<workgroup>temp0:array<f32,32>;
@compute @workgroup_size(32,1,1) fn r_4_32(@builtin(workgroup_id) gindex: vec3<u32>,@builtin(local_invocation_id) lindex: vec3<u32>) {
  var gidx0 = i32(gindex.x); /* 4 */
  var lidx0 = i32(lindex.x); /* 32 */
  var acc0 = 0.0f;
  for (var ridx0 = 0; ridx0 < 4; ridx0++) {
    acc0 = (acc0+select(f32(data2[(gidx0*4)+ridx0]),nan(),is_nan(acc0)));
  }
  temp0[lidx0] = acc0;
  workgroupBarrier();
  if (lidx0 == 0) {
    data0[gidx0] = temp0[0];
    atomicOr(&data1[0], u32(gidx0)<<8u);
  }
}
