// Synthetic paired activations with planted features, for tests and benchmarks: each feature
// has a unit direction in the base model, in the fine-tune, or in both (the fine-tune's a drifted
// copy of the base one, as fine-tuning leaves shared features nearly in place), and fires
// independently on a fraction of tokens with a magnitude in [0.5, 1.5).
import type { Rng } from './rng.ts';

export type PlantedKind = 'shared' | 'base-only' | 'ft-only';

export interface PlantedFeatures {
  readonly d: number;
  readonly kinds: readonly PlantedKind[];
  /** [G, 2, d]: directions[(g·2 + m)·d + i]; zero where the feature is absent from model m. */
  readonly directions: Float32Array;
}

/** `drift`: the norm of the random change (relative to 1) turning a shared direction's base version into its fine-tune one. */
export function plantFeatures(rng: Rng, d: number, counts: Readonly<Record<PlantedKind, number>>, drift = 0.3): PlantedFeatures {
  const kinds: PlantedKind[] = [];
  for (const kind of ['shared', 'base-only', 'ft-only'] as const) for (let i = 0; i < counts[kind]; i++) kinds.push(kind);
  const directions = new Float32Array(kinds.length * 2 * d);
  const unit = (v: number[]): number[] => {
    const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    return v.map((x) => x / norm);
  };
  kinds.forEach((kind, g) => {
    const u = unit(Array.from({ length: d }, () => rng.normal()));
    const perturbation = Array.from({ length: d }, () => (rng.normal() * drift) / Math.sqrt(d));
    const dirs = kind === 'shared' ? [u, unit(u.map((x, i) => x + perturbation[i]!))] : kind === 'base-only' ? [u, null] : [null, u];
    dirs.forEach((v, m) => {
      if (v) for (let i = 0; i < d; i++) directions[(g * 2 + m) * d + i] = v[i]!;
    });
  });
  return { d, kinds, directions };
}

export function sampleActivations(
  f: PlantedFeatures,
  rng: Rng,
  n: number,
  opts: { fireProbability: number; noise?: number },
): { base: Float32Array; ft: Float32Array; active: Float32Array } {
  const { d, directions } = f;
  const G = f.kinds.length;
  const base = new Float32Array(n * d);
  const ft = new Float32Array(n * d);
  const active = new Float32Array(n * G);
  const noise = opts.noise ?? 0;
  for (let t = 0; t < n; t++) {
    for (let g = 0; g < G; g++) {
      if (rng.next() >= opts.fireProbability) continue;
      const a = 0.5 + rng.next();
      active[t * G + g] = a;
      for (let i = 0; i < d; i++) {
        base[t * d + i]! += a * directions[(g * 2) * d + i]!;
        ft[t * d + i]! += a * directions[(g * 2 + 1) * d + i]!;
      }
    }
    if (noise > 0) {
      for (let i = 0; i < d; i++) {
        base[t * d + i]! += noise * rng.normal();
        ft[t * d + i]! += noise * rng.normal();
      }
    }
  }
  return { base, ft, active };
}
