import type { ParseArgsConfig } from 'node:util';
import { adl } from './adl.ts';
import { crosscoder } from './crosscoder.ts';
import { forward } from './forward.ts';
import { inspect } from './inspect.ts';
import { lens } from './lens.ts';
import { organism } from './organism.ts';
import { patch } from './patch.ts';
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
};
