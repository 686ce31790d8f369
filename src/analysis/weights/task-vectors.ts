// Task vectors (Ilharco et al. 2023): τ_i = θ_ft_i − θ_base over all parameters. Cosines between
// several fine-tunes' τ (whole model and per layer), and task arithmetic θ_base + Σ λ_i τ_i.
// Both stream: one tensor name at a time, holding the base tensor and one copy per fine-tune.
// The dot products are O(F²·N) on the host in float64; no matrix product is involved.
import { writeSafetensors } from '../../io/safetensors.ts';
import { FormatError } from '../../io/source.ts';
import type { StoredDType, WeightStore } from '../../io/store.ts';

const NOT_WEIGHTS: ReadonlySet<StoredDType> = new Set(['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);

export interface TaskVectorOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number, name: string) => void;
  /** Layer index of a tensor name, or null outside the layer stack. Default: the number after "layers.", "h." or "blocks.". */
  layerOf?: (name: string) => number | null;
}

export interface CosineBlock {
  /** cosine[i][j] of τ_i and τ_j; null where either vector is zero. */
  cosine: (number | null)[][];
  /** ‖τ_i‖ over the block. */
  norms: number[];
}

export interface TaskVectorCosines extends CosineBlock {
  /** The fine-tunes' labels, in input order. */
  models: string[];
  layers: Array<CosineBlock & { layer: number }>;
  /** Tensors outside the layer stack (embeddings, final norm, head). */
  other: CosineBlock;
  tensors_used: number;
  /** Base tensors left out because a fine-tune lacks them, differs in shape, or they are not floating point. */
  skipped: Array<{ name: string; reason: string }>;
}

export function defaultLayerOf(name: string): number | null {
  const m = /(?:^|\.)(?:layers|h|blocks)\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

export async function taskVectorCosines(base: WeightStore, fts: readonly WeightStore[], opts: TaskVectorOptions = {}): Promise<TaskVectorCosines> {
  const layerOf = opts.layerOf ?? defaultLayerOf;
  const f = fts.length;
  const skipped: Array<{ name: string; reason: string }> = [];
  const names: string[] = [];
  for (const [name, t] of base.tensors) {
    const problem = NOT_WEIGHTS.has(t.dtype) ? `not floating point (${t.dtype})` : fts.map((ft) => pairProblem(base, ft, name)).find((p) => p !== null);
    if (problem) skipped.push({ name, reason: problem });
    else names.push(name);
  }
  const newGram = () => Array.from({ length: f }, () => new Float64Array(f));
  const whole = newGram();
  const other = newGram();
  const perLayer = new Map<number, Float64Array[]>();
  for (let n = 0; n < names.length; n++) {
    const name = names[n]!;
    opts.signal?.throwIfAborted();
    const w0 = await base.readF32(name, opts.signal);
    const taus: Float32Array[] = [];
    for (const ft of fts) {
      const w1 = await ft.readF32(name, opts.signal);
      const tau = new Float32Array(w0.length);
      for (let k = 0; k < w0.length; k++) tau[k] = w1[k]! - w0[k]!;
      taus.push(tau);
    }
    const layer = layerOf(name);
    let block: Float64Array[] = other;
    if (layer !== null) {
      block = perLayer.get(layer) ?? newGram();
      perLayer.set(layer, block);
    }
    for (let i = 0; i < f; i++) {
      for (let j = i; j < f; j++) {
        const a = taus[i]!;
        const b = taus[j]!;
        let dot = 0;
        for (let k = 0; k < a.length; k++) dot += a[k]! * b[k]!;
        whole[i]![j]! += dot;
        block[i]![j]! += dot;
      }
    }
    opts.onProgress?.(n + 1, names.length, name);
  }
  return {
    models: fts.map((ft) => ft.label),
    ...cosines(whole),
    layers: [...perLayer.entries()].sort((a, b) => a[0] - b[0]).map(([layer, g]) => ({ layer, ...cosines(g) })),
    other: cosines(other),
    tensors_used: names.length,
    skipped,
  };
}

/** Upper-triangular dot products → symmetric cosine matrix and norms. */
function cosines(dots: Float64Array[]): CosineBlock {
  const norms = dots.map((row, i) => Math.sqrt(row[i]!));
  const cosine = dots.map((_, i) =>
    dots.map((__, j) => {
      const d = i <= j ? dots[i]![j]! : dots[j]![i]!;
      return norms[i]! > 0 && norms[j]! > 0 ? d / (norms[i]! * norms[j]!) : null;
    }),
  );
  return { cosine, norms };
}

function pairProblem(base: WeightStore, ft: WeightStore, name: string): string | null {
  const a = base.tensors.get(name)!;
  const b = ft.tensors.get(name);
  if (!b) return `missing in ${ft.label}`;
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    return `shape [${b.shape.join(', ')}] in ${ft.label}, [${a.shape.join(', ')}] in ${base.label}`;
  }
  if (NOT_WEIGHTS.has(b.dtype)) return `not floating point (${b.dtype}) in ${ft.label}`;
  return null;
}

/**
 * θ_base + Σ λ_i·(θ_ft_i − θ_base) as a float32 safetensors file, for every tensor of the base.
 * Each tensor is computed in float64 from one tensor per model and rounded once; the result
 * tensors are collected and serialised by writeSafetensors, so the output (and its bytes) are
 * held in memory whole: about twice the float32 model size. A writer that streams to a sink
 * tensor by tensor would bound this too; it does not exist yet.
 */
export async function taskArithmetic(
  base: WeightStore,
  fts: readonly WeightStore[],
  lambdas: readonly number[],
  opts: Omit<TaskVectorOptions, 'layerOf'> & { metadata?: Record<string, string> } = {},
): Promise<Uint8Array> {
  if (lambdas.length !== fts.length) throw new Error(`task arithmetic: ${fts.length} fine-tunes but ${lambdas.length} coefficients`);
  if (!lambdas.every(Number.isFinite)) throw new Error(`task arithmetic: coefficients must be finite numbers, got ${lambdas.join(', ')}`);
  for (const [name, t] of base.tensors) {
    if (NOT_WEIGHTS.has(t.dtype)) throw new FormatError(base.label, `tensor "${name}" is ${t.dtype}: task arithmetic needs floating-point tensors`);
    for (const ft of fts) {
      const problem = pairProblem(base, ft, name);
      if (problem) throw new FormatError(ft.label, `tensor "${name}": ${problem}`);
    }
  }
  const out: Array<{ name: string; shape: readonly number[]; data: Float32Array }> = [];
  let n = 0;
  for (const [name, t] of base.tensors) {
    opts.signal?.throwIfAborted();
    const w0 = await base.readF32(name, opts.signal);
    const acc = Float64Array.from(w0);
    for (let i = 0; i < fts.length; i++) {
      const w1 = await fts[i]!.readF32(name, opts.signal);
      const lambda = lambdas[i]!;
      for (let k = 0; k < acc.length; k++) acc[k]! += lambda * (w1[k]! - w0[k]!);
    }
    out.push({ name, shape: t.shape, data: Float32Array.from(acc) });
    opts.onProgress?.(++n, base.tensors.size, name);
  }
  const metadata = { format: 'pt', task_arithmetic: JSON.stringify({ base: base.label, models: fts.map((f) => f.label), lambdas }), ...opts.metadata };
  return writeSafetensors(out, metadata);
}
