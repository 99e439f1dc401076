// The smallest useful kernel: used by the dispatch-overhead benchmark.
@group(0) @binding(0) var<storage, read_write> counter: array<u32>;

@compute @workgroup_size(1)
fn touch() {
  counter[0] = counter[0] + 1u;
}
