// vec3 members are 16-byte aligned: padding inside structs, in a binding and in the
// immediate block.
struct Particle {
  pos: vec3<f32>,
  mass: f32,
  vel: vec3<f32>,
}
struct Push {
  n: u32,
  v: vec3<f32>,
  k: i32,
}
var<immediate> push: Push;
@group(0) @binding(0) var<storage, read_write> particles: array<Particle>;

@compute @workgroup_size(32)
fn step(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= push.n) {
    return;
  }
  var p = particles[gid.x];
  p.pos = p.pos + p.vel * push.v + vec3<f32>(f32(push.k));
  particles[gid.x] = p;
}
