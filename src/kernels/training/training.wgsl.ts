// WGSL of the training kernels: the forward and backward of each op of src/analysis/training/ops.ts,
// the loss, the gradient norm and AdamW. Layouts follow ops.ts: row-major f32, weights [out, in],
// sequences [B·T, heads·headDim]. Backward kernels add into gradient buffers (+=), as the tape does;
// each thread owns the elements it writes, so no atomics are needed.
import { ACTIVATIONS_WGSL, FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

/** Index of a thread of a 1-D elementwise kernel over a folded grid (256 per workgroup). */
const FLAT_INDEX_WGSL = /* wgsl */ `
${FLAT_GROUP_WGSL}
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return flat_group(wid, nwg) * 256u + lid; }
`;

const ELEMENTWISE_MAIN = '@compute @workgroup_size(256)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32)';

/** Tile edge of the GEMM. */
export const GEMM_TILE = 16;

const GEMM_TILED = /* wgsl */ `
var<workgroup> ta: array<f32, ${GEMM_TILE * GEMM_TILE}>;
var<workgroup> tb: array<f32, ${GEMM_TILE * GEMM_TILE}>;
fn read_a(i: u32, kk: u32) -> f32 {
  if (i >= p.m || kk >= p.k) { return 0.0; }
  if (TRANS_A) { return a[p.offA + kk * p.m + i]; }
  return a[p.offA + i * p.k + kk];
}
fn read_b(kk: u32, j: u32) -> f32 {
  if (kk >= p.k || j >= p.n) { return 0.0; }
  if (TRANS_B) { return b[p.offB + j * p.k + kk]; }
  return b[p.offB + kk * p.n + j];
}
@compute @workgroup_size(${GEMM_TILE}, ${GEMM_TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.y * T + lid.y;
  let j = wid.x * T + lid.x;
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.k; k0 += T) {
    ta[lid.y * T + lid.x] = read_a(i, k0 + lid.x);
    tb[lid.y * T + lid.x] = read_b(k0 + lid.y, j);
    workgroupBarrier();
    for (var t = 0u; t < T; t++) { acc += ta[lid.y * T + t] * tb[t * T + lid.x]; }
    workgroupBarrier();
  }
  if (i < p.m && j < p.n) {
    let o = p.offC + i * p.n + j;
    var v = p.alpha * acc;
    if (ACC) { v += c[o]; }
    c[o] = v;
  }
}
`;

const GEMM_UNTILED = /* wgsl */ `
fn read_a(i: u32, kk: u32) -> f32 {
  if (TRANS_A) { return a[p.offA + kk * p.m + i]; }
  return a[p.offA + i * p.k + kk];
}
fn read_b(kk: u32, j: u32) -> f32 {
  if (TRANS_B) { return b[p.offB + j * p.k + kk]; }
  return b[p.offB + kk * p.n + j];
}
@compute @workgroup_size(${GEMM_TILE}, ${GEMM_TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.y * T + lid.y;
  let j = wid.x * T + lid.x;
  if (i >= p.m || j >= p.n) { return; }
  var acc = 0.0;
  for (var kk = 0u; kk < p.k; kk++) { acc += read_a(i, kk) * read_b(kk, j); }
  let o = p.offC + i * p.n + j;
  var v = p.alpha * acc;
  if (ACC) { v += c[o]; }
  c[o] = v;
}
`;

/**
 * C[offC + i·n + j] (+)= alpha · Σ_k A(i, k) B(k, j): A [m, k] (stored [k, m] when TRANS_A), B [k, n]
 * (stored [n, k] when TRANS_B), elements from offA / offB. Each product of the backward passes is one
 * of these four forms.
 */
export const gemmWgsl = (tiled: boolean): string => /* wgsl */ `
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACC: bool = false;
const T = ${GEMM_TILE}u;
struct Params { m: u32, n: u32, k: u32, offA: u32, offB: u32, offC: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${tiled ? GEMM_TILED : GEMM_UNTILED}
`;

/** y = (ACC ? y : 0) + alpha · x. */
export const axpyWgsl = /* wgsl */ `
override ACC: bool = false;
struct Params { n: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  var v = p.alpha * x[i];
  if (ACC) { v += y[i]; }
  y[i] = v;
}
`;

export const fillWgsl = /* wgsl */ `
struct Params { n: u32, value: f32 }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i < p.n) { y[i] = p.value; }
}
`;

export const addWgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i < p.n) { out[i] = a[i] + b[i]; }
}
`;

const TANH_WGSL = /* wgsl */ `
fn tanh_stable(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.125) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}
`;

/** out = cap · tanh(x / cap). */
export const softcapWgsl = /* wgsl */ `
struct Params { n: u32, cap: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${TANH_WGSL}
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i < p.n) { out[i] = p.cap * tanh_stable(x[i] / p.cap); }
}
`;

/** gx += g · (1 − (out / cap)²). */
export const softcapBackWgsl = /* wgsl */ `
struct Params { n: u32, cap: f32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let t = out[i] / p.cap;
  gx[i] += g[i] * (1.0 - t * t);
}
`;

/** The activation (ACT as ACTIVATION_CODES) and its slope. */
const ACTIVATE_WITH_SLOPE_WGSL = /* wgsl */ `
override ACT: u32;
${ACTIVATIONS_WGSL}
struct Activated { y: f32, slope: f32 }
fn activate_slope(v: f32) -> Activated {
  switch (ACT) {
    case 0u: {
      let cdf = 0.5 * (1.0 + erf_approx(v * 0.70710678118654752));
      return Activated(v * cdf, cdf + v * exp(-0.5 * v * v) * 0.39894228040143268);
    }
    case 1u: {
      let th = tanh_stable(0.79788456080286536 * (v + 0.044715 * v * v * v));
      return Activated(0.5 * v * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * 0.79788456080286536 * (1.0 + 3.0 * 0.044715 * v * v));
    }
    case 2u: {
      let s = 1.0 / (1.0 + exp(-v));
      return Activated(v * s, s * (1.0 + v * (1.0 - s)));
    }
    default: { return Activated(max(v, 0.0), select(0.0, 1.0, v > 0.0)); }
  }
}
`;

/** out = act(x), slope = act'(x). */
export const activationWgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> slope: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${ACTIVATE_WITH_SLOPE_WGSL}
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let r = activate_slope(x[i]);
  out[i] = r.y;
  slope[i] = r.slope;
}
`;

