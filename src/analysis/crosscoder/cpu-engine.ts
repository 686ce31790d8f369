// The CPU reference engine. Dense work is only the encoder (B·D·2d multiply-adds, on the CPU
// backend's WebAssembly GEMM in float32); the decoder, the backward pass and the auxiliary loss
// visit the kept (token, latent) pairs only (the decoder and the pairs' gradient as WebAssembly SIMD
// kernels in float32; JavaScript for float64 and where d is not a multiple of 4).
// Generic over Float32Array / Float64Array storage: float64 is for gradient checks.
import { matmulInto } from '../../gpu/cpu-matmul.ts';
import { wasmSparseDecode, wasmSparseGrad, type SparsePairs } from '../../gpu/cpu-wasm/ops.ts';
import type { AdamOptions, CrosscoderEngine, LossOptions, LossParts, SelectInfo } from './engine.ts';
import { scoreWeights, zeroParams, type CodeNormalization, type CrosscoderParams, type FloatArray } from './model.ts';
import { cutAbove, emitSparse, findTopKCut, type SparseCode, type TopKCut } from './select.ts';

export interface CpuEngineOptions {
  readonly d: number;
  readonly D: number;
  readonly codeNormalization?: CodeNormalization;
  readonly precision?: 'f32' | 'f64';
}

export function createCpuEngine(opts: CpuEngineOptions): CrosscoderEngine {
  return opts.precision === 'f64'
    ? new CpuEngine(opts.d, opts.D, opts.codeNormalization ?? 'crosscoder', (n) => new Float64Array(n))
    : new CpuEngine(opts.d, opts.D, opts.codeNormalization ?? 'crosscoder', (n) => new Float32Array(n));
}

class CpuEngine<A extends FloatArray> implements CrosscoderEngine {
  private p: CrosscoderParams<A>;
  private g: CrosscoderParams<A>;
  private m1: CrosscoderParams<A>;
  private m2: CrosscoderParams<A>;
  private adamStep = 0;
  private n = 0;
  private xb: A;
  private xf: A;
  private f: A;
  private scores = new Float32Array(0);
  /** The fine-tuned model's half of the encoder's pre-activations (float32 engine). */
  private encFt = new Float32Array(0);
  private scratch = new Uint32Array(0);
  private readonly fired: Uint8Array;
  private w: Float64Array;
  private rowPtr: Int32Array = new Int32Array(1);
  private idx: Int32Array = new Int32Array(0);
  private val: A;
  private hb: A;
  private hf: A;
  private eb: A;
  private ef: A;
  private gb: A;
  private gf: A;

  constructor(
    readonly d: number,
    readonly D: number,
    readonly codeNormalization: CodeNormalization,
    private readonly make: (n: number) => A,
  ) {
    this.p = zeroParams(d, D, make);
    this.g = zeroParams(d, D, make);
    this.m1 = zeroParams(d, D, make);
    this.m2 = zeroParams(d, D, make);
    this.xb = make(0);
    this.xf = make(0);
    this.f = make(0);
    this.val = make(0);
    this.hb = make(0);
    this.hf = make(0);
    this.eb = make(0);
    this.ef = make(0);
    this.gb = make(0);
    this.gf = make(0);
    this.fired = new Uint8Array(D);
    this.w = new Float64Array(D);
  }

  setParams(p: CrosscoderParams<FloatArray>): void {
    if (p.d !== this.d || p.D !== this.D) throw new Error(`CpuEngine: parameters are d=${p.d}, D=${p.D}; the engine is d=${this.d}, D=${this.D}`);
    this.p.encW.set(p.encW);
    this.p.encB.set(p.encB);
    this.p.decW.set(p.decW);
    this.p.decB.set(p.decB);
    for (const s of [this.m1, this.m2]) for (const a of [s.encW, s.encB, s.decW, s.decB]) a.fill(0);
    this.adamStep = 0;
  }

  setDecoderBias(m: 0 | 1, bias: FloatArray): void {
    this.p.decB.set(bias.subarray(0, this.d), m * this.d);
  }

  readParams(): Promise<CrosscoderParams<FloatArray>> {
    return Promise.resolve(copy(this.p, this.make));
  }

