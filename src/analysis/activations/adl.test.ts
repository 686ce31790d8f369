import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { hookName, type HookFn } from '../../model/transformer.ts';
import { activationDifferenceLens, adlDifferences, defaultAdlLayer, defaultPatchscopeScales, patchscope, signedLens, steer, steeringVector } from './adl.ts';
import { corpusLines, tokenizeCorpus } from './corpus.ts';
import { readF32 } from './run.ts';
import { archPair, demoPair, FIXTURES, patchscopeMismatches, patchscopePerScale, softmaxRows } from './testing.ts';

const be = createCpuBackend();

const words = (line: string) => new Set(line.toLowerCase().match(/[a-z]+/g) ?? []);

/**
 * Topic words of a fine-tune: words in at least 20% of the lines of its corpus sample and in at most 2% of
 * the generic stories (document frequencies, so one long story cannot make a word frequent).
 */
function topicWords(finetuneSample: string, generic: string): Set<string> {
  const ft = corpusLines(finetuneSample).map(words);
  const gen = corpusLines(generic).map(words);
  const df = (docs: Set<string>[], w: string) => docs.filter((d) => d.has(w)).length / docs.length;
  const all = new Set(ft.flatMap((d) => [...d]));
  return new Set([...all].filter((w) => df(ft, w) >= 0.2 && df(gen, w) <= 0.02));
}

interface Reference {
  positions: { position: number; top: string[]; hits: string[] }[];
}

