// `neurodiff weights <base> <ft>`: per-tensor statistics and spectra of ΔW = W_ft − W_base, streamed
// tensor by tensor. An <ft> (or --adapter) that is a PEFT adapter is analysed from its factors.
import type { WeightsDiff } from '../analysis/weights/types.ts';
import { FormatError } from '../io/source.ts';
import { weightsJob, type DiffProgress } from '../jobs/weights.ts';
import type { Command } from './commands.ts';
import { jsonHint, num, table } from './format.ts';
import { UsageError } from './errors.ts';
import { intOption, openPairAt, pickBackend, str } from './models.ts';

export const weights: Command = {
  summary: 'per-tensor ΔW statistics: norms, relative change, cosine, sparsity, spectra, effective rank',
  usage: '<base> <ft> [--adapter <dir>] [--top-k 16] [--backend cpu|webgpu] [--json]',
  options: {
    adapter: { type: 'string' },
    'top-k': { type: 'string' },
    backend: { type: 'string' },
  },
  async run(positionals, values): Promise<WeightsDiff> {
    const [basePath, ftPath, extra] = positionals;
    const adapterPath = str(values, 'adapter');
    if (!basePath || extra !== undefined || (ftPath === undefined) === (adapterPath === undefined)) {
      throw new UsageError('weights takes <base> and either <ft> (a model or a PEFT adapter folder) or --adapter <dir>');
    }
    const topK = intOption(values, 'top-k', 16, 1);
    const backend = await pickBackend(values);
    const ftArg = (ftPath ?? adapterPath)!;
    const pair = await openPairAt(basePath, ftArg, values, ftPath ? 'fine-tuned model' : 'adapter');
    if (adapterPath && !pair.adapter) throw new FormatError(adapterPath, 'is not a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)');
    let last = 0;
    const onProgress = ({ done, total, name }: DiffProgress) => {
      const now = Date.now();
      if (now - last > 500 || done === total) process.stderr.write(`tensor ${done}/${total} ${name}\n`);
      last = now;
    };
    return weightsJob(pair, { topK }, { backend, onProgress });
  },
  format(result) {
    const r = result as WeightsDiff;
    const changed = r.tensors.filter((t) => t.frobenius > 0).sort((a, b) => (b.relative ?? 0) - (a.relative ?? 0));
    const SHOWN = 20;
    const lines = [`${r.tensors.length} tensors compared, ${changed.length} changed; ${r.missing.length} in one model only, ${r.mismatched.length} with different shapes`];
    if (changed.length > 0) {
      lines.push(changed.length > SHOWN ? `the ${SHOWN} most changed, by ‖ΔW‖_F / ‖W_base‖_F:` : 'changed tensors, by ‖ΔW‖_F / ‖W_base‖_F:');
      const right = (header: string) => ({ header, right: true });
      const rows = changed.slice(0, SHOWN).map((t) => [t.name, num(t.relative), num(t.frobenius), num(t.spectral), num(t.effective_rank)]);
      lines.push(table([{ header: 'tensor' }, right('relative'), right('‖ΔW‖_F'), right('σ₁'), right('eff. rank')], rows).trimEnd());
    }
    for (const m of r.missing) lines.push(`only in ${m.only_in}: ${m.name} [${m.shape.join('×')}]`);
    for (const m of r.mismatched) lines.push(`different shapes: ${m.name} base [${m.base_shape.join('×')}], ft [${m.ft_shape.join('×')}]`);
    return lines.join('\n') + '\n' + jsonHint('every tensor and its spectrum');
  },
};
