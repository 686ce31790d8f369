// The crosscoder engine on WebGPU. Parameters, Adam moments, gradients, the batch, the codes and
// every intermediate stay on the device across steps; a step reads back only the selection's
// outcome (kept count, smallest kept score, fired latents) and eight loss sums.
//
// Internally both models share a row: the batch is [n, 2d] with row t = (x^base_t, x^ft_t), and
// W_enc, W_dec are [D, 2d] with row j = (W_enc^base[:, j], W_enc^ft[:, j]) and (d_j^base, d_j^ft),
// so the encoder is one matmul A·Bᵀ (the shared matmul kernel) and one latent's decoder vectors are
// contiguous. setParams/readParams/readGrads convert from and to model.ts's [2, D, d] layout.
import { getGpu, type GpuContext } from '../../gpu/device.ts';
import { CommandRecorder } from '../../gpu/recorder.ts';
import { grid, packUniforms } from '../../kernels/common.ts';
import {
  adamProgram,
  auxProgram,
  clipScaleProgram,
  columnsProgram,
  compactBlocks,
  decodeProgram,
  entryGradProgram,
  fillProgram,
  finalizeProgram,
  latentGradProgram,
  normsProgram,
  readSelectResult,
  recordCount,
  recordCutAbove,
  recordEmit,
  recordTopKCut,
  residualProgram,
  LATENT_GRAD_CHUNK,
  STATE,
  stateWords,
  STATS,
  STRIDE_GROUPS,
  strideGroups,
  sumSquaresProgram,
  type SelectBuffers,
  type SelectShape,
} from '../../kernels/crosscoder/crosscoder.ts';
import { flags } from '../../kernels/flags.ts';
import { planMatmul } from '../../kernels/matmul/matmul.ts';
import type { AdamOptions, CrosscoderEngine, LossOptions, LossParts, SelectInfo } from './engine.ts';
import type { CodeNormalization, CrosscoderParams, FloatArray } from './model.ts';
import type { SparseCode } from './select.ts';

export interface WebGpuEngineOptions {
  readonly codeNormalization?: CodeNormalization;
}

const ENTRY_BYTES = 16;
const OBJECTIVES = { l2: 0, mse: 1, l1: 2 } as const;

export async function createWebGpuEngine(d: number, D: number, opts: WebGpuEngineOptions = {}): Promise<WebGpuCrosscoderEngine> {
  if (!(Number.isInteger(d) && d > 0 && Number.isInteger(D) && D > 0)) throw new Error(`WebGPU crosscoder engine: d and D must be positive integers (got d=${d}, D=${D})`);
  return new WebGpuCrosscoderEngine(await getGpu(), d, D, opts.codeNormalization ?? 'crosscoder');
}

type ParamKey = 'encW' | 'encB' | 'decW' | 'decB';
const PARAM_KEYS: readonly ParamKey[] = ['encW', 'encB', 'decW', 'decB'];
type ParamBuffers = Record<ParamKey, GPUBuffer>;

export class WebGpuCrosscoderEngine implements CrosscoderEngine {
  private readonly rec: CommandRecorder;
  private readonly sizes: Record<ParamKey, number>;
  private readonly p: ParamBuffers;
  private readonly g: ParamBuffers;
  private readonly m1: ParamBuffers;
  private readonly m2: ParamBuffers;
  private readonly wn: GPUBuffer;
  private readonly state: GPUBuffer;
  private readonly deadList: GPUBuffer;
  private readonly partials: GPUBuffer;
  /** Holds the gradient-clipping factor at STATS.clipScale. */
  private readonly scalars: GPUBuffer;
  private adamStep = 0;
  private n = 0;
  private xs: GPUBuffer | null = null;
  private pre: GPUBuffer | null = null;
  private counts: GPUBuffer | null = null;
  private lists: GPUBuffer | null = null;
  private stats: GPUBuffer | null = null;
  private entries: GPUBuffer | null = null;
  /** Entry slots before the auxiliary region, and slots of that region. */
  private mainCapacity = 0;
  private auxCapacity = 0;
  private kept = 0;
  private selected = false;
  private decoded = false;
  private disposed = false;

