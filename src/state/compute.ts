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

/** Called after each change; returns an unsubscribe function (useSyncExternalStore's shape). */
export function onComputeChoice(cb: () => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}
