enable f16;
// f16 scalars and vectors have 2-byte components: vec3<f16> is 8-byte aligned.
struct Half {
  a: f16,
  b: vec3<f16>,
  c: f32,
}
@group(0) @binding(0) var<storage, read_write> halves: array<Half>;
@group(0) @binding(1) var<storage, read_write> plain: array<vec2h>;

@compute @workgroup_size(16)
fn widen(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&halves)) {
    let h = halves[gid.x];
    halves[gid.x].c = f32(h.a) + f32(h.b.x);
    plain[0] = vec2h(h.a, 1.5h);
  }
}
