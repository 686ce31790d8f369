// Every WGSL kernel family of src/kernels, driven through the WebGPU backend at one size each and
// timed per kernel on the GPU with timestamp queries (src/gpu/kernel-timer.ts) where the adapter
// has them, by wall clock per call otherwise. The same code runs in Node (Dawn) and in the
// benchmark page (Chromium): bench/kernels/index.ts and browser.ts.
import type { Backend, Tensor } from '../../src/model/backend.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { KernelTimer } from '../../src/gpu/kernel-timer.ts';

export type KernelScale = 'software' | 'gpu';

export interface KernelSuiteOptions {
  /** 'software': tiny sizes (SwiftShader, llvmpipe); 'gpu': sizes that fill a real GPU. */
  scale: KernelScale;
  /** Timed calls per case after one warm-up call. */
  calls: number;
}

export interface KernelRow {
  case: string;
  shape: string;
  /** Kernels dispatched per call (by name) and their GPU time per call; empty without timestamps. */
  kernels: { name: string; dispatches: number; usPerCall: number }[];
  /** GPU time of all the case's kernels per call (timestamps), or wall time per call (no timestamps). */
  usPerCall: number;
  timing: 'timestamp-query' | 'wall clock';
  gflops: number | null;
  gbps: number;
}

export interface KernelSuiteResult {
  adapter: string;
  software: boolean;
  timestamps: boolean;
  rows: KernelRow[];
}

interface Case {
  name: string;
  shape: string;
  /** Floating-point operations of one call (null where the kernel only moves data). */
  flops: number | null;
  /** Bytes one call must read and write at least. */
  bytes: number;
  setup(b: Backend): { run(): Tensor[]; inputs: Tensor[] };
}

function random(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 32 - 0.5;
  }
  return out;
}

function cases(scale: KernelScale): Case[] {
  const big = scale === 'gpu';
  const [mm, lin, rows, cols, tokens, heads, vocab] = big
    ? [2048, [512, 4096, 4096], 4096, 4096, 1024, 16, 32768]
    : [128, [32, 128, 256], 64, 256, 64, 4, 2048];
  const headDim = 64;
  const d = heads * headDim;
  const n = rows * cols;
  const t = (b: Backend, shape: number[], seed: number, dtype?: 'f16') => b.fromArray(random(shape.reduce((x, y) => x * y, 1), seed), shape, dtype);
  const [lm, lk, ln] = lin as [number, number, number];
  return [
    {
      name: 'matmul',
      shape: `${mm}×${mm}·${mm}×${mm}`,
      flops: 2 * mm ** 3,
      bytes: 3 * 4 * mm * mm,
      setup: (b) => {
        const x = t(b, [mm, mm], 1);
        const y = t(b, [mm, mm], 2);
        return { inputs: [x, y], run: () => [b.matmul(x, y)] };
      },
    },
    {
      name: 'linear f16 weights',
      shape: `${lm}×${lk}·(${ln}×${lk})ᵀ`,
      flops: 2 * lm * lk * ln,
      bytes: 4 * lm * lk + 2 * ln * lk + 4 * lm * ln,
      setup: (b) => {
        const x = t(b, [lm, lk], 3);
        const w = t(b, [ln, lk], 4, 'f16');
        return { inputs: [x, w], run: () => [b.linear(x, w)] };
      },
    },
    {
      name: 'attention (causal)',
      shape: `T ${tokens}, ${heads} heads × ${headDim}`,
      flops: 2 * 2 * heads * headDim * ((tokens * (tokens + 1)) / 2),
      bytes: 4 * 4 * tokens * d,
      setup: (b) => {
        const [q, k, v] = [5, 6, 7].map((s) => t(b, [1, tokens, d], s)) as [Tensor, Tensor, Tensor];
        return { inputs: [q, k, v], run: () => [b.attention(q, k, v, { nHeads: heads, nKvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim), queryOffset: 0 })] };
      },
    },
    {
      name: 'softmax',
      shape: `${rows}×${cols}`,
      flops: 5 * n,
      bytes: 8 * n,
      setup: (b) => {
        const x = t(b, [rows, cols], 8);
        return { inputs: [x], run: () => [b.softmax(x)] };
      },
    },
    {
      name: 'layerNorm',
      shape: `${rows}×${cols}`,
      flops: 8 * n,
      bytes: 8 * n + 8 * cols,
      setup: (b) => {
        const x = t(b, [rows, cols], 9);
        const w = t(b, [cols], 10);
        const c = t(b, [cols], 11);
        return { inputs: [x, w, c], run: () => [b.layerNorm(x, w, c, 1e-5)] };
      },
    },
    {
      name: 'rmsNorm',
      shape: `${rows}×${cols}`,
      flops: 4 * n,
      bytes: 8 * n + 4 * cols,
      setup: (b) => {
        const x = t(b, [rows, cols], 12);
        const w = t(b, [cols], 13);
        return { inputs: [x, w], run: () => [b.rmsNorm(x, w, 1e-6)] };
      },
    },
    {
      name: 'rope',
      shape: `T ${tokens}, ${heads} heads × ${headDim}`,
      flops: 3 * tokens * d,
      bytes: 8 * tokens * d,
      setup: (b) => {
        const x = t(b, [1, tokens, d], 14);
        return { inputs: [x], run: () => [b.rope(x, heads, headDim, 0, { theta: 10000, rotaryDim: headDim })] };
      },
    },
    {
      name: 'add',
      shape: `${rows}×${cols}`,
      flops: n,
      bytes: 12 * n,
      setup: (b) => {
        const x = t(b, [rows, cols], 15);
        const y = t(b, [rows, cols], 16);
        return { inputs: [x, y], run: () => [b.add(x, y)] };
      },
    },
    {
      name: 'gelu',
      shape: `${rows}×${cols}`,
      flops: null,
      bytes: 8 * n,
      setup: (b) => {
        const x = t(b, [rows, cols], 17);
        return { inputs: [x], run: () => [b.activation(x, 'gelu')] };
      },
    },
    {
      name: 'embedding',
      shape: `${tokens} of ${vocab}×${d}`,
      flops: null,
      bytes: 8 * tokens * d,
      setup: (b) => {
        const table = t(b, [vocab, d], 18);
        const ids = Int32Array.from({ length: tokens }, (_, i) => (i * 7919) % vocab);
        return { inputs: [table], run: () => [b.embedding(table, ids, [1, tokens])] };
      },
    },
    {
      name: 'transpose',
      shape: `${rows}×${cols}`,
      flops: null,
      bytes: 8 * n,
      setup: (b) => {
        const x = t(b, [rows, cols], 19);
        return { inputs: [x], run: () => [b.transpose(x)] };
      },
    },
    {
      name: 'sum (reduce)',
      shape: `${rows}×${cols}`,
      flops: n,
      bytes: 4 * n,
      setup: (b) => {
        const x = t(b, [rows, cols], 20);
        return { inputs: [x], run: () => [b.sum(x)] };
      },
    },
    {
      name: 'topk (k 32)',
      shape: `${Math.max(1, rows / 16)}×${vocab}`,
      flops: null,
      bytes: 4 * Math.max(1, rows / 16) * vocab,
      setup: (b) => {
        const x = t(b, [Math.max(1, rows / 16), vocab], 21);
        return {
          inputs: [x],
          run: () => {
            const r = b.topk(x, 32);
            return [r.values, r.indices];
          },
        };
      },
    },
  ];
}

