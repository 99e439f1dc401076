// `touch` with an atomic increment: exact whatever the grid (workgroups of one dispatch may
// run concurrently on a GPU, where shaders/noop.wgsl's plain read-modify-write races).
@group(0) @binding(0) var<storage, read_write> counter: array<atomic<u32>>;

@compute @workgroup_size(1)
fn touch() {
  atomicAdd(&counter[0], 1u);
}
