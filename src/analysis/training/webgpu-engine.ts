// The training engine on WebGPU: the same forward pass as the CPU engine (model.ts's forwardPass over
// TrainOps), with GpuOps recording each op's kernels and its backward on a GpuTape that mirrors tape.ts.
// Weights, gradients, AdamW moments, activations and the loss stay on the device between steps; a step
// reads back three floats (loss sum, gradient norm, clip factor), and syncWeights reads the trained
// parameters into the model's host arrays for export.ts.
import { getGpu, type GpuContext } from '../../gpu/device.ts';
import { CommandRecorder } from '../../gpu/recorder.ts';
import { packUniforms } from '../../kernels/common.ts';
import { flags } from '../../kernels/flags.ts';
import { planMatmul } from '../../kernels/matmul/matmul.ts';
import * as k from '../../kernels/training/training.ts';
import type { Activation, RopeParams } from '../../model/backend.ts';
import { forwardPass, type TrainableTransformer, type TrainOps } from './model.ts';
import { ropeTables, type AttentionShape } from './ops.ts';
import { widened, type Param, type Weight } from './tape.ts';
import { lrFactor, type OptimizerOptions, type TrainEngine } from './train.ts';

/** Usage of every training buffer (a function: GPUBufferUsage exists only once WebGPU is set up). */
const usage = (): GPUBufferUsageFlags => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** An activation or gradient: a GPU buffer holding `length` f32 values (the buffer may be larger). */
export interface GpuTensor {
  readonly buffer: GPUBuffer;
  readonly length: number;
}

/** A weight on the device: trainable when it has a gradient buffer. */
export interface GpuParam {
  readonly data: GpuTensor;
  readonly grad: GpuTensor | undefined;
}

/** LoRA factors of one linear weight on the device (see ops.ts's LoraPart). */
export interface GpuLoraPart {
  A: GpuParam;
  B: GpuParam;
  rank: number;
  rows: readonly [number, number];
  scaling: number;
}

/**
 * tape.ts on the device: backward steps recorded as closures that record kernels; gradients of
 * activations in a map keyed by the activation. Every buffer it hands out goes back to the pool on release().
 */
export class GpuTape {
  private readonly steps: (() => void)[] = [];
  private readonly grads = new Map<GpuTensor, GpuTensor>();
  private owned: GPUBuffer[] = [];

  constructor(readonly rec: CommandRecorder) {}

  /** An uninitialized tensor of `length` values. */
  alloc(length: number): GpuTensor {
    const buffer = this.rec.ctx.pool.acquire(Math.max(1, length) * 4, usage());
    this.owned.push(buffer);
    return { buffer, length };
  }

  zeros(length: number): GpuTensor {
    const t = this.alloc(length);
    k.recordFill(this.rec, t.buffer, length);
    return t;
  }

  upload(data: Float32Array | Int32Array): GpuTensor {
    const t = this.alloc(data.length);
    this.rec.ctx.device.queue.writeBuffer(t.buffer, 0, data);
    return t;
  }

  record(step: () => void): void {
    this.steps.push(step);
  }

  /** The gradient of an activation (zeros on first use): backward steps add into it. */
  grad(x: GpuTensor): GpuTensor {
    let g = this.grads.get(x);
    if (!g) {
      g = this.zeros(x.length);
      this.grads.set(x, g);
    }
    return g;
  }

  /** Adds g to the gradient of x; when x has none yet, g becomes it if `own`, else a copy does. */
  seed(x: GpuTensor, g: GpuTensor, own: boolean): void {
    const have = this.grads.get(x);
    if (have) {
      k.recordAxpy(this.rec, g.buffer, have.buffer, x.length, 1, true);
    } else if (own) {
      this.grads.set(x, g);
    } else {
      const c = this.alloc(x.length);
      k.recordAxpy(this.rec, g.buffer, c.buffer, x.length, 1, false);
      this.grads.set(x, c);
    }
  }

  /** The gradient of an op's output, removed from the tape (undefined when nothing flowed into it). */
  take(x: GpuTensor): GpuTensor | undefined {
    const g = this.grads.get(x);
    this.grads.delete(x);
    return g;
  }

  backward(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) {
      this.steps[i]!();
      this.steps.length = i;
    }
    this.grads.clear();
  }

  /** Returns every tensor this tape handed out to the pool, once the commands recorded so far are submitted. */
  release(): void {
    for (const b of this.owned) this.rec.releaseAfterSubmit(b);
    this.owned = [];
  }
}

