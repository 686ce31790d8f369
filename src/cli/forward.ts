// `neurodiff forward <model>`: one forward pass with the next-token top k per position, captured hook
// activations and an optional greedy continuation.
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { intOption, loadModelArg, pickBackend, promptIds, tokenProbs, tokenText } from './models.ts';

interface ForwardJson {
  tokens: { id: number; token: string | null }[];
  top: ReturnType<typeof tokenProbs>[];
  hooks: Record<string, { shape: number[]; data: number[] }>;
  generated?: { ids: number[]; text: string | null };
}

export const forward: Command = {
  summary: 'run one model on a prompt: next-token top k, hook activations, greedy generation',
  usage: '<model> [--adapter <dir>] (--prompt <text> | --ids 1,2,3) [--hook <name>]... [--top 5] [--generate n] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: {
    adapter: { type: 'string' },
    prompt: { type: 'string' },
    ids: { type: 'string' },
    hook: { type: 'string', multiple: true },
    top: { type: 'string' },
    generate: { type: 'string' },
    backend: { type: 'string' },
    tokenizer: { type: 'string' },
  },
  async run(positionals, values): Promise<ForwardJson> {
    const [path, extra] = positionals;
    if (!path || extra !== undefined) throw new UsageError('forward takes one model (and --adapter <dir> for a PEFT adapter)');
    const top = intOption(values, 'top', 5, 1);
    const generate = intOption(values, 'generate', 0);
    const hooks = (values.hook as string[] | undefined) ?? [];
    const backend = await pickBackend(values);
    const { model, tokenizer } = await loadModelArg(path, backend, values);
    const known = new Set(model.hookPoints.map((p) => p.name));
    for (const h of hooks) if (!known.has(h)) throw new UsageError(`--hook ${h}: no such hook point (e.g. blocks.0.hook_resid_pre, blocks.${model.config.nLayers - 1}.hook_mlp_out, ln_final.hook_normalized, logits)`);
    const ids = promptIds(values, tokenizer);
    if (ids.some((id) => id < 0 || id >= model.config.vocab)) throw new UsageError(`--ids: token ids must be in 0..${model.config.vocab - 1}`);
    const { logits, cache } = model.runWithCache([ids], hooks);
    const k = Math.min(top, model.config.vocab);
    const probs = backend.softmax(logits!);
    const t = backend.topk(probs, k);
    backend.dispose(probs);
    const values_ = (await backend.read(t.values)) as Float32Array;
    const idx = (await backend.read(t.indices)) as Int32Array;
    backend.dispose(t.values);
    backend.dispose(t.indices);
    const captured: ForwardJson['hooks'] = {};
    for (const name of hooks) {
      const tensor = cache.get(name)!;
      captured[name] = { shape: [...tensor.shape], data: Array.from((await backend.read(tensor)) as Float32Array) };
      if (tensor !== logits) backend.dispose(tensor);
    }
    backend.dispose(logits!);
    const out: ForwardJson = {
      tokens: ids.map((id) => ({ id, token: tokenText(tokenizer, id) })),
      top: ids.map((_, p) => tokenProbs(tokenizer, idx, values_, p * k, k)),
      hooks: captured,
    };
    if (generate > 0) {
      const stop = tokenizer?.eosId === undefined ? [] : [tokenizer.eosId];
      const gen = await model.generate(ids, generate, { stop });
      out.generated = { ids: gen, text: tokenizer ? tokenizer.decode([...ids, ...gen]) : null };
    }
    return out;
  },
};