  constructor(
    private readonly ctx: GpuContext,
    readonly d: number,
    readonly D: number,
    readonly codeNormalization: CodeNormalization,
  ) {
    this.rec = new CommandRecorder(ctx, flags.dispatchesPerSubmit);
    this.sizes = { encW: 2 * D * d, encB: D, decW: 2 * D * d, decB: 2 * d };
    const set = (): ParamBuffers => ({
      encW: this.alloc(this.sizes.encW),
      encB: this.alloc(this.sizes.encB),
      decW: this.alloc(this.sizes.decW),
      decB: this.alloc(this.sizes.decB),
    });
    this.p = set();
    this.g = set();
    this.m1 = set();
    this.m2 = set();
    this.wn = this.alloc(3 * D);
    this.state = this.alloc(stateWords(D));
    this.deadList = this.alloc(D);
    this.partials = this.alloc(PARAM_KEYS.length * STRIDE_GROUPS);
    this.scalars = this.alloc(STATS.tokens);
    for (const s of [this.p, this.g, this.m1, this.m2]) for (const k of PARAM_KEYS) this.fill(s[k], this.sizes[k]);
  }

  /** Region offsets (in 32-bit words) for the current batch size: in xs [4, n, 2d], lists and stats (see crosscoder.wgsl.ts). */
  private get layout() {
    const { n, d, D } = this;
    const rows = n * 2 * d;
    const W = Math.ceil(n / 32);
    return {
      h: rows,
      g: 2 * rows,
      ha: 3 * rows,
      W,
      auxCount: n + 1,
      bits: 2 * n + 1,
      auxBits: 2 * n + 1 + D * W,
      listWords: 2 * n + 1 + 2 * D * W,
      columns: STATS.tokens + 4 * n,
      statsWords: STATS.tokens + 4 * n + 4 * d,
    };
  }

  setParams(p: CrosscoderParams<FloatArray>): void {
    if (p.d !== this.d || p.D !== this.D) throw new Error(`WebGPU crosscoder engine: parameters are d=${p.d}, D=${p.D}; the engine is d=${this.d}, D=${this.D}`);
    for (const k of PARAM_KEYS) {
      if (p[k].length !== this.sizes[k]) throw new Error(`WebGPU crosscoder engine: ${k} has ${p[k].length} values, expected ${this.sizes[k]}`);
    }
    this.alive();
    this.rec.flush();
    const q = this.ctx.device.queue;
    q.writeBuffer(this.p.encW, 0, toRows(p.encW, this.D, this.d));
    q.writeBuffer(this.p.encB, 0, Float32Array.from(p.encB));
    q.writeBuffer(this.p.decW, 0, toRows(p.decW, this.D, this.d));
    q.writeBuffer(this.p.decB, 0, Float32Array.from(p.decB));
    for (const s of [this.m1, this.m2]) for (const k of PARAM_KEYS) this.fill(s[k], this.sizes[k]);
    this.adamStep = 0;
  }

  setDecoderBias(m: 0 | 1, bias: FloatArray): void {
    if (bias.length < this.d) throw new Error(`WebGPU crosscoder engine: decoder bias has ${bias.length} values, expected ${this.d}`);
    this.alive();
    this.rec.flush();
    this.ctx.device.queue.writeBuffer(this.p.decB, m * this.d * 4, Float32Array.from(bias.subarray(0, this.d)));
  }

  readParams(): Promise<CrosscoderParams<FloatArray>> {
    return this.readSet(this.p);
  }

  readGrads(): Promise<CrosscoderParams<FloatArray>> {
    return this.readSet(this.g);
  }