/** out = act(gate) · up, keeping act(gate) and its slope. */
export const gatedWgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> act: array<f32>;
@group(0) @binding(4) var<storage, read_write> slope: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${ACTIVATE_WITH_SLOPE_WGSL}
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let r = activate_slope(gate[i]);
  act[i] = r.y;
  slope[i] = r.slope;
  out[i] = r.y * up[i];
}
`;

/** gx += g · slope. */
export const activationBackWgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> slope: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i < p.n) { gx[i] += g[i] * slope[i]; }
}
`;

/** d gate += g · up · slope, d up += g · act(gate). */
export const gatedBackWgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read> act: array<f32>;
@group(0) @binding(3) var<storage, read> slope: array<f32>;
@group(0) @binding(4) var<storage, read_write> gGate: array<f32>;
@group(0) @binding(5) var<storage, read_write> gUp: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  gGate[i] += g[i] * up[i] * slope[i];
  gUp[i] += g[i] * act[i];
}
`;

/** Threads per row of the norm and cross-entropy kernels. */
export const ROW_WG = 64;
export const CE_WG = 256;

/**
 * RMS norm (LAYER false: x · inv · w, or · (1 + w) with addOne) or layer norm (LAYER: (x − mean) · inv · w + b)
 * over rows of n; stats[2r] = mean (0 for RMS), stats[2r + 1] = inv. One workgroup per row.
 */
export const normWgsl = /* wgsl */ `
override LAYER: bool = false;
const WG = ${ROW_WG}u;
struct Params { rows: u32, n: u32, eps: f32, addOne: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
${FLAT_GROUP_WGSL}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = flat_group(wid, nwg);
  if (r >= p.rows) { return; }
  let o = r * p.n;
  var m = 0.0;
  if (LAYER) {
    var s = 0.0;
    for (var j = lid; j < p.n; j += WG) { s += x[o + j]; }
    m = workgroup_sum(s, lid) / f32(p.n);
  }
  var ss = 0.0;
  for (var j = lid; j < p.n; j += WG) { let c = x[o + j] - m; ss += c * c; }
  let inv = 1.0 / sqrt(workgroup_sum(ss, lid) / f32(p.n) + p.eps);
  for (var j = lid; j < p.n; j += WG) {
    var gw = w[j];
    if (p.addOne != 0u) { gw += 1.0; }
    var y = (x[o + j] - m) * inv * gw;
    if (LAYER) { y += b[j]; }
    out[o + j] = y;
  }
  if (lid == 0u) {
    stats[2u * r] = m;
    stats[2u * r + 1u] = inv;
  }
}
`;

/** gx += inv · (g · w' − mean_j(g · w') [layer only] − x̂ · mean_j(g · w' · x̂)), x̂ = (x − mean) · inv. */
export const normBackWgsl = /* wgsl */ `
override LAYER: bool = false;
const WG = ${ROW_WG}u;
struct Params { rows: u32, n: u32, eps: f32, addOne: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
${FLAT_GROUP_WGSL}
fn weight(j: u32) -> f32 { return select(w[j], 1.0 + w[j], p.addOne != 0u); }
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = flat_group(wid, nwg);
  if (r >= p.rows) { return; }
  let o = r * p.n;
  let m = stats[2u * r];
  let inv = stats[2u * r + 1u];
  var s = 0.0;
  var d = 0.0;
  for (var j = lid; j < p.n; j += WG) {
    let gh = g[o + j] * weight(j);
    s += gh;
    d += gh * (x[o + j] - m) * inv;
  }
  var sum = 0.0;
  if (LAYER) { sum = workgroup_sum(s, lid) / f32(p.n); }
  let dot = workgroup_sum(d, lid) / f32(p.n);
  for (var j = lid; j < p.n; j += WG) {
    gx[o + j] += inv * (g[o + j] * weight(j) - sum - (x[o + j] - m) * inv * dot);
  }
}
`;

/** gw[j] += Σ_r g[r, j] · x̂[r, j], one thread per column. */
export const normWeightGradWgsl = /* wgsl */ `
struct Params { rows: u32, n: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gw: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let j = flat_index(wid, nwg, lid);
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += g[r * p.n + j] * (x[r * p.n + j] - stats[2u * r]) * stats[2u * r + 1u]; }
  gw[j] += s;
}
`;

/** out[offset + j] += Σ_r g[r, j] (bias gradients), one thread per column. */
export const columnSumWgsl = /* wgsl */ `
struct Params { rows: u32, n: u32, offset: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let j = flat_index(wid, nwg, lid);
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += g[r * p.n + j]; }
  out[p.offset + j] += s;
}
`;

/** out[i, :] = w[ids[i], :]. */
export const embeddingWgsl = /* wgsl */ `
struct Params { n: u32, d: u32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n * p.d) { return; }
  out[i] = w[u32(ids[i / p.d]) * p.d + i % p.d];
}
`;

/** gw[ids[i], j] += g[i, j]: one thread per column j walks the tokens in order (repeated ids add up without atomics). */
export const embeddingBackWgsl = /* wgsl */ `
struct Params { n: u32, d: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> gw: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let j = flat_index(wid, nwg, lid);
  if (j >= p.d) { return; }
  for (var i = 0u; i < p.n; i++) {
    let o = u32(ids[i]) * p.d + j;
    gw[o] += g[i * p.d + j];
  }
}
`;

/**
 * Rotate-half rotary: dst (+)= R(sign · angle) src per head, positions row % seq, tables cos, sin [seq, half];
 * dimensions past 2·half pass through. One thread per element.
 */
export const ropeWgsl = /* wgsl */ `
override ACC: bool = false;
struct Params { n: u32, seq: u32, headDim: u32, half: u32, width: u32, sign: f32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let idx = flat_index(wid, nwg, lid);
  if (idx >= p.n) { return; }
  let row = idx / p.width;
  let j = (idx % p.width) % p.headDim;
  let o = idx - j;
  let t = row % p.seq;
  var v = src[idx];
  if (j < 2u * p.half) {
    let i = j % p.half;
    let c = cosT[t * p.half + i];
    let s = p.sign * sinT[t * p.half + i];
    let x1 = src[o + i];
    let x2 = src[o + i + p.half];
    v = select(x2 * c + x1 * s, x1 * c - x2 * s, j < p.half);
  }
  if (ACC) { v += dst[idx]; }
  dst[idx] = v;
}
`;

const ATTENTION_COMMON = /* wgsl */ `
struct Params { batch: u32, seq: u32, heads: u32, kvHeads: u32, headDim: u32, window: u32, scale: f32, softcap: f32 }
${FLAT_INDEX_WGSL}
/** The first key query t sees. */
fn first_key(t: u32) -> u32 {
  if (p.window > 0u && t + 1u > p.window) { return t + 1u - p.window; }
  return 0u;
}
`;

/** The scaled score of a query and a key row (q and k bound). */
const SCORE_WGSL = /* wgsl */ `
${TANH_WGSL}
fn score(qo: u32, ko: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < p.headDim; j++) { s += q[qo + j] * k[ko + j]; }
  return s * p.scale;
}
`;

/** One thread per (batch, head, query): probs [B, H, T, T] (zero outside the causal window) and out [B·T, H·hd]. */
export const attentionWgsl = /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${ATTENTION_COMMON}
${SCORE_WGSL}
${ELEMENTWISE_MAIN} {
  let idx = flat_index(wid, nwg, lid);
  let T = p.seq;
  if (idx >= p.batch * p.heads * T) { return; }
  let t = idx % T;
  let h = (idx / T) % p.heads;
  let b = idx / (T * p.heads);
  let hd = p.headDim;
  let Dq = p.heads * hd;
  let Dk = p.kvHeads * hd;
  let kvOff = (h / (p.heads / p.kvHeads)) * hd;
  let qo = (b * T + t) * Dq + h * hd;
  let s0 = first_key(t);
  let row = idx * T;
  var mx = -3.0e38;
  for (var s = 0u; s < T; s++) {
    if (s < s0 || s > t) { probs[row + s] = 0.0; continue; }
    var sc = score(qo, (b * T + s) * Dk + kvOff);
    if (p.softcap > 0.0) { sc = p.softcap * tanh_stable(sc / p.softcap); }
    probs[row + s] = sc;
    mx = max(mx, sc);
  }
  var sum = 0.0;
  for (var s = s0; s <= t; s++) {
    let e = exp(probs[row + s] - mx);
    probs[row + s] = e;
    sum += e;
  }
  let inv = 1.0 / sum;
  for (var s = s0; s <= t; s++) { probs[row + s] *= inv; }
  for (var j = 0u; j < hd; j++) {
    var acc = 0.0;
    for (var s = s0; s <= t; s++) { acc += probs[row + s] * v[(b * T + s) * Dk + kvOff + j]; }
    out[qo + j] = acc;
  }
}
`;

