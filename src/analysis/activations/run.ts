// What every activation analysis shares: a pair of models that can be compared position by position,
// progress and cancellation, batching of token rows, and a model's final norm applied to any residual
// (the logit lens head).
import { ShapeError, type Backend, type Tensor } from '../../model/backend.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { TokenInput, Transformer } from '../../model/transformer.ts';

export interface ModelPair {
  base: Transformer;
  ft: Transformer;
}

export interface Progress {
  /** What is running ("base", "ft", "patchscope", …). */
  stage: string;
  done: number;
  total: number;
  /** A training's loss curve so far (a point every few steps), for a view that draws it while it runs. */
  curve?: readonly { step: number; loss: number; fvu: number; dead: number }[];
}

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Sequences per forward call. */
  batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 16;

/** Throws unless the two models share the backend and the shapes that make activations comparable. */
export function checkPair({ base, ft }: ModelPair): Backend {
  if (base.backend !== ft.backend) throw new ShapeError('model pair', `the models live on different backends (${base.backend.name} and ${ft.backend.name})`);
  checkPairConfigs(base.config, ft.config);
  return base.backend;
}

export function checkPairConfigs(b: ModelConfig, f: ModelConfig): void {
  for (const key of ['dModel', 'nLayers', 'vocab'] as const) {
    if (b[key] !== f[key]) throw new ShapeError('model pair', `base and fine-tuned models differ in ${key} (${b[key]} and ${f[key]}): their activations cannot be compared`);
  }
}

export function checkLayer(model: { config: ModelConfig }, layer: number, what = 'layer'): void {
  const n = model.config.nLayers;
  if (!Number.isInteger(layer) || layer < 0 || layer >= n) throw new RangeError(`${what} ${layer} is outside 0..${n - 1}`);
}

export function checkIds(model: { config: ModelConfig }, ids: readonly number[]): void {
  if (ids.length === 0) throw new RangeError('no tokens');
  const v = model.config.vocab;
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= v) throw new RangeError(`token id ${id} is outside the vocabulary (0..${v - 1})`);
}

/** Rows grouped into batches of equal length (the forward pass takes rectangular batches), in input order within a length. */
export function equalLengthBatches(rows: readonly (readonly number[])[], batchSize: number): { indices: number[]; rows: (readonly number[])[] }[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const byLength = new Map<number, number[]>();
  rows.forEach((r, i) => {
    const list = byLength.get(r.length) ?? [];
    list.push(i);
    byLength.set(r.length, list);
  });
  const batches: { indices: number[]; rows: (readonly number[])[] }[] = [];
  for (const list of byLength.values()) {
    for (let i = 0; i < list.length; i += batchSize) {
      const indices = list.slice(i, i + batchSize);
      batches.push({ indices, rows: indices.map((j) => rows[j]!) });
    }
  }
  return batches;
}

/**
 * The named activations of a run through block `lastLayer` (default: all). Logits, which the caller
 * does not want, are then computed for the last position only: never [rows, vocab] for a big vocabulary.
 */
export function captureActivations(model: Transformer, rows: TokenInput, names: readonly string[], lastLayer = model.config.nLayers - 1): Map<string, Tensor> {
  const { logits, cache } = model.runWithCache(rows, names, { stopAfterLayer: lastLayer, lastPositionOnly: true });
  if (logits) model.backend.dispose(logits);
  return cache;
}

/** norm_final(h) with the model's own final norm: h [..., d] → [..., d]. */
export function finalNorm(model: Transformer, h: Tensor): Tensor {
  const be = model.backend;
  const c = model.config;
  if (c.norm.kind === 'layer') return be.layerNorm(h, model.weight('ln_final.w'), model.weight('ln_final.b'), c.norm.eps);
  return be.rmsNorm(h, model.weight('ln_final.w'), c.norm.eps, c.norm.addOne);
}

/** Per-row KL(P ‖ Q) between the softmax distributions of two logit tensors [..., V] → [...]. */
export function klRows(be: Backend, logitsP: Tensor, logitsQ: Tensor): Tensor {
  const p = be.softmax(logitsP);
  const lp = be.logSoftmax(logitsP);
  const lq = be.logSoftmax(logitsQ);
  const d = be.sub(lp, lq);
  const w = be.mul(p, d);
  const kl = be.sum(w);
  for (const t of [p, lp, lq, d, w]) be.dispose(t);
  return kl;
}

export async function readF32(be: Backend, t: Tensor, dispose = true): Promise<Float32Array> {
  const data = await be.read(t);
  if (dispose) be.dispose(t);
  if (!(data instanceof Float32Array)) throw new ShapeError('read', `expected a float tensor, got ${t.dtype}`);
  return data;
}

export async function readI32(be: Backend, t: Tensor, dispose = true): Promise<Int32Array> {
  const data = await be.read(t);
  if (dispose) be.dispose(t);
  if (!(data instanceof Int32Array)) throw new ShapeError('read', `expected an i32 tensor, got ${t.dtype}`);
  return data;
}

export function disposeAll(be: Backend, ts: Iterable<Tensor | undefined>): void {
  for (const t of ts) if (t) be.dispose(t);
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>, aOffset = 0, bOffset = 0, n = a.length): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[aOffset + i]!;
    const y = b[bOffset + i]!;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}
