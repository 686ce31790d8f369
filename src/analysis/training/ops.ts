// The forward pass's ops with their backward passes, over row-major Float32Arrays, recorded on a Tape.
// Conventions follow the forward pass (src/model/transformer.ts, src/gpu/cpu-backend.ts): weights
// [out, in], activations [rows, features], sequences [B·T, heads·headDim], rotate-half rotary.
// Matrix products go through the CPU GEMM (matmulInto: WebAssembly SIMD where available).
import type { Activation, RopeParams } from '../../model/backend.ts';
import { ropeAngle, ropeInvFreq } from '../../model/rope.ts';
import { matmulInto } from '../../gpu/cpu-matmul.ts';
import { wasmActivateSlope, wasmAttention, wasmAttentionBackward, wasmCrossEntropy, wasmRmsNorm, wasmRmsNormBackward } from '../../gpu/cpu-wasm/ops.ts';
import { halfBitsIntoF32 } from '../../io/chunks.ts';
import type { Param, Tape, Weight } from './tape.ts';

/** The LoRA factors of one linear weight: W x + scaling · B[rows] A x. B covers the whole (maybe fused) module. */
export interface LoraPart {
  A: Param;
  B: Param;
  rank: number;
  /** Rows of B that belong to this weight (all of them unless the module is fused, as GPT-2's c_attn). */
  rows: readonly [number, number];
  scaling: number;
}

function addInto(dst: Float32Array, src: Float32Array, scale = 1): void {
  if (scale === 1) for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
  else for (let i = 0; i < dst.length; i++) dst[i]! += scale * src[i]!;
}

/** [rows, cols] → [cols, rows]. */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  return transposeInto(src, rows, cols, new Float32Array(rows * cols));
}

function transposeInto(src: Float32Array, rows: number, cols: number, out: Float32Array): Float32Array {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[o + c]!;
  }
  return out;
}

/** c = a [M, K] · bᵀ with b [N, K], c from the tape's pool (a new array without a tape). */
function mmT(tape: Tape | undefined, a: Float32Array, b: Float32Array | Uint16Array, M: number, N: number, K: number): Float32Array {
  const c = tape ? tape.alloc(M * N, false) : new Float32Array(M * N);
  matmulInto(a, b, c, M, N, K, true);
  return c;
}

/** c = a [M, K] · b [K, N], c from the tape's pool (a new array without a tape). */
function mm(tape: Tape | undefined, a: Float32Array, b: Float32Array | Uint16Array, M: number, N: number, K: number): Float32Array {
  const c = tape ? tape.alloc(M * N, false) : new Float32Array(M * N);
  matmulInto(a, b, c, M, N, K, false);
  return c;
}

/** [rows, cols] → [cols, rows], from the tape's pool. */
function transposed(tape: Tape, src: Float32Array, rows: number, cols: number): Float32Array {
  return transposeInto(src, rows, cols, tape.alloc(rows * cols, false));
}

export function embedding(tape: Tape, w: Weight, ids: Int32Array, d: number): Float32Array {
  const vocab = w.data.length / d;
  const out = tape.alloc(ids.length * d, false);
  const table = w.data;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab) throw new RangeError(`token id ${id} is outside the vocabulary of ${vocab}`);
    if (table instanceof Float32Array) out.set(table.subarray(id * d, id * d + d), i * d);
    else halfBitsIntoF32(table.subarray(id * d, id * d + d), out, i * d);
  }
  tape.record(() => {
    const g = tape.take(out);
    if (!g || !w.grad) return;
    for (let i = 0; i < ids.length; i++) {
      const o = ids[i]! * d;
      for (let j = 0; j < d; j++) w.grad[o + j]! += g[i * d + j]!;
    }
  });
  return out;
}

export function add(tape: Tape, a: Float32Array, b: Float32Array): Float32Array {
  const out = tape.alloc(a.length, false);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    // g is this closure's own: one input takes it, the other a copy (handing both the same array would alias them).
    tape.seed(a, g);
    tape.seed(b, tape.copy(g));
  });
  return out;
}

