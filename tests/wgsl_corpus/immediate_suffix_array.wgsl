// An immediate block whose array count carries a u32 suffix.
var<immediate> w: array<u32, 4u>;
@group(0) @binding(0) var<storage, read_write> out: array<u32, 4>;

@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) i: u32) {
  out[i] = w[i] ^ 0xffffffffu;
}
