// Several compute entry points with different binding sets, a shared helper, and
// graphics entry points that HAL ignores.
struct VertexOut {
  @builtin(position) position: vec4<f32>,
}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

fn load_a(i: u32) -> f32 {
  return a[i];
}

fn twice(i: u32) -> f32 {
  return load_a(i) * 2.0;
}

@compute @workgroup_size(64)
fn double_into_b(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&b)) {
    b[gid.x] = twice(gid.x);
  }
}

@compute @workgroup_size(32, 2)
fn clear_c(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&c)) {
    c[gid.x] = 0.0;
  }
}

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
  var out: VertexOut;
  out.position = vec4<f32>(f32(index), 0.0, 0.0, 1.0);
  return out;
}

@fragment
fn fs_main() -> @location(0) vec4<f32> {
  return vec4<f32>(1.0, 0.5, 0.25, 1.0);
}
