// A transformer whose weights are host Float32Arrays and whose forward pass records its backward on a
// Tape: the forward of src/model/transformer.ts (same canonical weights, same order of ops) for
// next-token cross-entropy, with gradients for the full model or for LoRA factors only. The forward is
// written once against TrainOps; CpuOps runs it here, the WebGPU engine (webgpu-engine.ts) on the GPU.
import type { Activation, RopeParams } from '../../model/backend.ts';
import type { ModelConfig } from '../../model/config.ts';
import { describeSource, type WeightSource } from '../../model/convert.ts';
import type { Transformer } from '../../model/transformer.ts';
import * as op from './ops.ts';
import type { LoraPart } from './ops.ts';
import { BufferPool, Tape, widened, type Param, type Weight } from './tape.ts';
import { Rng } from './rng.ts';

/** LoRA as PEFT configures it. */
export interface LoraOptions {
  rank: number;
  alpha: number;
  /** scaling = alpha / sqrt(rank) instead of alpha / rank. */
  rslora: boolean;
  /** PEFT target_modules: module names matched on their last components ("q_proj" matches "model.layers.0.self_attn.q_proj"). */
  targetModules: readonly string[];
}

/** One adapted checkpoint module: A [r, in], B [out, r] (out of the whole module when it is fused). */
export interface LoraModule {
  /** Module path as in the checkpoint and PEFT ("model.layers.0.self_attn.q_proj"). */
  module: string;
  nIn: number;
  nOut: number;
  A: Param;
  B: Param;
}

export type Trainable = { kind: 'full' } | { kind: 'lora'; lora: LoraOptions };

/** Every linear layer's canonical weight; their checkpoint modules are what LoRA can target. */
const LINEAR = /^blocks\.\d+\.(attn\.W_[QKVO]|mlp\.W_(gate|in|out))$/;
const EMBEDDINGS = new Set(['embed.W_E', 'unembed.W_U', 'pos_embed.W_pos']);

/** A matrix the GEMM or the embedding reads: frozen, it may stay in 16-bit storage. */
function isMatrix(name: string): boolean {
  return LINEAR.test(name) || EMBEDDINGS.has(name);
}