/** Whether an adapter is a CPU rasteriser, whose timings say nothing about GPUs. */
export function softwareAdapter(description: string, isFallbackAdapter: boolean): boolean {
  return isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|software|microsoft basic/i.test(description);
}

export async function runKernelSuite(backend: Backend, ctx: GpuContext, adapter: string, options: KernelSuiteOptions, log: (line: string) => void): Promise<KernelSuiteResult> {
  const timestamps = ctx.device.features.has('timestamp-query');
  const rows: KernelRow[] = [];
  for (const c of cases(options.scale)) {
    const { inputs, run } = c.setup(backend);
    const dispose = (ts: Tensor[]) => ts.forEach((x) => backend.dispose(x));
    dispose(run());
    await backend.sync();
    const timer = timestamps ? new KernelTimer(ctx) : undefined;
    ctx.kernelTimer = timer;
    const started = performance.now();
    try {
      for (let i = 0; i < options.calls; i++) dispose(run());
      await backend.sync();
    } finally {
      ctx.kernelTimer = undefined;
    }
    const wallUs = ((performance.now() - started) * 1000) / options.calls;
    const totals = timer ? await timer.collect() : new Map<string, { count: number; ns: number }>();
    timer?.destroy();
    const kernels = [...totals].map(([name, v]) => ({ name, dispatches: v.count / options.calls, usPerCall: v.ns / 1000 / options.calls }));
    const usPerCall = timer ? kernels.reduce((s, k) => s + k.usPerCall, 0) : wallUs;
    const seconds = usPerCall / 1e6;
    const row: KernelRow = {
      case: c.name,
      shape: c.shape,
      kernels,
      usPerCall,
      timing: timer ? 'timestamp-query' : 'wall clock',
      gflops: c.flops === null || seconds === 0 ? null : c.flops / seconds / 1e9,
      gbps: seconds === 0 ? 0 : c.bytes / seconds / 1e9,
    };
    rows.push(row);
    log(`${c.name} ${c.shape}: ${usPerCall.toFixed(1)} µs/call (${row.timing}; ${kernels.map((k) => `${k.name} ×${k.dispatches}`).join(', ') || 'kernels untimed'})`);
    dispose(inputs);
  }
  return { adapter, software: softwareAdapter(adapter, false), timestamps, rows };
}
