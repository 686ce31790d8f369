// The memory budget of the machine a job runs on, and what it decides: both models resident, one
// model at a time (corpus passes through PairedRunner), or a refusal naming the numbers.
import { residentBytes } from '../model/load.ts';
import type { OpenedPair } from './pair.ts';

/** The share of the machine's memory the models may take (the page, the browser and the OS need the rest). */
export const HOST_SHARE = 0.6;

export interface MemoryFacts {
  backend: 'cpu' | 'webgpu';
  /** The device's limits, for WebGPU. */
  gpu?: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  /** The machine's memory: os.totalmem() in Node, navigator.deviceMemory (GiB, rounded down, capped at 8) in a browser. */
  hostBytes?: number | undefined;
  /** The GPU's own memory, where something tells it (WebGPU does not). */
  deviceBytes?: number | undefined;
  /** A budget given by the user (the CLI's --memory-budget): it replaces the host's share. */
  budgetBytes?: number | undefined;
}

export interface MemoryPlan {
  mode: 'resident' | 'sequential';
  /** Bytes the two models' weights take once loaded (in their stored precision), together and the larger one. */
  pairBytes: number;
  modelBytes: number;
  budgetBytes: number;
  /** The choice in words, for status lines and `--json`. */
  reason: string;
}

export class MemoryError extends Error {
  constructor(readonly plan: MemoryPlan) {
    super(plan.reason);
    this.name = 'MemoryError';
  }
}

const gb = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/**
 * The budget from the machine: the host's share of memory (or the user's budget), and the GPU's memory
 * where known. (The CPU backend keeps weights in JavaScript arrays, outside the 4 GiB WebAssembly memory
 * its GEMM works in, so that limit does not bound the pair; WebGPU's buffer and binding limits bound
 * single tensors, which are kept as row blocks, not the pair: planMemory checks the rows.)
 */
export function memoryBudget(facts: MemoryFacts): { bytes: number; from: string } {
  const limits: { bytes: number; from: string }[] = [];
  if (facts.budgetBytes !== undefined) limits.push({ bytes: facts.budgetBytes, from: 'the budget given' });
  else if (facts.hostBytes !== undefined && facts.hostBytes > 0) limits.push({ bytes: facts.hostBytes * HOST_SHARE, from: `${HOST_SHARE * 100}% of ${gb(facts.hostBytes)} of memory` });
  if (facts.backend === 'webgpu' && facts.deviceBytes !== undefined && facts.deviceBytes > 0) limits.push({ bytes: facts.deviceBytes * HOST_SHARE, from: `${HOST_SHARE * 100}% of the GPU's ${gb(facts.deviceBytes)}` });
  if (limits.length === 0) return { bytes: Infinity, from: 'no known limit' };
  return limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
}

/**
 * Both models' weights as loaded, in their stored precision (bf16 stays bf16 on the CPU; f16 on WebGPU):
 * an adapter's fine-tune is a second copy of the base.
 */
export function pairWeightBytes(pair: OpenedPair, backend: 'cpu' | 'webgpu'): { pair: number; largest: number } {
  const bf16 = backend === 'cpu';
  const base = residentBytes(pair.base.store, 'stored', bf16);
  const ft = pair.adapter ? base : residentBytes(pair.ft.store, 'stored', bf16);
  return { pair: base + ft, largest: Math.max(base, ft) };
}

/** The longest row of any matrix, in bytes once loaded: a WebGPU row block holds at least one. */
function longestRowBytes(pair: OpenedPair): { bytes: number; name: string } {
  let longest = { bytes: 0, name: '' };
  for (const store of [pair.base.store, pair.ft.store]) {
    for (const t of store.tensors.values()) {
      if (t.shape.length < 2) continue;
      const bytes = (t.shape.slice(1).reduce((a, b) => a * b, 1) * (t.dtype === 'F32' || t.dtype === 'F64' ? 4 : 2));
      if (bytes > longest.bytes) longest = { bytes, name: t.name };
    }
  }
  return longest;
}

export function planMemory(pair: OpenedPair, facts: MemoryFacts): MemoryPlan {
  const { pair: pairBytes, largest } = pairWeightBytes(pair, facts.backend);
  const budget = memoryBudget(facts);
  const gpuNote = facts.gpu ? `; GPU buffers up to ${gb(facts.gpu.maxBufferSize)}, bindings up to ${gb(facts.gpu.maxStorageBufferBindingSize)} (larger tensors are kept as row blocks)` : '';
  if (facts.gpu) {
    const row = longestRowBytes(pair);
    const limit = Math.min(facts.gpu.maxBufferSize, facts.gpu.maxStorageBufferBindingSize);
    if (row.bytes > limit) {
      throw new MemoryError({ mode: 'sequential', pairBytes, modelBytes: largest, budgetBytes: budget.bytes, reason: `${pair.labels.base}: a row of "${row.name}" takes ${row.bytes} bytes, more than one GPU storage binding (${limit} bytes)` });
    }
  }
  const plan = (mode: MemoryPlan['mode'], reason: string): MemoryPlan => ({ mode, pairBytes, modelBytes: largest, budgetBytes: budget.bytes, reason: `${reason}${gpuNote}` });
  if (budget.bytes === Infinity) return plan('resident', `both models resident (${gb(pairBytes)} of weights; no memory limit known here)`);
  if (pairBytes <= budget.bytes) return plan('resident', `both models resident: ${gb(pairBytes)} of weights within the budget of ${gb(budget.bytes)} (${budget.from})`);
  if (largest <= budget.bytes) return plan('sequential', `one model at a time: the pair needs ${gb(pairBytes)}, over the budget of ${gb(budget.bytes)} (${budget.from}); one model needs ${gb(largest)}`);
  throw new MemoryError(plan('sequential', `${pair.labels.base}: one model needs ${gb(largest)} of weights, over the memory budget of ${gb(budget.bytes)} (${budget.from})`));
}
