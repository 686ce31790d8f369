// Matmul sources. Tile sizes size the per-thread register arrays, which WGSL needs as constants, so
// these are templates rather than fixed .wgsl with overrides.

/** How B is stored: f32; f16 read natively (needs shader-f16); f16 read as u32 pairs (works everywhere). */
export type MatmulBType = 'f32' | 'f16' | 'f16packed';

export interface MatmulVariant {
  transposeB: boolean;
  bias: boolean;
  bType: MatmulBType;
  /** A is read as vec4 (needs K % 4 == 0). */
  vecA: boolean;
  /** B is read as vec4 along its contiguous dimension (K if transposed, else N; a multiple of 4). */
  vecB: boolean;
  tileM: number;
  tileN: number;
  workgroupM: number;
  workgroupN: number;
  tileK: number;
}

function bDeclarations(bType: MatmulBType, vec: boolean): string {
  switch (bType) {
    case 'f32':
      return vec
        ? `@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;\nfn b_vec4(i: u32) -> vec4<f32> { return b[i]; }`
        : `@group(0) @binding(1) var<storage, read> b: array<f32>;\nfn b_scalar(i: u32) -> f32 { return b[i]; }`;
    case 'f16':
      return vec
        ? `@group(0) @binding(1) var<storage, read> b: array<vec4<f16>>;\nfn b_vec4(i: u32) -> vec4<f32> { return vec4<f32>(b[i]); }`
        : `@group(0) @binding(1) var<storage, read> b: array<f16>;\nfn b_scalar(i: u32) -> f32 { return f32(b[i]); }`;
    case 'f16packed':
      return vec
        ? `@group(0) @binding(1) var<storage, read> b: array<vec2<u32>>;\nfn b_vec4(i: u32) -> vec4<f32> { let w = b[i]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }`
        : `@group(0) @binding(1) var<storage, read> b: array<u32>;\nfn b_scalar(i: u32) -> f32 { let pair = unpack2x16float(b[i >> 1u]); return select(pair.x, pair.y, (i & 1u) == 1u); }`;
  }
}

function ioDeclarations(v: { bType: MatmulBType; bias: boolean; vecA: boolean; vecB: boolean }): string {
  const out = v.bias ? 3 : 2;
  return [
    v.bType === 'f16' ? 'enable f16;' : '',
    'struct Params { m: u32, n: u32, k: u32 }',
    `@group(0) @binding(0) var<storage, read> a: array<${v.vecA ? 'vec4<f32>' : 'f32'}>;`,
    bDeclarations(v.bType, v.vecB),
    v.bias ? '@group(0) @binding(2) var<storage, read> bias: array<f32>;' : '',
    `@group(0) @binding(${out}) var<storage, read_write> out: array<f32>;`,
    `@group(0) @binding(${out + 1}) var<uniform> p: Params;`,
  ].join('\n');
}

/** Fills a [TK × BLOCK] workgroup tile (k-major) from rows `origin..` of a K-contiguous matrix [rows, K]. */
function loadKContiguous(tile: string, block: string, vec: boolean, origin: string, rows: string, read: (index: string) => string): string {
  if (vec) {
    return `
    for (var e = lidx; e < ${block} * TK / 4u; e += NT) {
      let r = e / (TK / 4u);
      let c = (e % (TK / 4u)) * 4u;
      let gr = ${origin} + r;
      let gk = k0 + c;
      var v = vec4<f32>(0.0);
      if (gr < ${rows} && gk < p.k) { v = ${read('(gr * p.k + gk) / 4u')}; }
      ${tile}[c * ${block} + r] = v.x;
      ${tile}[(c + 1u) * ${block} + r] = v.y;
      ${tile}[(c + 2u) * ${block} + r] = v.z;
      ${tile}[(c + 3u) * ${block} + r] = v.w;
    }`;
  }
  return `
    for (var e = lidx; e < ${block} * TK; e += NT) {
      let r = e / TK;
      let c = e % TK;
      let gr = ${origin} + r;
      let gk = k0 + c;
      var v = 0.0;
      if (gr < ${rows} && gk < p.k) { v = ${read('gr * p.k + gk')}; }
      ${tile}[c * ${block} + r] = v;
    }`;
}

/** Fills the [TK × BN] B tile from B [K, N] (N contiguous). */
function loadNContiguous(vec: boolean): string {
  if (vec) {
    return `
    for (var e = lidx; e < TK * BN / 4u; e += NT) {
      let r = e / (BN / 4u);
      let c = (e % (BN / 4u)) * 4u;
      let gk = k0 + r;
      let gn = n0 + c;
      var v = vec4<f32>(0.0);
      if (gk < p.k && gn < p.n) { v = b_vec4((gk * p.n + gn) / 4u); }
      Bs[r * BN + c] = v.x;
      Bs[r * BN + c + 1u] = v.y;
      Bs[r * BN + c + 2u] = v.z;
      Bs[r * BN + c + 3u] = v.w;
    }`;
  }
  return `
    for (var e = lidx; e < TK * BN; e += NT) {
      let r = e / BN;
      let c = e % BN;
      let gk = k0 + r;
      let gn = n0 + c;
      var v = 0.0;
      if (gk < p.k && gn < p.n) { v = b_scalar(gk * p.n + gn); }
      Bs[r * BN + c] = v;
    }`;
}

