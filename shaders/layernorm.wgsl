// Layer normalisation of each row of a row-major [rows, cols] f32 matrix:
//   out[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * gamma[c] + beta[c]
// (biased variance, as torch.nn.LayerNorm).
//
// Not standalone: hal.examples.rowwise prepends the element prelude and a reduction module
// (see softmax.wgsl).
//
// One 256-invocation workgroup per row. One read gathers the sums of d = x - shift and d^2,
// shift being the row's first element (so var = E[d^2] - E[d]^2 does not cancel for rows with
// a large mean), two workgroup reductions, then the write pass reads the row again (from
// cache). Rows on a 2-D grid (x * y >= rows).
//
// Dispatch: workgroups covering `rows`; bindings x, gamma, beta (read), out (write).
struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> gamma: array<V>;
@group(0) @binding(2) var<storage, read> beta: array<V>;
@group(0) @binding(3) var<storage, read_write> out: array<V>;

@compute @workgroup_size(256, 1, 1)
fn layernorm(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.y * groups.x + wid.x;
  let live = row < params.rows;
  let width = params.cols / WIDTH;
  let base = row * width;
  var shift = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  if (live) {
    shift = first(x[base]);
    for (var c = lid; c < width; c = c + RWG) {
      let d = x[base + c] - V(shift);
      s1 = s1 + hsum(d);
      s2 = s2 + hsum(d * d);
    }
  }
  let n = f32(params.cols);
  let mean_d = wg_sum(s1, lid) / n;
  let variance = max(wg_sum(s2, lid) / n - mean_d * mean_d, 0.0);
  if (live) {
    let mean = V(shift + mean_d);
    let inv = V(inverseSqrt(variance + params.eps));
    for (var c = lid; c < width; c = c + RWG) {
      out[base + c] = (x[base + c] - mean) * inv * gamma[c] + beta[c];
    }
  }
}
