// Crosscoder training kernels. Layouts (chosen so one latent's or one token's vectors for both
// models are one contiguous row of 2d):
//   x    [n, 2d]  the batch, row t = (x^base_t, x^ft_t); the same buffer holds, at offsets,
//        h [n, 2d] the reconstructions, g [n, 2d] dLoss/dx̂, ha [n, 2d] the auxiliary loss's dLoss/dê
//   pre  [n, D]   encoder pre-activations; f = ReLU(pre) is never stored
//   encW, decW [D, 2d]: row j = (W_enc^base[:, j], W_enc^ft[:, j]) and (d_j^base, d_j^ft)
//   wn   [3D]     score weights w_j, then ‖d_j^base‖, then ‖d_j^ft‖
//   lists (u32)    rowPtr [n + 1], auxCount [n], kept bitmaps [D, W] (main) and [D, W] (aux), W = ⌈n/32⌉
//   entries       kept (token, latent, f, dLoss/df) in flat order, then n·kAux auxiliary slots
//   state (u32)   selection scalars, the 2048-bin histogram, the fired bitmask
//   stats (f32)   loss sums, then per token (‖e^b‖², ‖e^f‖², l1, aux), then per column (var x, var e)
// Scores are non-negative floats, so their bit patterns order like their values (as select.ts).

import { FLAT_GROUP_WGSL, WORKGROUP_REDUCE_WGSL } from '../common.ts';

/** Word offsets in the selection state buffer. */
export const STATE = {
  lo: 0,
  hi: 1,
  rank: 2,
  above: 3,
  positive: 4,
  countAbove: 5,
  countWindow: 6,
  key: 7,
  quota: 8,
  kept: 9,
  prefix: 10,
  minKey: 11,
  done: 12,
  hist: 16,
  fired: 16 + 2048,
} as const;

/** Float offsets in the stats buffer (per-token stats start at TOKENS, 4 per token). */
export const STATS = { varX: 0, varE: 1, l2: 2, sq: 3, l1: 4, aux: 5, clipScale: 8, tokens: 16 } as const;

/** Elements per thread and threads per workgroup of the compaction; a block is their product. */
export const COMPACT_PER_THREAD = 8;
export const SCAN_WG = 256;
/** Threads per token of the auxiliary-loss kernel. */
export const AUX_WG = 64;
/** Columns of a gradient row each thread of the latent-gradient kernel accumulates. */
export const LATENT_GRAD_COLS = 4;

const STATE_WGSL = /* wgsl */ `
const S_LO = ${STATE.lo}u;
const S_HI = ${STATE.hi}u;
const S_RANK = ${STATE.rank}u;
const S_ABOVE = ${STATE.above}u;
const S_POS = ${STATE.positive}u;
const S_CABOVE = ${STATE.countAbove}u;
const S_CWIN = ${STATE.countWindow}u;
const S_KEY = ${STATE.key}u;
const S_QUOTA = ${STATE.quota}u;
const S_KEPT = ${STATE.kept}u;
const S_PREFIX = ${STATE.prefix}u;
const S_MINKEY = ${STATE.minKey}u;
const S_DONE = ${STATE.done}u;
const S_HIST = ${STATE.hist}u;
const S_FIRED = ${STATE.fired}u;
`;

const ENTRY_WGSL = /* wgsl */ `
struct Entry { t: u32, j: u32, v: f32, df: f32 }
`;

const KEY_WGSL = /* wgsl */ `
fn relu(v: f32) -> f32 { return select(0.0, v, v > 0.0); }
fn score_key(v: f32, w: f32) -> u32 { return bitcast<u32>(relu(v) * w); }
`;

/**
 * Workgroup scans over `wg` threads with four barriers: 16 (or 8) leaders sum a group of threads
 * each, one thread scans the group sums, every thread adds its neighbours in the group. Call from
 * uniform control flow.
 */
