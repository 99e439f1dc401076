/* outer /* inner @group(0) @binding(3) var<storage> x: u32; */ still a comment:
   @group(0) @binding(4) var<storage, read_write> y: array<u32>; */
// @group(0) @binding(5) var<storage> z: u32;  /* a line comment with a block opener
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64) /* between attributes and fn */ fn main(
  @builtin(global_invocation_id) gid: vec3<u32>, // a trailing comment
) {
  // out[0] = x; mentions x only in a comment
  if (gid.x < arrayLength(&out)) {
    out[gid.x] = gid.x; /* y */
  }
}
