// Fused logit-lens kernels. A workgroup computes a [BM rows × BN tokens] tile of logits h · Wᵀ into
// workgroup memory (register-tiled over K as the matmul kernel does), then folds it into per-row
// state and moves to the next BN tokens of its vocabulary slice, so [rows, V] logits never exist:
// - scan: online log-sum-exp (running max and sum) and a running top-k per (row, lane), merged over
//   a row's lanes at the end of the slice and written as one partial state per (row, slice);
// - merge: one workgroup per row combines every slice's partial state: the row's LSE and top-k;
// - kl: both heads' tiles, Σ p_0 (log p_0 − log p_1) per (row, slice), summed over slices afterwards.
// Tile sizes size register arrays and workgroup memory, so the sources are templates.

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

/** How an unembedding is stored: f32; f16 read natively (needs shader-f16); f16 read as u32 pairs. */
export type LensWType = 'f32' | 'f16' | 'f16packed';

export interface LensTiles {
  /** Rows per thread, threads along rows, tokens per thread, threads along tokens, depth of a K step. */
  tileM: number;
  workgroupM: number;
  tileN: number;
  workgroupN: number;
  tileK: number;
}

export interface LensScanVariant extends LensTiles {
  wType: LensWType;
  /** Capacity of each lane's top-k list (k ≤ kmax). */
  kmax: number;
}

export interface LensKlVariant extends LensTiles {
  wTypes: readonly [LensWType, LensWType];
}

/** Partial state per (row, slice), in u32 words: max, sum, then k values and k ids. */
export function partialWords(k: number): number {
  return 2 + 2 * k;
}