function scanWgsl(wg: number): string {
  return /* wgsl */ `
const SWG = ${wg}u;
const SGROUPS = ${wg >= 256 ? 16 : 8}u;
const BPT = ${2048 / wg}u;
const SPER = SWG / SGROUPS;
var<workgroup> scan_v: array<vec2<u32>, SWG>;
var<workgroup> scan_g: array<vec2<u32>, SGROUPS>;
var<workgroup> scan_total: vec2<u32>;

struct Scan2 { excl: vec2<u32>, total: vec2<u32> }

// Σ v over the threads before this one (suffix: after it), and over all threads.
fn scan2(v: vec2<u32>, lid: u32, suffix: bool) -> Scan2 {
  scan_v[lid] = v;
  workgroupBarrier();
  if (lid < SGROUPS) {
    var s = vec2<u32>(0u);
    for (var q = 0u; q < SPER; q++) { s += scan_v[lid * SPER + q]; }
    scan_g[lid] = s;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var run = vec2<u32>(0u);
    for (var q = 0u; q < SGROUPS; q++) {
      let g = select(q, SGROUPS - 1u - q, suffix);
      let s = scan_g[g];
      scan_g[g] = run;
      run += s;
    }
    scan_total = run;
  }
  workgroupBarrier();
  let first = (lid / SPER) * SPER;
  var excl = scan_g[lid / SPER];
  if (suffix) {
    for (var q = lid + 1u; q < first + SPER; q++) { excl += scan_v[q]; }
  } else {
    for (var q = first; q < lid; q++) { excl += scan_v[q]; }
  }
  let r = Scan2(excl, scan_total);
  workgroupBarrier();
  return r;
}

fn prefix_exclusive2(v: vec2<u32>, lid: u32) -> Scan2 {
  return scan2(v, lid, false);
}

// The radix step of select.ts over a 2048-bin histogram, BPT bins per thread: the bin holding the
// rank-th largest key, scanning from the top and falling back to bin 0. Exactly one thread
// returns found = true, with the bin and the count of keys in higher bins; all return the total.
struct Pick { found: bool, bin: u32, cum: u32, total: u32 }
fn pick_bin(c: array<u32, BPT>, lid: u32, rank: u32) -> Pick {
  var s = 0u;
  for (var q = 0u; q < BPT; q++) { s += c[q]; }
  let scan = scan2(vec2<u32>(s, 0u), lid, true);
  let higher = scan.excl.x;
  var r = Pick(false, 0u, higher, scan.total.x);
  if (higher < rank && (higher + s >= rank || lid == 0u)) {
    r.found = true;
    for (var s_ = 0u; s_ < BPT; s_++) {
      let q = BPT - 1u - s_;
      let b = lid * BPT + q;
      if (b == 0u) { r.bin = 0u; break; }
      if (r.cum + c[q] >= rank) { r.bin = b; break; }
      r.cum += c[q];
    }
  }
  return r;
}
`;
}

/** Digit shift, mask and width of each radix round (as select.ts: 11, 11 and 10 bits). */
const RADIX_WGSL = /* wgsl */ `
const RADIX_SHIFT = array<u32, 3>(21u, 10u, 0u);
const RADIX_BITS = array<u32, 3>(11u, 11u, 10u);
`;

/** Decoder norms and score weights: one workgroup per latent. MODE 0 crosscoder (Σ‖d^m‖), 1 sae (sqrt Σ‖d^m‖²), 2 none. */
export const normsWgsl = /* wgsl */ `
override WG: u32 = 64u;
override MODE: u32 = 0u;
struct Params { D: u32, d: u32 }
@group(0) @binding(0) var<storage, read> decW: array<f32>;
@group(0) @binding(1) var<storage, read_write> wn: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = flat_group(wid, nwg);
  if (j >= p.D) { return; }
  let o = j * 2u * p.d;
  var sb = 0.0;
  var sf = 0.0;
  for (var i = lid; i < p.d; i += WG) {
    let a = decW[o + i];
    let b = decW[o + p.d + i];
    sb += a * a;
    sf += b * b;
  }
  sb = workgroup_sum(sb, lid);
  sf = workgroup_sum(sf, lid);
  if (lid == 0u) {
    let nb = sqrt(sb);
    let nf = sqrt(sf);
    wn[p.D + j] = nb;
    wn[2u * p.D + j] = nf;
    var w = 1.0;
    if (MODE == 0u) { w = nb + nf; } else if (MODE == 1u) { w = sqrt(sb + sf); }
    wn[j] = w;
  }
}
`;

/** out[offset + i] = value for i < n (zeroing regions of any 32-bit buffer). */
export const fillWgsl = /* wgsl */ `
struct Params { n: u32, value: u32, offset: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i < p.n) { out[p.offset + i] = p.value; }
}
`;

/** Resets the selection state. mode 0: BatchTopK (the cut is searched); 1: a given cut (keep keys > cutKey). */
export const selectBeginWgsl = /* wgsl */ `
struct Params { mode: u32, cutKey: u32, firedWords: u32 }
@group(0) @binding(0) var<storage, read_write> state: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;
${STATE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    for (var s = 0u; s < S_HIST; s++) { state[s] = 0u; }
    state[S_MINKEY] = 0xffffffffu;
    if (p.mode == 1u) {
      state[S_KEY] = p.cutKey;
      state[S_DONE] = 1u;
      state[S_LO] = 1u;
    }
  }
  for (var b = lid; b < 2048u; b += 256u) { state[S_HIST + b] = 0u; }
  for (var b = lid; b < p.firedWords; b += 256u) { state[S_FIRED + b] = 0u; }
}
`;