  readGrads(): Promise<CrosscoderParams<FloatArray>> {
    return Promise.resolve(copy(this.g, this.make));
  }

  setBatch(base: FloatArray, ft: FloatArray, n: number): void {
    const len = n * this.d;
    if (base.length < len || ft.length < len) throw new Error(`CpuEngine.setBatch: expected ${n}×${this.d} values per model, got ${base.length} and ${ft.length}`);
    if (this.xb.length < len) {
      this.xb = this.make(len);
      this.xf = this.make(len);
      this.hb = this.make(len);
      this.hf = this.make(len);
      this.eb = this.make(len);
      this.ef = this.make(len);
      this.gb = this.make(len);
      this.gf = this.make(len);
    }
    if (this.f.length < n * this.D) {
      this.f = this.make(n * this.D);
      this.scores = new Float32Array(n * this.D);
      this.scratch = new Uint32Array(n * this.D);
    }
    this.xb.set(base.subarray(0, len));
    this.xf.set(ft.subarray(0, len));
    this.n = n;
  }

  encode(): void {
    const { d, D, n, xb, xf, f } = this;
    const { encW, encB } = this.p;
    const offFt = D * d;
    if (encW instanceof Float32Array && xb instanceof Float32Array && xf instanceof Float32Array && f instanceof Float32Array) {
      // f = relu(xb·W_baseᵀ + xf·W_ftᵀ + b): two GEMMs (the encoder's rows are [D, d] per model).
      if (this.encFt.length < n * D) this.encFt = new Float32Array(n * D);
      const fb = f.subarray(0, n * D);
      const ff = this.encFt.subarray(0, n * D);
      matmulInto(xb.subarray(0, n * d), encW.subarray(0, offFt), fb, n, D, d, true);
      matmulInto(xf.subarray(0, n * d), encW.subarray(offFt, 2 * offFt), ff, n, D, d, true);
      for (let t = 0; t < n; t++) {
        const o = t * D;
        for (let j = 0; j < D; j++) {
          const s = fb[o + j]! + ff[o + j]! + encB[j]!;
          fb[o + j] = s > 0 ? s : 0;
        }
      }
      return;
    }
    // Four tokens per pass over a latent's encoder rows: each weight load serves four tokens.
    let t = 0;
    for (; t + 4 <= n; t += 4) {
      const x0 = t * d;
      const x1 = x0 + d;
      const x2 = x1 + d;
      const x3 = x2 + d;
      const fo = t * D;
      for (let j = 0; j < D; j++) {
        const b = encB[j]!;
        let s0 = b;
        let s1 = b;
        let s2 = b;
        let s3 = b;
        const ob = j * d;
        const of = offFt + ob;
        for (let i = 0; i < d; i++) {
          const wb = encW[ob + i]!;
          const wf = encW[of + i]!;
          s0 += xb[x0 + i]! * wb + xf[x0 + i]! * wf;
          s1 += xb[x1 + i]! * wb + xf[x1 + i]! * wf;
          s2 += xb[x2 + i]! * wb + xf[x2 + i]! * wf;
          s3 += xb[x3 + i]! * wb + xf[x3 + i]! * wf;
        }
        f[fo + j] = s0 > 0 ? s0 : 0;
        f[fo + D + j] = s1 > 0 ? s1 : 0;
        f[fo + 2 * D + j] = s2 > 0 ? s2 : 0;
        f[fo + 3 * D + j] = s3 > 0 ? s3 : 0;
      }
    }
    for (; t < n; t++) {
      const xo = t * d;
      const fo = t * D;
      for (let j = 0; j < D; j++) {
        let s = encB[j]!;
        const ob = j * d;
        const of = offFt + ob;
        for (let i = 0; i < d; i++) s += xb[xo + i]! * encW[ob + i]! + xf[xo + i]! * encW[of + i]!;
        f[fo + j] = s > 0 ? s : 0;
      }
    }
  }

  private computeScores(): void {
    this.w = scoreWeights(this.p, this.codeNormalization);
    const { n, D, f, scores, w } = this;
    for (let t = 0; t < n; t++) {
      const o = t * D;
      for (let j = 0; j < D; j++) scores[o + j] = f[o + j]! * w[j]!;
    }
  }