/** PEFT's default targets per architecture (all attention and MLP projections). */
export function defaultTargetModules(config: ModelConfig): string[] {
  if (config.architecture === 'gpt2') return ['c_attn', 'c_proj', 'c_fc'];
  if (config.architecture === 'phi3') return ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'];
  return ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

function matchesTarget(module: string, targets: readonly string[]): boolean {
  return targets.some((t) => module === t || module.endsWith(`.${t}`));
}

function moduleOf(source: WeightSource): string {
  return source.name.replace(/\.weight$/, '');
}

export class TrainableTransformer {
  /**
   * Canonical name → weight; trainable weights have gradient buffers (full fine-tuning). With LoRA the
   * frozen matrices keep a 16-bit model's storage (half the memory of float32, and no copy).
   */
  readonly weights: ReadonlyMap<string, Weight>;
  /** LoRA modules by module path (empty for full fine-tuning). */
  readonly lora: ReadonlyMap<string, LoraModule>;
  private readonly parts = new Map<string, LoraPart>();
  /** The activations and gradients of one training step, recycled by the next (see Tape). */
  private readonly pool = new BufferPool();

  constructor(
    readonly config: ModelConfig,
    weights: ReadonlyMap<string, Float32Array | Uint16Array>,
    readonly sources: ReadonlyMap<string, WeightSource>,
    readonly trainable: Trainable,
    seed = 0,
  ) {
    const full = trainable.kind === 'full';
    const ws = new Map<string, Weight>();
    for (const [name, data] of weights) {
      if (full) ws.set(name, { data: widened(data), grad: new Float32Array(data.length) });
      else ws.set(name, { data: isMatrix(name) ? data : widened(data), grad: undefined });
    }
    this.weights = ws;
    const lora = new Map<string, LoraModule>();
    if (trainable.kind === 'lora') {
      const o = trainable.lora;
      if (!(Number.isInteger(o.rank) && o.rank >= 1)) throw new RangeError(`LoRA rank must be a positive integer, got ${o.rank}`);
      const scaling = o.rslora ? o.alpha / Math.sqrt(o.rank) : o.alpha / o.rank;
      const targeted = [...weights.keys()].filter((n) => LINEAR.test(n) && matchesTarget(moduleOf(this.source(n)), o.targetModules));
      if (targeted.length === 0) throw new RangeError(`no linear module matches the LoRA target modules ${o.targetModules.join(', ')}`);
      // Parts of a fused module (GPT-2's c_attn, Phi-3's qkv_proj) share one A and split B by rows.
      const extent = new Map<string, { nIn: number; nOut: number }>();
      for (const n of targeted) {
        const s = this.source(n);
        const [rows, nIn] = this.shapeOf(n);
        const end = s.rows ? s.rows[1] : rows;
        const e = extent.get(moduleOf(s));
        extent.set(moduleOf(s), { nIn, nOut: Math.max(end, e?.nOut ?? 0) });
      }
      const rng = new Rng(seed);
      for (const [module, { nIn, nOut }] of extent) {
        // PEFT's init: A kaiming-uniform (a = √5, so bound 1/√in), B zero.
        const A = new Float32Array(o.rank * nIn);
        const bound = 1 / Math.sqrt(nIn);
        for (let i = 0; i < A.length; i++) A[i] = (2 * rng.next() - 1) * bound;
        const m: LoraModule = {
          module,
          nIn,
          nOut,
          A: { data: A, grad: new Float32Array(A.length) },
          B: { data: new Float32Array(nOut * o.rank), grad: new Float32Array(nOut * o.rank) },
        };
        lora.set(module, m);
      }
      for (const n of targeted) {
        const s = this.source(n);
        const m = lora.get(moduleOf(s))!;
        this.parts.set(n, { A: m.A, B: m.B, rank: o.rank, rows: s.rows ? [s.rows[0], s.rows[1]] : [0, m.nOut], scaling });
      }
    }
    this.lora = lora;
  }

  /** Reads a loaded model's weights back to the host. */
  static async fromTransformer(model: Transformer, trainable: Trainable, seed = 0): Promise<TrainableTransformer> {
    const weights = new Map<string, Float32Array | Uint16Array>();
    const be = model.backend;
    for (const [name, t] of model.weights) {
      // LoRA leaves the base matrices frozen: on the CPU backend they are used in place, at their stored width.
      const data = trainable.kind === 'lora' && isMatrix(name) && be.readStored ? be.readStored(t) : await be.read(t);
      if (data instanceof Int32Array) throw new Error(`weight "${name}" is not a float tensor`);
      weights.set(name, data);
    }
    return new TrainableTransformer(model.config, weights, model.sources, trainable, seed);
  }

  /** Trainable tensors by name: canonical weights (full) or "<module>.lora_A" / "<module>.lora_B". */
  params(): Map<string, Param> {
    const out = new Map<string, Param>();
    if (this.trainable.kind === 'full') {
      // Fully fine-tuned weights are float32 with gradients (the constructor widened them).
      for (const [n, p] of this.weights) out.set(n, p as Param);
    } else {
      for (const m of this.lora.values()) {
        out.set(`${m.module}.lora_A`, m.A);
        out.set(`${m.module}.lora_B`, m.B);
      }
    }
    return out;
  }

  zeroGrad(): void {
    for (const p of this.params().values()) p.grad!.fill(0);
  }

  /** LoRA scaling (alpha / r or alpha / √r); 0 for full fine-tuning. */
  get loraScaling(): number {
    const first = this.parts.values().next();
    return first.done ? 0 : first.value.scaling;
  }

  /**
   * Next-token cross-entropy over ids [batch, seq] (positions 0..seq-2 predict the next token), gradients
   * added into the trainable parameters, times `weight`. Returns the summed loss and the targets counted.
   */
  lossAndGrad(ids: Int32Array, batch: number, seq: number, weight: number): { loss: number; tokens: number } {
    const targets = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) for (let t = 0; t < seq; t++) targets[b * seq + t] = t < seq - 1 ? ids[b * seq + t + 1]! : -1;
    const tape = new Tape(this.pool);
    const logits = forwardPass(this.config, new CpuOps(tape, this.weights, this.parts), ids, batch, seq);
    const loss = op.crossEntropy(tape, logits, this.config.vocab, targets, weight);
    tape.backward();
    return { loss, tokens: batch * (seq - 1) };
  }

  /** Logits [batch·seq, vocab] (no gradients). */
  logits(ids: Int32Array, batch: number, seq: number): Float32Array {
    return forwardPass(this.config, new CpuOps(new Tape(), this.weights, this.parts), ids, batch, seq);
  }

  /** The LoRA factors a canonical linear weight is adapted with, if any. */
  loraPart(weight: string): LoraPart | undefined {
    return this.parts.get(weight);
  }

  private source(name: string): WeightSource {
    const s = this.sources.get(name);
    if (!s) throw new Error(`no checkpoint source for weight "${name}"`);
    return s;
  }

  private shapeOf(name: string): [number, number] {
    const c = this.config;
    const q = c.nHeads * c.headDim;
    const kv = c.nKvHeads * c.headDim;
    const kind = name.slice(name.indexOf('.', 7) + 1);
    const shapes: Record<string, [number, number]> = {
      'attn.W_Q': [q, c.dModel],
      'attn.W_K': [kv, c.dModel],
      'attn.W_V': [kv, c.dModel],
      'attn.W_O': [c.dModel, q],
      'mlp.W_gate': [c.dMlp, c.dModel],
      'mlp.W_in': [c.dMlp, c.dModel],
      'mlp.W_out': [c.dModel, c.dMlp],
    };
    const s = shapes[kind];
    if (!s) throw new Error(`"${name}" is not a linear weight (${describeSource(this.source(name))})`);
    return s;
  }
}

