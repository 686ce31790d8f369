// `neurodiff inspect <model>`: what a model file or folder holds, read from its headers only.
import { parseConfig, parameterCount } from '../model/config.ts';
import { loraAdapterFromStore } from '../model/lora.ts';
import { numel } from '../model/backend.ts';
import { describeNaming } from '../io/onnx-names.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { openModelAt } from './models.ts';
import { join } from 'node:path';

export const inspect: Command = {
  summary: 'architecture, parameter count, dtypes and tensors of a model (or a PEFT adapter)',
  usage: '<model>',
  options: {},
  async run(positionals) {
    const [path, extra] = positionals;
    if (!path || extra !== undefined) throw new UsageError('inspect takes one model: a Hugging Face folder, a .gguf file, a llama2.c .bin or a PEFT adapter folder');
    const opened = await openModelAt(path, 'model');
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
};
