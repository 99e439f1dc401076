// Atomics in storage (fixed array, struct with a runtime-sized tail) and in workgroup memory.
struct Histogram {
  total: atomic<i32>,
  bins: array<atomic<u32>>,
}
@group(0) @binding(0) var<storage, read_write> counters: array<atomic<u32>, 4>;
@group(0) @binding(1) var<storage, read_write> hist: Histogram;
@group(0) @binding(2) var<storage, read> values: array<u32>;
var<workgroup> local_count: atomic<u32>;

@compute @workgroup_size(64)
fn count(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < arrayLength(&values)) {
    let v = values[gid.x];
    atomicAdd(&counters[v % 4u], 1u);
    atomicAdd(&hist.bins[v % arrayLength(&hist.bins)], 1u);
    atomicAdd(&hist.total, 1);
    atomicAdd(&local_count, 1u);
  }
}
