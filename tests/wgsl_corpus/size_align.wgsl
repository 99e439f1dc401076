// @size and @align change member offsets and the struct's size.
struct Header {
  @size(16) count: u32,
  @align(16) scale: f32,
  tail: vec2<f32>,
}
@group(0) @binding(0) var<storage, read_write> header: Header;

@compute @workgroup_size(1)
fn bump() {
  header.count = header.count + 1u;
  header.tail = header.tail * header.scale;
}
