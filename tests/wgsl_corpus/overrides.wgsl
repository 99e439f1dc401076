// Pipeline-overridable constants: typed, inferred, with @id, and one without a default.
override WG: u32 = 64;
@id(7) override SCALE: f32 = 2.0;
override ENABLED: bool = true;
override OFFSET = 3i;
override COUNT: i32;
var<workgroup> tile: array<f32, WG>;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) i: u32, @builtin(global_invocation_id) gid: vec3<u32>) {
  tile[i] = f32(i) * SCALE;
  workgroupBarrier();
  if (ENABLED && gid.x < arrayLength(&out)) {
    out[gid.x] = tile[WG - 1u - i] + f32(OFFSET + COUNT);
  }
}