/** The WebGPU implementation of TrainOps: each op records its kernels and its backward on a GpuTape. */
export class GpuOps implements TrainOps<GpuTensor> {
  private readonly rec: CommandRecorder;

  constructor(
    readonly tape: GpuTape,
    private readonly weights: ReadonlyMap<string, GpuParam>,
    private readonly lora: ReadonlyMap<string, GpuLoraPart> = new Map(),
  ) {
    this.rec = tape.rec;
  }

  private w(name: string): GpuParam {
    const p = this.weights.get(name);
    if (!p) throw new Error(`model has no weight "${name}"`);
    return p;
  }

  has(weight: string): boolean {
    return this.weights.has(weight);
  }

  embedding(name: string, ids: Int32Array, d: number): GpuTensor {
    const w = this.w(name);
    const vocab = w.data.length / d;
    for (const id of ids) if (id < 0 || id >= vocab) throw new RangeError(`token id ${id} is outside the vocabulary of ${vocab}`);
    const idBuf = this.tape.upload(ids);
    const out = this.tape.alloc(ids.length * d);
    k.recordEmbedding(this.rec, w.data.buffer, idBuf.buffer, out.buffer, ids.length, d);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g && w.grad) k.recordEmbeddingBack(this.rec, g.buffer, idBuf.buffer, w.grad.buffer, ids.length, d);
    });
    return out;
  }

  add(a: GpuTensor, b: GpuTensor): GpuTensor {
    const out = this.tape.alloc(a.length);
    k.recordAdd(this.rec, a.buffer, b.buffer, out.buffer, a.length);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (!g) return;
      this.tape.seed(b, g, false);
      this.tape.seed(a, g, true);
    });
    return out;
  }

  scale(x: GpuTensor, s: number): GpuTensor {
    const out = this.tape.alloc(x.length);
    k.recordAxpy(this.rec, x.buffer, out.buffer, x.length, s, false);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g) k.recordAxpy(this.rec, g.buffer, this.tape.grad(x).buffer, x.length, s, true);
    });
    return out;
  }

  softcap(x: GpuTensor, cap: number): GpuTensor {
    const out = this.tape.alloc(x.length);
    k.recordSoftcap(this.rec, x.buffer, out.buffer, x.length, cap);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g) k.recordSoftcapBack(this.rec, g.buffer, out.buffer, this.tape.grad(x).buffer, x.length, cap);
    });
    return out;
  }

  rmsNorm(x: GpuTensor, n: number, w: string, eps: number, addOne: boolean): GpuTensor {
    return this.norm(x, n, this.w(w), undefined, eps, addOne);
  }

  layerNorm(x: GpuTensor, n: number, w: string, b: string, eps: number): GpuTensor {
    return this.norm(x, n, this.w(w), this.w(b), eps, false);
  }

  private norm(x: GpuTensor, n: number, w: GpuParam, b: GpuParam | undefined, eps: number, addOne: boolean): GpuTensor {
    const rows = x.length / n;
    const shape: k.NormShape = { rows, n, eps, layer: b !== undefined, addOne };
    const out = this.tape.alloc(x.length);
    const stats = this.tape.alloc(2 * rows);
    k.recordNorm(this.rec, x.buffer, w.data.buffer, (b ?? w).data.buffer, out.buffer, stats.buffer, shape);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (!g) return;
      k.recordNormBack(this.rec, g.buffer, x.buffer, w.data.buffer, stats.buffer, this.tape.grad(x).buffer, shape);
      if (w.grad) k.recordNormWeightGrad(this.rec, g.buffer, x.buffer, stats.buffer, w.grad.buffer, rows, n);
      if (b?.grad) k.recordColumnSum(this.rec, g.buffer, b.grad.buffer, rows, n);
    });
    return out;
  }

  /** As ops.ts's linear: with LoRA the merged weight W + scaling · B[rows] A is formed once per pass. */
  linear(x: GpuTensor, K: number, name: string, N: number, biasName?: string): GpuTensor {
    const M = x.length / K;
    const w = this.w(name);
    const bias = biasName === undefined ? undefined : this.weights.get(biasName);
    const part = this.lora.get(name);
    let weight = w.data;
    if (part) {
      const r = part.rank;
      weight = this.tape.alloc(N * K);
      k.recordAxpy(this.rec, w.data.buffer, weight.buffer, N * K, 1, false);
      k.recordGemm(this.rec, part.B.data.buffer, part.A.data.buffer, weight.buffer, { m: N, n: K, k: r, offA: part.rows[0] * r, alpha: part.scaling, acc: true });
    }
    const y = this.tape.alloc(M * N);
    const ctx = this.rec.ctx;
    const plan = planMatmul({ m: M, n: N, k: K, transposeB: true, bias: bias !== undefined, bF16: false }, flags, ctx.info.features.shaderF16, ctx.device.limits.maxComputeWorkgroupsPerDimension);
    const io = bias ? [x.buffer, weight.buffer, bias.data.buffer, y.buffer] : [x.buffer, weight.buffer, y.buffer];
    this.rec.dispatch(plan.program, io, plan.grid, packUniforms([M, N, K]));
    this.tape.record(() => {
      const g = this.tape.take(y);
      if (!g) return;
      if (w.grad) k.recordGemm(this.rec, g.buffer, x.buffer, w.grad.buffer, { m: N, n: K, k: M, transA: true, acc: true });
      if (bias?.grad) k.recordColumnSum(this.rec, g.buffer, bias.grad.buffer, M, N);
      if (part) {
        const r = part.rank;
        const off = part.rows[0] * r;
        // dA = scaling · (g B)ᵀ x; dB[rows] = scaling · gᵀ (x Aᵀ).
        if (part.A.grad) {
          const gu = this.tape.alloc(M * r);
          k.recordGemm(this.rec, g.buffer, part.B.data.buffer, gu.buffer, { m: M, n: r, k: N, offB: off });
          k.recordGemm(this.rec, gu.buffer, x.buffer, part.A.grad.buffer, { m: r, n: K, k: M, transA: true, alpha: part.scaling, acc: true });
        }
        if (part.B.grad) {
          const u = this.tape.alloc(M * r);
          k.recordGemm(this.rec, x.buffer, part.A.data.buffer, u.buffer, { m: M, n: r, k: K, transB: true });
          k.recordGemm(this.rec, g.buffer, u.buffer, part.B.grad.buffer, { m: N, n: r, k: M, transA: true, alpha: part.scaling, acc: true, offC: off });
        }
      }
      k.recordGemm(this.rec, g.buffer, weight.buffer, this.tape.grad(x).buffer, { m: M, n: K, k: N, acc: true });
    });
    return y;
  }

  rope(x: GpuTensor, seq: number, heads: number, headDim: number, p: RopeParams): GpuTensor {
    const { cos, sin } = ropeTables(p, seq);
    const c = this.tape.upload(cos);
    const s = this.tape.upload(sin);
    const shape: k.RopeShape = { n: x.length, seq, headDim, half: p.rotaryDim / 2, width: heads * headDim };
    const out = this.tape.alloc(x.length);
    k.recordRope(this.rec, x.buffer, c.buffer, s.buffer, out.buffer, shape, false);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g) k.recordRope(this.rec, g.buffer, c.buffer, s.buffer, this.tape.grad(x).buffer, shape, true);
    });
    return out;
  }

  attention(q: GpuTensor, kt: GpuTensor, v: GpuTensor, a: AttentionShape): GpuTensor {
    const scores = a.batch * a.nHeads * a.seq * a.seq;
    const out = this.tape.alloc(a.batch * a.seq * a.nHeads * a.headDim);
    const probs = this.tape.alloc(scores);
    k.recordAttention(this.rec, q.buffer, kt.buffer, v.buffer, probs.buffer, out.buffer, a);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (!g) return;
      const dS = this.tape.alloc(scores);
      k.recordAttentionBack(this.rec, q.buffer, kt.buffer, v.buffer, probs.buffer, g.buffer, dS.buffer, this.tape.grad(q).buffer, this.tape.grad(kt).buffer, this.tape.grad(v).buffer, a);
    });
    return out;
  }

  activation(x: GpuTensor, act: Activation): GpuTensor {
    const out = this.tape.alloc(x.length);
    const slope = this.tape.alloc(x.length);
    k.recordActivation(this.rec, x.buffer, out.buffer, slope.buffer, x.length, act);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g) k.recordActivationBack(this.rec, g.buffer, slope.buffer, this.tape.grad(x).buffer, x.length);
    });
    return out;
  }

  gated(gate: GpuTensor, up: GpuTensor, act: Activation): GpuTensor {
    const n = gate.length;
    const out = this.tape.alloc(n);
    const a = this.tape.alloc(n);
    const slope = this.tape.alloc(n);
    k.recordGated(this.rec, gate.buffer, up.buffer, out.buffer, a.buffer, slope.buffer, n, act);
    this.tape.record(() => {
      const g = this.tape.take(out);
      if (g) k.recordGatedBack(this.rec, g.buffer, up.buffer, a.buffer, slope.buffer, this.tape.grad(gate).buffer, this.tape.grad(up).buffer, n);
    });
    return out;
  }

  /**
   * As ops.ts's crossEntropy: Σ over rows with a target ≥ 0 of −log softmax(logits)[target], added into
   * stats[index] on the device; the gradient fed back is `weight` times that of the sum.
   */
  crossEntropy(logits: GpuTensor, vocab: number, targets: Int32Array, weight: number, stats: GPUBuffer, index = 0): void {
    const rows = targets.length;
    const t = this.tape.upload(targets);
    const grad = this.tape.alloc(logits.length);
    const rowLoss = this.tape.alloc(rows);
    k.recordCrossEntropy(this.rec, logits.buffer, t.buffer, grad.buffer, rowLoss.buffer, rows, vocab, weight);
    k.recordSumInto(this.rec, rowLoss.buffer, stats, rows, index);
    this.tape.record(() => this.tape.seed(logits, grad, true));
  }
}

