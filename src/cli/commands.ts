import type { ParseArgsConfig } from 'node:util';
import { crosscoder } from './crosscoder.ts';

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
};
