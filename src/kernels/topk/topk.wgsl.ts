// Top-k per row, one workgroup per row: k rounds, each a workgroup argmax over the elements that come
// after the previous pick in the order (value descending, index ascending). Exact, ties to the lower
// index, no scratch memory; costs k passes over the row, which suits the small k of token readouts.

import { FLAT_GROUP_WGSL } from '../common.ts';

export const topkWgsl = /* wgsl */ `
override WG: u32 = 256u;
struct Params { rows: u32, n: u32, k: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> indices: array<i32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<i32, WG>;
${FLAT_GROUP_WGSL}

// Whether (av, ai) comes before (bv, bi); index -1 means none.
fn before(av: f32, ai: i32, bv: f32, bi: i32) -> bool {
  if (ai < 0) { return false; }
  if (bi < 0) { return true; }
  return av > bv || (av == bv && ai < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = flat_group(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var prev_v = 0.0;
  var prev_i = -1;
  for (var r = 0u; r < p.k; r++) {
    var bv = 0.0;
    var bi = -1;
    for (var i = lid; i < p.n; i += WG) {
      let v = x[base + i];
      let ii = i32(i);
      if (before(prev_v, prev_i, v, ii) || prev_i < 0) {
        if (before(v, ii, bv, bi)) { bv = v; bi = ii; }
      }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
      if (lid < s && before(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
        best_v[lid] = best_v[lid + s];
        best_i[lid] = best_i[lid + s];
      }
      workgroupBarrier();
    }
    prev_v = best_v[0];
    prev_i = best_i[0];
    if (lid == 0u) {
      values[row * p.k + r] = prev_v;
      indices[row * p.k + r] = prev_i;
    }
    workgroupBarrier();
  }
}
`;