/** Bytes of a buffer for n f32 values: at least 16, a multiple of 16 (vec4 reads). */
function paramBytes(n: number): number {
  return Math.max(16, Math.ceil((n * 4) / 16) * 16);
}

/** Whether the WebGPU engine can train this model here, and if not why (a tensor past the binding limit). */
export function webGpuTrainingLimit(ctx: GpuContext, model: TrainableTransformer): string | undefined {
  const max = Math.min(ctx.device.limits.maxStorageBufferBindingSize, ctx.device.limits.maxBufferSize);
  for (const [name, p] of model.weights) {
    if (paramBytes(p.data.length) > max) return `weight "${name}" is ${paramBytes(p.data.length)} bytes, past this device's ${max}-byte storage binding limit`;
  }
  return undefined;
}

/** A TrainableTransformer's weights on the device, trained with its forward (forwardPass on GpuOps) and AdamW. */
export class WebGpuTrainEngine implements TrainEngine {
  readonly description: string;
  private readonly rec: CommandRecorder;
  private readonly weights = new Map<string, GpuParam>();
  private readonly lora = new Map<string, GpuLoraPart>();
  private readonly trainable: { name: string; host: Param; gpu: GpuParam; m: GPUBuffer; v: GPUBuffer }[] = [];
  private readonly created: GPUBuffer[] = [];
  /** [0] the loss summed over the step's tokens, [1] the gradient norm, [2] the clip factor. */
  private readonly stats: GPUBuffer;
  private readonly partials: GPUBuffer;
  private t = 0;

