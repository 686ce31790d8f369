// Softmax and log-softmax over rows: max, then the sum of exp(x − max), one workgroup per row.

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

export const softmaxWgsl = /* wgsl */ `
override WG: u32 = 256u;
struct Params { rows: u32, n: u32, log: u32 }
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
  var m = -3.402823e38;
  for (var i = lid; i < p.n; i += WG) { m = max(m, x[base + i]); }
  m = workgroup_max(m, lid);
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) { s += exp(x[base + i] - m); }
  s = workgroup_sum(s, lid);
  if (p.log != 0u) {
    let shift = m + log(s);
    for (var i = lid; i < p.n; i += WG) { out[base + i] = x[base + i] - shift; }
  } else {
    let inv = 1.0 / s;
    for (var i = lid; i < p.n; i += WG) { out[base + i] = exp(x[base + i] - m) * inv; }
  }
}
`;
