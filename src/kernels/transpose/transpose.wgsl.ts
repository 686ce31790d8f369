// 2-D transpose through a padded 16×16 workgroup tile, on 32-bit words (f32 and i32 alike).

export const transposeWgsl = /* wgsl */ `
const TILE: u32 = 16u;
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> tile: array<u32, 272>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * TILE + lid.x;
  let r = wid.y * TILE + lid.y;
  if (r < p.rows && c < p.cols) { tile[lid.y * (TILE + 1u) + lid.x] = x[r * p.cols + c]; }
  workgroupBarrier();
  let out_row = wid.x * TILE + lid.y;
  let out_col = wid.y * TILE + lid.x;
  if (out_row < p.cols && out_col < p.rows) { out[out_row * p.rows + out_col] = tile[lid.x * (TILE + 1u) + lid.y]; }
}
`;
