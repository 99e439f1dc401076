// Row-wise, numerically stable softmax of a row-major [rows, cols] f32 matrix:
//   out[r, c] = exp(x[r, c] - max_r) / sum_c' exp(x[r, c'] - max_r)
// Subtracting the row maximum keeps every exp() argument <= 0, so large inputs never
// overflow (and the largest term is exactly 1, so the sum is never 0).
//
// One 256-invocation workgroup per row: each invocation strides over the row, then two tree
// reductions in workgroup memory (max, then sum of exponentials) separated by barriers, then
// every invocation writes its share. Any number of columns; rows on a 2-D grid of workgroups
// (x * y >= rows) so any number of rows fits under the per-dimension limit.
//
// Dispatch: workgroups covering `rows`; bindings x (read), out (write). `x` and `out` may be
// different ranges of one buffer, but not the same range.
struct Params {
  rows: u32,
  cols: u32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> scratch: array<f32, 256>;

// Tree reduction of scratch[0..WG) into scratch[0]: max when `take_max`, else sum. Every
// invocation of the workgroup must call it (it contains barriers).
fn reduce(lid: u32, take_max: bool) -> f32 {
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      let other = scratch[lid + stride];
      if (take_max) {
        scratch[lid] = max(scratch[lid], other);
      } else {
        scratch[lid] = scratch[lid] + other;
      }
    }
    workgroupBarrier();
  }
  let result = scratch[0];
  workgroupBarrier();  // everyone read scratch[0] before it is reused
  return result;
}

@compute @workgroup_size(256, 1, 1)
fn softmax(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.y * groups.x + wid.x;
  let cols = params.cols;
  // Rows past the end still run the barriers (uniform control flow) but touch no memory.
  let live = row < params.rows;
  let base = row * cols;

  var m = -3.402823e38;  // lowest finite f32
  if (live) {
    for (var c = lid; c < cols; c = c + WG) {
      m = max(m, x[base + c]);
    }
  }
  scratch[lid] = m;
  workgroupBarrier();
  let row_max = reduce(lid, true);

  var s = 0.0;
  if (live) {
    for (var c = lid; c < cols; c = c + WG) {
      s = s + exp(x[base + c] - row_max);
    }
  }
  scratch[lid] = s;
  workgroupBarrier();
  let total = reduce(lid, false);

  if (live) {
    let inv = 1.0 / total;
    for (var c = lid; c < cols; c = c + WG) {
      out[base + c] = exp(x[base + c] - row_max) * inv;
    }
  }
}