/**
 * What the forward pass is written against: weights by canonical name, activations of type T. The CPU
 * engine implements it with ops.ts on a Tape (Float32Arrays), the WebGPU engine with GPU buffers.
 */
export interface TrainOps<T> {
  has(weight: string): boolean;
  embedding(w: string, ids: Int32Array, d: number): T;
  add(a: T, b: T): T;
  scale(x: T, s: number): T;
  softcap(x: T, cap: number): T;
  rmsNorm(x: T, n: number, w: string, eps: number, addOne: boolean): T;
  layerNorm(x: T, n: number, w: string, b: string, eps: number): T;
  /** x Wᵀ (+ b when the model has `bias`), with the weight's LoRA part when it has one. */
  linear(x: T, nIn: number, w: string, nOut: number, bias?: string): T;
  rope(x: T, seq: number, heads: number, headDim: number, p: RopeParams): T;
  attention(q: T, k: T, v: T, a: op.AttentionShape): T;
  activation(x: T, act: Activation): T;
  gated(gate: T, up: T, act: Activation): T;
}

/** The CPU implementation: ops.ts over the model's host weights. */
export class CpuOps implements TrainOps<Float32Array> {
  constructor(
    readonly tape: Tape,
    private readonly weights: ReadonlyMap<string, Weight>,
    private readonly parts: ReadonlyMap<string, LoraPart> = new Map(),
  ) {}

  private w(name: string): Weight {
    const p = this.weights.get(name);
    if (!p) throw new Error(`model has no weight "${name}"`);
    return p;
  }

  /** A weight read value by value (norms, biases): always float32 (only matrices stay 16-bit). */
  private p(name: string): Param {
    const p = this.w(name);
    if (!(p.data instanceof Float32Array)) throw new Error(`weight "${name}" is held in 16 bits; this op reads float32`);
    return p as Param;
  }

  has(weight: string): boolean {
    return this.weights.has(weight);
  }
  embedding(w: string, ids: Int32Array, d: number): Float32Array {
    return op.embedding(this.tape, this.w(w), ids, d);
  }
  add(a: Float32Array, b: Float32Array): Float32Array {
    return op.add(this.tape, a, b);
  }
  scale(x: Float32Array, s: number): Float32Array {
    return op.scale(this.tape, x, s);
  }
  softcap(x: Float32Array, cap: number): Float32Array {
    return op.softcap(this.tape, x, cap);
  }
  rmsNorm(x: Float32Array, n: number, w: string, eps: number, addOne: boolean): Float32Array {
    return op.rmsNorm(this.tape, x, n, this.p(w), eps, addOne);
  }
  layerNorm(x: Float32Array, n: number, w: string, b: string, eps: number): Float32Array {
    return op.layerNorm(this.tape, x, n, this.p(w), this.p(b), eps);
  }
  linear(x: Float32Array, nIn: number, w: string, nOut: number, bias?: string): Float32Array {
    return op.linear(this.tape, x, nIn, this.w(w), nOut, bias !== undefined && this.weights.has(bias) ? this.p(bias) : undefined, this.parts.get(w));
  }
  rope(x: Float32Array, seq: number, heads: number, headDim: number, p: RopeParams): Float32Array {
    return op.rope(this.tape, x, seq, heads, headDim, p);
  }
  attention(q: Float32Array, k: Float32Array, v: Float32Array, a: op.AttentionShape): Float32Array {
    return op.attention(this.tape, q, k, v, a);
  }
  activation(x: Float32Array, act: Activation): Float32Array {
    return op.activation(this.tape, x, act);
  }
  gated(gate: Float32Array, up: Float32Array, act: Activation): Float32Array {
    return op.gated(this.tape, gate, up, act);
  }
}

