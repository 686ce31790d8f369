import { fmt, formatTable } from '../lib/table.ts';
import type { EnvResult } from './suite.ts';

function adapterText(env: EnvResult): string {
  const a = env.adapter;
  if ('error' in a) return `none (${a.error})`;
  return `${a.vendor} / ${a.architecture} / ${a.description}${a.isFallbackAdapter ? ' (fallback adapter)' : ''}`;
}

/** The environment's header, a GFLOP/s table, a table of our speed divided by each peer's, and why cells are empty. */
export function formatEnv(env: EnvResult): string {
  const impls = env.sizes[0]?.impls ?? [];
  const ours = impls.filter((i) => i.ours);
  const peers = impls.filter((i) => !i.ours);
  const out = [
    `== matmul, ${env.env}: ${env.runtime}`,
    `adapter: ${adapterText(env)}`,
    `onnxruntime-web wasm threads: ${env.ortThreads}`,
    ...env.notes,
    '',
    'GFLOP/s (n×n · n×n, float32; median after warm-up)',
    formatTable(
      ['n', ...impls.map((i) => i.label)],
      env.sizes.map((s) => [String(s.n), ...s.impls.map((i) => fmt(i.gflops))]),
    ),
  ];
  if (ours.length > 0 && peers.length > 0) {
    out.push(
      '',
      'ours ÷ peer (GFLOP/s ratio; above 1: ours is faster)',
      formatTable(
        ['n', 'ours', ...peers.map((p) => p.label)],
        env.sizes.flatMap((s) =>
          ours.map((o) => {
            const mine = s.impls.find((i) => i.id === o.id)?.gflops;
            return [
              String(s.n),
              o.label,
              ...peers.map((p) => {
                const theirs = s.impls.find((i) => i.id === p.id)?.gflops;
                return mine === undefined || theirs === undefined ? '-' : `${fmt(mine / theirs)}×`;
              }),
            ];
          }),
        ),
      ),
    );
  }
  const reasons = new Map<string, number[]>();
  for (const s of env.sizes) {
    for (const i of s.impls) {
      const why = i.error ?? i.skipped;
      if (why === undefined) continue;
      const key = `${i.label}: ${why}`;
      reasons.set(key, [...(reasons.get(key) ?? []), s.n]);
    }
  }
  if (reasons.size > 0) out.push('', ...[...reasons].map(([why, ns]) => `- n = ${ns.join(', ')}: ${why}`));
  return out.join('\n');
}
