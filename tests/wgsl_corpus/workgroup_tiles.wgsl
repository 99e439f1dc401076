// Workgroup and private variables are globals but not bindings.
const TILE = 16u;
var<workgroup> tile: array<array<f32, TILE>, TILE>;
var<private> seed: u32 = 7u;
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(TILE, TILE)
fn transpose(@builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(workgroup_id) wid: vec3<u32>) {
  let width = TILE * 4u;
  let x = wid.x * TILE + lid.x;
  let y = wid.y * TILE + lid.y;
  seed = seed * 1664525u + 1013904223u;
  if (y * width + x < arrayLength(&input)) {
    tile[lid.y][lid.x] = input[y * width + x];
  }
  workgroupBarrier();
  let ox = wid.y * TILE + lid.x;
  let oy = wid.x * TILE + lid.y;
  if (oy * width + ox < arrayLength(&output)) {
    output[oy * width + ox] = tile[lid.x][lid.y];
  }
}
