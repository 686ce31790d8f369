// "Compute on: Auto / WebGPU / CPU", kept per browser (state/compute.ts). Changing it ends the
// analysis worker; the next analysis starts one on the chosen backend.
import { useSyncExternalStore } from 'react';
import type { GpuStatus } from '../gpu/device.ts';
import { computeChoice, onComputeChoice, setComputeChoice, type ComputeChoice } from '../state/compute.ts';

const LABELS: Record<ComputeChoice, string> = { auto: 'Auto', webgpu: 'WebGPU', cpu: 'CPU' };

export function ComputeSelect({ gpu }: { gpu: GpuStatus | null }) {
  const choice = useSyncExternalStore(onComputeChoice, computeChoice, () => 'auto' as const);
  const software = gpu?.available === true && gpu.isFallbackAdapter;
  const note =
    choice === 'auto'
      ? gpu?.available === true && !gpu.isFallbackAdapter
        ? 'Auto: WebGPU (a hardware adapter).'
        : 'Auto: the CPU (no hardware WebGPU adapter here).'
      : choice === 'webgpu'
        ? gpu?.available === false
          ? 'WebGPU is not available here: analyses fall back to the CPU.'
          : software
            ? 'WebGPU on a software adapter: slow, often slower than the CPU.'
            : 'WebGPU.'
        : 'The CPU (WebAssembly).';
  return (
    <p className="compute-select">
      <label>
        Compute on{' '}
        <select data-testid="backend-select" value={choice} onChange={(e) => setComputeChoice(e.target.value as ComputeChoice)}>
          {(Object.keys(LABELS) as ComputeChoice[]).map((c) => (
            <option key={c} value={c}>
              {LABELS[c]}
            </option>
          ))}
        </select>
      </label>{' '}
      <span className={choice === 'webgpu' && software ? 'warn' : 'muted'} data-testid="backend-note">
        {note}
      </span>
    </p>
  );
}
