// Sum (or sum of squares) over rows, one workgroup per row.

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

export const reduceWgsl = /* wgsl */ `
override WG: u32 = 256u;
override SQUARES: bool = false;
struct Params { rows: u32, n: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = flat_group(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    let v = x[base + i];
    s += select(v, v * v, SQUARES);
  }
  s = workgroup_sum(s, lid);
  if (lid == 0u) { out[row] = s; }
}
`;