/** Counts positive keys, keys above hiKey and keys in [loKey, hiKey] (the hint's window). Grid-stride. */
export const selectCountWgsl = /* wgsl */ `
struct Params { N: u32, D: u32, loKey: u32, hiKey: u32 }
@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> wn: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;
${STATE_WGSL}
${KEY_WGSL}
var<workgroup> counts: array<atomic<u32>, 3>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var positive = 0u;
  var above = 0u;
  var window = 0u;
  for (var i = gid.x; i < p.N; i += nwg.x * 256u) {
    let k = score_key(pre[i], wn[i % p.D]);
    if (k != 0u) { positive++; }
    if (k > p.hiKey) { above++; } else if (k >= p.loKey && k != 0u) { window++; }
  }
  atomicAdd(&counts[0], positive);
  atomicAdd(&counts[1], above);
  atomicAdd(&counts[2], window);
  workgroupBarrier();
  if (lid == 0u) {
    atomicAdd(&state[S_POS], atomicLoad(&counts[0]));
    atomicAdd(&state[S_CABOVE], atomicLoad(&counts[1]));
    atomicAdd(&state[S_CWIN], atomicLoad(&counts[2]));
  }
}
`;

/**
 * The candidate range for the radix passes, as findTopKCut: everything positive, or the part of
 * the hint's window (or what lies above or below it) that holds the kTotal-th largest key. When
 * all positive keys fit, or kTotal is 0, the cut is final.
 */
export const selectDecideWgsl = /* wgsl */ `
struct Params { kTotal: u32, hasHint: u32, loKey: u32, hiKey: u32 }
@group(0) @binding(0) var<storage, read_write> state: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;
${STATE_WGSL}
@compute @workgroup_size(1)
fn main() {
  let positive = state[S_POS];
  if (p.kTotal >= positive || p.kTotal == 0u) {
    state[S_KEY] = select(0xffffffffu, 0u, p.kTotal >= positive);
    state[S_QUOTA] = 0u;
    state[S_DONE] = 1u;
    state[S_LO] = 1u;
    state[S_HI] = 0u;
    return;
  }
  var lo = 1u;
  var hi = 0xffffffffu;
  var above = 0u;
  if (p.hasHint == 1u) {
    let ca = state[S_CABOVE];
    let cw = state[S_CWIN];
    if (ca >= p.kTotal) {
      lo = p.hiKey + 1u;
    } else if (ca + cw >= p.kTotal) {
      lo = p.loKey;
      hi = p.hiKey;
      above = ca;
    } else {
      hi = p.loKey - 1u;
      above = ca + cw;
    }
  }
  state[S_LO] = lo;
  state[S_HI] = hi;
  state[S_ABOVE] = above;
  state[S_RANK] = p.kTotal - above;
  state[S_PREFIX] = 0u;
}
`;

/** One radix round's histogram over the candidates whose higher digits match the prefix found so far. Grid-stride. */
export const selectHistWgsl = /* wgsl */ `
struct Params { N: u32, D: u32, round: u32 }
@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> wn: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;
${STATE_WGSL}
${KEY_WGSL}
${RADIX_WGSL}
var<workgroup> hist: array<atomic<u32>, 2048>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lo = atomicLoad(&state[S_LO]);
  let hi = atomicLoad(&state[S_HI]);
  let prefix = atomicLoad(&state[S_PREFIX]);
  let shift = RADIX_SHIFT[p.round];
  let mask = (1u << RADIX_BITS[p.round]) - 1u;
  let prevShift = shift + RADIX_BITS[p.round];
  for (var i = gid.x; i < p.N; i += nwg.x * 256u) {
    let k = score_key(pre[i], wn[i % p.D]);
    if (k >= lo && k <= hi && (p.round == 0u || (k >> prevShift) == prefix)) {
      atomicAdd(&hist[(k >> shift) & mask], 1u);
    }
  }
  workgroupBarrier();
  for (var b = lid; b < 2048u; b += 256u) {
    let c = atomicLoad(&hist[b]);
    if (c > 0u) { atomicAdd(&state[S_HIST + b], c); }
  }
}
`;

/** Chooses the round's digit from the histogram (and clears it); after the last round the cut is (prefix, rank). */
export const selectPickWgsl = /* wgsl */ `
struct Params { round: u32 }
@group(0) @binding(0) var<storage, read_write> state: array<u32>;
@group(0) @binding(1) var<uniform> p: Params;
${STATE_WGSL}
${scanWgsl(SCAN_WG)}
${RADIX_WGSL}
var<workgroup> shared_rank: u32;
var<workgroup> shared_done: u32;
@compute @workgroup_size(SWG)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    shared_rank = state[S_RANK];
    shared_done = state[S_DONE];
  }
  var c: array<u32, BPT>;
  for (var q = 0u; q < BPT; q++) {
    c[q] = state[S_HIST + lid * BPT + q];
    state[S_HIST + lid * BPT + q] = 0u;
  }
  storageBarrier();
  workgroupBarrier();
  let rank = shared_rank;
  let r = pick_bin(c, lid, rank);
  if (r.found && shared_done == 0u) {
    let prefix = (state[S_PREFIX] << RADIX_BITS[p.round]) | r.bin;
    state[S_PREFIX] = prefix;
    state[S_RANK] = rank - r.cum;
    state[S_ABOVE] = state[S_ABOVE] + r.cum;
    if (p.round == 2u) {
      state[S_KEY] = prefix;
      state[S_QUOTA] = rank - r.cum;
    }
  }
}
`;

