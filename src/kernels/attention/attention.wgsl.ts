// Causal grouped-query attention, one workgroup per (batch, query, head). Keys are taken in chunks of
// WG with an online softmax (running max and sum), so no [T, S] score matrix is stored and any S fits.

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

/** Largest head dimension: WG threads × PER outputs each. */
export const ATTENTION_MAX_HEAD_DIM = 256;

export const attentionWgsl = /* wgsl */ `
const WG: u32 = 64u;
const PER: u32 = 4u;
struct Params { b: u32, t: u32, s: u32, hq: u32, hkv: u32, hd: u32, offset: u32, window: u32, has_softcap: u32, scale: f32, softcap: f32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
var<workgroup> q_sh: array<f32, ${ATTENTION_MAX_HEAD_DIM}>;
var<workgroup> p_sh: array<f32, WG>;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
fn tanh_stable(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat_group(wid, nwg);
  if (g >= p.b * p.t * p.hq) { return; }
  let h = g % p.hq;
  let t = (g / p.hq) % p.t;
  let b = g / (p.hq * p.t);
  let kvh = h / (p.hq / p.hkv);
  let qbase = g * p.hd;
  for (var d = lid; d < p.hd; d += WG) { q_sh[d] = q[qbase + d]; }
  workgroupBarrier();

  let qpos = p.offset + t;
  let end = min(p.s, qpos + 1u);
  var start = 0u;
  if (p.window > 0u && qpos + 1u > p.window) { start = qpos + 1u - p.window; }
  var m = -3.402823e38;
  var l = 0.0;
  var acc: array<f32, PER>;
  for (var c0 = start; c0 < end; c0 += WG) {
    let j = c0 + lid;
    var score = -3.402823e38;
    if (j < end) {
      let kbase = ((b * p.s + j) * p.hkv + kvh) * p.hd;
      var dot = 0.0;
      for (var d = 0u; d < p.hd; d++) { dot += q_sh[d] * k[kbase + d]; }
      score = dot * p.scale;
      if (p.has_softcap != 0u) { score = p.softcap * tanh_stable(score / p.softcap); }
    }
    let m_new = max(m, workgroup_max(score, lid));
    let pj = select(0.0, exp(score - m_new), j < end);
    p_sh[lid] = pj;
    let chunk_sum = workgroup_sum(pj, lid);
    let alpha = exp(m - m_new);
    l = l * alpha + chunk_sum;
    m = m_new;
    let count = min(WG, end - c0);
    for (var r = 0u; r < PER; r++) {
      let d = lid + r * WG;
      if (d < p.hd) {
        var a = acc[r] * alpha;
        for (var jj = 0u; jj < count; jj++) {
          a += p_sh[jj] * v[((b * p.s + c0 + jj) * p.hkv + kvh) * p.hd + d];
        }
        acc[r] = a;
      }
    }
    workgroupBarrier();
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var r = 0u; r < PER; r++) {
    let d = lid + r * WG;
    if (d < p.hd) { out[qbase + d] = acc[r] * inv; }
  }
}
`;
