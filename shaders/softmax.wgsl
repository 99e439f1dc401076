// Row-wise, numerically stable softmax of a row-major [rows, cols] f32 matrix:
//   out[r, c] = exp(x[r, c] - max_r) / sum_c' exp(x[r, c'] - max_r)
// Subtracting the row maximum keeps every exp() argument <= 0, so large inputs never
// overflow (and the largest term is exactly 1, so the sum is never 0).
//
// Not standalone: hal.examples.rowwise prepends the element prelude (`alias V` = vec4<f32>
// when cols % 4 == 0, else f32; WIDTH; hsum, hmax, first) and a reduction module
// (reduce_subgroup.wgsl where the adapter has subgroups, else reduce_workgroup.wgsl).
//
// One 256-invocation workgroup per row, one read of the row: each invocation keeps a running
// maximum and a running sum of exp(x - maximum) over its strided share (online softmax), the
// workgroup reduces the maxima, then the rescaled sums; the write pass reads the row again
// (from cache: a row is at most a few tens of KiB). Rows on a 2-D grid (x * y >= rows).
//
// Dispatch: workgroups covering `rows`; bindings x (read), out (write), different ranges.
struct Params {
  rows: u32,
  cols: u32,
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read_write> out: array<V>;

const LOWEST: f32 = -3.402823e38;  // lowest finite f32

@compute @workgroup_size(256, 1, 1)
fn softmax(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.y * groups.x + wid.x;
  // Rows past the end still run the reductions (uniform control flow) but touch no memory.
  let live = row < params.rows;
  let width = params.cols / WIDTH;
  let base = row * width;
  var m = LOWEST;
  var s = 0.0;
  if (live) {
    for (var c = lid; c < width; c = c + RWG) {
      let v = x[base + c];
      let mv = max(m, hmax(v));
      s = s * exp(m - mv) + hsum(exp(v - V(mv)));
      m = mv;
    }
  }
  let row_max = wg_max(m, lid);
  let total = wg_sum(s * exp(m - row_max), lid);
  if (live) {
    let inv = 1.0 / total;
    for (var c = lid; c < width; c = c + RWG) {
      out[base + c] = exp(x[base + c] - V(row_max)) * inv;
    }
  }
}