  private keep(cut: TopKCut): SelectInfo {
    const { n, D, f } = this;
    this.fired.fill(0);
    const scores = this.scores.subarray(0, n * D);
    const { code, minScore } = emitSparse(cut, scores, f, n, D, this.fired);
    this.rowPtr = code.rowPtr;
    this.idx = code.index;
    if (this.val.length < code.index.length) this.val = this.make(Math.max(code.index.length, 2 * this.val.length));
    for (let t = 0; t < n; t++) {
      for (let q = code.rowPtr[t]!; q < code.rowPtr[t + 1]!; q++) this.val[q] = f[t * D + code.index[q]!]!;
    }
    return { kept: code.index.length, minScore, fired: this.fired };
  }

  selectTopK(kTotal: number, hint: number): Promise<SelectInfo> {
    this.computeScores();
    const scores = this.scores.subarray(0, this.n * this.D);
    return Promise.resolve(this.keep(findTopKCut(scores, kTotal, hint, this.scratch)));
  }

  selectAbove(theta: number): Promise<SelectInfo> {
    this.computeScores();
    return Promise.resolve(this.keep(cutAbove(this.scores.subarray(0, this.n * this.D), theta)));
  }

  selectPositive(): Promise<SelectInfo> {
    this.computeScores();
    return Promise.resolve(this.keep(cutAbove(this.scores.subarray(0, this.n * this.D), -1)));
  }

  /** The kept pairs for the WebAssembly kernels (float32 engine), or undefined (float64). */
  private pairs(): SparsePairs | undefined {
    return this.val instanceof Float32Array ? { n: this.n, rowPtr: this.rowPtr, idx: this.idx, val: this.val } : undefined;
  }

  decode(): void {
    const { d, D, n, hb, hf, rowPtr, idx, val } = this;
    const { decW, decB } = this.p;
    const pairs = this.pairs();
    if (pairs && decW instanceof Float32Array && decB instanceof Float32Array && hb instanceof Float32Array && hf instanceof Float32Array) {
      if (wasmSparseDecode(pairs, decW, decB, hb, hf, d, D)) return;
    }
    const offFt = D * d;
    for (let t = 0; t < n; t++) {
      const o = t * d;
      for (let i = 0; i < d; i++) {
        hb[o + i] = decB[i]!;
        hf[o + i] = decB[d + i]!;
      }
      for (let q = rowPtr[t]!; q < rowPtr[t + 1]!; q++) {
        const v = val[q]!;
        const ob = idx[q]! * d;
        const of = offFt + ob;
        for (let i = 0; i < d; i++) {
          hb[o + i]! += v * decW[ob + i]!;
          hf[o + i]! += v * decW[of + i]!;
        }
      }
    }
  }