export function scale(tape: Tape, x: Float32Array, s: number): Float32Array {
  const out = tape.alloc(x.length, false);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * s;
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    for (let i = 0; i < g.length; i++) g[i]! *= s;
    tape.seed(x, g);
  });
  return out;
}

/** cap · tanh(x / cap) (Gemma 2's soft-capping). */
export function softcap(tape: Tape, x: Float32Array, cap: number): Float32Array {
  const out = tape.alloc(x.length, false);
  for (let i = 0; i < x.length; i++) out[i] = cap * Math.tanh(x[i]! / cap);
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    const gx = tape.grad(x);
    for (let i = 0; i < x.length; i++) {
      const t = out[i]! / cap;
      gx[i]! += g[i]! * (1 - t * t);
    }
  });
  return out;
}

/** RMS norm over rows of n: x / rms(x) · w (or · (1 + w) with addOne). Rows may be heads (qk-norm). */
export function rmsNorm(tape: Tape, x: Float32Array, n: number, w: Param, eps: number, addOne: boolean): Float32Array {
  const rows = x.length / n;
  const out = tape.alloc(x.length, false);
  const gain = new Float32Array(n);
  for (let j = 0; j < n; j++) gain[j] = addOne ? 1 + w.data[j]! : w.data[j]!;
  const inv = new Float32Array(rows);
  // The WebAssembly kernels (float32 sums, threaded over rows) where they run, else JavaScript (float64 sums).
  if (!wasmRmsNorm(x, gain, n, eps, out, inv)) {
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      let ss = 0;
      for (let j = 0; j < n; j++) ss += x[o + j]! * x[o + j]!;
      const iv = 1 / Math.sqrt(ss / n + eps);
      inv[r] = iv;
      for (let j = 0; j < n; j++) out[o + j] = x[o + j]! * iv * gain[j]!;
    }
  }
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    const gx = tape.alloc(x.length, false);
    if (!wasmRmsNormBackward(x, gain, n, g, inv, gx, w.grad)) {
      const wg = w.grad;
      for (let r = 0; r < rows; r++) {
        const o = r * n;
        const iv = inv[r]!;
        let dot = 0;
        for (let j = 0; j < n; j++) dot += g[o + j]! * gain[j]! * (x[o + j]! * iv);
        if (wg) for (let j = 0; j < n; j++) wg[j]! += g[o + j]! * (x[o + j]! * iv);
        dot /= n;
        for (let j = 0; j < n; j++) gx[o + j] = iv * (g[o + j]! * gain[j]! - x[o + j]! * iv * dot);
      }
    }
    tape.seed(x, gx);
  });
  return out;
}

export function layerNorm(tape: Tape, x: Float32Array, n: number, w: Param, b: Param, eps: number): Float32Array {
  const rows = x.length / n;
  const out = tape.alloc(x.length, false);
  const inv = new Float64Array(rows);
  const mean = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let m = 0;
    for (let j = 0; j < n; j++) m += x[o + j]!;
    m /= n;
    let v = 0;
    for (let j = 0; j < n; j++) v += (x[o + j]! - m) ** 2;
    const iv = 1 / Math.sqrt(v / n + eps);
    mean[r] = m;
    inv[r] = iv;
    for (let j = 0; j < n; j++) out[o + j] = (x[o + j]! - m) * iv * w.data[j]! + b.data[j]!;
  }
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    const gx = tape.grad(x);
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      const iv = inv[r]!;
      const m = mean[r]!;
      let sum = 0;
      let dot = 0;
      for (let j = 0; j < n; j++) {
        const xh = (x[o + j]! - m) * iv;
        const gh = g[o + j]! * w.data[j]!;
        sum += gh;
        dot += gh * xh;
        if (w.grad) w.grad[j]! += g[o + j]! * xh;
        if (b.grad) b.grad[j]! += g[o + j]!;
      }
      sum /= n;
      dot /= n;
      for (let j = 0; j < n; j++) gx[o + j]! += iv * (g[o + j]! * w.data[j]! - sum - (x[o + j]! - m) * iv * dot);
    }
  });
  return out;
}

