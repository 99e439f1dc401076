// Sizes and workgroup counts from constant expressions: hex, shifts, casts, min/max/abs.
const SHIFT = 3u;
const SIZE = (1u << SHIFT) | 0x0u;
const HALF = i32(SIZE) / 2;
const COUNT = u32(max(HALF, 2) % 5);
const NEG = abs(-6);
const_assert SIZE == 8u;
@group(0) @binding(0) var<storage, read_write> a: array<u32, SIZE>;
@group(0) @binding(1) var<storage, read_write> b: array<f32, COUNT + 1u>;
@group(0) @binding(2) var<storage, read_write> c: array<i32, NEG>;

@compute @workgroup_size(SIZE, u32(HALF))
fn main(@builtin(local_invocation_index) i: u32) {
  if (i < SIZE) {
    a[i] = i;
  }
  if (i < COUNT + 1u) {
    b[i] = f32(i);
  }
  if (i < u32(NEG)) {
    c[i] = -i32(i);
  }
}