  setBatch(base: FloatArray, ft: FloatArray, n: number): void {
    const { d } = this;
    if (!(Number.isInteger(n) && n > 0)) throw new Error(`WebGPU crosscoder engine: a batch needs a positive whole number of tokens (got ${n})`);
    if (base.length < n * d || ft.length < n * d) throw new Error(`WebGPU crosscoder engine: expected ${n}×${d} values per model, got ${base.length} and ${ft.length}`);
    if (n * this.D >= 2 ** 32) throw new Error(`WebGPU crosscoder engine: ${n} tokens × ${this.D} latents exceed 32-bit indexing`);
    this.alive();
    this.rec.flush();
    if (n !== this.n) this.resize(n);
    const rows = new Float32Array(n * 2 * d);
    for (let t = 0; t < n; t++) {
      rows.set(base.subarray(t * d, t * d + d), t * 2 * d);
      rows.set(ft.subarray(t * d, t * d + d), t * 2 * d + d);
    }
    this.ctx.device.queue.writeBuffer(this.xs!, 0, rows);
    this.selected = false;
    this.decoded = false;
  }

  encode(): void {
    const { n, d, D } = this;
    const xs = this.batch('encode');
    const plan = planMatmul({ m: n, n: D, k: 2 * d, transposeB: true, bias: true, bF16: false }, flags, false, this.maxDim);
    this.rec.dispatch(plan.program, [xs, this.p.encW, this.p.encB, this.pre!], plan.grid, packUniforms([n, D, 2 * d]));
  }

  async selectTopK(kTotal: number, hint: number): Promise<SelectInfo> {
    this.batch('selectTopK');
    const k = Math.max(0, Math.min(Math.floor(kTotal), this.n * this.D));
    this.ensureEntries(Math.max(k, 1), this.auxCapacity, false);
    this.recordNorms();
    recordTopKCut(this.rec, this.selectBuffers(), this.selectShape(), k, hint);
    recordCount(this.rec, this.selectBuffers(), this.selectShape());
    recordEmit(this.rec, this.selectBuffers(), this.selectShape());
    return this.finishSelect();
  }

  async selectAbove(theta: number): Promise<SelectInfo> {
    this.batch('selectAbove');
    this.recordNorms();
    recordCutAbove(this.rec, this.selectBuffers(), this.selectShape(), theta);
    recordCount(this.rec, this.selectBuffers(), this.selectShape());
    const head = new Uint32Array(await this.rec.read(this.state, STATE.hist * 4));
    this.ensureEntries(Math.max(head[STATE.kept]!, 1), this.auxCapacity, false);
    recordEmit(this.rec, this.selectBuffers(), this.selectShape());
    return this.finishSelect();
  }

  selectPositive(): Promise<SelectInfo> {
    return this.selectAbove(-1);
  }

  decode(): void {
    if (!this.selected) throw new Error('WebGPU crosscoder engine: decode needs a selection first');
    const { n, d } = this;
    this.rec.dispatch(decodeProgram, [this.lists!, this.entries!, this.p.decW, this.p.decB, this.xs!], this.grid(n), packUniforms([n, 2 * d, this.layout.h]));
    this.decoded = true;
  }

