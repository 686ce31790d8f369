import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

export function commit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** Whether src/ differs from the commit (work in progress of others is measured too). */
export function sourceDirty(): boolean | undefined {
  try {
    return execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().length > 0;
  } catch {
    return undefined;
  }
}

/** The 1-minute load average against the core count: other work on a shared machine slows every number. */
export function loadText(): string {
  return `load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores`;
}

/** Writes bench/results/<name>.json with the machine it ran on; returns the path. */
export function writeResults(name: string, results: object): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    loadAverageAtEnd: loadavg().map((l) => +l.toFixed(2)),
  };
  const body = { benchmark: name, date: new Date().toISOString(), commit: commit() ?? null, srcDirty: sourceDirty() ?? null, machine, ...results };
  writeFileSync(path, `${JSON.stringify(body, null, 2)}\n`);
  return path;
}