/** Per block of SWG·PER flat entries: how many keys lie above the cut and how many equal it. */
export const blockCountWgsl = /* wgsl */ `
const PER = ${COMPACT_PER_THREAD}u;
struct Params { N: u32, D: u32, blocks: u32 }
@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> wn: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;
${STATE_WGSL}
${KEY_WGSL}
${FLAT_GROUP_WGSL}
var<workgroup> acc: array<atomic<u32>, 2>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = flat_group(wid, nwg);
  if (b >= p.blocks) { return; }
  let key = state[S_KEY];
  var above = 0u;
  var tie = 0u;
  let start = (b * 256u + lid) * PER;
  for (var e = 0u; e < PER; e++) {
    let i = start + e;
    if (i >= p.N) { break; }
    let k = score_key(pre[i], wn[i % p.D]);
    if (k > key) { above++; } else if (k == key) { tie++; }
  }
  atomicAdd(&acc[0], above);
  atomicAdd(&acc[1], tie);
  workgroupBarrier();
  if (lid == 0u) {
    counts[2u * b] = atomicLoad(&acc[0]);
    counts[2u * b + 1u] = atomicLoad(&acc[1]);
  }
}
`;

/**
 * Exclusive offsets of the blocks (in place) and the number kept: every key above the cut plus
 * the first quota keys equal to it. One workgroup; each thread walks a contiguous run of blocks.
 */
export const blockScanWgsl = /* wgsl */ `
struct Params { blocks: u32, rows: u32 }
@group(0) @binding(0) var<storage, read_write> state: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> lists: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
${STATE_WGSL}
${scanWgsl(SCAN_WG)}
@compute @workgroup_size(SWG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let per = (p.blocks + SWG - 1u) / SWG;
  let start = min(lid * per, p.blocks);
  let end = min(start + per, p.blocks);
  var own = vec2<u32>(0u);
  for (var b = start; b < end; b++) { own += vec2<u32>(counts[2u * b], counts[2u * b + 1u]); }
  let s = prefix_exclusive2(own, lid);
  var run = s.excl;
  for (var b = start; b < end; b++) {
    let c = vec2<u32>(counts[2u * b], counts[2u * b + 1u]);
    counts[2u * b] = run.x;
    counts[2u * b + 1u] = run.y;
    run += c;
  }
  if (lid == 0u) {
    let kept = s.total.x + min(s.total.y, state[S_QUOTA]);
    state[S_KEPT] = kept;
    lists[p.rows] = kept;
  }
}
`;

/**
 * Writes the kept entries in flat order (the CPU engine's order), the row pointers, the fired
 * latents, the main kept bitmap [D, W] and the smallest kept key.
 */
export const emitWgsl = /* wgsl */ `
const PER = ${COMPACT_PER_THREAD}u;
struct Params { N: u32, D: u32, blocks: u32, W: u32, bitsOffset: u32 }
@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> wn: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> lists: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> entries: array<Entry>;
@group(0) @binding(6) var<uniform> p: Params;
${STATE_WGSL}
${ENTRY_WGSL}
${KEY_WGSL}
${scanWgsl(SCAN_WG)}
${FLAT_GROUP_WGSL}
var<workgroup> smallest: atomic<u32>;
@compute @workgroup_size(SWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = flat_group(wid, nwg);
  if (b >= p.blocks) { return; }
  if (lid == 0u) { atomicStore(&smallest, 0xffffffffu); }
  let key = atomicLoad(&state[S_KEY]);
  let quota = atomicLoad(&state[S_QUOTA]);
  let start = (b * SWG + lid) * PER;
  var keys: array<u32, PER>;
  var own = vec2<u32>(0u);
  for (var e = 0u; e < PER; e++) {
    let i = start + e;
    if (i >= p.N) { break; }
    let k = score_key(pre[i], wn[i % p.D]);
    keys[e] = k;
    if (k > key) { own.x++; } else if (k == key) { own.y++; }
  }
  let s = prefix_exclusive2(own, lid);
  var run = vec2<u32>(counts[2u * b], counts[2u * b + 1u]) + s.excl;
  var low = 0xffffffffu;
  for (var e = 0u; e < PER; e++) {
    let i = start + e;
    if (i >= p.N) { break; }
    let k = keys[e];
    let pos = run.x + min(run.y, quota);
    let t = i / p.D;
    let j = i % p.D;
    if (j == 0u) { atomicStore(&lists[t], pos); }
    var keep = false;
    if (k > key) {
      keep = true;
      run.x++;
    } else if (k == key) {
      keep = run.y < quota;
      run.y++;
    }
    if (keep) {
      entries[pos] = Entry(t, j, relu(pre[i]), 0.0);
      atomicOr(&state[S_FIRED + j / 32u], 1u << (j % 32u));
      atomicOr(&lists[p.bitsOffset + j * p.W + t / 32u], 1u << (t % 32u));
      low = min(low, k);
    }
  }
  atomicMin(&smallest, low);
  workgroupBarrier();
  if (lid == 0u) { atomicMin(&state[S_MINKEY], atomicLoad(&smallest)); }
}
`;