/**
 * x [M, K] → x Wᵀ + b [M, N], W [N, K]; with LoRA, x (W + scaling · B[rows] A)ᵀ. A training batch (M at
 * least half the weight's side) merges the weight: N·K·r multiply-adds once instead of M·N·r per pass
 * and an extra M·N (forward) and M·K (backward) sum. A few rows (a few tokens through a 1B model) keep
 * LoRA apart, x Wᵀ + scaling · (x Aᵀ) Bᵀ: merging would write and pack an N × K temporary per call
 * for products that read the weight only once.
 */
export function linear(tape: Tape, x: Float32Array, K: number, w: Weight, N: number, bias?: Param, lora?: LoraPart): Float32Array {
  const M = x.length / K;
  const r = lora?.rank ?? 0;
  const Bp = lora?.B.data.subarray(lora.rows[0] * r, lora.rows[1] * r);
  const merged = lora !== undefined && 2 * M >= Math.sqrt(N * K);
  // The merged weight W + scaling · B A (a pooled [N, K]); made again for the backward rather than held
  // across the forward of every later layer (a 1B model's merged weights would be 4 GB).
  const merge = (): Float32Array => {
    const out = mm(tape, Bp!, lora!.A.data, N, K, r);
    const s = lora!.scaling;
    const base = w.data;
    if (base instanceof Float32Array) {
      for (let i = 0; i < out.length; i++) out[i] = base[i]! + s * out[i]!;
    } else {
      const row = new Float32Array(K);
      for (let n = 0; n < N; n++) {
        halfBitsIntoF32(base.subarray(n * K, (n + 1) * K), row);
        for (let k = 0, o = n * K; k < K; k++) out[o + k] = row[k]! + s * out[o + k]!;
      }
    }
    return out;
  };
  let weight: Float32Array | Uint16Array = w.data;
  if (merged) weight = merge();
  const y = mmT(tape, x, weight, M, N, K);
  if (merged) tape.free(weight as Float32Array);
  // Unmerged: u = x Aᵀ [M, r], kept for B's gradient.
  const u = lora && !merged ? mmT(tape, x, lora.A.data, M, r, K) : undefined;
  if (lora && u) addInto(y, mmT(tape, u, Bp!, M, N, r), lora.scaling);
  if (bias) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) y[i * N + j]! += bias.data[j]!;
  tape.record(() => {
    const g = tape.take(y);
    if (!g) return;
    if (w.grad) addInto(w.grad, mm(tape, transposed(tape, g, M, N), x, N, K, M));
    if (bias?.grad) for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) bias.grad[j]! += g[i * N + j]!;
    const dx = mm(tape, g, merged ? merge() : w.data, M, K, N);
    if (lora) {
      const s = lora.scaling;
      // dA = scaling · (g B)ᵀ x; dB = scaling · gᵀ (x Aᵀ), computed as ((x Aᵀ)ᵀ g)ᵀ: transposing [M, r] costs far less than [M, N].
      const gu = mm(tape, g, Bp!, M, r, N);
      if (lora.A.grad) addInto(lora.A.grad, mm(tape, transposed(tape, gu, M, r), x, r, K, M), s);
      if (lora.B.grad) {
        const xa = u ?? mmT(tape, x, lora.A.data, M, r, K);
        addInto(lora.B.grad.subarray(lora.rows[0] * r, lora.rows[1] * r), transposed(tape, mm(tape, transposed(tape, xa, M, r), g, r, N, M), r, N), s);
      }
      // Unmerged, x's gradient has LoRA's part apart: scaling · (g B) A.
      if (!merged) addInto(dx, mm(tape, gu, lora.A.data, M, K, r), s);
    }
    tape.seed(x, dx);
  });
  return y;
}

const invFreqs = new Map<string, Float32Array>();

