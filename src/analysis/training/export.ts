// What a training run leaves for other tools: a PEFT adapter folder (LoRA) or the tensors of a Hugging
// Face checkpoint (full fine-tuning), under the checkpoint's own names. Also reads PEFT factors back in
// (to start from an adapter) and maps canonical tensors to checkpoint names (to compare gradients).
import { writeSafetensors } from '../../io/safetensors.ts';
import type { WeightStore } from '../../io/store.ts';
import type { WeightSource } from '../../model/convert.ts';
import type { LoraAdapter } from '../../model/lora.ts';
import type { LoraOptions, TrainableTransformer } from './model.ts';
import { transpose } from './ops.ts';
import { widened } from './tape.ts';

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** PEFT's key for a factor of a module: base_model.model.<module>.lora_A.weight. */
export function peftFactorName(module: string, factor: 'A' | 'B'): string {
  return `base_model.model.${module}.lora_${factor}.weight`;
}

/** adapter_config.json and adapter_model.safetensors of the model's LoRA factors. */
export function peftAdapterFiles(model: TrainableTransformer, baseModelName: string): Map<string, Uint8Array> {
  if (model.trainable.kind !== 'lora') throw new Error('the model is fully fine-tuned: it has no LoRA factors to write as an adapter');
  const o: LoraOptions = model.trainable.lora;
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const m of model.lora.values()) {
    tensors.push({ name: peftFactorName(m.module, 'A'), shape: [o.rank, m.nIn], data: m.A.data });
    tensors.push({ name: peftFactorName(m.module, 'B'), shape: [m.nOut, o.rank], data: m.B.data });
  }
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModelName,
    r: o.rank,
    lora_alpha: o.alpha,
    use_rslora: o.rslora,
    target_modules: [...o.targetModules].sort(),
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: model.config.architecture === 'gpt2',
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
  };
  const enc = new TextEncoder();
  return new Map([
    ['adapter_config.json', enc.encode(JSON.stringify(config, null, 2) + '\n')],
    ['adapter_model.safetensors', writeSafetensors(tensors, { format: 'pt' })],
  ]);
}

/** Copies an adapter's factors into the model's LoRA modules (to start from it, or to compare). */
export async function setLoraFactors(model: TrainableTransformer, adapter: LoraAdapter): Promise<void> {
  for (const m of model.lora.values()) {
    const target = adapter.targets.get(`${m.module}.weight`);
    if (!target) throw new Error(`${adapter.label}: no factors for module "${m.module}"`);
    const f = await adapter.readFactors(target);
    if (f.A.length !== m.A.data.length || f.B.length !== m.B.data.length) {
      throw new Error(`${adapter.label}: factors of "${m.module}" are A [${target.shapeA.join(', ')}], B [${target.shapeB.join(', ')}]; the model's are [${m.A.data.length / m.nIn}, ${m.nIn}], [${m.nOut}, ${m.B.data.length / m.nOut}]`);
    }
    m.A.data.set(f.A);
    m.B.data.set(f.B);
  }
}

/**
 * Canonical tensors under their checkpoint names and layouts: fused parts joined by rows, GPT-2's
 * Conv1D weights transposed back to [in, out]. Tied embeddings come out once, as the embedding.
 */
export function toCheckpoint(canonical: ReadonlyMap<string, Float32Array>, sources: ReadonlyMap<string, WeightSource>, shapes: ReadonlyMap<string, readonly number[]>): NamedTensor[] {
  const groups = new Map<string, { source: WeightSource; data: Float32Array; shape: readonly number[] }[]>();
  for (const [name, data] of canonical) {
    const source = sources.get(name);
    const shape = shapes.get(name);
    if (!source || !shape) throw new Error(`no checkpoint source for "${name}"`);
    const list = groups.get(source.name) ?? [];
    list.push({ source, data, shape });
    groups.set(source.name, list);
  }
  const out: NamedTensor[] = [];
  for (const [name, parts] of groups) {
    const cols = parts[0]!.shape.length === 2 ? parts[0]!.shape[1]! : 1;
    const rows = Math.max(...parts.map((p) => p.source.rows?.[1] ?? p.shape[0]!));
    const joined = new Float32Array(rows * cols);
    for (const p of parts) joined.set(p.data, (p.source.rows?.[0] ?? 0) * cols);
    const vector = parts[0]!.shape.length === 1;
    if (parts[0]!.source.transpose) out.push({ name, shape: [cols, rows], data: transpose(joined, rows, cols) });
    else out.push({ name, shape: vector ? [rows] : [rows, cols], data: joined });
  }
  return out;
}

/** Shapes of the model's canonical weights. */
export function canonicalShapes(model: TrainableTransformer): Map<string, number[]> {
  const c = model.config;
  const d = c.dModel;
  const shapes = new Map<string, number[]>();
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const matrices: Record<string, [number, number]> = {
    'attn.W_Q': [q, d],
    'attn.W_K': [kv, d],
    'attn.W_V': [kv, d],
    'attn.W_O': [d, q],
    'mlp.W_gate': [c.dMlp, d],
    'mlp.W_in': [c.dMlp, d],
    'mlp.W_out': [d, c.dMlp],
  };
  for (const [name, p] of model.weights) {
    const local = name.replace(/^blocks\.\d+\./, '');
    if (name === 'embed.W_E' || name === 'unembed.W_U') shapes.set(name, [c.vocab, d]);
    else if (name === 'pos_embed.W_pos') shapes.set(name, [c.maxPositions, d]);
    else if (matrices[local]) shapes.set(name, matrices[local]);
    else shapes.set(name, [p.data.length]);
  }
  return shapes;
}

/** The full fine-tune as model.safetensors: every tensor of the base checkpoint, trained ones replaced. */
export async function fullCheckpointFile(model: TrainableTransformer, base: WeightStore): Promise<Uint8Array> {
  const data = new Map([...model.weights].map(([n, p]) => [n, widened(p.data)]));
  const trained = new Map(toCheckpoint(data, model.sources, canonicalShapes(model)).map((t) => [t.name, t]));
  // A tied checkpoint that still stores lm_head.weight gets the trained embedding there too.
  const embedding = [...trained.values()].find((t) => t.name === model.sources.get('embed.W_E')?.name);
  const tensors: NamedTensor[] = [];
  for (const [name, stored] of base.tensors) {
    const tiedHead = !model.weights.has('unembed.W_U') && name.endsWith('lm_head.weight') && embedding ? { ...embedding, name } : undefined;
    tensors.push(trained.get(name) ?? tiedHead ?? { name, shape: [...stored.shape], data: await base.readF32(name) });
  }
  return writeSafetensors(tensors, { format: 'pt' });
}
