// Latent analysis of a trained crosscoder (ALGORITHMS.md, "Crosscoders"): decoder-norm ratio and
// class, Latent Scaling in both directions, activation frequency and density, top-activating
// contexts, logit effects. The statistics stream over batches of inference results.
import { decoderNorms, type CrosscoderParams, type FloatArray } from './model.ts';
import type { InferenceBatch } from './inference.ts';
import type { SparseCode } from './select.ts';

export type LatentClass = 'ft-only' | 'base-only' | 'shared' | 'other';

/** r_j = ½[(‖d_j^base‖ − ‖d_j^ft‖) / max(‖d_j^base‖, ‖d_j^ft‖) + 1]; NaN when both norms are 0. */
export function normRatios(p: CrosscoderParams<FloatArray>): Float64Array {
  const norms = decoderNorms(p);
  const r = new Float64Array(p.D);
  for (let j = 0; j < p.D; j++) {
    const b = norms[j]!;
    const f = norms[p.D + j]!;
    const m = Math.max(b, f);
    r[j] = m > 0 ? 0.5 * ((b - f) / m + 1) : NaN;
  }
  return r;
}

export function classifyRatio(r: number): LatentClass {
  if (r < 0.1) return 'ft-only';
  if (r > 0.9) return 'base-only';
  if (Math.abs(r - 0.5) < 0.1) return 'shared';
  return 'other';
}

/**
 * Latent Scaling with one decoder direction u = d_j^dir: β = uᵀ Σ f y / (‖u‖² Σ f²) for each model's
 * error target y = x^m − (x̂^m − f_j d_j^m) and reconstruction target y = x̂^m.
 * nu* = β of the other model / β of `dir`'s model: small means the latent is specific to `dir`.
 */
export interface LatentScaling {
  readonly betaError: readonly [number, number];
  readonly betaRecon: readonly [number, number];
  readonly nuError: number;
  readonly nuRecon: number;
}

export interface TopToken {
  readonly position: number;
  readonly activation: number;
}

export interface TopExample {
  readonly sample: number;
  readonly maxActivation: number;
  /** The latent's non-zero activations in this sample, by position. */
  readonly tokens: readonly TopToken[];
}

export interface LatentInfo {
  readonly id: number;
  readonly ratio: number;
  readonly class: LatentClass;
  /** Fraction of tokens on which the latent is active. */
  readonly frequency: number;
  readonly maxActivation: number;
  /** Latent Scaling with the fine-tune's decoder direction (ν = β_base / β_ft). */
  readonly ft: LatentScaling;
  /** Latent Scaling with the base decoder direction (ν = β_ft / β_base). */
  readonly base: LatentScaling;
  /** r < 0.1, ν^ε < 0.3 and ν^r < 0.3 with the fine-tune direction. */
  readonly ftSpecific: boolean;
  /** r > 0.9, ν^ε < 0.3 and ν^r < 0.3 with the base direction. */
  readonly baseSpecific: boolean;
  readonly top: readonly TopExample[];
}

export interface LatentReport {
  readonly tokens: number;
  readonly latents: readonly LatentInfo[];
  readonly density: DensityHistogram;
}

export interface TokenIds {
  /** Sample (context) id of each token of the batch. */
  readonly sample: Int32Array;
  /** Position of each token within its sample. */
  readonly position: Int32Array;
}

export interface LatentStats {
  /**
   * Adds one batch. Contexts for top examples need token ids. A sample may run on from the end of
   * one call into the start of the next; a sample split in other ways is merged only while it
   * stays among a latent's top examples.
   */
  add(batch: InferenceBatch, ids?: TokenIds): void;
  result(): LatentReport;
}

export const SPECIFIC_NU = 0.3;

