// The memory budget of the machine a job runs on, and what it decides: both models resident, one
// model at a time (corpus passes through PairedRunner), or a refusal naming the numbers.
import { estimateMemory } from '../model/config.ts';
import type { OpenedPair } from './pair.ts';

/** The share of the machine's memory the models may take (the page, the browser and the OS need the rest). */
export const HOST_SHARE = 0.6;

export interface MemoryFacts {
  backend: 'cpu' | 'webgpu';
  /** The device's limits, for WebGPU. */
  gpu?: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  /** The machine's memory: os.totalmem() in Node, navigator.deviceMemory (GiB, rounded down, capped at 8) in a browser. */
  hostBytes?: number | undefined;
}

export interface MemoryPlan {
  mode: 'resident' | 'sequential';
  /** Bytes the two models' weights take once loaded (float32 matrices), together and the larger one. */
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
 * The budget from the machine: the host's share of memory. (The CPU backend keeps weights in JavaScript
 * arrays, outside the 4 GiB WebAssembly memory its GEMM works in, so that limit does not bound the pair.)
 */
export function memoryBudget(facts: MemoryFacts): { bytes: number; from: string } {
  const limits: { bytes: number; from: string }[] = [];
  if (facts.hostBytes !== undefined && facts.hostBytes > 0) limits.push({ bytes: facts.hostBytes * HOST_SHARE, from: `${HOST_SHARE * 100}% of ${gb(facts.hostBytes)} of memory` });
  if (limits.length === 0) return { bytes: Infinity, from: 'no known limit' };
  return limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
}

/** Both models' weights as loaded: an adapter's fine-tune is a second copy of the base. */
export function pairWeightBytes(pair: OpenedPair): { pair: number; largest: number } {
  const base = estimateMemory(pair.config).weightBytes;
  // An adapter merges into a copy of the base: the same size. A full fine-tune has its own config, checked to pair later.
  const ft = pair.adapter ? base : estimateMemory(pair.config).weightBytes;
  return { pair: base + ft, largest: Math.max(base, ft) };
}

export function planMemory(pair: OpenedPair, facts: MemoryFacts): MemoryPlan {
  const { pair: pairBytes, largest } = pairWeightBytes(pair);
  const budget = memoryBudget(facts);
  const gpuNote = facts.gpu ? `; GPU buffers up to ${gb(facts.gpu.maxBufferSize)}, bindings up to ${gb(facts.gpu.maxStorageBufferBindingSize)}` : '';
  const plan = (mode: MemoryPlan['mode'], reason: string): MemoryPlan => ({ mode, pairBytes, modelBytes: largest, budgetBytes: budget.bytes, reason: `${reason}${gpuNote}` });
  if (budget.bytes === Infinity) return plan('resident', `both models resident (${gb(pairBytes)} of weights; no memory limit known here)`);
  if (pairBytes <= budget.bytes) return plan('resident', `both models resident: ${gb(pairBytes)} of weights within the budget of ${gb(budget.bytes)} (${budget.from})`);
  if (largest <= budget.bytes) return plan('sequential', `one model at a time: the pair needs ${gb(pairBytes)}, over the budget of ${gb(budget.bytes)} (${budget.from}); one model needs ${gb(largest)}`);
  throw new MemoryError(plan('sequential', `${pair.labels.base}: one model needs ${gb(largest)} of weights, over the memory budget of ${gb(budget.bytes)} (${budget.from})`));
}