/** One thread per (batch, head, query): dS = P ∘ (dP − rowsum(dP ∘ P)) (· softcap′) · scale, dP = dO Vᵀ. */
export const attentionScoresBackWgsl = /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> dO: array<f32>;
@group(0) @binding(5) var<storage, read_write> dS: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
${ATTENTION_COMMON}
${SCORE_WGSL}
${ELEMENTWISE_MAIN} {
  let idx = flat_index(wid, nwg, lid);
  let T = p.seq;
  if (idx >= p.batch * p.heads * T) { return; }
  let t = idx % T;
  let h = (idx / T) % p.heads;
  let b = idx / (T * p.heads);
  let hd = p.headDim;
  let Dq = p.heads * hd;
  let Dk = p.kvHeads * hd;
  let kvOff = (h / (p.heads / p.kvHeads)) * hd;
  let qo = (b * T + t) * Dq + h * hd;
  let s0 = first_key(t);
  let row = idx * T;
  var dot = 0.0;
  for (var s = 0u; s < T; s++) {
    if (s < s0 || s > t) { dS[row + s] = 0.0; continue; }
    let vo = (b * T + s) * Dk + kvOff;
    var dp = 0.0;
    for (var j = 0u; j < hd; j++) { dp += dO[qo + j] * v[vo + j]; }
    dS[row + s] = dp;
    dot += dp * probs[row + s];
  }
  for (var s = s0; s <= t; s++) {
    var ds = probs[row + s] * (dS[row + s] - dot);
    if (p.softcap > 0.0) {
      let th = tanh_stable(score(qo, (b * T + s) * Dk + kvOff) / p.softcap);
      ds *= 1.0 - th * th;
    }
    dS[row + s] = ds * p.scale;
  }
}
`;

/** gq[b, t, h, :] += Σ_s dS[b, h, t, s] k[b, s, h / group, :]; one thread per element of q. */
export const attentionQueryBackWgsl = /* wgsl */ `
@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> dS: array<f32>;
@group(0) @binding(2) var<storage, read_write> gq: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${ATTENTION_COMMON}
${ELEMENTWISE_MAIN} {
  let idx = flat_index(wid, nwg, lid);
  let T = p.seq;
  let hd = p.headDim;
  let Dq = p.heads * hd;
  if (idx >= p.batch * T * Dq) { return; }
  let j = idx % hd;
  let h = (idx / hd) % p.heads;
  let t = (idx / Dq) % T;
  let b = idx / (Dq * T);
  let Dk = p.kvHeads * hd;
  let kvOff = (h / (p.heads / p.kvHeads)) * hd;
  let row = ((b * p.heads + h) * T + t) * T;
  var acc = 0.0;
  for (var s = first_key(t); s <= t; s++) { acc += dS[row + s] * k[(b * T + s) * Dk + kvOff + j]; }
  gq[idx] += acc;
}
`;

/** gk[b, s, g, :] += Σ_{h of group g} Σ_t dS[b, h, t, s] q[b, t, h, :], gv likewise with P and dO; one thread per element of k. */
export const attentionKeyValueBackWgsl = /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> dS: array<f32>;
@group(0) @binding(3) var<storage, read> dO: array<f32>;
@group(0) @binding(4) var<storage, read_write> gk: array<f32>;
@group(0) @binding(5) var<storage, read_write> gv: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
${ATTENTION_COMMON}
${ELEMENTWISE_MAIN} {
  let idx = flat_index(wid, nwg, lid);
  let T = p.seq;
  let hd = p.headDim;
  let Dk = p.kvHeads * hd;
  if (idx >= p.batch * T * Dk) { return; }
  let j = idx % hd;
  let g = (idx / hd) % p.kvHeads;
  let s = (idx / Dk) % T;
  let b = idx / (Dk * T);
  let Dq = p.heads * hd;
  let group = p.heads / p.kvHeads;
  var accK = 0.0;
  var accV = 0.0;
  for (var h = g * group; h < (g + 1u) * group; h++) {
    for (var t = s; t < T; t++) {
      let e = ((b * p.heads + h) * T + t) * T + s;
      let o = (b * T + t) * Dq + h * hd + j;
      accK += dS[e] * q[o];
      accV += probs[e] * dO[o];
    }
  }
  gk[idx] += accK;
  gv[idx] += accV;
}
`;

