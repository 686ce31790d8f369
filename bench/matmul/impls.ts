// The matmul implementations compared, written once for Node and the browser page. Every one
// computes C[n, n] = A[n, n] · B[n, n] in float32 from host arrays; `run(iters)` repeats the
// product and resolves with the last C on the host, so timing a call covers a readback.

import type { Backend, Tensor } from '../../src/model/backend.ts';
import { flags } from '../../src/kernels/flags.ts';
import { matmulModel } from '../lib/onnx-matmul.ts';

export type OrtModule = typeof import('onnxruntime-web');

export interface MatmulRun {
  run(iters: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export interface MatmulImpl {
  id: string;
  label: string;
  /** Our own code (the ratios are ours against the others). */
  ours: boolean;
  /** Sizes above this are skipped: one product would take minutes. */
  maxN?: number;
  prepare(n: number, a: Float32Array, b: Float32Array): Promise<MatmulRun>;
}

function hostRun(compute: () => Float32Array): MatmulRun {
  return {
    run: (iters) => {
      let c = compute();
      for (let i = 1; i < iters; i++) c = compute();
      return Promise.resolve(c);
    },
    dispose: () => Promise.resolve(),
  };
}

export const jsNaive: MatmulImpl = {
  id: 'js-naive',
  label: 'JS naive ijk',
  ours: false,
  maxN: 1024,
  prepare: (n, a, b) => {
    const c = new Float32Array(n * n);
    return Promise.resolve(
      hostRun(() => {
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let k = 0; k < n; k++) s += a[i * n + k]! * b[k * n + j]!;
            c[i * n + j] = s;
          }
        }
        return c;
      }),
    );
  },
};

export const jsIkj: MatmulImpl = {
  id: 'js-ikj',
  label: 'JS ikj',
  ours: false,
  prepare: (n, a, b) => {
    const c = new Float32Array(n * n);
    return Promise.resolve(
      hostRun(() => {
        c.fill(0);
        for (let i = 0; i < n; i++) {
          const row = i * n;
          for (let k = 0; k < n; k++) {
            const aik = a[row + k]!;
            const bRow = k * n;
            for (let j = 0; j < n; j++) c[row + j]! += aik * b[bRow + j]!;
          }
        }
        return c;
      }),
    );
  },
};

/** Our Backend's matmul with both operands resident in the backend's storage. */
export function backendImpl(id: string, label: string, backend: Backend): MatmulImpl {
  return {
    id,
    label,
    ours: true,
    prepare: (n, a, b) => {
      const ta = backend.fromArray(a, [n, n]);
      const tb = backend.fromArray(b, [n, n]);
      return Promise.resolve({
        run: async (iters) => {
          let c: Tensor | undefined;
          for (let i = 0; i < iters; i++) {
            if (c) backend.dispose(c);
            c = backend.matmul(ta, tb);
          }
          const out = await backend.read(c!);
          backend.dispose(c!);
          if (!(out instanceof Float32Array)) throw new Error(`${label}: read returned ${out.constructor.name}`);
          return out;
        },
        dispose: () => {
          backend.dispose(ta);
          backend.dispose(tb);
          return Promise.resolve();
        },
      });
    },
  };
}

/** The tunables our WebGPU matmul ran with, for the report. */
export function ourMatmulFlags(): string {
  const f = flags;
  return (
    `ours WebGPU matmul: ${f.matmulTileM}×${f.matmulTileN} outputs/thread, ${f.matmulWorkgroupM}×${f.matmulWorkgroupN} threads, ` +
    `K tile ${f.matmulTileK}, vec4 ${f.matmulVec4 ? 'on' : 'off'}`
  );
}

/**
 * onnxruntime-web running a one-node MatMul graph with B as an initializer; A is fed each run and
 * Y comes back to the host (for the webgpu EP that is a readback).
 */
export function ortImpl(id: string, label: string, ort: OrtModule, ep: 'wasm' | 'webgpu'): MatmulImpl {
  return {
    id,
    label,
    ours: false,
    prepare: async (n, a, b) => {
      const session = await ort.InferenceSession.create(matmulModel(n, n, n, b), {
        executionProviders: [ep],
        graphOptimizationLevel: 'all',
      });
      const feeds = { A: new ort.Tensor('float32', a, [n, n]) };
      return {
        run: async (iters) => {
          let y: Float32Array | undefined;
          for (let i = 0; i < iters; i++) {
            const out = await session.run(feeds);
            const t = out.Y;
            if (!t) throw new Error(`${label}: no output Y`);
            y = (await t.getData()) as Float32Array;
            t.dispose();
          }
          return y!;
        },
        dispose: () => session.release(),
      };
    },
  };
}

/**
 * Largest error at sampled entries of C against float64 dot products, relative to Σ|a_ik·b_kj|
 * (the scale of float32 rounding in a dot product).
 */
export function sampledError(c: Float32Array, a: Float32Array, b: Float32Array, n: number, samples = 64): number {
  if (c.length !== n * n) throw new Error(`result has ${c.length} values, expected ${n * n}`);
  let worst = 0;
  for (let s = 0; s < samples; s++) {
    const i = (s * 7919) % n;
    const j = (s * 104729 + 13) % n;
    let dot = 0;
    let scale = 0;
    for (let k = 0; k < n; k++) {
      const p = a[i * n + k]! * b[k * n + j]!;
      dot += p;
      scale += Math.abs(p);
    }
    const err = Math.abs(c[i * n + j]! - dot) / (scale + 1e-30);
    worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
  }
  return worst;
}