/** h_t = b_dec + Σ over the token's kept entries of f·d_j (both models at once): one workgroup per token. */
export const decodeWgsl = /* wgsl */ `
override WG: u32 = 64u;
struct Params { n: u32, d2: u32, hOffset: u32 }
@group(0) @binding(0) var<storage, read> lists: array<u32>;
@group(0) @binding(1) var<storage, read> entries: array<Entry>;
@group(0) @binding(2) var<storage, read> decW: array<f32>;
@group(0) @binding(3) var<storage, read> decB: array<f32>;
@group(0) @binding(4) var<storage, read_write> xs: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${ENTRY_WGSL}
${FLAT_GROUP_WGSL}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = flat_group(wid, nwg);
  if (t >= p.n) { return; }
  let r0 = lists[t];
  let r1 = lists[t + 1u];
  for (var i = lid; i < p.d2; i += WG) {
    var acc = decB[i];
    for (var e = r0; e < r1; e++) {
      let en = entries[e];
      acc += en.v * decW[en.j * p.d2 + i];
    }
    xs[p.hOffset + t * p.d2 + i] = acc;
  }
}
`;

/**
 * Per token: the residuals' squared norms, dLoss/dx̂ (objective 0 l2, 1 mse, 2 l1) into the g
 * region, and Σ_j f_j w_j over the kept entries.
 */
export const residualWgsl = /* wgsl */ `
override WG: u32 = 64u;
struct Params { n: u32, d: u32, objective: u32, hOffset: u32, gOffset: u32 }
@group(0) @binding(0) var<storage, read_write> xs: array<f32>;
@group(0) @binding(1) var<storage, read> lists: array<u32>;
@group(0) @binding(2) var<storage, read> entries: array<Entry>;
@group(0) @binding(3) var<storage, read> wn: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${ENTRY_WGSL}
${FLAT_GROUP_WGSL}
${WORKGROUP_REDUCE_WGSL}
const TOKENS = ${STATS.tokens}u;
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = flat_group(wid, nwg);
  if (t >= p.n) { return; }
  let d2 = 2u * p.d;
  let o = t * d2;
  var sb = 0.0;
  var sf = 0.0;
  for (var i = lid; i < p.d; i += WG) {
    let a = xs[o + i] - xs[p.hOffset + o + i];
    let b = xs[o + p.d + i] - xs[p.hOffset + o + p.d + i];
    sb += a * a;
    sf += b * b;
  }
  let nb = workgroup_sum(sb, lid);
  let nf = workgroup_sum(sf, lid);
  let n = f32(p.n);
  var cb = -2.0 / n;
  var cf = cb;
  if (p.objective == 0u) {
    let rb = sqrt(nb);
    let rf = sqrt(nf);
    cb = select(0.0, -1.0 / (rb * 2.0 * n), rb > 0.0);
    cf = select(0.0, -1.0 / (rf * 2.0 * n), rf > 0.0);
  } else if (p.objective == 1u) {
    cb = -1.0 / n;
    cf = cb;
  }
  for (var i = lid; i < d2; i += WG) {
    let e = xs[o + i] - xs[p.hOffset + o + i];
    xs[p.gOffset + o + i] = select(cf, cb, i < p.d) * e;
  }
  var l1 = 0.0;
  for (var q = lists[t] + lid; q < lists[t + 1u]; q += WG) {
    let en = entries[q];
    l1 += en.v * wn[en.j];
  }
  l1 = workgroup_sum(l1, lid);
  if (lid == 0u) {
    stats[TOKENS + 4u * t] = nb;
    stats[TOKENS + 4u * t + 1u] = nf;
    stats[TOKENS + 4u * t + 2u] = l1;
    stats[TOKENS + 4u * t + 3u] = 0.0;
  }
}
`;

/** Per column of [n, 2d] (two passes over tokens): Σ(x − mean)², Σ(e − mean e)² and Σ_t g (the b_dec gradient). */
export const columnsWgsl = /* wgsl */ `
struct Params { n: u32, d2: u32, hOffset: u32, gOffset: u32, colOffset: u32 }
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> gDecB: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = flat_group(wid, nwg) * 64u + lid;
  if (c >= p.d2) { return; }
  var mx = 0.0;
  var me = 0.0;
  for (var t = 0u; t < p.n; t++) {
    let x = xs[t * p.d2 + c];
    mx += x;
    me += x - xs[p.hOffset + t * p.d2 + c];
  }
  mx /= f32(p.n);
  me /= f32(p.n);
  var vx = 0.0;
  var ve = 0.0;
  var gs = 0.0;
  for (var t = 0u; t < p.n; t++) {
    let o = t * p.d2 + c;
    let x = xs[o];
    let e = x - xs[p.hOffset + o];
    vx += (x - mx) * (x - mx);
    ve += (e - me) * (e - me);
    gs += xs[p.gOffset + o];
  }
  stats[p.colOffset + 2u * c] = vx;
  stats[p.colOffset + 2u * c + 1u] = ve;
  gDecB[c] = gs;
}
`;