/**
 * Cross-entropy per row with a target ≥ 0: rowLoss[r] = logsumexp − logit[target], grad = weight ·
 * (softmax − one-hot); rows without a target get 0 and a zero gradient. One workgroup per row.
 */
export const crossEntropyWgsl = /* wgsl */ `
const WG = ${CE_WG}u;
struct Params { rows: u32, vocab: u32, weight: f32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
${FLAT_GROUP_WGSL}
@compute @workgroup_size(${CE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = flat_group(wid, nwg);
  if (r >= p.rows) { return; }
  let o = r * p.vocab;
  let tg = targets[r];
  var mx = -3.0e38;
  for (var j = lid; j < p.vocab; j += WG) { mx = max(mx, logits[o + j]); }
  mx = workgroup_max(mx, lid);
  var s = 0.0;
  for (var j = lid; j < p.vocab; j += WG) { s += exp(logits[o + j] - mx); }
  let sum = workgroup_sum(s, lid);
  let valid = tg >= 0;
  let scale = select(0.0, p.weight / sum, valid);
  for (var j = lid; j < p.vocab; j += WG) {
    var gj = exp(logits[o + j] - mx) * scale;
    if (valid && u32(tg) == j) { gj -= p.weight; }
    grad[o + j] = gj;
  }
  if (lid == 0u) { rowLoss[r] = select(0.0, mx + log(sum) - logits[o + u32(max(tg, 0))], valid); }
}
`;

