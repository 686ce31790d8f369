// `neurodiff inspect <model>`: what a model file or folder holds, read from its headers only.
import { parseConfig, parameterCount } from '../model/config.ts';
import { loraAdapterFromStore } from '../model/lora.ts';
import { numel } from '../model/backend.ts';
import { describeNaming } from '../io/onnx-names.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { jsonHint, plural, table, wrapList } from './format.ts';
import { openModelAt } from './models.ts';
import { join } from 'node:path';

export const inspect: Command = {
  summary: 'architecture, parameter count, dtypes and tensors of a model (or a PEFT adapter)',
  usage: '<model>',
  options: {},
  async run(positionals, values) {
    const [path, extra] = positionals;
    if (!path || extra !== undefined) throw new UsageError('inspect takes one model: a Hugging Face folder, a .gguf file, a llama2.c .bin or a PEFT adapter folder');
    const opened = await openModelAt(path, 'model', values);
    const tensors = [...opened.store.tensors.values()].map((t) => ({ name: t.name, shape: [...t.shape], dtype: t.dtype }));
    const dtypes: Record<string, number> = {};
    let stored = 0;
    let bytes = 0;
    for (const t of opened.store.tensors.values()) {
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      stored += numel(t.shape);
      bytes += t.byteLength;
    }
    const common = { path, format: opened.kind, label: opened.label, stored_parameters: stored, bytes, dtypes, warnings: opened.warnings, ...(opened.onnxNames ? { onnx_names: describeNaming(opened.onnxNames) } : {}) };
    if (opened.kind === 'peft-adapter') {
      const a = loraAdapterFromStore(opened.store, opened.config, join(path, 'adapter_config.json'));
      return {
        ...common,
        adapter: {
          r: a.config.r,
          alpha: a.config.alpha,
          rslora: a.config.useRslora,
          targets: [...a.targets.values()].map((t) => ({ weight: t.weight, r: t.r, scaling: t.scaling, a: t.shapeA, b: t.shapeB })),
        },
        tensors,
      };
    }
    const c = parseConfig(opened.config, opened.kind === 'hf' ? join(path, 'config.json') : opened.label);
    const tok = opened.tokenizer;
    return {
      ...common,
      architecture: c.architecture,
      model_type: c.modelType,
      config: {
        d_model: c.dModel,
        layers: c.nLayers,
        heads: c.nHeads,
        kv_heads: c.nKvHeads,
        head_dim: c.headDim,
        d_mlp: c.dMlp,
        vocab: c.vocab,
        max_positions: c.maxPositions,
        norm: c.norm.kind,
        activation: c.activation,
        gated_mlp: c.gatedMlp,
        positions: c.positions,
        tied_embeddings: c.tiedEmbeddings,
        dtype: c.dtype ?? null,
      },
      parameters: parameterCount(c),
      tokenizer: tok ? { vocab_size: tok.vocabSize, bos: tok.bosId ?? null, eos: tok.eosId ?? null } : null,
      tensors,
    };
  },
  format(result) {
    return formatInspect(result as InspectJson);
  },
};

interface InspectJson {
  path: string;
  format: string;
  label: string;
  stored_parameters: number;
  bytes: number;
  dtypes: Record<string, number>;
  warnings: string[];
  architecture?: string;
  config?: Record<string, unknown>;
  tokenizer?: { vocab_size: number } | null;
  adapter?: { r: number; alpha: number; targets: unknown[] };
  tensors: { name: string; shape: number[]; dtype: string }[];
}

/** The summary, then the tensors with layer numbers folded ("layers.{i}" × n): one row per kind of tensor. */
function formatInspect(r: InspectJson): string {
  const lines = [`${r.path}: ${r.format} (${r.label})`];
  const stored = `${r.stored_parameters.toLocaleString('en-US')} parameters stored (${(r.bytes / 2 ** 20).toFixed(1)} MiB)`;
  lines.push(r.architecture ? `${r.architecture}, ${stored}` : stored);
  if (r.config) lines.push(wrapList(Object.entries(r.config).map(([k, v]) => `${k} ${v === null ? '—' : String(v)}`)));
  if (r.adapter) lines.push(`LoRA r ${r.adapter.r}, alpha ${r.adapter.alpha}, ${plural(r.adapter.targets.length, 'target')}`);
  if (r.tokenizer) lines.push(`tokenizer: vocabulary ${r.tokenizer.vocab_size}`);
  lines.push(`dtypes: ${Object.entries(r.dtypes).map(([d, n]) => `${d} ${plural(n, 'tensor')}`).join(', ')}`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  const groups = new Map<string, { count: number; shape: number[]; dtype: string }>();
  for (const t of r.tensors) {
    const key = `${t.name.replace(/\.\d+\./, '.{i}.')}\u0000${t.shape.join('×')}\u0000${t.dtype}`;
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { count: 1, shape: t.shape, dtype: t.dtype });
  }
  lines.push('', `${plural(r.tensors.length, 'tensor')}:`);
  const rows = [...groups].map(([key, g]) => [key.split('\u0000')[0]!, g.count > 1 ? `×${g.count}` : '', g.shape.join('×'), g.dtype]);
  return lines.join('\n') + '\n' + table([{ header: 'name' }, { header: 'count', right: true }, { header: 'shape', right: true }, { header: 'dtype' }], rows) + jsonHint('each tensor');
}