export function createLatentStats(params: CrosscoderParams, opts: { topExamples?: number } = {}): LatentStats {
  const { d, D, decW } = params;
  const topN = opts.topExamples ?? 10;
  let tokens = 0;
  const count = new Float64Array(D);
  const maxAct = new Float64Array(D);
  const den = new Float64Array(D);
  // num[((dir·2 + model)·2 + target)·D + j], target 0 = error, 1 = reconstruction.
  const num = new Float64Array(8 * D);
  const norms = decoderNorms(params);
  // uDot[(dir·2 + model)·D + j] = d_j^dir · d_j^model
  const uDot = new Float64Array(4 * D);
  for (let j = 0; j < D; j++) {
    for (let dir = 0; dir < 2; dir++) {
      for (let m = 0; m < 2; m++) {
        let s = 0;
        const a = (dir * D + j) * d;
        const b = (m * D + j) * d;
        for (let i = 0; i < d; i++) s += decW[a + i]! * decW[b + i]!;
        uDot[(dir * 2 + m) * D + j] = s;
      }
    }
  }
  const top: Array<Array<{ sample: number; max: number; tokens: TopToken[] }>> = Array.from({ length: D }, () => []);

  type Group = { max: number; tokens: TopToken[] };
  const merge = (j: number, sample: number, g: Group): void => {
    const list = top[j]!;
    const existing = list.find((e) => e.sample === sample);
    if (existing) {
      existing.tokens.push(...g.tokens);
      existing.max = Math.max(existing.max, g.max);
    } else if (list.length < topN) {
      list.push({ sample, max: g.max, tokens: g.tokens });
    } else {
      let worst = 0;
      for (let i = 1; i < list.length; i++) if (list[i]!.max < list[worst]!.max) worst = i;
      if (g.max > list[worst]!.max) list[worst] = { sample, max: g.max, tokens: g.tokens };
    }
  };
  // The last sample of a call may continue in the next one: its tokens wait here until then.
  let pending: { sample: number; groups: Map<number, Group> } | null = null;
  const flushPending = (): void => {
    if (pending) for (const [j, g] of pending.groups) merge(j, pending.sample, g);
    pending = null;
  };

  const addTop = (code: SparseCode, ids: TokenIds): void => {
    const groups = new Map<number, Map<number, Group>>();
    const group = (j: number, sample: number): Group => {
      let bySample = groups.get(j);
      if (!bySample) groups.set(j, (bySample = new Map()));
      let g = bySample.get(sample);
      if (!g) bySample.set(sample, (g = { max: 0, tokens: [] }));
      return g;
    };
    if (pending && code.rows > 0 && ids.sample[0] === pending.sample) {
      for (const [j, g] of pending.groups) {
        const into = group(j, pending.sample);
        into.tokens.push(...g.tokens);
        into.max = Math.max(into.max, g.max);
      }
      pending = null;
    } else flushPending();
    for (let t = 0; t < code.rows; t++) {
      const sample = ids.sample[t]!;
      const position = ids.position[t]!;
      for (let q = code.rowPtr[t]!; q < code.rowPtr[t + 1]!; q++) {
        const v = code.value[q]!;
        const g = group(code.index[q]!, sample);
        g.tokens.push({ position, activation: v });
        if (v > g.max) g.max = v;
      }
    }
    const last = code.rows > 0 ? ids.sample[code.rows - 1]! : null;
    const held = new Map<number, Group>();
    for (const [j, bySample] of groups) {
      for (const [sample, g] of bySample) {
        if (sample === last) held.set(j, g);
        else merge(j, sample, g);
      }
    }
    if (last !== null) pending = { sample: last, groups: held };
  };

  return {
    add(batch, ids) {
      const { code, x, recon } = batch;
      if (code.cols !== D) throw new Error(`latent stats: the code has ${code.cols} latents, the crosscoder ${D}`);
      if (ids && (ids.sample.length < code.rows || ids.position.length < code.rows)) {
        throw new Error(`latent stats: ${code.rows} tokens but ${ids.sample.length} sample ids and ${ids.position.length} positions`);
      }
      tokens += code.rows;
      const e = [new Float64Array(d), new Float64Array(d)];
      for (let t = 0; t < code.rows; t++) {
        const o = t * d;
        for (let m = 0; m < 2; m++) for (let i = 0; i < d; i++) e[m]![i] = x[m]![o + i]! - recon[m]![o + i]!;
        for (let q = code.rowPtr[t]!; q < code.rowPtr[t + 1]!; q++) {
          const j = code.index[q]!;
          const v = code.value[q]!;
          if (v <= 0) continue;
          count[j]!++;
          if (v > maxAct[j]!) maxAct[j] = v;
          den[j]! += v * v;
          for (let dir = 0; dir < 2; dir++) {
            const u = (dir * D + j) * d;
            for (let m = 0; m < 2; m++) {
              let ue = 0;
              let ur = 0;
              const em = e[m]!;
              const rm = recon[m]!;
              for (let i = 0; i < d; i++) {
                ue += decW[u + i]! * em[i]!;
                ur += decW[u + i]! * rm[o + i]!;
              }
              const base = ((dir * 2 + m) * 2) * D + j;
              num[base]! += v * (ue + v * uDot[(dir * 2 + m) * D + j]!);
              num[base + D]! += v * ur;
            }
          }
        }
      }
      if (ids) addTop(code, ids);
    },
    result() {
      flushPending();
      const ratios = normRatios(params);
      const freq = new Float64Array(D);
      const latents: LatentInfo[] = [];
      for (let j = 0; j < D; j++) {
        freq[j] = tokens > 0 ? count[j]! / tokens : 0;
        const scaling = (dir: 0 | 1): LatentScaling => {
          const uu = norms[dir * D + j]! ** 2;
          const beta = (m: number, target: number) => num[((dir * 2 + m) * 2 + target) * D + j]! / (uu * den[j]!);
          const betaError: [number, number] = [beta(0, 0), beta(1, 0)];
          const betaRecon: [number, number] = [beta(0, 1), beta(1, 1)];
          const other = 1 - dir;
          return {
            betaError,
            betaRecon,
            nuError: betaError[other]! / betaError[dir]!,
            nuRecon: betaRecon[other]! / betaRecon[dir]!,
          };
        };
        const ft = scaling(1);
        const base = scaling(0);
        const r = ratios[j]!;
        latents.push({
          id: j,
          ratio: r,
          class: classifyRatio(r),
          frequency: freq[j]!,
          maxActivation: maxAct[j]!,
          ft,
          base,
          ftSpecific: r < 0.1 && ft.nuError < SPECIFIC_NU && ft.nuRecon < SPECIFIC_NU,
          baseSpecific: r > 0.9 && base.nuError < SPECIFIC_NU && base.nuRecon < SPECIFIC_NU,
          top: top[j]!
            .slice()
            .sort((a, b) => b.max - a.max || a.sample - b.sample)
            .map((e) => ({ sample: e.sample, maxActivation: e.max, tokens: e.tokens.slice().sort((a, b) => a.position - b.position) })),
        });
      }
      return { tokens, latents, density: densityHistogram(freq) };
    },
  };
}

