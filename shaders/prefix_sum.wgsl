// Inclusive prefix sum (scan) of f32, i32 or u32, in place, for any length:
// data[i] = sum(data[0..=i]) (integers wrap, as WGSL's integer addition does).
//
// Reduce-then-scan over tiles of TILE = 256 * ITEMS * WIDTH elements, ~3n memory traffic:
//   reduce_tiles  sums[t] = the total of tile t (one read of the data);
//   (the host scans `sums` the same way, recursively, until one tile is left)
//   scan_tiles    each tile scanned in registers, plus the scanned total of all earlier
//                 tiles (offsets[t - 1]), written back in place (one read, one write).
// A one-tile level is scan_tiles alone (tile 0 never reads `offsets`). 2 * levels - 1
// dispatches with a barrier between each two, all in one command buffer.
//
// The host prepends a prelude (hal/examples/prefix_sum.py): `alias T` (the element type),
// `alias V` (T or vec4<T>), WIDTH (1 or 4), ITEMS (V values per invocation), `fn
// scan_in(V) -> V` (inclusive scan inside one V), `fn last(V) -> T`, `fn hsum(V) -> T`, and a
// workgroup scan module (scan_subgroup.wgsl or scan_workgroup.wgsl) with
// `fn wg_scan(v: T, lid: u32) -> WgScan` (exclusive prefix and total over the workgroup).
//
// reduce_tiles loads striped (coalesced: V index tile * TILE_V + i * 256 + lid); scan_tiles
// loads blocked (invocation lid owns the ITEMS consecutive V values from tile * TILE_V +
// lid * ITEMS), so one invocation's serial scan covers consecutive elements. The vec4
// variant needs `data` padded to whole vec4s (the host's scratch levels are; a user buffer
// of a length that is no multiple of 4 gets the scalar variant): lanes past n load as zero
// and the padding is overwritten.
//
// Dispatch (both entry points): one workgroup per tile, on a 2-D grid (x * y >= tiles) so
// any length fits under the per-dimension limit; bindings data, sums / offsets.
struct Params {
  n: u32,  // elements in `data` at this level
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> data: array<V>;
@group(0) @binding(1) var<storage, read_write> sums: array<T>;

const WG: u32 = 256u;
const TILE_V: u32 = WG * ITEMS;  // V values per tile

fn load_v(index: u32, n: u32) -> V {
  if (index * WIDTH >= n) {
    return V(T(0));
  }
  var v = data[index];
  if (WIDTH > 1u && index * WIDTH + WIDTH > n) {
    v = mask_tail(v, n - index * WIDTH);
  }
  return v;
}

@compute @workgroup_size(256, 1, 1)
fn reduce_tiles(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let n = params.n;
  let tile = wid.y * groups.x + wid.x;
  let base = tile * TILE_V;
  if (base * WIDTH >= n) {
    return;
  }
  var acc = V(T(0));
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    acc = acc + load_v(base + i * WG + lid, n);
  }
  let scan = wg_scan(hsum(acc), lid);
  if (lid == 0u) {
    sums[tile] = scan.total;
  }
}

@compute @workgroup_size(256, 1, 1)
fn scan_tiles(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let n = params.n;
  let tile = wid.y * groups.x + wid.x;
  let first = tile * TILE_V + lid * ITEMS;
  if (tile * TILE_V * WIDTH >= n) {
    return;
  }
  var values: array<V, ITEMS>;
  var running = T(0);
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    let v = scan_in(load_v(first + i, n)) + running;
    values[i] = v;
    running = last(v);
  }
  let scan = wg_scan(running, lid);
  var offset = scan.before;
  if (tile > 0u) {
    offset = offset + sums[tile - 1u];
  }
  let count = (n + WIDTH - 1u) / WIDTH;
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    if (first + i < count) {
      data[first + i] = values[i] + offset;
    }
  }
}
