import type { Bench, BenchArgs } from '../lib/args.ts';
import { runInBrowser } from '../lib/browser.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { runNodeEnv } from './node.ts';
import { formatEnv } from './report.ts';
import { errorText, type EnvOptions, type EnvResult } from './suite.ts';

const SIZES = [256, 512, 1024];
const FULL_SIZES = [...SIZES, 2048];
/** Longest single run attempted (extrapolated from the previous size); --full allows minutes. */
const MAX_RUN_MS = 60_000;
const FULL_MAX_RUN_MS = 300_000;

function progress(line: string): void {
  console.error(line);
}

export const matmulBench: Bench = {
  description: 'float32 matmul, ours (WebGPU, CPU) against onnxruntime-web and plain JavaScript',
  run: async (args: BenchArgs) => {
    const sizes = args.sizes ?? (args.full ? FULL_SIZES : SIZES);
    const options: EnvOptions = {
      suite: { sizes, maxRunMs: args.full ? FULL_MAX_RUN_MS : MAX_RUN_MS },
      ...(args.threads === undefined ? {} : { threads: args.threads }),
    };
    const environments: (EnvResult | { env: 'node' | 'browser'; error: string })[] = [];
    for (const env of args.envs) {
      const started = performance.now();
      const loadAtStart = loadText();
      progress(`matmul in ${env}, n = ${sizes.join(', ')}; ${loadAtStart}`);
      try {
        let result: EnvResult;
        if (env === 'node') {
          result = await runNodeEnv(options, progress);
        } else {
          const page = await runInBrowser<EnvResult>('matmul', options, progress);
          result = { ...page.result, runtime: `Chromium ${page.browserVersion} headless` };
        }
        result.notes.push(`${loadAtStart} at start, ${loadText()} at end`);
        environments.push(result);
        console.log(`${formatEnv(result)}\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
      } catch (e) {
        environments.push({ env, error: errorText(e) });
        console.log(`== matmul, ${env}: failed: ${errorText(e)}\n`);
      }
    }
    const path = writeResults('matmul', { sizes, maxRunMs: options.suite.maxRunMs, environments });
    console.log(`wrote ${path}`);
  },
};
