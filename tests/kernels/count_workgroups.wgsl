// Counts the workgroups a dispatch really ran: each one increments counter[0] and marks
// its linear workgroup id in `seen` (seen[id] = id + 1).
@group(0) @binding(0) var<storage, read_write> counter: array<atomic<u32>>;
@group(0) @binding(1) var<storage, read_write> seen: array<u32>;

@compute @workgroup_size(4)
fn count(@builtin(workgroup_id) wg: vec3<u32>,
         @builtin(num_workgroups) n: vec3<u32>,
         @builtin(local_invocation_index) lane: u32) {
  if (lane == 0u) {
    atomicAdd(&counter[0], 1u);
    let id = wg.x + n.x * (wg.y + n.y * wg.z);
    if (id < arrayLength(&seen)) {
      seen[id] = id + 1u;
    }
  }
}
