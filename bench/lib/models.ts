// Generated benchmark models (scripts/make-random-model.ts), written on demand into bench/models
// (gitignored) and reused by later runs.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMPLETE, makeRandomModel, parameterCount, PRESETS } from '../../scripts/make-random-model.ts';

export const MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'models');
export const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');

/** The preset's folder (its base/ and ft/ inside), generated first when it is missing. */
export function randomModel(preset: string, log: (line: string) => void): string {
  const spec = PRESETS[preset];
  if (!spec) throw new Error(`no model preset "${preset}" (have: ${Object.keys(PRESETS).join(', ')})`);
  const dir = join(MODELS_DIR, preset);
  const marker = join(dir, COMPLETE);
  if (!existsSync(marker) || readFileSync(marker, 'utf8').trim() !== JSON.stringify(spec)) {
    log(`generating ${preset} (${(parameterCount(spec) / 1e6).toFixed(0)}M parameters${spec.fineTune ? ', base and fine-tune' : ''}) into ${dir}`);
    const t = performance.now();
    makeRandomModel(spec, dir, log);
    log(`generated ${preset} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  return dir;
}
