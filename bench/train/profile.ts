// Where a training step's time goes: every op of src/analysis/training/ops.ts records its backward on
// the Tape, so timing Tape.record (the forward of an op ends with its record call) and each recorded
// step (its backward) gives each op's forward and backward time; the WebAssembly GEMM's own counter,
// read at the same points, splits off the matrix products inside each op.
import { wasmGemmStats } from '../../src/gpu/cpu-wasm/gemm.ts';
import { Tape } from '../../src/analysis/training/tape.ts';
import type { AdamW } from '../../src/analysis/training/train.ts';
import type { TrainableTransformer } from '../../src/analysis/training/model.ts';

export interface OpTimes {
  calls: number;
  forwardMs: number;
  backwardMs: number;
  /** GEMM (whole calls: packing, copies and kernels) inside the forward and the backward. */
  gemmMs: number;
}

export interface StepProfile {
  totalMs: number;
  ops: Map<string, OpTimes>;
  /** AdamW (clipping norm and update) and zeroing the gradients. */
  optimizerMs: number;
  /** All GEMM calls, and their kernels alone (packing B and multiplying, on all threads). */
  gemmMs: number;
  gemmKernelMs: number;
}

/** The name of the ops.ts function that called Tape.record, from the stack. */
function callerOp(): string {
  const lines = (new Error().stack ?? '').split('\n');
  // [0] "Error", [1] callerOp, [2] record, [3] the op.
  const m = /at (?:Object\.)?([\w$.]+) /.exec(lines[3] ?? '');
  return m ? m[1]!.replace(/^.*\./, '') : 'unknown';
}

/** One optimizer step of `model` over ids [batch, seq], timed per op. */
export function profileStep(model: TrainableTransformer, opt: AdamW, ids: Int32Array, batch: number, seq: number): StepProfile {
  const ops = new Map<string, OpTimes>();
  const entry = (name: string): OpTimes => {
    let e = ops.get(name);
    if (!e) {
      e = { calls: 0, forwardMs: 0, backwardMs: 0, gemmMs: 0 };
      ops.set(name, e);
    }
    return e;
  };
  const record = Object.getOwnPropertyDescriptor(Tape.prototype, 'record')!.value as Tape['record'];
  const wasEnabled = wasmGemmStats.enabled;
  wasmGemmStats.enabled = true;
  let mark = performance.now();
  let gemmMark = wasmGemmStats.totalMs;
  Tape.prototype.record = function (this: Tape, step: () => void): void {
    const e = entry(callerOp());
    const now = performance.now();
    e.calls++;
    e.forwardMs += now - mark;
    e.gemmMs += wasmGemmStats.totalMs - gemmMark;
    record.call(this, () => {
      const t0 = performance.now();
      const g0 = wasmGemmStats.totalMs;
      step();
      e.backwardMs += performance.now() - t0;
      e.gemmMs += wasmGemmStats.totalMs - g0;
    });
    // Work between ops (the model's own JavaScript) counts to the next op's forward.
    mark = performance.now();
    gemmMark = wasmGemmStats.totalMs;
  };
  const t0 = performance.now();
  const gemm0 = { total: wasmGemmStats.totalMs, kernel: wasmGemmStats.kernelMs };
  let optimizerMs = 0;
  try {
    const z0 = performance.now();
    model.zeroGrad();
    optimizerMs += performance.now() - z0;
    mark = performance.now();
    gemmMark = wasmGemmStats.totalMs;
    model.lossAndGrad(ids, batch, seq, 1 / (batch * (seq - 1)));
    const o0 = performance.now();
    opt.step();
    optimizerMs += performance.now() - o0;
  } finally {
    Tape.prototype.record = record;
    wasmGemmStats.enabled = wasEnabled;
  }
  return { totalMs: performance.now() - t0, ops, optimizerMs, gemmMs: wasmGemmStats.totalMs - gemm0.total, gemmKernelMs: wasmGemmStats.kernelMs - gemm0.kernel };
}

/** Rows of op, calls, forward, backward, GEMM inside, JS (non-GEMM) and share of the step. */
export function profileRows(p: StepProfile): string[][] {
  const rows: string[][] = [];
  const sorted = [...p.ops.entries()].sort((a, b) => b[1].forwardMs + b[1].backwardMs - (a[1].forwardMs + a[1].backwardMs));
  const pct = (ms: number) => `${((100 * ms) / p.totalMs).toFixed(1)}%`;
  let gemm = 0;
  for (const [name, e] of sorted) {
    const all = e.forwardMs + e.backwardMs;
    gemm += e.gemmMs;
    rows.push([name, String(e.calls), e.forwardMs.toFixed(0), e.backwardMs.toFixed(0), e.gemmMs.toFixed(0), (all - e.gemmMs).toFixed(0), pct(all)]);
  }
  rows.push(['AdamW + zero grad', '1', p.optimizerMs.toFixed(0), '', '', p.optimizerMs.toFixed(0), pct(p.optimizerMs)]);
  const accounted = [...p.ops.values()].reduce((s, e) => s + e.forwardMs + e.backwardMs, 0) + p.optimizerMs;
  rows.push(['rest (tape, GC)', '', '', '', '', (p.totalMs - accounted).toFixed(0), pct(p.totalMs - accounted)]);
  rows.push(['step', '', '', '', gemm.toFixed(0), (p.totalMs - gemm).toFixed(0), `GEMM ${pct(gemm)}`]);
  rows.push(['GEMM kernels alone', '', '', '', p.gemmKernelMs.toFixed(0), '', pct(p.gemmKernelMs)]);
  return rows;
}