export function ropeTables(p: RopeParams, seq: number): { cos: Float32Array; sin: Float32Array } {
  const key = JSON.stringify(p);
  let inv = invFreqs.get(key);
  if (!inv) {
    inv = ropeInvFreq(p);
    invFreqs.set(key, inv);
  }
  const half = p.rotaryDim / 2;
  const cos = new Float32Array(seq * half);
  const sin = new Float32Array(seq * half);
  for (let t = 0; t < seq; t++) {
    for (let i = 0; i < half; i++) {
      const a = ropeAngle(inv, i, t);
      cos[t * half + i] = Math.cos(a);
      sin[t * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Rotate-half rotary embedding of x [B·T, heads·headDim] at positions 0..T-1. */
export function rope(tape: Tape, x: Float32Array, seq: number, heads: number, headDim: number, p: RopeParams): Float32Array {
  const { cos, sin } = ropeTables(p, seq);
  const half = p.rotaryDim / 2;
  const D = heads * headDim;
  const rows = x.length / D;
  const rotate = (src: Float32Array, dst: Float32Array, sign: number): void => {
    for (let r = 0; r < rows; r++) {
      const t = r % seq;
      for (let h = 0; h < heads; h++) {
        const o = r * D + h * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i]!;
          const s = sign * sin[t * half + i]!;
          const x1 = src[o + i]!;
          const x2 = src[o + i + half]!;
          dst[o + i]! += x1 * c - x2 * s;
          dst[o + i + half]! += x2 * c + x1 * s;
        }
        for (let i = 2 * half; i < headDim; i++) dst[o + i]! += src[o + i]!;
      }
    }
  };
  const out = tape.alloc(x.length);
  rotate(x, out, 1);
  tape.record(() => {
    const g = tape.take(out);
    if (g) rotate(g, tape.grad(x), -1);
  });
  return out;
}

export interface AttentionShape {
  batch: number;
  seq: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  scale: number;
  /** Sliding window in tokens; 0 for none. */
  window: number;
  /** Soft-cap of the scores; 0 for none. */
  softcap: number;
}

/** Rows of sequence b, columns off..off+hd of src [B·T, D], as [T, hd]. */
function gatherHead(src: Float32Array, b: number, T: number, D: number, off: number, hd: number): Float32Array {
  const m = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) m.set(src.subarray((b * T + t) * D + off, (b * T + t) * D + off + hd), t * hd);
  return m;
}

/** dst's rows of sequence b, columns off..off+hd (+)= m [T, hd], or m given transposed ([hd, T]). */
function scatterAddHead(dst: Float32Array, m: Float32Array, b: number, T: number, D: number, off: number, hd: number, transposed: boolean): void {
  for (let t = 0; t < T; t++) {
    const o = (b * T + t) * D + off;
    if (transposed) for (let j = 0; j < hd; j++) dst[o + j]! += m[j * T + t]!;
    else for (let j = 0; j < hd; j++) dst[o + j]! += m[t * hd + j]!;
  }
}

/** Causal attention of q [B·T, H·hd] over k, v [B·T, Hkv·hd] (grouped-query), softmax kept for backward. */
export function attention(tape: Tape, q: Float32Array, k: Float32Array, v: Float32Array, a: AttentionShape): Float32Array {
  const { batch: B, seq: T, nHeads: H, nKvHeads: Hkv, headDim: hd } = a;
  const Dq = H * hd;
  const Dk = Hkv * hd;
  const group = H / Hkv;
  const out = tape.alloc(B * T * Dq);
  const probs = tape.alloc(B * H * T * T);
  // The WebAssembly kernels (no soft-capping there): forward with the probabilities kept, backward from them.
  if (a.softcap === 0 && wasmAttention(q, k, v, out, { batch: B, T, S: T, nHeads: H, nKvHeads: Hkv, headDim: hd, scale: a.scale, queryOffset: 0, window: a.window }, probs)) {
    tape.record(() => {
      const g = tape.take(out);
      if (!g) return;
      const gq = tape.alloc(q.length, false);
      const gk = tape.alloc(k.length, false);
      const gv = tape.alloc(v.length, false);
      if (wasmAttentionBackward({ q, k, v, dO: g, probs }, { q: gq, k: gk, v: gv }, { batch: B, T, nHeads: H, nKvHeads: Hkv, headDim: hd, scale: a.scale })) {
        tape.seed(q, gq);
        tape.seed(k, gk);
        tape.seed(v, gv);
      } else {
        attentionBackward(tape, g, q, k, v, probs, a);
      }
    });
    return out;
  }
  // Query t sees keys first(t)..t.
  const first = (t: number): number => (a.window > 0 ? Math.max(0, t - a.window + 1) : 0);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kOff = Math.floor(h / group) * hd;
      const Qh = gatherHead(q, b, T, Dq, h * hd, hd);
      const S = mmT(undefined, Qh, gatherHead(k, b, T, Dk, kOff, hd), T, T, hd);
      const P = probs.subarray((b * H + h) * T * T, (b * H + h + 1) * T * T);
      for (let t = 0; t < T; t++) {
        const s0 = first(t);
        const row = t * T;
        let max = -Infinity;
        for (let s = s0; s <= t; s++) {
          let sc = S[row + s]! * a.scale;
          if (a.softcap > 0) sc = a.softcap * Math.tanh(sc / a.softcap);
          S[row + s] = sc;
          if (sc > max) max = sc;
        }
        let sum = 0;
        for (let s = s0; s <= t; s++) {
          const e = Math.exp(S[row + s]! - max);
          P[row + s] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let s = s0; s <= t; s++) P[row + s]! *= inv;
      }
      scatterAddHead(out, mm(undefined, P, gatherHead(v, b, T, Dk, kOff, hd), T, hd, T), b, T, Dq, h * hd, hd, false);
    }
  }
  tape.record(() => {
    const g = tape.take(out);
    if (g) attentionBackward(tape, g, q, k, v, probs, a);
  });
  return out;
}