function wDeclaration(binding: number, name: string, t: LensWType): string {
  switch (t) {
    case 'f32':
      return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f32>;\nfn ${name}_at(i: u32) -> f32 { return ${name}[i]; }`;
    case 'f16':
      return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<f16>;\nfn ${name}_at(i: u32) -> f32 { return f32(${name}[i]); }`;
    case 'f16packed':
      return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>;\nfn ${name}_at(i: u32) -> f32 { let pair = unpack2x16float(${name}[i >> 1u]); return select(pair.x, pair.y, (i & 1u) == 1u); }`;
  }
}

function constants(t: LensTiles): string {
  return `
const TM: u32 = ${t.tileM}u;
const TN: u32 = ${t.tileN}u;
const TK: u32 = ${t.tileK}u;
const BM: u32 = ${t.tileM * t.workgroupM}u;
const BN: u32 = ${t.tileN * t.workgroupN}u;
const NT: u32 = ${t.workgroupM * t.workgroupN}u;
const TPR: u32 = ${(t.workgroupM * t.workgroupN) / (t.tileM * t.workgroupM)}u;
var<workgroup> As: array<f32, ${t.tileK * t.tileM * t.workgroupM}>;
var<workgroup> Bs: array<f32, ${t.tileK * t.tileN * t.workgroupN}>;
// tanh from exp: some drivers return NaN from the builtin for large |x| (as in common.ts).
fn tanh_stable(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.125) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}`;
}

/**
 * Logits of rows m0.. of `h` against W rows w_row0 + (0..BN) (valid below n_end) into Z [BM × BN],
 * soft-capped when `capped`. Every load is bounds-checked; all threads must call it (barriers).
 */
function tileLogits(z: string, h: string, w: string, wRow0: string, nEnd: string, capped: string, cap: string): string {
  return `
  {
    // Zeroed explicitly: a declaration inside a loop is not reliably re-initialised by every compiler.
    var acc: array<f32, TM * TN>;
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }
    for (var k0 = 0u; k0 < p.d; k0 += TK) {
      for (var e = lidx; e < BM * TK; e += NT) {
        let r = e / TK;
        let c = e % TK;
        let gr = m0 + r;
        let gk = k0 + c;
        var v = 0.0;
        if (gr < p.rows && gk < p.d) { v = ${h}[gr * p.d + gk]; }
        As[c * BM + r] = v;
      }
      for (var e = lidx; e < BN * TK; e += NT) {
        let r = e / TK;
        let c = e % TK;
        let gk = k0 + c;
        var v = 0.0;
        if (n0 + r < ${nEnd} && gk < p.d) { v = ${w}_at((${wRow0} + r) * p.d + gk); }
        Bs[c * BN + r] = v;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < TK; kk++) {
        for (var i = 0u; i < TM; i++) {
          let a = As[kk * BM + lid.y * TM + i];
          for (var j = 0u; j < TN; j++) {
            acc[i * TN + j] = fma(a, Bs[kk * BN + lid.x * TN + j], acc[i * TN + j]);
          }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        var zv = acc[i * TN + j];
        if (${capped} != 0u) { zv = ${cap} * tanh_stable(zv / ${cap}); }
        ${z}[(lid.y * TM + i) * BN + lid.x * TN + j] = zv;
      }
    }
    workgroupBarrier();
  }`;
}

/**
 * One vocabulary range [v_begin, v_end) of one W binding (ids id_base + row), split into slices of
 * slice_len tokens: workgroup (slice, row tile). Writes the partial state of (row, slice_base + slice).
 */
export function lensScanWgsl(v: LensScanVariant): string {
  return /* wgsl */ `
${v.wType === 'f16' ? 'enable f16;' : ''}
struct Params { rows: u32, d: u32, v_begin: u32, v_end: u32, slice_len: u32, slices_total: u32, slice_base: u32, id_base: u32, k: u32, capped: u32, cap: f32 }
@group(0) @binding(0) var<storage, read> h: array<f32>;
${wDeclaration(1, 'w', v.wType)}
@group(0) @binding(2) var<storage, read_write> part: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
${constants(v)}
const KMAX: u32 = ${v.kmax}u;
const NONE: f32 = -3.0e38;
var<workgroup> Z: array<f32, ${v.tileM * v.workgroupM * v.tileN * v.workgroupN}>;
var<workgroup> lane_m: array<f32, NT>;
var<workgroup> lane_s: array<f32, NT>;
var<workgroup> cand_v: array<f32, NT>;
var<workgroup> cand_i: array<i32, NT>;
var<workgroup> winner: array<u32, BM>;

// Whether (av, ai) comes before (bv, bi): larger value, then lower id; id -1 is empty.
fn before(av: f32, ai: i32, bv: f32, bi: i32) -> bool {
  if (ai < 0) { return false; }
  if (bi < 0) { return true; }
  return av > bv || (av == bv && ai < bi);
}

@compute @workgroup_size(${v.workgroupN}, ${v.workgroupM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let m0 = wid.y * BM;
  let slice = wid.x;
  let s_begin = p.v_begin + slice * p.slice_len;
  let s_end = min(p.v_end, s_begin + p.slice_len);
  let lrow = lidx / TPR;
  let lane = lidx % TPR;
  let grow = m0 + lrow;
  var run_m = NONE;
  var run_s = 0.0;
  var top_v: array<f32, KMAX>;
  var top_i: array<i32, KMAX>;
  for (var j = 0u; j < KMAX; j++) { top_v[j] = NONE; top_i[j] = -1; }
  for (var n0 = s_begin; n0 < s_end; n0 += BN) {
    ${tileLogits('Z', 'h', 'w', 'n0', 's_end', 'p.capped', 'p.cap')}
    if (grow < p.rows) {
      for (var c = lane; c < BN && n0 + c < s_end; c += TPR) {
        let z = Z[lrow * BN + c];
        if (run_s == 0.0) {
          run_m = z;
          run_s = 1.0;
        } else if (z > run_m) {
          run_s = run_s * exp(run_m - z) + 1.0;
          run_m = z;
        } else {
          run_s += exp(z - run_m);
        }
        // A lane sees its tokens in increasing id order: strictly greater keeps lower ids first.
        if (z > top_v[p.k - 1u] || top_i[p.k - 1u] < 0) {
          var q = p.k - 1u;
          while (q > 0u && (z > top_v[q - 1u] || top_i[q - 1u] < 0)) {
            top_v[q] = top_v[q - 1u];
            top_i[q] = top_i[q - 1u];
            q--;
          }
          top_v[q] = z;
          top_i[q] = i32(p.id_base + n0 + c);
        }
      }
    }
    workgroupBarrier();
  }

  lane_m[lidx] = run_m;
  lane_s[lidx] = run_s;
  workgroupBarrier();
  let out = (grow * p.slices_total + p.slice_base + slice) * (2u + 2u * p.k);
  if (lane == 0u && grow < p.rows) {
    var m = NONE;
    for (var l = 0u; l < TPR; l++) { if (lane_s[lidx + l] > 0.0) { m = max(m, lane_m[lidx + l]); } }
    var s = 0.0;
    for (var l = 0u; l < TPR; l++) { if (lane_s[lidx + l] > 0.0) { s += lane_s[lidx + l] * exp(lane_m[lidx + l] - m); } }
    part[out] = bitcast<u32>(m);
    part[out + 1u] = bitcast<u32>(s);
  }
  // The row's k best over its lanes: each round every lane offers its best remaining entry.
  var ptr = 0u;
  for (var r = 0u; r < p.k; r++) {
    var offer_v = NONE;
    var offer_i = -1;
    if (ptr < p.k) {
      offer_v = top_v[ptr];
      offer_i = top_i[ptr];
    }
    cand_v[lidx] = offer_v;
    cand_i[lidx] = offer_i;
    workgroupBarrier();
    if (lane == 0u) {
      var best = 0u;
      for (var l = 1u; l < TPR; l++) {
        if (before(cand_v[lidx + l], cand_i[lidx + l], cand_v[lidx + best], cand_i[lidx + best])) { best = l; }
      }
      winner[lrow] = best;
      if (grow < p.rows) {
        part[out + 2u + r] = bitcast<u32>(cand_v[lidx + best]);
        part[out + 2u + p.k + r] = bitcast<u32>(cand_i[lidx + best]);
      }
    }
    workgroupBarrier();
    if (winner[lrow] == lane) { ptr++; }
  }
}
`;
}

/**
 * Combines the partial states of every slice of each row: lse, and the k largest log-probabilities
 * (logit − lse) with their ids, by k rounds of "the best entry after the previous pick".
 */
export const lensMergeWgsl = /* wgsl */ `
override WG: u32 = 64u;
struct Params { rows: u32, slices: u32, k: u32 }
@group(0) @binding(0) var<storage, read> part: array<u32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;
@group(0) @binding(4) var<uniform> p: Params;
const NONE: f32 = -3.0e38;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<i32, WG>;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}

fn before(av: f32, ai: i32, bv: f32, bi: i32) -> bool {
  if (ai < 0) { return false; }
  if (bi < 0) { return true; }
  return av > bv || (av == bv && ai < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = flat_group(wid, nwg);
  if (row >= p.rows) { return; }
  let stride = 2u + 2u * p.k;
  let base = row * p.slices * stride;
  var m = NONE;
  for (var s = lid; s < p.slices; s += WG) {
    if (bitcast<f32>(part[base + s * stride + 1u]) > 0.0) { m = max(m, bitcast<f32>(part[base + s * stride])); }
  }
  let big = workgroup_max(m, lid);
  var sum = 0.0;
  for (var s = lid; s < p.slices; s += WG) {
    let o = base + s * stride;
    let ss = bitcast<f32>(part[o + 1u]);
    if (ss > 0.0) { sum += ss * exp(bitcast<f32>(part[o]) - big); }
  }
  let l = big + log(workgroup_sum(sum, lid));
  if (lid == 0u) { lse[row] = l; }
  var prev_v = 0.0;
  var prev_i = -1;
  for (var r = 0u; r < p.k; r++) {
    var bv = NONE;
    var bi = -1;
    for (var e = lid; e < p.slices * p.k; e += WG) {
      let o = base + (e / p.k) * stride + 2u + e % p.k;
      let v = bitcast<f32>(part[o]);
      let i = bitcast<i32>(part[o + p.k]);
      if ((prev_i < 0 || before(prev_v, prev_i, v, i)) && before(v, i, bv, bi)) { bv = v; bi = i; }
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
      values[row * p.k + r] = prev_v - l;
      indices[row * p.k + r] = prev_i;
    }
    workgroupBarrier();
  }
}
`;

/**
 * KL(P_0 ‖ P_1) over one vocabulary segment of `count` tokens, rows v_begin0.. of w0 and v_begin1.. of
 * w1, in slices: Σ p_0 (log p_0 − log p_1) per (row, slice) into part [rows, slices_total].
 */
export function lensKlWgsl(v: LensKlVariant): string {
  const [t0, t1] = v.wTypes;
  return /* wgsl */ `
${t0 === 'f16' || t1 === 'f16' ? 'enable f16;' : ''}
struct Params { rows: u32, d: u32, v_begin0: u32, v_begin1: u32, count: u32, slice_len: u32, slices_total: u32, slice_base: u32, capped0: u32, capped1: u32, cap0: f32, cap1: f32 }
@group(0) @binding(0) var<storage, read> h0: array<f32>;
${wDeclaration(1, 'w0', t0)}
@group(0) @binding(2) var<storage, read> lse0: array<f32>;
@group(0) @binding(3) var<storage, read> h1: array<f32>;
${wDeclaration(4, 'w1', t1)}
@group(0) @binding(5) var<storage, read> lse1: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
${constants(v)}
var<workgroup> Z0: array<f32, ${v.tileM * v.workgroupM * v.tileN * v.workgroupN}>;
var<workgroup> Z1: array<f32, ${v.tileM * v.workgroupM * v.tileN * v.workgroupN}>;
var<workgroup> lane_acc: array<f32, NT>;

@compute @workgroup_size(${v.workgroupN}, ${v.workgroupM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let m0 = wid.y * BM;
  let slice = wid.x;
  let s_begin = slice * p.slice_len;
  let s_end = min(p.count, s_begin + p.slice_len);
  let lrow = lidx / TPR;
  let lane = lidx % TPR;
  let grow = m0 + lrow;
  var l0 = 0.0;
  var l1 = 0.0;
  if (grow < p.rows) {
    l0 = lse0[grow];
    l1 = lse1[grow];
  }
  var acc = 0.0;
  for (var n0 = s_begin; n0 < s_end; n0 += BN) {
    ${tileLogits('Z0', 'h0', 'w0', 'p.v_begin0 + n0', 's_end', 'p.capped0', 'p.cap0')}
    ${tileLogits('Z1', 'h1', 'w1', 'p.v_begin1 + n0', 's_end', 'p.capped1', 'p.cap1')}
    if (grow < p.rows) {
      for (var c = lane; c < BN && n0 + c < s_end; c += TPR) {
        let lp = Z0[lrow * BN + c] - l0;
        acc += exp(lp) * (lp - (Z1[lrow * BN + c] - l1));
      }
    }
    workgroupBarrier();
  }
  lane_acc[lidx] = acc;
  workgroupBarrier();
  if (lane == 0u && grow < p.rows) {
    var s = 0.0;
    for (var l = 0u; l < TPR; l++) { s += lane_acc[lidx + l]; }
    part[grow * p.slices_total + p.slice_base + slice] = s;
  }
}
`;
}
