// Tiled matrix multiply: c[M, N] = a[M, K] @ b[K, N], row-major f32, any M, K, N.
//
// Each 16x16 workgroup computes a 64x64 tile of c, 4x4 outputs per invocation (rows
// lid.y + 16i, columns lid.x + 16j, so neighbouring invocations touch neighbouring words).
// It walks K in steps of 16: the 256 invocations stage a 64x16 tile of a and a 16x64 tile of
// b in workgroup memory (4 + 4 coalesced loads each), wait at a barrier, then each one reads
// 4 + 4 values per k-step and does 16 multiply-adds from registers. So every element of a
// (of b) is read from storage N/64 (M/64) times instead of N (M) times, and workgroup memory
// is read 8 times per 16 multiply-adds. Out-of-range tile elements load as 0; out-of-range
// invocations still take part in the barriers but write nothing.
//
// Dispatch: workgroups (ceil(N / 64), ceil(M / 64), 1); bindings a, b, c.
struct Params {
  m: u32,  // rows of a and c
  k: u32,  // columns of a, rows of b
  n: u32,  // columns of b and c
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;   // output tile edge per workgroup
const STEP: u32 = 16u;   // k-step staged per barrier
const LANES: u32 = 16u;  // invocations per workgroup edge
const PER: u32 = 4u;     // outputs per invocation per edge (TILE / LANES)
var<workgroup> tile_a: array<array<f32, 16>, 64>;  // [TILE rows][STEP k]
var<workgroup> tile_b: array<array<f32, 64>, 16>;  // [STEP k][TILE cols]

@compute @workgroup_size(16, 16, 1)
fn matmul(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let m = params.m;
  let k = params.k;
  let n = params.n;
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  var acc: array<array<f32, 4>, 4>;  // zero-initialised
  let steps = (k + STEP - 1u) / STEP;
  for (var t = 0u; t < steps; t = t + 1u) {
    let k0 = t * STEP;
    for (var i = 0u; i < PER; i = i + 1u) {
      let r = row0 + lid.y + LANES * i;
      let ka = k0 + lid.x;
      var va = 0.0;
      if (r < m && ka < k) {
        va = a[r * k + ka];
      }
      tile_a[lid.y + LANES * i][lid.x] = va;
      let kb = k0 + lid.y;
      let col = col0 + lid.x + LANES * i;
      var vb = 0.0;
      if (kb < k && col < n) {
        vb = b[kb * n + col];
      }
      tile_b[lid.y][lid.x + LANES * i] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < STEP; kk = kk + 1u) {
      var ra: array<f32, 4>;
      var rb: array<f32, 4>;
      for (var i = 0u; i < PER; i = i + 1u) {
        ra[i] = tile_a[lid.y + LANES * i][kk];
        rb[i] = tile_b[kk][lid.x + LANES * i];
      }
      for (var i = 0u; i < PER; i = i + 1u) {
        for (var j = 0u; j < PER; j = j + 1u) {
          acc[i][j] = acc[i][j] + ra[i] * rb[j];
        }
      }
    }
    workgroupBarrier();  // everyone is done with the tiles before they are overwritten
  }
  for (var i = 0u; i < PER; i = i + 1u) {
    let r = row0 + lid.y + LANES * i;
    for (var j = 0u; j < PER; j = j + 1u) {
      let col = col0 + lid.x + LANES * j;
      if (r < m && col < n) {
        c[r * n + col] = acc[i][j];
      }
    }
  }
}