  static async create(model: TrainableTransformer, o: OptimizerOptions): Promise<WebGpuTrainEngine> {
    return new WebGpuTrainEngine(await getGpu(), model, o);
  }

  constructor(
    private readonly ctx: GpuContext,
    readonly model: TrainableTransformer,
    private readonly o: OptimizerOptions,
  ) {
    const limit = webGpuTrainingLimit(ctx, model);
    if (limit) throw new RangeError(`WebGPU training: ${limit}`);
    const a = ctx.info;
    this.description = `WebGPU (${[a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'unnamed adapter'})`;
    this.rec = new CommandRecorder(ctx, flags.dispatchesPerSubmit);
    const byParam = new Map<Weight, GpuParam>();
    const upload = (p: Weight): GpuParam => {
      let g = byParam.get(p);
      if (!g) {
        const data = this.buffer(p.data.length);
        // The engine computes in float32: a frozen 16-bit matrix is widened on its way up.
        ctx.device.queue.writeBuffer(data.buffer, 0, widened(p.data));
        g = { data, grad: p.grad ? this.buffer(p.grad.length) : undefined };
        byParam.set(p, g);
      }
      return g;
    };
    for (const [name, p] of model.weights) {
      this.weights.set(name, upload(p));
      const part = model.loraPart(name);
      if (part) this.lora.set(name, { A: upload(part.A), B: upload(part.B), rank: part.rank, rows: part.rows, scaling: part.scaling });
    }
    for (const [name, p] of model.params()) {
      const gpu = upload(p);
      this.trainable.push({ name, host: p, gpu, m: this.buffer(p.data.length).buffer, v: this.buffer(p.data.length).buffer });
    }
    this.stats = this.buffer(4).buffer;
    this.partials = this.buffer(Math.max(1, this.trainable.length) * k.NORM_GROUPS).buffer;
  }