/** Loss sums. PART 0: the column variances (var x, var e); PART 1: the per-token stats (l2, squared error, l1, aux). */
export const finalizeWgsl = /* wgsl */ `
override PART: u32 = 0u;
const WG = 256u;
struct Params { count: u32, offset: u32 }
@group(0) @binding(0) var<storage, read_write> stats: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (PART == 0u) {
    var vx = 0.0;
    var ve = 0.0;
    for (var c = lid; c < p.count; c += WG) {
      vx += stats[p.offset + 2u * c];
      ve += stats[p.offset + 2u * c + 1u];
    }
    vx = workgroup_sum(vx, lid);
    ve = workgroup_sum(ve, lid);
    if (lid == 0u) {
      stats[${STATS.varX}u] = vx;
      stats[${STATS.varE}u] = ve;
    }
  } else {
    var l2 = 0.0;
    var sq = 0.0;
    var l1 = 0.0;
    var aux = 0.0;
    for (var t = lid; t < p.count; t += WG) {
      let o = p.offset + 4u * t;
      l2 += sqrt(stats[o]) + sqrt(stats[o + 1u]);
      sq += stats[o] + stats[o + 1u];
      l1 += stats[o + 2u];
      aux += stats[o + 3u];
    }
    l2 = workgroup_sum(l2, lid);
    sq = workgroup_sum(sq, lid);
    l1 = workgroup_sum(l1, lid);
    aux = workgroup_sum(aux, lid);
    if (lid == 0u) {
      stats[${STATS.l2}u] = l2;
      stats[${STATS.sq}u] = sq;
      stats[${STATS.l1}u] = l1;
      stats[${STATS.aux}u] = aux;
    }
  }
}
`;

/**
 * The auxiliary loss of one token (one workgroup): among the dead latents with f > 0, the kAux
 * best by score (ties to the lower index) by an in-workgroup radix select (all of them when they
 * fit, known after the first round); their reconstruction
 * ê of the residual e = x − x̂ (no bias); Σ‖e − ê‖² into the token's stats; dLoss/dê into the ha
 * region; the kept slots and aux bitmap. Nothing is kept when the residual has no variance.
 */
export const auxWgsl = /* wgsl */ `
struct Params {
  n: u32, D: u32, d: u32, dead: u32, kAux: u32, auxBase: u32, hOffset: u32, haOffset: u32,
  W: u32, auxBitsOffset: u32, auxCountOffset: u32, alpha: f32,
}
@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> wn: array<f32>;
@group(0) @binding(2) var<storage, read> deadList: array<u32>;
@group(0) @binding(3) var<storage, read_write> xs: array<f32>;
@group(0) @binding(4) var<storage, read> decW: array<f32>;
@group(0) @binding(5) var<storage, read_write> entries: array<Entry>;
@group(0) @binding(6) var<storage, read_write> lists: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;
${ENTRY_WGSL}
${KEY_WGSL}
${scanWgsl(AUX_WG)}
${RADIX_WGSL}
${FLAT_GROUP_WGSL}
const WG = SWG;
${WORKGROUP_REDUCE_WGSL}
const TOKENS = ${STATS.tokens}u;
var<workgroup> hist: array<atomic<u32>, 2048>;
var<workgroup> picked: vec2<u32>;
var<workgroup> all_fit: u32;

@compute @workgroup_size(SWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = flat_group(wid, nwg);
  if (t >= p.n) { return; }
  let denom = stats[${STATS.varE}u] / f32(p.n);
  let live = denom > 0.0;
  let row = t * p.D;
  var rank = p.kAux;
  var prefix = 0u;
  var keep_all = false;
  for (var round = 0u; round < 3u; round++) {
    for (var b = lid; b < 2048u; b += SWG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    let shift = RADIX_SHIFT[round];
    let mask = (1u << RADIX_BITS[round]) - 1u;
    let prevShift = shift + RADIX_BITS[round];
    for (var q = lid; q < p.dead; q += SWG) {
      let j = deadList[q];
      let v = pre[row + j];
      let k = score_key(v, wn[j]);
      if (v > 0.0 && (round == 0u || (k >> prevShift) == prefix)) { atomicAdd(&hist[(k >> shift) & mask], 1u); }
    }
    workgroupBarrier();
    var c: array<u32, BPT>;
    for (var q = 0u; q < BPT; q++) { c[q] = atomicLoad(&hist[lid * BPT + q]); }
    let r = pick_bin(c, lid, rank);
    if (r.found) { picked = vec2<u32>((prefix << RADIX_BITS[round]) | r.bin, rank - r.cum); }
    if (lid == 0u) { all_fit = select(0u, 1u, round == 0u && r.total <= p.kAux); }
    if (workgroupUniformLoad(&all_fit) == 1u) {
      keep_all = true;
      break;
    }
    prefix = picked.x;
    rank = picked.y;
    workgroupBarrier();
  }
  let key = prefix;
  let quota = rank;
  let slots = p.auxBase + t * p.kAux;
  var run = vec2<u32>(0u);
  for (var base = 0u; base < p.dead; base += SWG) {
    let q = base + lid;
    var j = 0u;
    var v = 0.0;
    var flags = vec2<u32>(0u);
    if (q < p.dead) {
      j = deadList[q];
      v = pre[row + j];
      let k = score_key(v, wn[j]);
      if (v > 0.0 && (keep_all || k > key)) { flags.x = 1u; } else if (v > 0.0 && k == key) { flags.y = 1u; }
    }
    let s = prefix_exclusive2(flags, lid);
    let at = run + s.excl;
    if (live && (flags.x == 1u || (flags.y == 1u && at.y < quota))) {
      entries[slots + at.x + min(at.y, quota)] = Entry(t, j, v, 0.0);
      atomicOr(&lists[p.auxBitsOffset + j * p.W + t / 32u], 1u << (t % 32u));
    }
    run += s.total;
  }
  let count = select(0u, run.x + min(run.y, quota), live);
  storageBarrier();
  workgroupBarrier();
  let d2 = 2u * p.d;
  let coef = -2.0 * p.alpha / (f32(p.n) * denom);
  var total = 0.0;
  for (var i = lid; i < d2; i += SWG) {
    var r = 0.0;
    for (var q = 0u; q < count; q++) {
      let en = entries[slots + q];
      r += en.v * decW[en.j * d2 + i];
    }
    let o = t * d2 + i;
    let a = xs[o] - xs[p.hOffset + o] - r;
    total += a * a;
    xs[p.haOffset + o] = coef * a;
  }
  total = workgroup_sum(total, lid);
  if (lid == 0u) {
    atomicStore(&lists[p.auxCountOffset + t], count);
    stats[TOKENS + 4u * t + 3u] = select(0.0, total, live);
  }
}
`;