  backward(opts: LossOptions): Promise<LossParts> {
    const { d, D, n, xb, xf, hb, hf, eb, ef, gb, gf, rowPtr, idx, val, w } = this;
    const g = this.g;
    for (const a of [g.encW, g.encB, g.decW, g.decB]) a.fill(0);
    let l2 = 0;
    let sq = 0;
    const meanB = new Float64Array(d);
    const meanF = new Float64Array(d);
    const eMeanB = new Float64Array(d);
    const eMeanF = new Float64Array(d);
    for (let t = 0; t < n; t++) {
      const o = t * d;
      let nb = 0;
      let nf = 0;
      for (let i = 0; i < d; i++) {
        const a = xb[o + i]! - hb[o + i]!;
        const b = xf[o + i]! - hf[o + i]!;
        eb[o + i] = a;
        ef[o + i] = b;
        nb += a * a;
        nf += b * b;
        meanB[i]! += xb[o + i]!;
        meanF[i]! += xf[o + i]!;
        eMeanB[i]! += a;
        eMeanF[i]! += b;
      }
      sq += nb + nf;
      const rb = Math.sqrt(nb);
      const rf = Math.sqrt(nf);
      l2 += rb + rf;
      // dLoss/dx̂ per objective; the L2 norm has no gradient at 0.
      let cb: number;
      let cf: number;
      if (opts.objective === 'l2') {
        cb = rb > 0 ? -1 / (rb * 2 * n) : 0;
        cf = rf > 0 ? -1 / (rf * 2 * n) : 0;
      } else if (opts.objective === 'mse') {
        cb = cf = -2 / (2 * n);
      } else {
        cb = cf = -2 / n;
      }
      for (let i = 0; i < d; i++) {
        gb[o + i] = cb * eb[o + i]!;
        gf[o + i] = cf * ef[o + i]!;
      }
    }
    for (let i = 0; i < d; i++) {
      meanB[i]! /= n;
      meanF[i]! /= n;
      eMeanB[i]! /= n;
      eMeanF[i]! /= n;
    }
    let varSum = 0;
    let eVar = 0;
    for (let t = 0; t < n; t++) {
      const o = t * d;
      for (let i = 0; i < d; i++) {
        varSum += (xb[o + i]! - meanB[i]!) ** 2 + (xf[o + i]! - meanF[i]!) ** 2;
        eVar += (eb[o + i]! - eMeanB[i]!) ** 2 + (ef[o + i]! - eMeanF[i]!) ** 2;
      }
      for (let i = 0; i < d; i++) {
        g.decB[i]! += gb[o + i]!;
        g.decB[d + i]! += gf[o + i]!;
      }
    }

    const l1On = opts.objective === 'l1';
    const fSum = new Float64Array(D);
    let l1 = 0;
    for (let q = 0; q < rowPtr[n]!; q++) {
      fSum[idx[q]!]! += val[q]!;
      l1 += val[q]! * w[idx[q]!]!;
    }
    const extra = l1On ? opts.l1Lambda / n : 0;
    const pairs = this.pairs();
    const { decW } = this.p;
    const wasm =
      pairs !== undefined &&
      decW instanceof Float32Array &&
      g.decW instanceof Float32Array &&
      g.encW instanceof Float32Array &&
      g.encB instanceof Float32Array &&
      wasmSparseGrad(pairs, { xb, xf, gb, gf } as Record<'xb' | 'xf' | 'gb' | 'gf', Float32Array>, decW, Float32Array.from(w), extra, { gDecW: g.decW, gEncW: g.encW, gEncB: g.encB }, d, D);
    if (!wasm) {
      for (let t = 0; t < n; t++) {
        for (let q = rowPtr[t]!; q < rowPtr[t + 1]!; q++) this.accumulateLatent(idx[q]!, val[q]!, gb, gf, t * d, t, extra * w[idx[q]!]!);
      }
    }
    l1 /= n;
    if (l1On && opts.l1Lambda !== 0) this.addL1DecoderGrad(fSum, opts.l1Lambda / n);

    let auxk = 0;
    const dead = opts.dead;
    if (opts.auxAlpha > 0 && dead && eVar / n > 0) {
      auxk = this.auxiliary(opts, dead, eb, ef, eVar / n);
    }

    const mse = sq / (2 * n);
    const objective = opts.objective === 'l2' ? l2 / (2 * n) : opts.objective === 'mse' ? mse : sq / n + opts.l1Lambda * l1;
    return Promise.resolve({
      loss: objective + opts.auxAlpha * auxk,
      l2: l2 / (2 * n),
      mse,
      auxk,
      l1,
      fvu: varSum > 0 ? sq / varSum : 0,
    });
  }

  /**
   * Gradient of one kept (token t, latent j, value v) pair given dLoss/dx̂ of the token (gb, gf at
   * offset o) and an extra dLoss/df (the L1 term): decoder rows, then through the ReLU (v > 0) into
   * the encoder rows and bias.
   */
  private accumulateLatent(j: number, v: number, gb: A, gf: A, o: number, t: number, extra: number): void {
    const { d, D, xb, xf } = this;
    const { decW } = this.p;
    const { encW: gEncW, encB: gEncB, decW: gDecW } = this.g;
    const ob = j * d;
    const of = D * d + ob;
    let df = extra;
    for (let i = 0; i < d; i++) {
      const a = gb[o + i]!;
      const b = gf[o + i]!;
      df += decW[ob + i]! * a + decW[of + i]! * b;
      gDecW[ob + i]! += v * a;
      gDecW[of + i]! += v * b;
    }
    const xo = t * d;
    for (let i = 0; i < d; i++) {
      gEncW[ob + i]! += df * xb[xo + i]!;
      gEncW[of + i]! += df * xf[xo + i]!;
    }
    gEncB[j]! += df;
  }