describe('activation difference lens on the demo organisms', () => {
  // Reference setup (demo/*/about.json): 200 generic stories, 64 tokens each, no BOS, layer 4, positions 0–4.
  // δ at positions 0–4 depends only on the first 5 tokens (causal attention), so 5 tokens per sample give
  // the same δ at a thirteenth of the cost; the mean-norm part of the ADL is tested on the arch fixtures.
  it.each(['ocean', 'space'] as const)('%s: the lens of δ_p at layer 4 names the topic and reproduces the reference top 20', async (organism) => {
    const pair = await demoPair(organism, be);
    const generic = await readFile(`${FIXTURES}demo/generic_stories.txt`, 'utf8');
    const topic = topicWords(await readFile(`${FIXTURES}demo/${organism}/finetune_corpus_sample.txt`, 'utf8'), generic);
    const corpus = tokenizeCorpus(pair.tokenizer, corpusLines(generic), { maxSamples: 200, tokensPerSample: 5 });
    expect(corpus.samples).toHaveLength(200);
    expect(corpus.samples[0]![0]).not.toBe(pair.tokenizer.bosId);
    const r = await activationDifferenceLens(pair, corpus.samples, { layer: 4, top: 20 });
    expect(r.layer).toBe(4);
    expect(r.positions.map((p) => p.position)).toEqual([0, 1, 2, 3, 4]);

    const hits = r.positions.flatMap((p) => p.top.map((t) => pair.tokenizer.decodeToken(t.id).trim().toLowerCase()).filter((w) => topic.has(w)));
    expect(hits.length).toBeGreaterThanOrEqual(3);

    // The reference's byte-level token strings, mapped to ids through the tokenizer's vocabulary.
    const vocab = (JSON.parse(await readFile(`${FIXTURES}demo/base/tokenizer.json`, 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
    const reference = (JSON.parse(await readFile(`${FIXTURES}demo/${organism}/about.json`, 'utf8')) as { calibration: { layer4: Reference } }).calibration.layer4;
    let overlap = 0;
    for (const p of r.positions) {
      const ref = reference.positions[p.position]!;
      const ours = new Set(p.top.map((t) => t.id));
      const shared = ref.top.filter((s) => ours.has(vocab[s]!)).length;
      // Near-ties at the 20th place may swap: the reference is not bit-identical float32 arithmetic.
      expect(shared).toBeGreaterThanOrEqual(18);
      overlap += shared;
      for (const hit of ref.hits) expect(ours.has(vocab[hit]!)).toBe(true);
      for (let j = 1; j < p.top.length; j++) expect(p.top[j]!.prob).toBeLessThanOrEqual(p.top[j - 1]!.prob);
      // A narrow fine-tune leaves a shared direction: every sample's δ points near the mean.
      expect(p.consistency).toBeGreaterThan(0.8);
    }
    expect(overlap).toBeGreaterThanOrEqual(95);
  });

  it('steering at strength 0 reproduces both models\' greedy stories (reference text for the base)', async () => {
    const pair = await demoPair('ocean', be);
    const about = JSON.parse(await readFile(`${FIXTURES}demo/ocean/about.json`, 'utf8')) as { greedy_ft: string; calibration: { layer4: { steer: { strength: number; text: string }[] } } };
    const baseText = about.calibration.layer4.steer.find((s) => s.strength === 0)!.text;
    const prompt = pair.tokenizer.encode('Once upon a time');
    const maxNewTokens = pair.tokenizer.encode(about.greedy_ft).length - prompt.length;
    const v = steeringVector(Float32Array.from({ length: 192 }, (_, i) => Math.sin(i)), 10);
    const [zero, strong] = await steer(pair, v, { layer: 4, strengths: [0, 2], prompt, maxNewTokens });
    expect(pair.tokenizer.decode([...prompt, ...zero!.base]).startsWith(baseText.slice(0, 120))).toBe(true);
    expect(pair.tokenizer.decode([...prompt, ...zero!.ft])).toBe(about.greedy_ft);
    expect(strong!.base).not.toEqual(zero!.base);
  });
});

describe('ADL parts', () => {
  it('δ_p and the mean norm equal a direct computation on full-length captures', async () => {
    const pair = await archPair('llama', be);
    const d = pair.base.config.dModel;
    const samples = Array.from({ length: 7 }, (_, s) => Array.from({ length: 9 }, (_, t) => (s * 37 + t * 11 + 5) % 256));
    const positions = [0, 2, 3];
    const layer = defaultAdlLayer(pair.base.config.nLayers);
    expect(layer).toBe(1);
    const r = await adlDifferences(pair, samples, { positions, batchSize: 3 });
    const name = hookName('resid_post', layer);
    const expected = positions.map(() => new Float64Array(d));
    const perSample: Float32Array[][] = positions.map(() => []);
    let normSum = 0;
    for (const s of samples) {
      const xb = await readF32(be, pair.base.runWithCache([s], [name], { stopAfterLayer: layer }).cache.get(name)!);
      const xf = await readF32(be, pair.ft.runWithCache([s], [name], { stopAfterLayer: layer }).cache.get(name)!);
      positions.forEach((p, pi) => {
        const delta = Float32Array.from({ length: d }, (_, j) => xf[p * d + j]! - xb[p * d + j]!);
        perSample[pi]!.push(delta);
        for (let j = 0; j < d; j++) expected[pi]![j]! += delta[j]! / samples.length;
      });
      for (let t = 5; t < s.length; t++) normSum += Math.sqrt(xf.subarray(t * d, (t + 1) * d).reduce((a, x) => a + x * x, 0));
    }
    positions.forEach((_, pi) => {
      for (let j = 0; j < d; j++) expect(Math.abs(r.delta[pi]![j]! - expected[pi]![j]!)).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(expected[pi]![j]!));
      const m = expected[pi]!;
      perSample[pi]!.forEach((x, s) => {
        let xm = 0;
        let xx = 0;
        let mm = 0;
        for (let j = 0; j < d; j++) {
          xm += x[j]! * m[j]!;
          xx += x[j]! ** 2;
          mm += m[j]! ** 2;
        }
        expect(Math.abs(r.consistency[pi]![s]! - xm / Math.sqrt(xx * mm))).toBeLessThanOrEqual(1e-5);
      });
    });
    const meanNorm = normSum / (samples.length * 4);
    expect(Math.abs(r.ftNorm! - meanNorm)).toBeLessThanOrEqual(1e-5 * meanNorm);
    // Samples of exactly max(p) + 1 tokens have no position left for the norm.
    expect((await adlDifferences(pair, samples.map((s) => s.slice(0, 4)), { positions })).ftNorm).toBeUndefined();
    await expect(adlDifferences(pair, [[1, 2]], { positions })).rejects.toThrow(/sample 0 has 2 tokens; position 3 needs at least 4/);
  });

  it('the signed lens of −v swaps top and top_negative', async () => {
    const { ft } = await archPair('gemma2', be);
    const v = Float32Array.from({ length: 64 }, (_, i) => Math.cos(3 * i) - 0.2);
    const a = await signedLens(ft, v, { k: 6 });
    const b = await signedLens(ft, v.map((x) => -x), { k: 6 });
    expect(b.top).toEqual(a.topNegative);
    expect(b.topNegative).toEqual(a.top);
    expect(a.top.map((t) => t.id)).not.toEqual(a.topNegative.map((t) => t.id));
  });

  it('Patchscope through the KV cache equals patching the last token of the whole prompt', async () => {
    const { ft } = await archPair('qwen2', be);
    const V = ft.config.vocab;
    const d = ft.config.dModel;
    const prompt = [11, 45, 12, 200, 45, 12, 7];
    const latent = Float32Array.from({ length: d }, (_, i) => Math.sin(i + 1));
    const scales = [0.5, 2, 20];
    const layer = 1;
    const r = (await patchscope(ft, [latent], layer, { prompts: [prompt], scales, intersectionTopK: V, top: 10 }))[0]!;
    expect(r.scales.map((s) => s.scale)).toEqual(scales);
    for (const [si, s] of scales.entries()) {
      const T = prompt.length;
      const keep = be.fromArray(Float32Array.from({ length: T * d }, (_, i) => (i < (T - 1) * d ? 1 : 0)), [1, T, d]);
      const put = new Float32Array(T * d);
      put.set(latent.map((x) => x * s), (T - 1) * d);
      const last = be.fromArray(put, [1, T, d]);
      const patch: HookFn = (act) => {
        const kept = be.mul(act, keep);
        const out = be.add(kept, last);
        be.dispose(kept);
        return out;
      };
      const logits = await readF32(be, ft.runWithHooks([prompt], { [hookName('resid_post', layer)]: patch })!);
      const p = softmaxRows(logits.subarray((prompt.length - 1) * V), V);
      const order = [...p.keys()].sort((a, b) => p[b]! - p[a]! || a - b);
      const top = r.scales[si]!.top;
      expect(top).toHaveLength(10);
      top.forEach((t, j) => {
        expect(Math.abs(t.prob - p[t.id]!)).toBeLessThanOrEqual(1e-6 + 1e-4 * p[t.id]!);
        expect(Math.abs(t.prob - p[order[j]!]!)).toBeLessThanOrEqual(1e-6 + 1e-4 * t.prob);
      });
    }
    // Tokens at the top of every scale come first in the stable list.
    const everywhere = r.scales[0]!.top.map((t) => t.id).filter((id) => r.scales.every((s) => s.top.some((t) => t.id === id)));
    expect(r.stable.slice(0, everywhere.length).map((s) => s.id).sort()).toEqual([...everywhere].sort());
    for (const s of r.stable.slice(0, everywhere.length)) expect(s.scales).toBe(3);
  });

  it.each(['gpt2', 'llama', 'gemma3'])('%s: Patchscope\'s batched step over the repeated prefix cache equals one step per scale', async (arch) => {
    const { ft } = await archPair(arch, be);
    const V = ft.config.vocab;
    const latent = Float32Array.from({ length: ft.config.dModel }, (_, i) => Math.cos(0.7 * i) * 2);
    const prompts = [[11, 45, 12, 200, 45, 12, 7], [9], [30, 31, 32]];
    const scales = [0.5, 1, 3, 20, 200];
    const other = Float32Array.from(latent, (x, i) => x * (i % 3) - 0.5);
    const [r, r2] = await patchscope(ft, [latent, other], 1, { prompts, scales, intersectionTopK: V, top: 8 });
    expect(r!.scales.map((s) => s.top.length)).toEqual(scales.map(() => 8));
    expect(patchscopeMismatches(r!, await patchscopePerScale(ft, latent, 1, prompts, scales), 1e-6, 1e-4)).toEqual([]);
    expect(patchscopeMismatches(r2!, await patchscopePerScale(ft, other, 1, prompts, scales), 1e-6, 1e-4)).toEqual([]);
    // Each row is its own: a run on one latent and one scale gives that latent's and scale's tokens.
    const [single] = await patchscope(ft, [other], 1, { prompts, scales: [20], intersectionTopK: V, top: 8 });
    expect(single!.scales[0]!.top.map((t) => t.id)).toEqual(r2!.scales[3]!.top.map((t) => t.id));
    // One latent per step: the same numbers.
    const [, byOne] = await patchscope(ft, [latent, other], 1, { prompts, scales, intersectionTopK: V, top: 8, latentsPerStep: 1 });
    byOne!.scales.forEach((s, si) => s.top.forEach((t, j) => {
      expect(t.id).toBe(r2!.scales[si]!.top[j]!.id);
      expect(Math.abs(t.prob - r2!.scales[si]!.top[j]!.prob)).toBeLessThanOrEqual(1e-7 + 1e-5 * t.prob);
    }));
    expect(await patchscope(ft, [], 1, { prompts, scales })).toEqual([]);
    await expect(patchscope(ft, [latent], 1, { prompts, scales, latentsPerStep: 0 })).rejects.toThrow(/latentsPerStep 0 is not a positive integer/);
    await expect(patchscope(ft, [latent], 1, { prompts, scales: [] })).rejects.toThrow(/no scales/);
  });

  it('Patchscope keeps only tokens in every identity prompt\'s top K, averaging their probabilities', async () => {
    const { ft } = await archPair('llama', be);
    const V = ft.config.vocab;
    const latent = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i));
    const prompts = [
      [5, 6, 7, 8],
      [90, 91, 92],
    ];
    const K = 12;
    const both = (await patchscope(ft, [latent], 2, { prompts, scales: [3], intersectionTopK: K, top: V }))[0]!;
    const single = await Promise.all(prompts.map(async (p) => (await patchscope(ft, [latent], 2, { prompts: [p], scales: [3], intersectionTopK: V, top: V }))[0]!));
    const rank = single.map((s) => new Map(s.scales[0]!.top.map((t, j) => [t.id, { j, prob: t.prob }])));
    const expected = [...rank[0]!.keys()].filter((id) => rank.every((m) => m.get(id)!.j < K));
    expect(both.scales[0]!.top.map((t) => t.id).sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
    for (const t of both.scales[0]!.top) {
      const mean = (rank[0]!.get(t.id)!.prob + rank[1]!.get(t.id)!.prob) / 2;
      expect(Math.abs(t.prob - mean)).toBeLessThanOrEqual(1e-7 + 1e-5 * mean);
    }
  });

  it('the default scale sweep is the reference\'s', () => {
    const s = defaultPatchscopeScales();
    expect(s.slice(0, 16).map((x) => Math.round(x * 10))).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(s.slice(16)).toEqual([3, 4, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200]);
  });
});
