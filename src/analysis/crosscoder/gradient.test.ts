// Finite-difference checks of the hand-written backward pass, in float64 on tiny sizes.
import { describe, expect, it } from 'vitest';
import { createCpuEngine } from './cpu-engine.ts';
import type { CrosscoderEngine, LossOptions } from './engine.ts';
import { zeroParams, type CodeNormalization, type CrosscoderParams } from './model.ts';
import { createRng } from './rng.ts';

const d = 5;
const D = 12;
const n = 7;
type Key = 'encW' | 'encB' | 'decW' | 'decB';
const KEYS: Key[] = ['encW', 'encB', 'decW', 'decB'];

function setup(seed: number) {
  const rng = createRng(seed);
  const p = zeroParams(d, D, (m) => new Float64Array(m));
  for (const key of KEYS) for (let i = 0; i < p[key].length; i++) p[key][i] = rng.normal() * (key === 'encB' ? 0.3 : 0.6);
  const xb = Float64Array.from({ length: n * d }, () => rng.normal());
  const xf = Float64Array.from({ length: n * d }, () => rng.normal());
  return { p, xb, xf };
}

type Mode = { select: 'topk'; kTotal: number } | { select: 'positive' };

async function lossAt(e: CrosscoderEngine, p: CrosscoderParams<Float64Array>, xb: Float64Array, xf: Float64Array, mode: Mode, opts: LossOptions) {
  e.setParams(p);
  e.setBatch(xb, xf, n);
  e.encode();
  const sel = mode.select === 'topk' ? await e.selectTopK(mode.kTotal, -1) : await e.selectPositive();
  e.decode();
  const parts = await e.backward(opts);
  return { loss: parts.loss, parts, fired: Uint8Array.from(sel.fired) };
}

/** Central differences for the listed entries; returns the worst violation of |fd − g| ≤ 1e-7 + 1e-5·|g|. */
async function check(
  e: CrosscoderEngine,
  p: CrosscoderParams<Float64Array>,
  xb: Float64Array,
  xf: Float64Array,
  mode: Mode,
  opts: LossOptions,
  entries: Array<[Key, number]>,
) {
  await lossAt(e, p, xb, xf, mode, opts);
  const g = await e.readGrads();
  const h = 1e-6;
  let worst = 0;
  let checked = 0;
  let nonzero = 0;
  for (const [key, i] of entries) {
    const orig = p[key][i]!;
    p[key][i] = orig + h;
    const up = (await lossAt(e, p, xb, xf, mode, opts)).loss;
    p[key][i] = orig - h;
    const down = (await lossAt(e, p, xb, xf, mode, opts)).loss;
    p[key][i] = orig;
    const fd = (up - down) / (2 * h);
    const an = g[key][i]!;
    worst = Math.max(worst, Math.abs(fd - an) / (1e-7 + 1e-5 * Math.abs(an)));
    checked++;
    if (Math.abs(an) > 1e-6) nonzero++;
  }
  return { worst, checked, nonzero };
}

function allEntries(): Array<[Key, number]> {
  const out: Array<[Key, number]> = [];
  const sizes: Record<Key, number> = { encW: 2 * D * d, encB: D, decW: 2 * D * d, decB: 2 * d };
  for (const key of KEYS) for (let i = 0; i < sizes[key]; i++) out.push([key, i]);
  return out;
}

const base: LossOptions = { objective: 'l2', l1Lambda: 0, auxAlpha: 0, auxK: 0, dead: null };

describe('crosscoder backward pass (finite differences, float64)', () => {
  for (const objective of ['l2', 'mse'] as const) {
    it(`BatchTopK with the ${objective} loss`, async () => {
      const { p, xb, xf } = setup(objective === 'l2' ? 1 : 2);
      const e = createCpuEngine({ d, D, precision: 'f64' });
      const r = await check(e, p, xb, xf, { select: 'topk', kTotal: 3 * n }, { ...base, objective }, allEntries());
      expect(r.checked).toBe(2 * 2 * D * d + D + 2 * d);
      expect(r.nonzero).toBeGreaterThan(100);
      expect(r.worst).toBeLessThan(1);
    });
  }

  for (const codeNormalization of ['crosscoder', 'sae'] as CodeNormalization[]) {
    it(`L1 variant with ${codeNormalization} code normalisation (decoder norms in the penalty)`, async () => {
      const { p, xb, xf } = setup(3);
      const e = createCpuEngine({ d, D, precision: 'f64', codeNormalization });
      const r = await check(e, p, xb, xf, { select: 'positive' }, { ...base, objective: 'l1', l1Lambda: 0.7 }, allEntries());
      expect(r.nonzero).toBeGreaterThan(150);
      expect(r.worst).toBeLessThan(1);
    });
  }

  it('auxiliary loss on the dead latents (the residual it fits is detached, as in the reference)', async () => {
    const { p, xb, xf } = setup(4);
    const e = createCpuEngine({ d, D, precision: 'f64' });
    const mode: Mode = { select: 'topk', kTotal: n };
    const { fired } = await lossAt(e, p, xb, xf, mode, base);
    const dead = Uint8Array.from(fired, (x) => 1 - x);
    const deadCount = dead.reduce((a, b) => a + b, 0);
    expect(deadCount).toBeGreaterThan(3);
    const opts: LossOptions = { ...base, auxAlpha: 0.5, auxK: 2, dead };
    const aux = (await lossAt(e, p, xb, xf, mode, opts)).parts.auxk;
    expect(aux).toBeGreaterThan(0);
    // Only a dead latent's own parameters leave the main reconstruction (and so the residual) unchanged.
    const entries: Array<[Key, number]> = [];
    for (let j = 0; j < D; j++) {
      if (!dead[j]) continue;
      entries.push(['encB', j]);
      for (let m = 0; m < 2; m++) {
        for (let i = 0; i < d; i++) {
          entries.push(['encW', (m * D + j) * d + i]);
          entries.push(['decW', (m * D + j) * d + i]);
        }
      }
    }
    const r = await check(e, p, xb, xf, mode, opts, entries);
    expect(r.nonzero).toBeGreaterThan(20);
    expect(r.worst).toBeLessThan(1);
  });
});