/** stats[index] += Σ values (one workgroup). */
export const sumIntoWgsl = /* wgsl */ `
const WG = 256u;
struct Params { n: u32, index: u32 }
@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) { s += values[i]; }
  s = workgroup_sum(s, lid);
  if (lid == 0u) { stats[p.index] += s; }
}
`;

/** Gradient norm from the partial sums of squares into stats[1], the clip factor (1 without clipping) into stats[2]. */
export const gradNormWgsl = /* wgsl */ `
const WG = 256u;
struct Params { count: u32, maxNorm: f32 }
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.count; i += WG) { s += partials[i]; }
  s = workgroup_sum(s, lid);
  if (lid == 0u) {
    let norm = sqrt(s);
    stats[1] = norm;
    stats[2] = select(1.0, min(1.0, p.maxNorm / (norm + 1e-6)), p.maxNorm > 0.0);
  }
}
`;

/**
 * One AdamW step (torch.optim.AdamW as train.ts's AdamW): gradients times the clip factor stats[2],
 * w = w · decay − stepSize · m / (√v / bc2 + eps). The crosscoder's Adam (crosscoder.wgsl.ts) plus decay.
 */
export const adamwWgsl = /* wgsl */ `
struct Params { n: u32, beta1: f32, beta2: f32, oneMinusBeta1: f32, oneMinusBeta2: f32, eps: f32, stepSize: f32, bc2: f32, decay: f32 }
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m1: array<f32>;
@group(0) @binding(3) var<storage, read_write> m2: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${FLAT_INDEX_WGSL}
${ELEMENTWISE_MAIN} {
  let i = flat_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = grad[i] * stats[2];
  let m = p.beta1 * m1[i] + p.oneMinusBeta1 * g;
  let v = p.beta2 * m2[i] + p.oneMinusBeta2 * g * g;
  m1[i] = m;
  m2[i] = v;
  param[i] = param[i] * p.decay - p.stepSize * m / (sqrt(v) / p.bc2 + p.eps);
}
`;
