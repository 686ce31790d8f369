import type { ParseArgsConfig } from 'node:util';
import { adl } from './adl.ts';
import { amplify } from './amplify.ts';
import { attention } from './attention.ts';
import { crosscoder } from './crosscoder.ts';
import { diffSae } from './diff-sae.ts';
import { forward } from './forward.ts';
import { inspect } from './inspect.ts';
import { kl } from './kl.ts';
import { lens } from './lens.ts';
import { mine } from './mine.ts';
import { organism } from './organism.ts';
import { patch } from './patch.ts';
import { pca } from './pca.ts';
import { report } from './report.ts';
import { steer } from './steer.ts';
import { taskVectors } from './task-vectors.ts';
import { weights } from './weights.ts';

export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(positionals: string[], values: Record<string, unknown>): Promise<unknown>;
  /** Human-readable output when --json is not given. */
  format?(result: unknown): string;
}

export const commands: Record<string, Command> = {
  crosscoder,
  inspect,
  weights,
  'task-vectors': taskVectors,
  forward,
  lens,
  adl,
  steer,
  patch,
  report,
  organism,
  mine,
  kl,
  pca,
  'diff-sae': diffSae,
  amplify,
  attention,
};
