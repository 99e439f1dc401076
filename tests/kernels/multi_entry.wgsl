// A module with several entry points sharing one constants block and one set of bindings;
// `fixed` uses no constants at all.
struct Params {
  value: u32,
  shift: u32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

// out[gid] = value + gid
@compute @workgroup_size(16)
fn store(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&out)) {
    out[gid.x] = params.value + gid.x;
  }
}

// out[gid] = (out[gid] << shift) | value
@compute @workgroup_size(16)
fn shift_or(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&out)) {
    out[gid.x] = (out[gid.x] << params.shift) | params.value;
  }
}

// out[gid] = out[gid] * 3 + 1 (no constants)
@compute @workgroup_size(16)
fn fixed(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&out)) {
    out[gid.x] = out[gid.x] * 3u + 1u;
  }
}
