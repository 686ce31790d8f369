import type { GpuStatus } from '../gpu/device.ts';
import { formatMiB } from './format.ts';

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

export function BackendBadge({ gpu }: { gpu: GpuStatus | null }) {
  if (gpu === null) return <span className="badge badge-pending" data-testid="backend-badge">probing WebGPU…</span>;
  if (!gpu.available) return <span className="badge badge-cpu" data-testid="backend-badge">CPU backend</span>;
  return (
    <span className="badge badge-gpu" data-testid="backend-badge" title={gpu.description}>
      WebGPU · {gpu.architecture || gpu.vendor || 'unknown adapter'}
      {gpu.isFallbackAdapter ? ' (software)' : ''}
    </span>
  );
}

export function GpuReport({ gpu }: { gpu: GpuStatus | null }) {
  if (gpu === null) {
    return (
      <section className="panel" data-testid="gpu-report" aria-busy="true">
        <h2>Compute backend</h2>
        <p className="muted">Asking the browser for a WebGPU adapter…</p>
      </section>
    );
  }
  if (!gpu.available) {
    return (
      <section className="panel" data-testid="gpu-report" data-available="false">
        <h2>Compute backend</h2>
        <p className="warn" data-testid="gpu-unavailable">
          WebGPU unavailable: {gpu.reason.replace(/^WebGPU is not available:\s*/i, '')} — running on the CPU backend.
        </p>
      </section>
    );
  }
  const adapterName = gpu.description || [gpu.vendor, gpu.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
  const groups: [string, [string, string, string][]][] = [
    [
      'Adapter',
      [
        ['Vendor', gpu.vendor || '—', 'gpu-vendor'],
        ['Architecture', gpu.architecture || '—', 'gpu-architecture'],
        ['Description', gpu.description || '—', 'gpu-description'],
        ['Fallback adapter', gpu.isFallbackAdapter ? 'yes (software, slow)' : 'no', 'gpu-fallback'],
      ],
    ],
    [
      'Features',
      [
        ['shader-f16', gpu.features.shaderF16 ? 'yes' : 'no (f32 kernels)', 'gpu-f16'],
        ['subgroups', yesNo(gpu.features.subgroups), 'gpu-subgroups'],
        ['timestamp-query', yesNo(gpu.features.timestampQuery), 'gpu-timestamp'],
      ],
    ],
    [
      'Limits',
      [
        ['Max storage binding', formatMiB(gpu.limits.maxStorageBufferBindingSize), 'gpu-max-binding'],
        ['Max buffer', formatMiB(gpu.limits.maxBufferSize), 'gpu-max-buffer'],
        ['Workgroup storage', `${gpu.limits.maxComputeWorkgroupStorageSize / 1024} KiB`, 'gpu-wg-storage'],
        ['Invocations / workgroup', String(gpu.limits.maxComputeInvocationsPerWorkgroup), 'gpu-wg-invocations'],
      ],
    ],
  ];
  return (
    <section className="panel" data-testid="gpu-report" data-available="true">
      <h2>
        Compute backend: WebGPU on <span data-testid="gpu-adapter">{adapterName}</span>
      </h2>
      <div className="kv-groups">
        {groups.map(([title, rows]) => (
          <div key={title}>
            <h3>{title}</h3>
            <dl className="kv">
              {rows.map(([label, value, id]) => (
                <div key={id}>
                  <dt>{label}</dt>
                  <dd data-testid={id}>{value}</dd>
                </div>
              ))}
            </dl>
          </div>
        ))}
      </div>
    </section>
  );
}