  async backward(opts: LossOptions): Promise<LossParts> {
    if (!this.decoded) throw new Error('WebGPU crosscoder engine: backward needs encode, a selection and decode first');
    if (!(opts.objective in OBJECTIVES)) throw new Error(`WebGPU crosscoder engine: unknown objective "${String(opts.objective)}"`);
    const { n, d, D } = this;
    const L = this.layout;
    let deadCount = 0;
    if (opts.auxAlpha > 0 && opts.dead) {
      const list = new Uint32Array(D);
      for (let j = 0; j < D; j++) if (opts.dead[j]) list[deadCount++] = j;
      if (deadCount > 0) {
        this.rec.flush();
        this.ctx.device.queue.writeBuffer(this.deadList, 0, list, 0, deadCount);
      }
    }
    const kAux = Math.min(Math.floor(opts.auxK), deadCount);
    const aux = opts.auxAlpha > 0 && kAux > 0;
    if (aux) this.ensureEntries(this.mainCapacity, n * kAux, true);
    const xs = this.xs!;
    const lists = this.lists!;
    const stats = this.stats!;
    const entries = this.entries!;

    this.rec.dispatch(residualProgram, [xs, lists, entries, this.wn, stats], this.grid(n), packUniforms([n, d, OBJECTIVES[opts.objective], L.h, L.g]));
    this.rec.dispatch(columnsProgram, [xs, stats, this.g.decB], this.grid(Math.ceil((2 * d) / 64)), packUniforms([n, 2 * d, L.h, L.g, L.columns]));
    this.rec.dispatch(finalizeProgram('columns'), [stats], [1, 1, 1], packUniforms([2 * d, L.columns]));
    if (aux) {
      this.fill(lists, D * L.W, L.auxBits);
      this.rec.dispatch(
        auxProgram,
        [this.pre!, this.wn, this.deadList, xs, this.p.decW, entries, lists, stats],
        this.grid(n),
        packUniforms([n, D, d, deadCount, kAux, this.mainCapacity, L.h, L.ha, L.W, L.auxBits, L.auxCount], [opts.auxAlpha]),
      );
    }
    const l1 = opts.objective === 'l1';
    if (this.kept > 0) {
      this.rec.dispatch(
        entryGradProgram(false),
        [this.p.decW, xs, lists, this.wn, entries],
        this.grid(Math.ceil(this.kept / 256)),
        packUniforms([this.kept, 2 * d, 1, 0, L.auxCount, L.g], [l1 ? opts.l1Lambda / n : 0]),
      );
    }
    if (aux) {
      this.rec.dispatch(
        entryGradProgram(true),
        [this.p.decW, xs, lists, this.wn, entries],
        this.grid(Math.ceil((n * kAux) / 256)),
        packUniforms([n * kAux, 2 * d, kAux, this.mainCapacity, L.auxCount, L.ha], [0]),
      );
    }
    const l1Decoder = l1 && opts.l1Lambda !== 0 && this.codeNormalization !== 'none' ? this.codeNormalization : 'off';
    const chunks = Math.ceil((2 * d) / LATENT_GRAD_CHUNK);
    this.rec.dispatch(
      latentGradProgram(l1Decoder),
      [xs, this.p.decW, this.wn, lists, entries, this.g.encW, this.g.encB, this.g.decW],
      this.grid(D * chunks),
      packUniforms([D, d, L.W, chunks, L.g, L.ha, this.mainCapacity, Math.max(kAux, 1), L.auxCount, L.bits, L.auxBits, aux ? 1 : 0], [opts.l1Lambda / n]),
    );
    this.rec.dispatch(finalizeProgram('tokens'), [stats], [1, 1, 1], packUniforms([n, STATS.tokens]));
    const s = new Float32Array(await this.rec.read(stats, 8 * 4));
    const sq = s[STATS.sq]!;
    const varX = s[STATS.varX]!;
    const eVar = s[STATS.varE]! / n;
    const mse = sq / (2 * n);
    const l2 = s[STATS.l2]! / (2 * n);
    const l1Mean = s[STATS.l1]! / n;
    const auxk = aux && eVar > 0 ? s[STATS.aux]! / n / eVar : 0;
    const objective = opts.objective === 'l2' ? l2 : opts.objective === 'mse' ? mse : sq / n + opts.l1Lambda * l1Mean;
    return { loss: objective + opts.auxAlpha * auxk, l2, mse, auxk, l1: l1Mean, fvu: varX > 0 ? sq / varX : 0 };
  }

