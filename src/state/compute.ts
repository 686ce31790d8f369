// "Compute on": the backend the analysis worker uses, kept per browser (localStorage), never in
// permalinks (links name results, not machines). Auto: WebGPU on a hardware adapter, the CPU
// otherwise; WebGPU: the GPU even on a software adapter (slow); CPU: the CPU.
export const COMPUTE_CHOICES = ['auto', 'webgpu', 'cpu'] as const;
export type ComputeChoice = (typeof COMPUTE_CHOICES)[number];

const KEY = 'neurodiff.compute';
const listeners = new Set<() => void>();

function storage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

export function computeChoice(): ComputeChoice {
  const v = storage()?.getItem(KEY);
  return (COMPUTE_CHOICES as readonly string[]).includes(v ?? '') ? (v as ComputeChoice) : 'auto';
}

export function setComputeChoice(choice: ComputeChoice): void {
  if (choice === computeChoice()) return;
  try {
    storage()?.setItem(KEY, choice);
  } catch {
    // A browser that refuses storage keeps the choice for nothing: Auto stays.
  }
  for (const cb of listeners) cb();
}

const TEST_BINDING_KEY = 'neurodiff.test.maxBindingBytes';

/**
 * Test only: a storage binding size below the device's, so a small model's tensors take the row-block
 * path that a large model's take on a real GPU (the browser tests set it in localStorage under
 * `neurodiff.test.maxBindingBytes`). No control sets it, and permalinks never carry it.
 */
function testBindingBytes(): number | undefined {
  const v = Number(storage()?.getItem(TEST_BINDING_KEY) ?? NaN);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

/** What the analysis worker is started with: the compute choice (and the test-only binding size when set). */
export function workerOptions(): { backend: ComputeChoice; testBindingBytes?: number } {
  const binding = testBindingBytes();
  return { backend: computeChoice(), ...(binding !== undefined ? { testBindingBytes: binding } : {}) };
}

/** Called after each change; returns an unsubscribe function (useSyncExternalStore's shape). */
export function onComputeChoice(cb: () => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}
