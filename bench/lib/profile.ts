// Where a forward's time goes: a Backend wrapper that times every op call (ops run synchronously
// on the CPU backend, so the wall time of a call is its cost) and sums it per category, plus the
// WebAssembly GEMM's own split between its kernels and the JavaScript that packs and copies around
// them. What no op accounts for is the model's JavaScript between ops.
import { wasmGemmStats } from '../../src/gpu/cpu-wasm/gemm.ts';
import type { Backend } from '../../src/model/backend.ts';

const CATEGORY: Record<string, string> = {
  matmul: 'GEMM',
  linear: 'GEMM',
  logitLens: 'GEMM',
  attention: 'attention',
  rmsNorm: 'norms',
  layerNorm: 'norms',
  headRmsNorm: 'norms',
  softmax: 'softmax',
  logSoftmax: 'softmax',
  add: 'elementwise',
  sub: 'elementwise',
  mul: 'elementwise',
  scale: 'elementwise',
  activation: 'elementwise',
  gated: 'elementwise',
  softcap: 'elementwise',
  rope: 'elementwise',
  topk: 'selection',
};

export interface OpProfile {
  /** Milliseconds per category, summed over calls. */
  ms: Map<string, number>;
  calls: Map<string, number>;
}

/**
 * A proxy of `target` that adds the time of each method call to its category (a returned promise
 * counts until it settles: the CPU engines resolve theirs at once).
 */
export function profiled<T extends object>(target: T, categoryOf: (method: string) => string): { proxy: T; profile: OpProfile } {
  const profile: OpProfile = { ms: new Map(), calls: new Map() };
  const add = (category: string, t0: number) => {
    profile.ms.set(category, (profile.ms.get(category) ?? 0) + performance.now() - t0);
    profile.calls.set(category, (profile.calls.get(category) ?? 0) + 1);
  };
  const proxy = new Proxy(target, {
    get(obj, key, receiver) {
      const value: unknown = Reflect.get(obj, key, receiver);
      if (typeof value !== 'function' || typeof key !== 'string') return value;
      const category = categoryOf(key);
      const fn = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        const t0 = performance.now();
        let result: unknown;
        try {
          result = fn.apply(obj, args);
        } catch (e) {
          add(category, t0);
          throw e;
        }
        if (result instanceof Promise) return result.finally(() => add(category, t0));
        add(category, t0);
        return result;
      };
    },
  });
  return { proxy, profile };
}

export function profiledBackend(be: Backend): { backend: Backend; profile: OpProfile; reset(): void } {
  const { proxy, profile } = profiled(be, (name) => CATEGORY[name] ?? 'other ops');
  return {
    backend: proxy,
    profile,
    reset() {
      profile.ms.clear();
      profile.calls.clear();
      wasmGemmStats.kernelMs = 0;
      wasmGemmStats.totalMs = 0;
    },
  };
}

/** One line: each category's share of `totalMs` (the GEMM split into kernels and the JS around them). */
export function profileText(profile: OpProfile, totalMs: number, between = 'JS between ops'): string {
  const ms = new Map(profile.ms);
  const gemm = ms.get('GEMM') ?? 0;
  if (wasmGemmStats.totalMs > 0 && ms.has('GEMM')) {
    ms.delete('GEMM');
    ms.set('GEMM wasm kernels', wasmGemmStats.kernelMs);
    ms.set('GEMM JS (pack, copy, rest of the op)', gemm - wasmGemmStats.kernelMs);
  }
  let ops = 0;
  for (const v of ms.values()) ops += v;
  ms.set(between, totalMs - ops);
  const parts = [...ms.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${((100 * v) / totalMs).toFixed(1)}%`);
  return `${totalMs.toFixed(0)} ms: ${parts.join(', ')}`;
}