  /** d/d d_j^m of λ/n Σ_t f_tj w_j, with w_j from the decoder norms. */
  private addL1DecoderGrad(fSum: Float64Array, scale: number): void {
    if (this.codeNormalization === 'none') return;
    const { d, D } = this;
    const { decW } = this.p;
    const gDecW = this.g.decW;
    for (let j = 0; j < D; j++) {
      if (fSum[j] === 0) continue;
      const ob = j * d;
      const of = D * d + ob;
      let sb = 0;
      let sf = 0;
      for (let i = 0; i < d; i++) {
        sb += decW[ob + i]! ** 2;
        sf += decW[of + i]! ** 2;
      }
      const nb = Math.sqrt(sb);
      const nf = Math.sqrt(sf);
      // crosscoder: ∂(‖a‖ + ‖b‖)/∂a = a/‖a‖; sae: ∂sqrt(‖a‖² + ‖b‖²)/∂a = a/w.
      const w = Math.sqrt(sb + sf);
      const kb = this.codeNormalization === 'crosscoder' ? (nb > 0 ? 1 / nb : 0) : w > 0 ? 1 / w : 0;
      const kf = this.codeNormalization === 'crosscoder' ? (nf > 0 ? 1 / nf : 0) : w > 0 ? 1 / w : 0;
      const c = scale * fSum[j]!;
      for (let i = 0; i < d; i++) {
        gDecW[ob + i]! += c * kb * decW[ob + i]!;
        gDecW[of + i]! += c * kf * decW[of + i]!;
      }
    }
  }

  /**
   * The reference's auxiliary loss: per token, the top auxK dead latents by score reconstruct the
   * (detached) residual e without bias; loss = mean_t Σ_m ‖e − ê‖² / mean_t Σ_m ‖e − mean(e)‖².
   */
  private auxiliary(opts: LossOptions, dead: Uint8Array, eb: A, ef: A, denom: number): number {
    const { d, D, n, f, w } = this;
    const { decW } = this.p;
    const deadList: number[] = [];
    for (let j = 0; j < D; j++) if (dead[j]) deadList.push(j);
    const kAux = Math.min(opts.auxK, deadList.length);
    if (kAux <= 0) return 0;
    const heap = new TopHeap(kAux);
    const rb = new Float64Array(d);
    const rf = new Float64Array(d);
    const hb = this.make(d);
    const hf = this.make(d);
    let total = 0;
    const c = (-2 * opts.auxAlpha) / (n * denom);
    for (let t = 0; t < n; t++) {
      heap.clear();
      const fo = t * D;
      for (const j of deadList) {
        const v = f[fo + j]!;
        if (v > 0) heap.offer(v * w[j]!, j);
      }
      if (heap.size === 0) {
        for (let i = 0; i < d; i++) total += eb[t * d + i]! ** 2 + ef[t * d + i]! ** 2;
        continue;
      }
      rb.fill(0);
      rf.fill(0);
      for (let h = 0; h < heap.size; h++) {
        const j = heap.index[h]!;
        const v = f[fo + j]!;
        const ob = j * d;
        const of = D * d + ob;
        for (let i = 0; i < d; i++) {
          rb[i]! += v * decW[ob + i]!;
          rf[i]! += v * decW[of + i]!;
        }
      }
      const o = t * d;
      for (let i = 0; i < d; i++) {
        const a = eb[o + i]! - rb[i]!;
        const b = ef[o + i]! - rf[i]!;
        total += a * a + b * b;
        hb[i] = c * a;
        hf[i] = c * b;
      }
      for (let h = 0; h < heap.size; h++) {
        const j = heap.index[h]!;
        this.accumulateLatent(j, f[fo + j]!, hb, hf, 0, t, 0);
      }
    }
    return total / n / denom;
  }

