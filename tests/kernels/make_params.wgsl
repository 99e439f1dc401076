// Writes dispatch_indirect parameters computed on the GPU: from sizes = (a, b, c) it writes
// params = (a + 1, b * 2, c) at params[0..3].
@group(0) @binding(0) var<storage, read> sizes: array<u32>;
@group(0) @binding(1) var<storage, read_write> params: array<u32>;

@compute @workgroup_size(1)
fn make_params() {
  params[0] = sizes[0] + 1u;
  params[1] = sizes[1] * 2u;
  params[2] = sizes[2];
}