  adam(opts: AdamOptions): void {
    this.alive();
    const clip = opts.clipGradNorm > 0;
    if (clip) {
      this.fill(this.partials, PARAM_KEYS.length * STRIDE_GROUPS);
      PARAM_KEYS.forEach((k, i) => {
        this.rec.dispatch(sumSquaresProgram, [this.g[k], this.partials], [strideGroups(this.sizes[k]), 1, 1], packUniforms([this.sizes[k], i * STRIDE_GROUPS]));
      });
      this.rec.dispatch(clipScaleProgram, [this.partials, this.scalars], [1, 1, 1], packUniforms([PARAM_KEYS.length * STRIDE_GROUPS], [opts.clipGradNorm]));
    }
    this.adamStep++;
    const { beta1, beta2, eps, lr } = opts;
    const stepSize = lr / (1 - beta1 ** this.adamStep);
    const bc2 = Math.sqrt(1 - beta2 ** this.adamStep);
    for (const k of PARAM_KEYS) {
      const len = this.sizes[k];
      this.rec.dispatch(
        adamProgram(clip),
        [this.p[k], this.g[k], this.m1[k], this.m2[k], this.scalars],
        this.grid(Math.ceil(len / 256)),
        packUniforms([len], [beta1, beta2, 1 - beta1, 1 - beta2, eps, stepSize, bc2]),
      );
    }
  }

  async readCode(): Promise<SparseCode> {
    const { n, D } = this;
    if (!this.selected) return { rows: n, cols: D, rowPtr: new Int32Array(n + 1), index: new Int32Array(0), value: new Float32Array(0) };
    const rowPtr = new Int32Array(await this.rec.read(this.lists!, (n + 1) * 4));
    const count = this.kept;
    const raw = count > 0 ? await this.rec.read(this.entries!, count * ENTRY_BYTES) : new ArrayBuffer(0);
    const u = new Uint32Array(raw);
    const f = new Float32Array(raw);
    const index = new Int32Array(count);
    const value = new Float32Array(count);
    for (let q = 0; q < count; q++) {
      index[q] = u[4 * q + 1]!;
      value[q] = f[4 * q + 2]!;
    }
    return { rows: n, cols: D, rowPtr, index, value };
  }

  async readReconstruction(): Promise<[Float32Array, Float32Array]> {
    const { n, d } = this;
    const rows = new Float32Array(await this.rec.read(this.batch('readReconstruction'), n * 2 * d * 4, this.layout.h * 4));
    const hb = new Float32Array(n * d);
    const hf = new Float32Array(n * d);
    for (let t = 0; t < n; t++) {
      hb.set(rows.subarray(t * 2 * d, t * 2 * d + d), t * d);
      hf.set(rows.subarray(t * 2 * d + d, t * 2 * d + 2 * d), t * d);
    }
    return [hb, hf];
  }

  /** f = ReLU(pre) of the current batch, [n, D] (for tests and inspection). */
  async readActivations(): Promise<Float32Array> {
    const pre = new Float32Array(await this.rec.read(this.pre ?? this.batch('readActivations'), this.n * this.D * 4));
    return pre.map((v) => (v > 0 ? v : 0));
  }

  /** The score weights w_j of the last selection (for tests and inspection). */
  async readScoreWeights(): Promise<Float32Array> {
    return new Float32Array(await this.rec.read(this.wn, this.D * 4));
  }