/** The gradients of q, k and v from g (of attention's output) and the forward's probabilities, per head in JavaScript. */
function attentionBackward(tape: Tape, g: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, probs: Float32Array, a: AttentionShape): void {
  const { batch: B, seq: T, nHeads: H, nKvHeads: Hkv, headDim: hd } = a;
  const Dq = H * hd;
  const Dk = Hkv * hd;
  const group = H / Hkv;
  const gq = tape.grad(q);
  const gk = tape.grad(k);
  const gv = tape.grad(v);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kOff = Math.floor(h / group) * hd;
      const P = probs.subarray((b * H + h) * T * T, (b * H + h + 1) * T * T);
      const Qh = gatherHead(q, b, T, Dq, h * hd, hd);
      const Kh = gatherHead(k, b, T, Dk, kOff, hd);
      const Vh = gatherHead(v, b, T, Dk, kOff, hd);
      const dO = gatherHead(g, b, T, Dq, h * hd, hd);
      const dP = mmT(undefined, dO, Vh, T, T, hd);
      const capped = a.softcap > 0 ? mmT(undefined, Qh, Kh, T, T, hd) : undefined;
      for (let t = 0; t < T; t++) {
        let dot = 0;
        for (let s = 0; s <= t; s++) dot += dP[t * T + s]! * P[t * T + s]!;
        for (let s = 0; s <= t; s++) {
          const i = t * T + s;
          let ds = P[i]! * (dP[i]! - dot);
          if (capped && ds !== 0) {
            const th = Math.tanh((capped[i]! * a.scale) / a.softcap);
            ds *= 1 - th * th;
          }
          dP[i] = ds * a.scale;
        }
        // Keys after the query get no gradient.
        dP.fill(0, t * T + t + 1, (t + 1) * T);
      }
      scatterAddHead(gq, mm(undefined, dP, Kh, T, hd, T), b, T, Dq, h * hd, hd, false);
      // dK = dSᵀ Q and dV = Pᵀ dO, formed transposed (Qᵀ dS, dOᵀ P): transposing [T, hd] costs less than [T, T].
      scatterAddHead(gk, mm(undefined, transpose(Qh, T, hd), dP, hd, T, T), b, T, Dk, kOff, hd, true);
      scatterAddHead(gv, mm(undefined, transpose(dO, T, hd), P, hd, T, T), b, T, Dk, kOff, hd, true);
    }
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function erf(x: number): number {
  // Numerical Recipes erfc (relative error < 1.2e-7), as the forward pass uses.
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  const y = 1 - erfc;
  return x < 0 ? -y : y;
}