export interface DensityHistogram {
  /** Bin edges in log10(frequency), bins + 1 of them. */
  readonly edges: readonly number[];
  readonly counts: readonly number[];
  /** Latents that never fired (not in any bin). */
  readonly dead: number;
}

/** Histogram of log10 activation frequency; frequencies below 10^min go to the first bin. */
export function densityHistogram(freq: ArrayLike<number>, opts: { bins?: number; min?: number } = {}): DensityHistogram {
  const bins = opts.bins ?? 40;
  const min = opts.min ?? -8;
  const edges = Array.from({ length: bins + 1 }, (_, i) => min + (-min * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  let dead = 0;
  for (let j = 0; j < freq.length; j++) {
    const f = freq[j]!;
    if (!(f > 0)) {
      dead++;
      continue;
    }
    const b = Math.floor(((Math.log10(f) - min) / -min) * bins);
    counts[Math.min(bins - 1, Math.max(0, b))]!++;
  }
  return { edges, counts, dead };
}

export interface LogitEffect {
  readonly id: number;
  readonly value: number;
}

/**
 * Top positive and negative entries of W_U · (scale ⊙ direction), with W_U as [V, d] rows
 * (`scale`, optional, folds in e.g. the final norm's gain).
 */
export function logitEffects(
  unembed: Float32Array,
  V: number,
  direction: ArrayLike<number>,
  top = 10,
  scale?: ArrayLike<number>,
): { positive: LogitEffect[]; negative: LogitEffect[] } {
  const d = direction.length;
  if (top <= 0) return { positive: [], negative: [] };
  if (unembed.length !== V * d) throw new Error(`logitEffects: W_U has ${unembed.length} values, expected ${V}×${d}`);
  const u = new Float64Array(d);
  for (let i = 0; i < d; i++) u[i] = direction[i]! * (scale ? scale[i]! : 1);
  const pos: LogitEffect[] = [];
  const neg: LogitEffect[] = [];
  const insert = (list: LogitEffect[], id: number, value: number, better: (a: number, b: number) => boolean) => {
    if (list.length === top && !better(value, list[top - 1]!.value)) return;
    let i = list.length === top ? top - 1 : list.length;
    if (list.length < top) list.push({ id, value });
    while (i > 0 && better(value, list[i - 1]!.value)) {
      list[i] = list[i - 1]!;
      i--;
    }
    list[i] = { id, value };
  };
  for (let v = 0; v < V; v++) {
    let s = 0;
    const o = v * d;
    for (let i = 0; i < d; i++) s += unembed[o + i]! * u[i]!;
    insert(pos, v, s, (a, b) => a > b);
    insert(neg, v, s, (a, b) => a < b);
  }
  return { positive: pos, negative: neg };
}

/** d_j^m as a copy (m = 0 base, 1 ft). */
export function decoderVector(p: CrosscoderParams<FloatArray>, m: 0 | 1, j: number): Float32Array {
  const o = (m * p.D + j) * p.d;
  return Float32Array.from(p.decW.subarray(o, o + p.d));
}