  /** Returns every buffer to the pool; the engine is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const buffers = [this.wn, this.state, this.deadList, this.partials, this.scalars, this.xs, this.pre, this.counts, this.lists, this.stats, this.entries];
    for (const s of [this.p, this.g, this.m1, this.m2]) for (const k of PARAM_KEYS) buffers.push(s[k]);
    for (const b of buffers) if (b) this.rec.releaseAfterSubmit(b);
    this.rec.flush();
  }

  private async finishSelect(): Promise<SelectInfo> {
    const r = await readSelectResult(this.rec, this.state, this.D);
    this.kept = r.kept;
    this.selected = true;
    this.decoded = false;
    return r;
  }

  private recordNorms(): void {
    this.rec.dispatch(normsProgram(this.codeNormalization), [this.p.decW, this.wn], this.grid(this.D), packUniforms([this.D, this.d]));
  }

  private selectBuffers(): SelectBuffers {
    return { pre: this.pre!, wn: this.wn, state: this.state, counts: this.counts!, lists: this.lists!, entries: this.entries! };
  }

  private selectShape(): SelectShape {
    return { n: this.n, D: this.D, W: this.layout.W, bitsOffset: this.layout.bits };
  }

  /** Grows the entry buffer to hold `main` kept entries followed by `aux` auxiliary slots, copying the kept ones when asked. */
  private ensureEntries(main: number, aux: number, preserve: boolean): void {
    if (this.entries && main <= this.mainCapacity && aux <= this.auxCapacity) return;
    const mainCapacity = Math.max(main, this.mainCapacity);
    const auxCapacity = Math.max(aux, this.auxCapacity);
    const next = this.ctx.pool.acquire(Math.max(1, mainCapacity + auxCapacity) * ENTRY_BYTES, usage());
    if (this.entries) {
      if (preserve && this.kept > 0) this.rec.copy(this.entries, 0, next, 0, this.kept * ENTRY_BYTES);
      this.rec.releaseAfterSubmit(this.entries);
    }
    this.entries = next;
    this.mainCapacity = mainCapacity;
    this.auxCapacity = auxCapacity;
  }

  private resize(n: number): void {
    for (const b of [this.xs, this.pre, this.counts, this.lists, this.stats]) if (b) this.rec.releaseAfterSubmit(b);
    this.rec.flush();
    this.n = n;
    const L = this.layout;
    this.xs = this.alloc(4 * n * 2 * this.d);
    this.pre = this.alloc(n * this.D);
    this.counts = this.alloc(2 * compactBlocks(n, this.D));
    this.lists = this.alloc(L.listWords);
    this.stats = this.alloc(L.statsWords);
  }

  private async readSet(s: ParamBuffers): Promise<CrosscoderParams<FloatArray>> {
    const { d, D } = this;
    const read = async (k: ParamKey) => new Float32Array(await this.rec.read(s[k], this.sizes[k] * 4));
    return { d, D, encW: fromRows(await read('encW'), D, d), encB: await read('encB'), decW: fromRows(await read('decW'), D, d), decB: await read('decB') };
  }

  private batch(what: string): GPUBuffer {
    this.alive();
    if (!this.xs || this.n === 0) throw new Error(`WebGPU crosscoder engine: ${what} needs a batch (setBatch) first`);
    return this.xs;
  }

  private alive(): void {
    if (this.disposed) throw new Error('WebGPU crosscoder engine: used after dispose()');
  }

  private alloc(words: number): GPUBuffer {
    return this.ctx.pool.acquire(Math.max(1, words) * 4, usage());
  }

  private fill(buffer: GPUBuffer, words: number, offset = 0): void {
    this.rec.dispatch(fillProgram, [buffer], this.grid(Math.ceil(words / 256)), packUniforms([words, 0, offset]));
  }

  private grid(groups: number): [number, number, number] {
    return grid(groups, this.maxDim);
  }

  private get maxDim(): number {
    return this.ctx.device.limits.maxComputeWorkgroupsPerDimension;
  }
}

// GPUBufferUsage exists only once WebGPU is installed (in Node, by useDawn()).
function usage(): GPUBufferUsageFlags {
  return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
}

/** [2, D, d] (model-major) → [D, 2d] (latent rows holding both models). */
function toRows(a: FloatArray, D: number, d: number): Float32Array {
  const out = new Float32Array(2 * D * d);
  for (let m = 0; m < 2; m++) for (let j = 0; j < D; j++) out.set(a.subarray((m * D + j) * d, (m * D + j + 1) * d), (2 * j + m) * d);
  return out;
}

function fromRows(a: Float32Array, D: number, d: number): Float32Array {
  const out = new Float32Array(2 * D * d);
  for (let m = 0; m < 2; m++) for (let j = 0; j < D; j++) out.set(a.subarray((2 * j + m) * d, (2 * j + m + 1) * d), (m * D + j) * d);
  return out;
}