/** The activation of every x into out, and its derivative into slope. */
function activate(act: Activation, x: Float32Array, out: Float32Array, slope: Float32Array): void {
  if (wasmActivateSlope(x, out, slope, act)) return;
  const n = x.length;
  switch (act) {
    case 'silu':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        const s = 1 / (1 + Math.exp(-v));
        out[i] = v * s;
        slope[i] = s * (1 + v * (1 - s));
      }
      return;
    case 'relu':
      for (let i = 0; i < n; i++) {
        out[i] = x[i]! > 0 ? x[i]! : 0;
        slope[i] = x[i]! > 0 ? 1 : 0;
      }
      return;
    case 'gelu':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        const cdf = 0.5 * (1 + erf(v / Math.SQRT2));
        out[i] = v * cdf;
        slope[i] = cdf + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI);
      }
      return;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        const th = Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v));
        out[i] = 0.5 * v * (1 + th);
        slope[i] = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
      }
      return;
  }
}

export function activation(tape: Tape, x: Float32Array, act: Activation): Float32Array {
  const out = tape.alloc(x.length, false);
  const slope = tape.alloc(x.length, false);
  activate(act, x, out, slope);
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    // g is this closure's own: it becomes x's gradient.
    for (let i = 0; i < g.length; i++) g[i]! *= slope[i]!;
    tape.seed(x, g);
  });
  return out;
}

/** act(gate) · up. */
export function gated(tape: Tape, gate: Float32Array, up: Float32Array, act: Activation): Float32Array {
  const out = tape.alloc(gate.length, false);
  const a = tape.alloc(gate.length, false);
  const slope = tape.alloc(gate.length, false);
  activate(act, gate, a, slope);
  for (let i = 0; i < gate.length; i++) out[i] = a[i]! * up[i]!;
  tape.record(() => {
    const g = tape.take(out);
    if (!g) return;
    const gg = tape.alloc(g.length, false);
    const gu = tape.alloc(g.length, false);
    for (let i = 0; i < g.length; i++) {
      const gi = g[i]!;
      gg[i] = gi * up[i]! * slope[i]!;
      gu[i] = gi * a[i]!;
    }
    tape.seed(gate, gg);
    tape.seed(up, gu);
  });
  return out;
}

/**
 * Σ over rows with a target ≥ 0 of −log softmax(logits)[target]; the gradient fed back is
 * `weight` times that of the sum (weight = 1 / tokens in the whole batch gives the mean).
 */
export function crossEntropy(tape: Tape, logits: Float32Array, vocab: number, targets: Int32Array, weight: number): number {
  const rows = targets.length;
  // The gradient is computed with the loss: softmax − one-hot, times weight (rows without a target stay 0).
  const g = tape.alloc(logits.length);
  const fast = wasmCrossEntropy(logits, vocab, targets, weight, g);
  if (fast !== undefined) {
    tape.record(() => tape.seed(logits, g));
    return fast;
  }
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const tg = targets[r]!;
    if (tg < 0) continue;
    const o = r * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) if (logits[o + j]! > max) max = logits[o + j]!;
    let sum = 0;
    for (let j = 0; j < vocab; j++) {
      const e = Math.exp(logits[o + j]! - max);
      g[o + j] = e;
      sum += e;
    }
    loss += max + Math.log(sum) - logits[o + tg]!;
    const scale = weight / sum;
    for (let j = 0; j < vocab; j++) g[o + j]! *= scale;
    g[o + tg]! -= weight;
  }
  tape.record(() => tape.seed(logits, g));
  return loss;
}
