// A transformer whose weights are host Float32Arrays and whose forward pass records its backward on a
// Tape: the forward of src/model/transformer.ts (same canonical weights, same order of ops) for
// next-token cross-entropy, with gradients for the full model or for LoRA factors only.
import type { ModelConfig } from '../../model/config.ts';
import { describeSource, type WeightSource } from '../../model/convert.ts';
import type { Transformer } from '../../model/transformer.ts';
import * as op from './ops.ts';
import type { LoraPart } from './ops.ts';
import { frozen, Tape, type Param } from './tape.ts';
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
  /** Canonical name → weight; trainable weights have gradient buffers (full fine-tuning). */
  readonly weights: ReadonlyMap<string, Param>;
  /** LoRA modules by module path (empty for full fine-tuning). */
  readonly lora: ReadonlyMap<string, LoraModule>;
  private readonly parts = new Map<string, LoraPart>();

  constructor(
    readonly config: ModelConfig,
    weights: ReadonlyMap<string, Float32Array>,
    readonly sources: ReadonlyMap<string, WeightSource>,
    readonly trainable: Trainable,
    seed = 0,
  ) {
    const full = trainable.kind === 'full';
    const ws = new Map<string, Param>();
    for (const [name, data] of weights) ws.set(name, full ? { data, grad: new Float32Array(data.length) } : frozen(data));
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
    const weights = new Map<string, Float32Array>();
    for (const [name, t] of model.weights) {
      const data = await model.backend.read(t);
      if (!(data instanceof Float32Array)) throw new Error(`weight "${name}" is not a float tensor`);
      weights.set(name, data);
    }
    return new TrainableTransformer(model.config, weights, model.sources, trainable, seed);
  }

  /** Trainable tensors by name: canonical weights (full) or "<module>.lora_A" / "<module>.lora_B". */
  params(): Map<string, Param> {
    const out = new Map<string, Param>();
    if (this.trainable.kind === 'full') {
      for (const [n, p] of this.weights) out.set(n, p);
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
    const tape = new Tape();
    const logits = this.forward(tape, ids, batch, seq);
    const loss = op.crossEntropy(tape, logits, this.config.vocab, targets, weight);
    tape.backward();
    return { loss, tokens: batch * (seq - 1) };
  }

  /** Logits [batch·seq, vocab] (no gradients). */
  logits(ids: Int32Array, batch: number, seq: number): Float32Array {
    return this.forward(new Tape(), ids, batch, seq);
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

  private w(name: string): Param {
    const p = this.weights.get(name);
    if (!p) throw new Error(`model has no weight "${name}"`);
    return p;
  }

  private linear(tape: Tape, x: Float32Array, nIn: number, w: string, b: string, nOut: number): Float32Array {
    return op.linear(tape, x, nIn, this.w(w), nOut, this.weights.get(b), this.parts.get(w));
  }

  private norm(tape: Tape, x: Float32Array, prefix: string): Float32Array {
    const c = this.config;
    if (c.norm.kind === 'layer') return op.layerNorm(tape, x, c.dModel, this.w(`${prefix}.w`), this.w(`${prefix}.b`), c.norm.eps);
    return op.rmsNorm(tape, x, c.dModel, this.w(`${prefix}.w`), c.norm.eps, c.norm.addOne);
  }

  private forward(tape: Tape, ids: Int32Array, batch: number, seq: number): Float32Array {
    const c = this.config;
    const d = c.dModel;
    if (ids.length !== batch * seq) throw new RangeError(`${ids.length} token ids for [${batch}, ${seq}]`);
    if (c.positions === 'learned' && seq > c.maxPositions) throw new RangeError(`${seq} positions but the model has learned embeddings for ${c.maxPositions}`);
    let x = op.embedding(tape, this.w('embed.W_E'), ids, d);
    if (c.embedScale !== 1) x = op.scale(tape, x, c.embedScale);
    if (c.positions === 'learned') {
      const pos = new Int32Array(batch * seq);
      for (let i = 0; i < pos.length; i++) pos[i] = i % seq;
      x = op.add(tape, x, op.embedding(tape, this.w('pos_embed.W_pos'), pos, d));
    }
    for (let i = 0; i < c.nLayers; i++) {
      let attnOut = this.attention(tape, x, i, batch, seq);
      if (c.sandwichNorms) attnOut = this.norm(tape, attnOut, `blocks.${i}.ln1_post`);
      const mid = op.add(tape, x, attnOut);
      let mlpOut = this.mlp(tape, mid, i);
      if (c.sandwichNorms) mlpOut = this.norm(tape, mlpOut, `blocks.${i}.ln2_post`);
      x = op.add(tape, mid, mlpOut);
    }
    const h = this.norm(tape, x, 'ln_final');
    const unembed = this.weights.get('unembed.W_U') ?? this.w('embed.W_E');
    let logits = op.linear(tape, h, d, unembed, c.vocab);
    if (c.finalSoftcap > 0) logits = op.softcap(tape, logits, c.finalSoftcap);
    return logits;
  }

  private attention(tape: Tape, x: Float32Array, i: number, batch: number, seq: number): Float32Array {
    const c = this.config;
    const layer = c.layers[i]!;
    const a = `blocks.${i}.attn.`;
    const d = c.dModel;
    const q = c.nHeads * c.headDim;
    const kv = c.nKvHeads * c.headDim;
    const h = this.norm(tape, x, `blocks.${i}.ln1`);
    let Q = this.linear(tape, h, d, `${a}W_Q`, `${a}b_Q`, q);
    let K = this.linear(tape, h, d, `${a}W_K`, `${a}b_K`, kv);
    const V = this.linear(tape, h, d, `${a}W_V`, `${a}b_V`, kv);
    if (c.qkNorm) {
      Q = op.rmsNorm(tape, Q, c.headDim, this.w(`${a}q_norm.w`), c.norm.eps, c.norm.addOne);
      K = op.rmsNorm(tape, K, c.headDim, this.w(`${a}k_norm.w`), c.norm.eps, c.norm.addOne);
    }
    if (layer.rope) {
      Q = op.rope(tape, Q, seq, c.nHeads, c.headDim, layer.rope);
      K = op.rope(tape, K, seq, c.nKvHeads, c.headDim, layer.rope);
    }
    const mixed = op.attention(tape, Q, K, V, {
      batch,
      seq,
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headDim: c.headDim,
      scale: layer.attnScale,
      window: layer.window,
      softcap: c.attnSoftcap,
    });
    return this.linear(tape, mixed, q, `${a}W_O`, `${a}b_O`, d);
  }

  private mlp(tape: Tape, x: Float32Array, i: number): Float32Array {
    const c = this.config;
    const m = `blocks.${i}.mlp.`;
    const h = this.norm(tape, x, `blocks.${i}.ln2`);
    let act: Float32Array;
    if (c.gatedMlp) {
      const gate = this.linear(tape, h, c.dModel, `${m}W_gate`, `${m}b_gate`, c.dMlp);
      const up = this.linear(tape, h, c.dModel, `${m}W_in`, `${m}b_in`, c.dMlp);
      act = op.gated(tape, gate, up, c.activation);
    } else {
      act = op.activation(tape, this.linear(tape, h, c.dModel, `${m}W_in`, `${m}b_in`, c.dMlp), c.activation);
    }
    return this.linear(tape, act, c.dMlp, `${m}W_out`, `${m}b_out`, c.dModel);
  }
}
