// The forward pass, written once over canonical weights and only against the Backend interface, with
// TransformerLens-style hook points:
//   blocks.{i}.hook_resid_pre   [batch, pos, d_model]  residual entering block i (Gemma: after the sqrt(d) scale)
//   blocks.{i}.hook_attn_out    [batch, pos, d_model]  attention output after W_O (before Gemma's post-attention norm)
//   blocks.{i}.hook_mlp_out     [batch, pos, d_model]  MLP output (before Gemma's post-feed-forward norm)
//   blocks.{i}.hook_resid_post  [batch, pos, d_model]  residual leaving block i
//   ln_final.hook_normalized    [batch, pos, d_model]
//   logits                      [batch, pos, d_vocab]  (after Gemma 2's final soft-cap)
//
// Ownership: the tensor a hook receives belongs to the forward pass and lives only during the call
// (unless captured). A tensor a hook returns is handed over: the forward pass uses it in place of the
// activation and disposes it when done, so return a copy (e.g. backend.scale(t, 1)) of anything you keep.
// Captured tensors (runWithCache) stay on the backend: the caller reads and disposes them.
import { ShapeError, type AttentionParams, type Backend, type Tensor } from './backend.ts';
import type { ModelConfig } from './config.ts';
import { describeSource, type WeightSource } from './convert.ts';
import type { LoraAdapter } from './lora.ts';

export interface HookContext {
  name: string;
  /** Block index, for block hooks. */
  layer?: number;
  /** Absolute position of the first token in this call (non-zero when continuing from a KV cache). */
  startPos: number;
  backend: Backend;
}

export type HookFn = (activation: Tensor, ctx: HookContext) => Tensor | void;
export type Hooks = Readonly<Record<string, HookFn>>;
export type HookFilter = readonly string[] | ((name: string) => boolean);

export interface HookPoint {
  name: string;
  shape: readonly ['batch', 'pos', 'd_model' | 'd_vocab'];
  layer?: number;
}

/** Token ids: one sequence, several of equal length, or a flat buffer with its [batch, seq] shape. */
export type TokenInput = readonly number[] | readonly (readonly number[])[] | { ids: Int32Array; batch: number; seq: number };

export interface KvCache {
  /** Tokens already in the cache. */
  length: number;
  k: (Tensor | undefined)[];
  v: (Tensor | undefined)[];
}

export interface ForwardOptions {
  hooks?: Hooks;
  /** Hook points whose activations to keep (see runWithCache). */
  capture?: HookFilter;
  /** Continue after the cached tokens and append this call's keys and values. */
  kvCache?: KvCache;
  /** Stop after block i's resid_post: no final norm, no logits (the result's logits is undefined). */
  stopAfterLayer?: number;
  /** Compute logits only for the last position ([batch, 1, vocab]). */
  lastPositionOnly?: boolean;
}

export interface ForwardResult {
  logits: Tensor | undefined;
  cache: Map<string, Tensor>;
}

export function hookName(kind: 'resid_pre' | 'resid_post' | 'attn_out' | 'mlp_out', layer: number): string {
  return `blocks.${layer}.hook_${kind}`;
}

export function toBatch(input: TokenInput): { ids: Int32Array; batch: number; seq: number } {
  if (!Array.isArray(input)) {
    const flat = input as { ids: Int32Array; batch: number; seq: number };
    if (flat.seq < 1 || flat.ids.length !== flat.batch * flat.seq) throw new ShapeError('forward', `${flat.ids.length} ids for [${flat.batch}, ${flat.seq}]`);
    return flat;
  }
  const rows = (input.length > 0 && Array.isArray(input[0]) ? input : [input]) as readonly (readonly number[])[];
  const seq = rows[0]?.length ?? 0;
  if (seq === 0) throw new ShapeError('forward', 'no tokens');
  const ids = new Int32Array(rows.length * seq);
  rows.forEach((r, b) => {
    if (r.length !== seq) throw new ShapeError('forward', `sequences of different lengths (${seq} and ${r.length}) in one batch`);
    ids.set(r, b * seq);
  });
  return { ids, batch: rows.length, seq };
}

export class Transformer {
  readonly hookPoints: readonly HookPoint[];
  private readonly hookNames: ReadonlySet<string>;

  constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
    /** Canonical name → tensor on the backend. */
    readonly weights: ReadonlyMap<string, Tensor>,
    /** Canonical name → where it came from in the checkpoint. */
    readonly sources: ReadonlyMap<string, WeightSource>,
    /** The LoRA adapter merged into the weights, if any: its factors stay readable for analyses. */
    readonly adapter?: LoraAdapter,
  ) {
    const points: HookPoint[] = [];
    for (let i = 0; i < config.nLayers; i++) {
      for (const kind of ['resid_pre', 'attn_out', 'mlp_out', 'resid_post'] as const) {
        points.push({ name: hookName(kind, i), shape: ['batch', 'pos', 'd_model'], layer: i });
      }
    }
    points.push({ name: 'ln_final.hook_normalized', shape: ['batch', 'pos', 'd_model'] }, { name: 'logits', shape: ['batch', 'pos', 'd_vocab'] });
    this.hookPoints = points;
    this.hookNames = new Set(points.map((p) => p.name));
  }

  /** The checkpoint's name for a canonical weight ("model.layers.0.self_attn.qkv_proj.weight[0:64]"). */
  checkpointName(canonical: string): string {
    const s = this.sources.get(canonical);
    return s ? describeSource(s) : canonical;
  }

  weight(name: string): Tensor {
    const w = this.weights.get(name);
    if (!w) throw new Error(`model has no weight "${name}"`);
    return w;
  }

  /** The unembedding [vocab, d]: W_U, or the embedding when tied. */
  get unembed(): Tensor {
    return this.weights.get('unembed.W_U') ?? this.weight('embed.W_E');
  }

  newKvCache(): KvCache {
    return { length: 0, k: [], v: [] };
  }

  disposeKvCache(cache: KvCache): void {
    for (const t of [...cache.k, ...cache.v]) if (t) this.backend.dispose(t);
    cache.k = [];
    cache.v = [];
    cache.length = 0;
  }

  /** Captured tensors stay on the backend; dispose them (and the logits) when done. */
  runWithCache(input: TokenInput, filter: HookFilter, opts: Omit<ForwardOptions, 'capture'> = {}): ForwardResult {
    return this.forward(input, { ...opts, capture: filter });
  }

  runWithHooks(input: TokenInput, hooks: Hooks, opts: Omit<ForwardOptions, 'hooks'> = {}): Tensor | undefined {
    const { logits } = this.forward(input, { ...opts, hooks });
    return logits;
  }

  forward(input: TokenInput, opts: ForwardOptions = {}): ForwardResult {
    const be = this.backend;
    const c = this.config;
    const { ids, batch, seq } = toBatch(input);
    const kv = opts.kvCache;
    const startPos = kv?.length ?? 0;
    const lastLayer = opts.stopAfterLayer ?? c.nLayers - 1;
    if (!Number.isInteger(lastLayer) || lastLayer < 0 || lastLayer >= c.nLayers) throw new ShapeError('forward', `stopAfterLayer ${lastLayer} with ${c.nLayers} layers`);
    if (kv && lastLayer !== c.nLayers - 1) throw new ShapeError('forward', 'a KV cache needs every layer: do not combine it with stopAfterLayer');
    if (c.positions === 'learned' && startPos + seq > c.maxPositions) {
      throw new ShapeError('forward', `${startPos + seq} positions but the model has learned embeddings for ${c.maxPositions}`);
    }
    for (const name of Object.keys(opts.hooks ?? {})) if (!this.hookNames.has(name)) throw new ShapeError('forward', `no hook point named "${name}"`);
    const wants = this.captureTest(opts.capture);

    const cache = new Map<string, Tensor>();
    const kept = new Set<Tensor>();
    const free = (...ts: Tensor[]): void => {
      for (const t of ts) if (!kept.has(t)) be.dispose(t);
    };
    const point = (name: string, t: Tensor, layer?: number): Tensor => {
      let out = t;
      const hook = opts.hooks?.[name];
      if (hook) {
        const replaced = hook(t, { name, startPos, backend: be, ...(layer === undefined ? {} : { layer }) });
        if (replaced && replaced !== t) {
          if (replaced.shape.length !== t.shape.length || replaced.shape.some((d, i) => d !== t.shape[i])) {
            throw new ShapeError('forward', `hook "${name}" returned [${replaced.shape.join(', ')}] for an activation of [${t.shape.join(', ')}]`);
          }
          free(t);
          out = replaced;
        }
      }
      if (wants(name)) {
        cache.set(name, out);
        kept.add(out);
      }
      return out;
    };

    try {
      let x = be.embedding(this.weight('embed.W_E'), ids, [batch, seq]);
      if (c.embedScale !== 1) {
        const scaled = be.scale(x, c.embedScale);
        free(x);
        x = scaled;
      }
      if (c.positions === 'learned') {
        const pos = new Int32Array(batch * seq);
        for (let i = 0; i < pos.length; i++) pos[i] = startPos + (i % seq);
        const pe = be.embedding(this.weight('pos_embed.W_pos'), pos, [batch, seq]);
        const sum = be.add(x, pe);
        free(x, pe);
        x = sum;
      }

      for (let i = 0; i <= lastLayer; i++) {
        x = point(hookName('resid_pre', i), x, i);
        let attnOut = point(hookName('attn_out', i), this.attention(x, i, startPos, kv), i);
        if (c.sandwichNorms) {
          const normed = this.norm(attnOut, `blocks.${i}.ln1_post`);
          free(attnOut);
          attnOut = normed;
        }
        const mid = be.add(x, attnOut);
        free(x, attnOut);
        let mlpOut = point(hookName('mlp_out', i), this.mlp(mid, i), i);
        if (c.sandwichNorms) {
          const normed = this.norm(mlpOut, `blocks.${i}.ln2_post`);
          free(mlpOut);
          mlpOut = normed;
        }
        x = be.add(mid, mlpOut);
        free(mid, mlpOut);
        x = point(hookName('resid_post', i), x, i);
      }
      if (kv) kv.length += seq;
      if (lastLayer < c.nLayers - 1) {
        free(x);
        return { logits: undefined, cache };
      }

      let normed = point('ln_final.hook_normalized', this.norm(x, 'ln_final'));
      free(x);
      if (opts.lastPositionOnly && seq > 1) {
        const last = be.sliceSeq(normed, seq - 1, seq);
        free(normed);
        normed = last;
      }
      let logits = be.linear(normed, this.unembed);
      free(normed);
      if (c.finalSoftcap > 0) {
        const capped = be.softcap(logits, c.finalSoftcap);
        free(logits);
        logits = capped;
      }
      logits = point('logits', logits);
      kept.add(logits);
      return { logits, cache };
    } catch (e) {
      for (const t of cache.values()) be.dispose(t);
      throw e;
    }
  }

  /** Greedy decoding with a KV cache: the new token ids (stops early after a token in `stop`). */
  async generate(prompt: readonly number[], maxNew: number, opts: { hooks?: Hooks; stop?: readonly number[]; signal?: AbortSignal } = {}): Promise<number[]> {
    const be = this.backend;
    const kv = this.newKvCache();
    const out: number[] = [];
    try {
      let next: readonly number[] = prompt;
      while (out.length < maxNew) {
        opts.signal?.throwIfAborted();
        const { logits } = this.forward([next], { kvCache: kv, lastPositionOnly: true, ...(opts.hooks ? { hooks: opts.hooks } : {}) });
        const top = be.topk(logits!, 1);
        be.dispose(logits!);
        be.dispose(top.values);
        const id = (await be.read(top.indices))[0]!;
        be.dispose(top.indices);
        out.push(id);
        if (opts.stop?.includes(id)) break;
        next = [id];
      }
      return out;
    } finally {
      this.disposeKvCache(kv);
    }
  }

  /** Releases the weights, but those in `keep` (the caller disposes them later). */
  dispose(keep: ReadonlySet<Tensor> = new Set()): void {
    for (const t of this.weights.values()) if (!keep.has(t)) this.backend.dispose(t);
  }

  private captureTest(filter: HookFilter | undefined): (name: string) => boolean {
    if (!filter) return () => false;
    if (typeof filter === 'function') return filter;
    for (const name of filter as readonly string[]) if (!this.hookNames.has(name)) throw new ShapeError('runWithCache', `no hook point named "${name}"`);
    const set = new Set(filter as readonly string[]);
    return (name) => set.has(name);
  }

  private norm(x: Tensor, prefix: string): Tensor {
    const c = this.config;
    if (c.norm.kind === 'layer') return this.backend.layerNorm(x, this.weight(`${prefix}.w`), this.weight(`${prefix}.b`), c.norm.eps);
    return this.backend.rmsNorm(x, this.weight(`${prefix}.w`), c.norm.eps, c.norm.addOne);
  }

  private linear(x: Tensor, w: string, b: string): Tensor {
    const bias = this.weights.get(b);
    return bias ? this.backend.linear(x, this.weight(w), bias) : this.backend.linear(x, this.weight(w));
  }

  private attention(x: Tensor, i: number, startPos: number, kv: KvCache | undefined): Tensor {
    const be = this.backend;
    const { q, k, v, params } = this.attentionInputs(x, i, startPos, kv);
    const mixed = be.attention(q, k, v, params);
    be.dispose(q);
    if (!kv) {
      be.dispose(k);
      be.dispose(v);
    }
    const a = `blocks.${i}.attn.`;
    const out = this.linear(mixed, `${a}W_O`, `${a}b_O`);
    be.dispose(mixed);
    return out;
  }

  /**
   * Block i's attention inputs for the residual x entering it: queries, keys and values after the
   * q/k norms and rotary embedding (keys and values include the KV cache's, which then holds them),
   * and the attention parameters. The caller disposes q, and k and v when no cache holds them.
   */
  attentionInputs(x: Tensor, i: number, startPos: number, kv?: KvCache): { q: Tensor; k: Tensor; v: Tensor; params: AttentionParams } {
    const be = this.backend;
    const c = this.config;
    const layer = c.layers[i]!;
    const a = `blocks.${i}.attn.`;
    const h = this.norm(x, `blocks.${i}.ln1`);
    let q = this.linear(h, `${a}W_Q`, `${a}b_Q`);
    let k = this.linear(h, `${a}W_K`, `${a}b_K`);
    let v = this.linear(h, `${a}W_V`, `${a}b_V`);
    be.dispose(h);
    const replace = (old: Tensor, t: Tensor): Tensor => {
      be.dispose(old);
      return t;
    };
    if (c.qkNorm) {
      q = replace(q, be.headRmsNorm(q, this.weight(`${a}q_norm.w`), c.headDim, c.norm.eps, c.norm.addOne));
      k = replace(k, be.headRmsNorm(k, this.weight(`${a}k_norm.w`), c.headDim, c.norm.eps, c.norm.addOne));
    }
    if (layer.rope) {
      q = replace(q, be.rope(q, c.nHeads, c.headDim, startPos, layer.rope));
      k = replace(k, be.rope(k, c.nKvHeads, c.headDim, startPos, layer.rope));
    }
    if (kv) {
      const pk = kv.k[i];
      const pv = kv.v[i];
      if (pk && pv) {
        k = replace(k, be.concatSeq(pk, k));
        v = replace(v, be.concatSeq(pv, v));
        be.dispose(pk);
        be.dispose(pv);
      }
      kv.k[i] = k;
      kv.v[i] = v;
    }
    const params: AttentionParams = {
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headDim: c.headDim,
      scale: layer.attnScale,
      queryOffset: startPos,
      ...(layer.window > 0 ? { window: layer.window } : {}),
      ...(c.attnSoftcap > 0 ? { softcap: c.attnSoftcap } : {}),
    };
    return { q, k, v, params };
  }

  private mlp(x: Tensor, i: number): Tensor {
    const be = this.backend;
    const c = this.config;
    const m = `blocks.${i}.mlp.`;
    const h = this.norm(x, `blocks.${i}.ln2`);
    let act: Tensor;
    if (c.gatedMlp) {
      const gate = this.linear(h, `${m}W_gate`, `${m}b_gate`);
      const up = this.linear(h, `${m}W_in`, `${m}b_in`);
      act = be.gated(gate, up, c.activation);
      be.dispose(gate);
      be.dispose(up);
    } else {
      const pre = this.linear(h, `${m}W_in`, `${m}b_in`);
      act = be.activation(pre, c.activation);
      be.dispose(pre);
    }
    be.dispose(h);
    const out = this.linear(act, `${m}W_out`, `${m}b_out`);
    be.dispose(act);
    return out;
  }
}