/**
 * dLoss/df of each kept entry: d_j · g_t (both models) plus `extra`·w_j (the L1 penalty), one
 * thread per entry. AUX: the auxiliary slots (t = slot / kAux, empty slots skipped), against ha.
 */
export const entryGradWgsl = /* wgsl */ `
override AUX: bool = false;
struct Params { count: u32, d2: u32, kAux: u32, base: u32, auxCountOffset: u32, vecOffset: u32, extra: f32 }
@group(0) @binding(0) var<storage, read> decW: array<f32>;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> lists: array<u32>;
@group(0) @binding(3) var<storage, read> wn: array<f32>;
@group(0) @binding(4) var<storage, read_write> entries: array<Entry>;
@group(0) @binding(5) var<uniform> p: Params;
${ENTRY_WGSL}
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = flat_group(wid, nwg) * 256u + lid;
  if (e >= p.count) { return; }
  if (AUX && e % p.kAux >= lists[p.auxCountOffset + e / p.kAux]) { return; }
  let slot = p.base + e;
  let t = entries[slot].t;
  let j = entries[slot].j;
  var s = 0.0;
  for (var i = 0u; i < p.d2; i++) { s += decW[j * p.d2 + i] * xs[p.vecOffset + t * p.d2 + i]; }
  entries[slot].df = s + p.extra * wn[j];
}
`;

/**
 * Gradient rows of one latent j for a chunk of WG·COLS columns: walks the tokens where j is kept
 * (main and aux bitmaps, in token order, so sums are deterministic), finds the entry by binary
 * search in the token's sorted list, and accumulates
 *   ∂W_dec[j] = Σ f·g_t (main) + Σ f·ha_t (aux),  ∂W_enc[j] = Σ (df_main + df_aux)·x_t,  ∂b_enc[j] = Σ df,
 * plus the L1 penalty's decoder-norm term (L1 1: crosscoder, 2: sae). Rows of latents kept nowhere are zero.
 */
const cols = Array.from({ length: LATENT_GRAD_COLS }, (_, c) => c);
/** Repeats a statement for every column c of the thread (unrolled: private arrays indexed at run time are slow on some drivers). */
const perCol = (f: (c: number) => string): string => cols.map(f).join('\n');

