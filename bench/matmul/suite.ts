// Runs the matmul implementations over the sizes in one environment (Node or the browser page)
// and returns plain JSON, so the page can hand its results back to Node.

import { measure, type MeasureOptions } from '../lib/timing.ts';
import { randomMatrix } from '../lib/random.ts';
import { sampledError, type MatmulImpl } from './impls.ts';

/** Sampled error bound relative to Σ|a·b|: float32 rounding stays far below, a wrong product far above. */
const MAX_RELATIVE_ERROR = 1e-4;

export interface ImplResult {
  id: string;
  label: string;
  ours: boolean;
  gflops?: number;
  medianMs?: number;
  samplesMs?: number[];
  itersPerSample?: number;
  warmupMs?: number;
  setupMs?: number;
  relativeError?: number;
  /** Why there is no number. */
  error?: string;
  skipped?: string;
}

export interface SizeResult {
  n: number;
  impls: ImplResult[];
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  description: string;
  isFallbackAdapter: boolean;
}

export interface EnvResult {
  env: 'node' | 'browser';
  runtime: string;
  adapter: AdapterDescription | { error: string };
  ortThreads: number;
  notes: string[];
  sizes: SizeResult[];
}

/** An implementation that could not be set up in this environment, with the reason. */
export interface Unavailable {
  id: string;
  label: string;
  ours: boolean;
  error: string;
}

export function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0]!.slice(0, 300);
}

export interface SuiteOptions {
  sizes: readonly number[];
  /**
   * An implementation whose single run, extrapolated (n³) from the previous size, would exceed this
   * is skipped at the larger size: software GPU paths take minutes at 2048.
   */
  maxRunMs: number;
  measure?: Partial<MeasureOptions>;
}

/** What bench/matmul/index.ts hands to each environment (JSON, since the page receives it too). */
export interface EnvOptions {
  suite: SuiteOptions;
  /** onnxruntime-web wasm threads; default: the number of cores. */
  threads?: number;
}

export async function runSuite(
  impls: readonly (MatmulImpl | Unavailable)[],
  options: SuiteOptions,
  log: (line: string) => void,
): Promise<SizeResult[]> {
  const results: SizeResult[] = [];
  const previous = new Map<string, { n: number; ms: number }>();
  for (const n of options.sizes) {
    const a = randomMatrix(n * n, n);
    const b = randomMatrix(n * n, n + 1);
    const row: ImplResult[] = [];
    for (const impl of impls) {
      const base = { id: impl.id, label: impl.label, ours: impl.ours };
      if ('error' in impl) {
        row.push({ ...base, error: impl.error });
        continue;
      }
      if (impl.maxN !== undefined && n > impl.maxN) {
        row.push({ ...base, skipped: `only run up to n = ${impl.maxN}` });
        continue;
      }
      const last = previous.get(impl.id);
      const predictedMs = last ? last.ms * (n / last.n) ** 3 : 0;
      if (predictedMs > options.maxRunMs) {
        const why = `one run would take about ${(predictedMs / 1000).toFixed(0)} s (limit ${options.maxRunMs / 1000} s per run)`;
        log(`  ${n} ${impl.label}: skipped, ${why}`);
        row.push({ ...base, skipped: why });
        continue;
      }
      const result = await runOne(impl, n, a, b, log, options.measure ?? {});
      if (result.medianMs !== undefined) previous.set(impl.id, { n, ms: result.medianMs });
      row.push(result);
    }
    results.push({ n, impls: row });
  }
  return results;
}

async function runOne(
  impl: MatmulImpl,
  n: number,
  a: Float32Array,
  b: Float32Array,
  log: (line: string) => void,
  measureOptions: Partial<MeasureOptions>,
): Promise<ImplResult> {
  const base = { id: impl.id, label: impl.label, ours: impl.ours };
  let t = performance.now();
  let prepared;
  try {
    prepared = await impl.prepare(n, a, b);
  } catch (e) {
    log(`  ${n} ${impl.label}: setup failed: ${errorText(e)}`);
    return { ...base, error: `setup failed: ${errorText(e)}` };
  }
  const setupMs = performance.now() - t;
  try {
    t = performance.now();
    const { timing, first } = await measure((iters) => prepared.run(iters), measureOptions);
    const relativeError = sampledError(first, a, b, n);
    const gflops = (2 * n ** 3) / (timing.medianMs * 1e6);
    const measured = { ...base, ...timing, setupMs, relativeError };
    log(
      `  ${n} ${impl.label}: ${gflops.toFixed(2)} GFLOP/s (${timing.medianMs.toFixed(1)} ms, ` +
        `${timing.samplesMs.length}×${timing.itersPerSample}, ${((performance.now() - t) / 1000).toFixed(1)} s)`,
    );
    if (!(relativeError <= MAX_RELATIVE_ERROR)) {
      return { ...measured, error: `wrong result: sampled relative error ${relativeError.toExponential(2)}` };
    }
    return { ...measured, gflops };
  } catch (e) {
    log(`  ${n} ${impl.label}: failed: ${errorText(e)}`);
    return { ...base, setupMs, error: errorText(e) };
  } finally {
    await prepared.dispose();
  }
}