  /** A zeroed buffer of its own (not pooled: parameters, gradients and moments live as long as the engine). */
  private buffer(length: number): GpuTensor {
    const buffer = this.ctx.device.createBuffer({ size: paramBytes(length), usage: usage(), label: 'training parameter' });
    this.created.push(buffer);
    return { buffer, length };
  }

  zeroGrad(): void {
    for (const p of this.trainable) k.recordFill(this.rec, p.gpu.grad!.buffer, p.gpu.grad!.length);
    k.recordFill(this.rec, this.stats, 4);
  }

  /** Records the forward and backward of next-token cross-entropy over ids [batch, seq] (see TrainableTransformer.lossAndGrad); the loss sum accumulates on the device. */
  lossAndGrad(ids: Int32Array, batch: number, seq: number, weight: number): { tokens: number } {
    this.ctx.assertAlive();
    const targets = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) for (let t = 0; t < seq; t++) targets[b * seq + t] = t < seq - 1 ? ids[b * seq + t + 1]! : -1;
    const tape = new GpuTape(this.rec);
    try {
      const ops = new GpuOps(tape, this.weights, this.lora);
      const logits = forwardPass(this.model.config, ops, ids, batch, seq);
      ops.crossEntropy(logits, this.model.config.vocab, targets, weight, this.stats);
      tape.backward();
    } finally {
      tape.release();
    }
    return { tokens: batch * (seq - 1) };
  }

  /** The loss summed since zeroGrad. */
  async readLoss(): Promise<number> {
    return new Float32Array(await this.rec.read(this.stats, 4))[0]!;
  }

  /** Logits [batch·seq, vocab] (no gradients). */
  async logits(ids: Int32Array, batch: number, seq: number): Promise<Float32Array> {
    const tape = new GpuTape(this.rec);
    try {
      const logits = forwardPass(this.model.config, new GpuOps(tape, this.weights, this.lora), ids, batch, seq);
      return new Float32Array(await this.rec.read(logits.buffer, logits.length * 4));
    } finally {
      tape.release();
      this.rec.flush();
    }
  }

  /** Gradients of the trainable parameters, by the names of model.params(). */
  async readGrads(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.trainable) out.set(p.name, new Float32Array(await this.rec.read(p.gpu.grad!.buffer, p.host.data.length * 4)));
    return out;
  }

  async step(ids: Int32Array, batch: number, seq: number, microBatch = batch): Promise<{ loss: number; gradNorm: number; lr: number }> {
    this.zeroGrad();
    const total = batch * (seq - 1);
    for (let b0 = 0; b0 < batch; b0 += microBatch) {
      const rows = Math.min(microBatch, batch - b0);
      this.lossAndGrad(ids.subarray(b0 * seq, (b0 + rows) * seq), rows, seq, 1 / total);
    }
    const o = this.o;
    this.trainable.forEach((p, i) => k.recordSumSquares(this.rec, p.gpu.grad!.buffer, this.partials, p.host.data.length, i));
    k.recordGradNorm(this.rec, this.partials, this.stats, this.trainable.length, o.maxGradNorm);
    const lr = o.lr * lrFactor(o, this.t);
    this.t++;
    const s: k.AdamwStep = { beta1: o.beta1, beta2: o.beta2, eps: o.eps, stepSize: lr / (1 - o.beta1 ** this.t), bc2: Math.sqrt(1 - o.beta2 ** this.t), decay: 1 - lr * o.weightDecay };
    for (const p of this.trainable) k.recordAdamw(this.rec, p.gpu.data.buffer, p.gpu.grad!.buffer, p.m, p.v, this.stats, p.host.data.length, s);
    const stats = new Float32Array(await this.rec.read(this.stats, 12));
    return { loss: stats[0]! / total, gradNorm: stats[1]!, lr };
  }

  async syncWeights(): Promise<void> {
    for (const p of this.trainable) p.host.data.set(new Float32Array(await this.rec.read(p.gpu.data.buffer, p.host.data.length * 4)));
  }

  dispose(): void {
    this.rec.flush();
    for (const b of this.created) b.destroy();
    this.created.length = 0;
  }
}