export const latentGradWgsl = /* wgsl */ `
override WG: u32 = 64u;
override L1: u32 = 0u;
struct Params {
  D: u32, d: u32, W: u32, chunks: u32, gOffset: u32, haOffset: u32, auxBase: u32, kAux: u32,
  auxCountOffset: u32, bitsOffset: u32, auxBitsOffset: u32, aux: u32, l1Scale: f32,
}
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> decW: array<f32>;
@group(0) @binding(2) var<storage, read> wn: array<f32>;
@group(0) @binding(3) var<storage, read> lists: array<u32>;
@group(0) @binding(4) var<storage, read> entries: array<Entry>;
@group(0) @binding(5) var<storage, read_write> gEncW: array<f32>;
@group(0) @binding(6) var<storage, read_write> gEncB: array<f32>;
@group(0) @binding(7) var<storage, read_write> gDecW: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;
${ENTRY_WGSL}
${FLAT_GROUP_WGSL}

fn find(lo: u32, hi: u32, j: u32) -> u32 {
  var a = lo;
  var b = hi;
  while (a < b) {
    let m = (a + b) / 2u;
    if (entries[m].j < j) { a = m + 1u; } else { b = m; }
  }
  return a;
}

fn write_column(j: u32, i: u32, dec: f32, enc: f32, fsum: f32) {
  if (i >= 2u * p.d) { return; }
  var g = dec;
  if (L1 != 0u && fsum != 0.0) {
    var k = 0.0;
    if (L1 == 1u) {
      let norm = wn[select(2u, 1u, i < p.d) * p.D + j];
      k = select(0.0, 1.0 / norm, norm > 0.0);
    } else {
      k = select(0.0, 1.0 / wn[j], wn[j] > 0.0);
    }
    g += p.l1Scale * fsum * k * decW[j * 2u * p.d + i];
  }
  gDecW[j * 2u * p.d + i] = g;
  gEncW[j * 2u * p.d + i] = enc;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat_group(wid, nwg);
  let j = g / p.chunks;
  if (j >= p.D) { return; }
  let d2 = 2u * p.d;
  let i0 = (g % p.chunks) * WG * ${LATENT_GRAD_COLS}u + lid;
${perCol((c) => `  let col${c} = min(i0 + ${c}u * WG, d2 - 1u);
  var dec${c} = 0.0;
  var enc${c} = 0.0;`)}
  var accB = 0.0;
  var fsum = 0.0;
  for (var w = 0u; w < p.W; w++) {
    let mainBits = lists[p.bitsOffset + j * p.W + w];
    var auxBits = 0u;
    if (p.aux == 1u) { auxBits = lists[p.auxBitsOffset + j * p.W + w]; }
    var bits = mainBits | auxBits;
    while (bits != 0u) {
      let b = countTrailingZeros(bits);
      bits &= bits - 1u;
      let t = w * 32u + b;
      let bit = 1u << b;
      let row = t * d2;
      var df = 0.0;
      if ((mainBits & bit) != 0u) {
        let en = entries[find(lists[t], lists[t + 1u], j)];
        df += en.df;
        fsum += en.v;
${perCol((c) => `        dec${c} += en.v * xs[p.gOffset + row + col${c}];`)}
      }
      if ((auxBits & bit) != 0u) {
        let slots = p.auxBase + t * p.kAux;
        let en = entries[find(slots, slots + lists[p.auxCountOffset + t], j)];
        df += en.df;
${perCol((c) => `        dec${c} += en.v * xs[p.haOffset + row + col${c}];`)}
      }
      accB += df;
${perCol((c) => `      enc${c} += df * xs[row + col${c}];`)}
    }
  }
  if (i0 == 0u) { gEncB[j] = accB; }
${perCol((c) => `  write_column(j, i0 + ${c}u * WG, dec${c}, enc${c}, fsum);`)}
}
`;

/** Σ g² over a buffer, one partial sum per workgroup (grid-stride), written at offset + workgroup. */
export const sumSquaresWgsl = /* wgsl */ `
const WG = 256u;
struct Params { n: u32, offset: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = gid.x; i < p.n; i += nwg.x * WG) { s += g[i] * g[i]; }
  s = workgroup_sum(s, lid);
  if (lid == 0u) { partials[p.offset + wid.x] = s; }
}
`;

/** The clip factor min(1, clip / (‖g‖ + 1e-6)) from the partial sums, into stats. */
export const clipScaleWgsl = /* wgsl */ `
const WG = 256u;
struct Params { count: u32, clip: f32 }
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.count; i += WG) { s += partials[i]; }
  s = workgroup_sum(s, lid);
  if (lid == 0u) { stats[${STATS.clipScale}u] = min(1.0, p.clip / (sqrt(s) + 1e-6)); }
}
`;

/** One Adam step on one parameter buffer (bias-corrected as the CPU engine), gradients scaled by the clip factor when CLIP. */
export const adamWgsl = /* wgsl */ `
override CLIP: bool = false;
struct Params { n: u32, beta1: f32, beta2: f32, oneMinusBeta1: f32, oneMinusBeta2: f32, eps: f32, stepSize: f32, bc2: f32 }
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m1: array<f32>;
@group(0) @binding(3) var<storage, read_write> m2: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  var g = grad[i];
  if (CLIP) { g *= stats[${STATS.clipScale}u]; }
  let m = p.beta1 * m1[i] + p.oneMinusBeta1 * g;
  let v = p.beta2 * m2[i] + p.oneMinusBeta2 * g * g;
  m1[i] = m;
  m2[i] = v;
  param[i] -= p.stepSize * m / (sqrt(v) / p.bc2 + p.eps);
}
`;