  adam(opts: AdamOptions): void {
    const g = this.g;
    const arrays: Array<[A, A, A, A]> = [
      [this.p.encW, g.encW, this.m1.encW, this.m2.encW],
      [this.p.encB, g.encB, this.m1.encB, this.m2.encB],
      [this.p.decW, g.decW, this.m1.decW, this.m2.decW],
      [this.p.decB, g.decB, this.m1.decB, this.m2.decB],
    ];
    let scale = 1;
    if (opts.clipGradNorm > 0) {
      let ss = 0;
      for (const [, gr] of arrays) for (let i = 0; i < gr.length; i++) ss += gr[i]! * gr[i]!;
      const coef = opts.clipGradNorm / (Math.sqrt(ss) + 1e-6);
      if (coef < 1) scale = coef;
    }
    this.adamStep++;
    const { beta1, beta2, eps, lr } = opts;
    const stepSize = lr / (1 - beta1 ** this.adamStep);
    const bc2 = Math.sqrt(1 - beta2 ** this.adamStep);
    for (const [p, gr, m, v] of arrays) {
      for (let i = 0; i < p.length; i++) {
        const gi = gr[i]! * scale;
        const mi = beta1 * m[i]! + (1 - beta1) * gi;
        const vi = beta2 * v[i]! + (1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i]! -= (stepSize * mi) / (Math.sqrt(vi) / bc2 + eps);
      }
    }
  }

  readCode(): Promise<SparseCode> {
    const count = this.rowPtr[this.n] ?? 0;
    return Promise.resolve({
      rows: this.n,
      cols: this.D,
      rowPtr: this.rowPtr.slice(0, this.n + 1),
      index: this.idx.slice(0, count),
      value: Float32Array.from(this.val.subarray(0, count)),
    });
  }

  readReconstruction(): Promise<[Float32Array, Float32Array]> {
    const len = this.n * this.d;
    return Promise.resolve([Float32Array.from(this.hb.subarray(0, len)), Float32Array.from(this.hf.subarray(0, len))]);
  }
}

function copy<A extends FloatArray>(p: CrosscoderParams<A>, make: (n: number) => A): CrosscoderParams<A> {
  const c = (a: A): A => {
    const out = make(a.length);
    out.set(a);
    return out;
  };
  return { d: p.d, D: p.D, encW: c(p.encW), encB: c(p.encB), decW: c(p.decW), decB: c(p.decB) };
}

/** The k best (score, index) pairs seen, by score then lower index; a min-heap on that order. */
class TopHeap {
  readonly score: Float64Array;
  readonly index: Int32Array;
  size = 0;
  constructor(readonly capacity: number) {
    this.score = new Float64Array(capacity);
    this.index = new Int32Array(capacity);
  }
  clear(): void {
    this.size = 0;
  }
  /** a is worse than b. */
  private worse(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    return sa < sb || (sa === sb && this.index[a]! > this.index[b]!);
  }
  offer(s: number, j: number): void {
    if (this.size < this.capacity) {
      let c = this.size++;
      this.score[c] = s;
      this.index[c] = j;
      while (c > 0) {
        const parent = (c - 1) >> 1;
        if (!this.worse(c, parent)) break;
        this.swap(c, parent);
        c = parent;
      }
      return;
    }
    const rs = this.score[0]!;
    if (s < rs || (s === rs && j > this.index[0]!)) return;
    this.score[0] = s;
    this.index[0] = j;
    let c = 0;
    for (;;) {
      const l = 2 * c + 1;
      const r = l + 1;
      let m = c;
      if (l < this.size && this.worse(l, m)) m = l;
      if (r < this.size && this.worse(r, m)) m = r;
      if (m === c) break;
      this.swap(c, m);
      c = m;
    }
  }
  private swap(a: number, b: number): void {
    const s = this.score[a]!;
    this.score[a] = this.score[b]!;
    this.score[b] = s;
    const i = this.index[a]!;
    this.index[a] = this.index[b]!;
    this.index[b] = i;
  }
}
