// Rotary embedding, rotate-half layout, on x [B, T, heads·hd]; the first rd dimensions of each head
// rotate, the rest pass through. cos/sin come precomputed per position: table [2, T, rd/2].

import { FLAT_GROUP_WGSL } from '../common.ts';

export const ropeWgsl = /* wgsl */ `
struct Params { n: u32, t: u32, heads: u32, hd: u32, rd: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  let col = i % p.hd;
  if (col >= p.rd) { out[i] = x[i]; return; }
  let pos = (i / (p.hd * p.heads)) % p.t;
  let half = p.rd / 2u;
  let j = col % half;
  let c = table[pos * half + j];
  let s = table[(p.t + pos) * half + j];
  if (col < half) {
    out[i] = x[i] * c - x[i + half] * s;
  } else {
    out[i] = x[i] * c + x[i - half] * s;
  }
}
`;