/**
 * Register-tiled A·B or A·Bᵀ (+ bias): a workgroup of workgroupN × workgroupM threads computes a
 * BM × BN block, each thread tileM × tileN outputs, stepping through K in TK slices held in
 * workgroup memory. Every load and store is bounds-checked, so any M, N, K works.
 */
export function matmulWgsl(v: MatmulVariant): string {
  const vecN = v.tileN / 4;
  const bLoad = v.transposeB
    ? loadKContiguous('Bs', 'BN', v.vecB, 'n0', 'p.n', (i) => (v.vecB ? `b_vec4(${i})` : `b_scalar(${i})`))
    : loadNContiguous(v.vecB);
  return /* wgsl */ `
${ioDeclarations(v)}
const TM: u32 = ${v.tileM}u;
const TN: u32 = ${v.tileN}u;
const TK: u32 = ${v.tileK}u;
const BM: u32 = ${v.tileM * v.workgroupM}u;
const BN: u32 = ${v.tileN * v.workgroupN}u;
const NT: u32 = ${v.workgroupM * v.workgroupN}u;
var<workgroup> As: array<f32, ${v.tileK * v.tileM * v.workgroupM}>;
var<workgroup> Bs: array<f32, ${v.tileK * v.tileN * v.workgroupN}>;

@compute @workgroup_size(${v.workgroupN}, ${v.workgroupM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  var acc: array<vec4<f32>, ${v.tileM * vecN}>;
  for (var k0 = 0u; k0 < p.k; k0 += TK) {
    ${loadKContiguous('As', 'BM', v.vecA, 'm0', 'p.m', (i) => `a[${i}]`)}
    ${bLoad}
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var bv: array<vec4<f32>, ${vecN}>;
      for (var j = 0u; j < ${vecN}u; j++) {
        let o = kk * BN + lid.x * TN + j * 4u;
        bv[j] = vec4<f32>(Bs[o], Bs[o + 1u], Bs[o + 2u], Bs[o + 3u]);
      }
      for (var i = 0u; i < TM; i++) {
        let av = vec4<f32>(As[kk * BM + lid.y * TM + i]);
        for (var j = 0u; j < ${vecN}u; j++) {
          acc[i * ${vecN}u + j] = fma(av, bv[j], acc[i * ${vecN}u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let r = m0 + lid.y * TM + i;
    if (r >= p.m) { break; }
    for (var j = 0u; j < ${vecN}u; j++) {
      let val = acc[i * ${vecN}u + j];
      for (var c = 0u; c < 4u; c++) {
        let col = n0 + lid.x * TN + j * 4u + c;
        if (col < p.n) { out[r * p.n + col] = val[c]${v.bias ? ' + bias[col]' : ''}; }
      }
    }
  }
}
`;
}

export interface MatvecVariant {
  bias: boolean;
  bType: MatmulBType;
  /** A and B rows read as vec4 (K % 4 == 0). */
  vec: boolean;
  /** Largest M handled (rows of A); the accumulators are sized by it. */
  maxM: number;
}

export const MATVEC_WORKGROUP = 64;

/**
 * A·Bᵀ for a few rows of A: one workgroup per output column n; its threads split K, then reduce
 * each row's partial dot product in workgroup memory. Reads each weight row once, coalesced.
 */
export function matvecWgsl(v: MatvecVariant): string {
  const unit = v.vec ? 4 : 1;
  const read = v.vec ? 'b_vec4' : 'b_scalar';
  const dot = v.vec ? 'dot(a[arow + kk], bk)' : 'a[arow + kk] * bk';
  return /* wgsl */ `
${ioDeclarations({ bType: v.bType, bias: v.bias, vecA: v.vec, vecB: v.vec })}
const WG: u32 = ${MATVEC_WORKGROUP}u;
const MAXM: u32 = ${v.maxM}u;
var<workgroup> partial: array<f32, ${MATVEC_WORKGROUP * v.maxM}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n = wid.y * nwg.x + wid.x;
  if (n >= p.n) { return; }
  let kn = p.k / ${unit}u;
  var acc: array<f32, ${v.maxM}>;
  for (var kk = lid; kk < kn; kk += WG) {
    let bk = ${read}(n * kn + kk);
    for (var m = 0u; m < MAXM; m++) {
      if (m < p.m) {
        let arow = m * kn;
        acc[m] += ${dot};
      }
    }
  }
  for (var m = 0u; m < MAXM; m++) { partial[m * WG + lid] = acc[m]; }
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      for (var m = 0u; m < MAXM; m++) { partial[m * WG + lid] += partial[m * WG + lid + s]; }
    }
    workgroupBarrier();
  }
  if (lid < p.m) { out[lid * p.n + n] = partial[lid * WG]${v.bias ? ' + bias[n]' : ''}; }
}
`;
}
