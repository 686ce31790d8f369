// Row norms: one workgroup of WG threads per row of n values, reduced in workgroup memory.

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

const ENTRY = '@compute @workgroup_size(WG)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32)';

/** x / rms(x) · (w + add_one); w has n entries (also per-head norms, where n = headDim). */
export const rmsNormWgsl = /* wgsl */ `
override WG: u32 = 256u;
struct Params { rows: u32, n: u32, add_one: u32, eps: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
${ENTRY} {
  let row = flat_group(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var ss = 0.0;
  for (var i = lid; i < p.n; i += WG) { let v = x[base + i]; ss += v * v; }
  let inv = inverseSqrt(workgroup_sum(ss, lid) / f32(p.n) + p.eps);
  let offset = select(0.0, 1.0, p.add_one != 0u);
  for (var i = lid; i < p.n; i += WG) { out[base + i] = x[base + i] * inv * (w[i] + offset); }
}
`;

/** (x − mean) / sqrt(var + eps) · w + b, with the variance taken around the mean (two passes). */
export const layerNormWgsl = /* wgsl */ `
override WG: u32 = 256u;
struct Params { rows: u32, n: u32, eps: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
${ENTRY} {
  let row = flat_group(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) { s += x[base + i]; }
  let mean = workgroup_sum(s, lid) / f32(p.n);
  var ss = 0.0;
  for (var i = lid; i < p.n; i += WG) { let d = x[base + i] - mean; ss += d * d; }
  let inv = inverseSqrt(workgroup_sum(ss, lid) / f32(p.n) + p.eps);
  for (var i = lid; i < p.n; i += WG) { out[base + i] = (x[base + i] - mean) * inv * w[i] + b[i]; }
}
`;
