// Inclusive prefix sum (scan) of f32, in place, for any length: data[i] = sum(data[0..=i]).
//
// One level scans blocks of BLOCK = 1024 elements (256 invocations x 4) and writes each
// block's total to sums[block]. The host scans `sums` the same way (recursively, until one
// block is left) and then adds the scanned total of all earlier blocks to every block with
// `add_offsets`, level by level back down. 2 * levels - 1 dispatches with a barrier between
// each two, all in one command buffer.
//
// Inside a block: a coalesced load into workgroup memory, a serial scan of 4 elements per
// invocation, a Hillis-Steele scan of the 256 per-invocation totals (8 steps, each between
// barriers), then a coalesced store.
//
// Dispatch (both entry points): one workgroup per block, on a 2-D grid (x * y >= blocks) so
// any length fits under the per-dimension limit; bindings data, sums.
struct Params {
  n: u32,  // elements in `data` at this level
}
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;

const WG: u32 = 256u;
const ITEMS: u32 = 4u;
const BLOCK: u32 = 1024u;  // WG * ITEMS
var<workgroup> block_data: array<f32, 1024>;
var<workgroup> totals: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn scan_blocks(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let n = params.n;
  let block = wid.y * groups.x + wid.x;
  let base = block * BLOCK;
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    let idx = base + i * WG + lid;
    var v = 0.0;
    if (idx < n) {
      v = data[idx];
    }
    block_data[i * WG + lid] = v;
  }
  workgroupBarrier();

  // Serial inclusive scan of this invocation's ITEMS consecutive elements.
  let first = lid * ITEMS;
  var running = 0.0;
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    running = running + block_data[first + i];
    block_data[first + i] = running;
  }
  totals[lid] = running;
  workgroupBarrier();

  // Hillis-Steele inclusive scan of the per-invocation totals.
  for (var offset = 1u; offset < WG; offset = offset * 2u) {
    var t = totals[lid];
    if (lid >= offset) {
      t = t + totals[lid - offset];
    }
    workgroupBarrier();
    totals[lid] = t;
    workgroupBarrier();
  }

  var prefix = 0.0;
  if (lid > 0u) {
    prefix = totals[lid - 1u];
  }
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    block_data[first + i] = block_data[first + i] + prefix;
  }
  workgroupBarrier();

  for (var i = 0u; i < ITEMS; i = i + 1u) {
    let idx = base + i * WG + lid;
    if (idx < n) {
      data[idx] = block_data[i * WG + lid];
    }
  }
  if (lid == WG - 1u && base < n) {
    sums[block] = totals[WG - 1u];
  }
}

// data[i] += sums[block - 1] for every element of every block but the first; `sums` holds the
// inclusive scan of the block totals.
@compute @workgroup_size(256, 1, 1)
fn add_offsets(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let block = wid.y * groups.x + wid.x;
  let base = block * BLOCK;
  if (block == 0u || base >= params.n) {
    return;
  }
  let offset = sums[block - 1u];
  for (var i = 0u; i < ITEMS; i = i + 1u) {
    let idx = base + i * WG + lid;
    if (idx < params.n) {
      data[idx] = data[idx] + offset;
    }
  }
}