function norm<T>(c: ModelConfig, ops: TrainOps<T>, x: T, prefix: string): T {
  if (c.norm.kind === 'layer') return ops.layerNorm(x, c.dModel, `${prefix}.w`, `${prefix}.b`, c.norm.eps);
  return ops.rmsNorm(x, c.dModel, `${prefix}.w`, c.norm.eps, c.norm.addOne);
}

/** Logits [batch·seq, vocab] of ids [batch, seq]: the forward of src/model/transformer.ts, once for every engine. */
export function forwardPass<T>(c: ModelConfig, ops: TrainOps<T>, ids: Int32Array, batch: number, seq: number): T {
  const d = c.dModel;
  if (ids.length !== batch * seq) throw new RangeError(`${ids.length} token ids for [${batch}, ${seq}]`);
  if (c.positions === 'learned' && seq > c.maxPositions) throw new RangeError(`${seq} positions but the model has learned embeddings for ${c.maxPositions}`);
  let x = ops.embedding('embed.W_E', ids, d);
  if (c.embedScale !== 1) x = ops.scale(x, c.embedScale);
  if (c.positions === 'learned') {
    const pos = new Int32Array(batch * seq);
    for (let i = 0; i < pos.length; i++) pos[i] = i % seq;
    x = ops.add(x, ops.embedding('pos_embed.W_pos', pos, d));
  }
  for (let i = 0; i < c.nLayers; i++) {
    let attnOut = attention(c, ops, x, i, batch, seq);
    if (c.sandwichNorms) attnOut = norm(c, ops, attnOut, `blocks.${i}.ln1_post`);
    const mid = ops.add(x, attnOut);
    let mlpOut = mlp(c, ops, mid, i);
    if (c.sandwichNorms) mlpOut = norm(c, ops, mlpOut, `blocks.${i}.ln2_post`);
    x = ops.add(mid, mlpOut);
  }
  const h = norm(c, ops, x, 'ln_final');
  let logits = ops.linear(h, d, ops.has('unembed.W_U') ? 'unembed.W_U' : 'embed.W_E', c.vocab);
  if (c.finalSoftcap > 0) logits = ops.softcap(logits, c.finalSoftcap);
  return logits;
}

function attention<T>(c: ModelConfig, ops: TrainOps<T>, x: T, i: number, batch: number, seq: number): T {
  const layer = c.layers[i]!;
  const a = `blocks.${i}.attn.`;
  const d = c.dModel;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const h = norm(c, ops, x, `blocks.${i}.ln1`);
  let Q = ops.linear(h, d, `${a}W_Q`, q, `${a}b_Q`);
  let K = ops.linear(h, d, `${a}W_K`, kv, `${a}b_K`);
  const V = ops.linear(h, d, `${a}W_V`, kv, `${a}b_V`);
  if (c.qkNorm) {
    Q = ops.rmsNorm(Q, c.headDim, `${a}q_norm.w`, c.norm.eps, c.norm.addOne);
    K = ops.rmsNorm(K, c.headDim, `${a}k_norm.w`, c.norm.eps, c.norm.addOne);
  }
  if (layer.rope) {
    Q = ops.rope(Q, seq, c.nHeads, c.headDim, layer.rope);
    K = ops.rope(K, seq, c.nKvHeads, c.headDim, layer.rope);
  }
  const mixed = ops.attention(Q, K, V, {
    batch,
    seq,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    scale: layer.attnScale,
    window: layer.window,
    softcap: c.attnSoftcap,
  });
  return ops.linear(mixed, q, `${a}W_O`, d, `${a}b_O`);
}

function mlp<T>(c: ModelConfig, ops: TrainOps<T>, x: T, i: number): T {
  const m = `blocks.${i}.mlp.`;
  const h = norm(c, ops, x, `blocks.${i}.ln2`);
  let act: T;
  if (c.gatedMlp) {
    const gate = ops.linear(h, c.dModel, `${m}W_gate`, c.dMlp, `${m}b_gate`);
    const up = ops.linear(h, c.dModel, `${m}W_in`, c.dMlp, `${m}b_in`);
    act = ops.gated(gate, up, c.activation);
  } else {
    act = ops.activation(ops.linear(h, c.dModel, `${m}W_in`, c.dMlp, `${m}b_in`), c.activation);
  }
  return ops.linear(act, c.dMlp, `${m}W_out`, c.dModel, `${m}b_out`);
}
