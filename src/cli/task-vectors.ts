// `neurodiff task-vectors <base> <ft>...`: cosines between the task vectors τ_i = θ_ft_i − θ_base of
// several fine-tunes (or PEFT adapters) of one base, whole model and per layer; with --lambdas and
// --out <dir>, task arithmetic θ_base + Σ λ_i τ_i written as a Hugging Face folder that loads back.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { taskArithmetic, taskVectorCosines, type TaskVectorCosines } from '../analysis/weights/task-vectors.ts';
import { FormatError } from '../io/source.ts';
import type { WeightStore } from '../io/store.ts';
import { loraAdapterFromStore, mergedStore } from '../model/lora.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { numberList, openModelAt, str } from './models.ts';

interface TaskVectorsJson extends TaskVectorCosines {
  arithmetic: { lambdas: number[]; out: string; bytes: number } | null;
}

export const taskVectors: Command = {
  summary: 'cosines of several fine-tunes\' task vectors (whole model, per layer); task arithmetic with --lambdas --out',
  usage: '<base> <ft> [<ft>...] [--lambdas 0.5,0.5 --out <dir>] [--json]',
  options: { lambdas: { type: 'string' }, out: { type: 'string' } },
  async run(positionals, values): Promise<TaskVectorsJson> {
    const [basePath, ...ftPaths] = positionals;
    if (!basePath || ftPaths.length === 0) throw new UsageError('task-vectors takes a base model and one or more fine-tunes or PEFT adapters');
    const lambdasText = str(values, 'lambdas');
    const out = str(values, 'out');
    if ((lambdasText === undefined) !== (out === undefined)) throw new UsageError('task arithmetic needs both --lambdas and --out');
    const base = await openModelAt(basePath, 'base model', values);
    if (base.kind === 'peft-adapter') throw new FormatError(basePath, 'is a PEFT adapter; give the model it adapts as <base>');
    const fts: WeightStore[] = [];
    for (const path of ftPaths) {
      const ft = await openModelAt(path, 'fine-tuned model', values);
      fts.push(ft.kind === 'peft-adapter' ? mergedStore(base.store, loraAdapterFromStore(ft.store, ft.config, join(path, 'adapter_config.json'))) : ft.store);
    }
    const onProgress = (done: number, total: number) => {
      if (done === total || done % 50 === 0) process.stderr.write(`tensor ${done}/${total}\n`);
    };
    const cosines = await taskVectorCosines(base.store, fts, { onProgress });
    let arithmetic: TaskVectorsJson['arithmetic'] = null;
    if (lambdasText !== undefined && out !== undefined) {
      const lambdas = numberList(lambdasText, '--lambdas');
      if (lambdas.length !== fts.length) throw new UsageError(`--lambdas has ${lambdas.length} values for ${fts.length} fine-tunes`);
      const bytes = await taskArithmetic(base.store, fts, lambdas, { onProgress });
      await mkdir(out, { recursive: true });
      await writeFile(join(out, 'model.safetensors'), bytes);
      await writeFile(join(out, 'config.json'), JSON.stringify(base.config, null, 2));
      if (statSync(basePath).isDirectory()) {
        for (const name of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
          if (existsSync(join(basePath, name))) await copyFile(join(basePath, name), join(out, name));
        }
      }
      arithmetic = { lambdas, out, bytes: bytes.byteLength };
    }
    return { ...cosines, arithmetic };
  },
};
