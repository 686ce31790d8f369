import { describe, expect, it } from 'vitest';
import { bytesSource, FormatError } from '../../io/source.ts';
import { loadCrosscoder, saveCrosscoder } from './file.ts';
import { createInference } from './inference.ts';
import { computeNormalization, initParams, type CrosscoderModel } from './model.ts';
import { createRng } from './rng.ts';

const d = 6;
const D = 10;

function trainedLike(activation: 'batchtopk' | 'relu'): CrosscoderModel {
  const rng = createRng(5);
  const params = initParams(d, D, rng, 0.7);
  for (let i = 0; i < D; i++) params.encB[i] = rng.normal() * 0.1;
  for (let i = 0; i < 2 * d; i++) params.decB[i] = rng.normal();
  const base = Float32Array.from({ length: 50 * d }, () => 3 + 2 * rng.normal());
  const ft = Float32Array.from({ length: 50 * d }, () => -1 + 5 * rng.normal());
  return {
    params,
    activation,
    codeNormalization: activation === 'relu' ? 'sae' : 'crosscoder',
    k: activation === 'relu' ? 0 : 4,
    threshold: activation === 'relu' ? -1 : 0.0625,
    normalization: computeNormalization(base, ft, 50, d),
    info: { trainer: '{"lr":0.0001}', steps: '1234' },
  };
}

/** A safetensors file with any dtypes (writeSafetensors has no I64), as PyTorch would write it. */
function rawFile(tensors: Array<{ name: string; dtype: string; shape: number[]; bytes: Uint8Array }>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const t of tensors) {
    out.set(t.bytes, pos);
    pos += t.bytes.length;
  }
  return out;
}
const f32 = (a: ArrayLike<number>) => new Uint8Array(Float32Array.from(a).buffer);
const i64 = (v: number) => new Uint8Array(BigInt64Array.from([BigInt(v)]).buffer);

describe('crosscoder files', () => {
  for (const activation of ['batchtopk', 'relu'] as const) {
    it(`round-trips a ${activation} crosscoder with its settings and normalisation`, async () => {
      const model = trainedLike(activation);
      const loaded = await loadCrosscoder(bytesSource(saveCrosscoder(model), 'cc.safetensors'));
      for (const key of ['encW', 'encB', 'decW', 'decB'] as const) expect(loaded.params[key]).toEqual(model.params[key]);
      expect(loaded.activation).toBe(activation);
      expect(loaded.codeNormalization).toBe(model.codeNormalization);
      expect(loaded.k).toBe(model.k);
      expect(loaded.threshold).toBe(model.threshold);
      expect(loaded.info).toEqual(model.info);
      for (const m of [0, 1] as const) {
        expect(loaded.normalization.mean[m]).toEqual(model.normalization.mean[m]);
        expect(Math.abs(loaded.normalization.scale[m] - model.normalization.scale[m])).toBeLessThan(1e-6 * model.normalization.scale[m]);
      }
      // Same codes on the same raw activations.
      const rng = createRng(9);
      const base = Float32Array.from({ length: 20 * d }, () => 3 + 2 * rng.normal());
      const ft = Float32Array.from({ length: 20 * d }, () => -1 + 5 * rng.normal());
      const a = await createInference(model).run(base, ft, 20);
      const b = await createInference(loaded).run(base, ft, 20);
      expect(b.code.index).toEqual(a.code.index);
      a.code.value.forEach((v, i) => expect(Math.abs(b.code.value[i]! - v)).toBeLessThan(1e-6 * (1 + v)));
    });
  }

  it("reads a dictionary_learning BatchTopKCrossCoder state dict (int64 buffers, std-based normalisation, [2, d, D] encoder)", async () => {
    const rng = createRng(3);
    const enc = Float32Array.from({ length: 2 * d * D }, () => rng.normal());
    const dec = Float32Array.from({ length: 2 * D * d }, () => rng.normal());
    const std = Float32Array.from({ length: 2 * d }, () => 0.5 + rng.next());
    const bytes = rawFile([
      { name: 'encoder.weight', dtype: 'F32', shape: [2, d, D], bytes: f32(enc) },
      { name: 'encoder.bias', dtype: 'F32', shape: [D], bytes: f32(new Float32Array(D).fill(0.1)) },
      { name: 'decoder.weight', dtype: 'F32', shape: [2, D, d], bytes: f32(dec) },
      { name: 'decoder.bias', dtype: 'F32', shape: [2, d], bytes: f32(new Float32Array(2 * d)) },
      { name: 'k', dtype: 'I64', shape: [], bytes: i64(100) },
      { name: 'threshold', dtype: 'F32', shape: [], bytes: f32([0.75]) },
      { name: 'code_normalization_id', dtype: 'I64', shape: [], bytes: i64(2) },
      { name: 'activation_mean', dtype: 'F32', shape: [2, d], bytes: f32(new Float32Array(2 * d).fill(0.25)) },
      { name: 'activation_std', dtype: 'F32', shape: [2, d], bytes: f32(std) },
      { name: 'target_rms', dtype: 'F32', shape: [], bytes: f32([2]) },
    ]);
    const model = await loadCrosscoder(bytesSource(bytes, 'model.safetensors'));
    expect(model.activation).toBe('batchtopk');
    expect(model.k).toBe(100);
    expect(model.threshold).toBe(0.75);
    expect(model.codeNormalization).toBe('sae');
    for (let m = 0; m < 2; m++) {
      for (let j = 0; j < D; j++) for (let i = 0; i < d; i++) expect(model.params.encW[(m * D + j) * d + i]).toBe(enc[(m * d + i) * D + j]);
    }
    expect(model.params.decW).toEqual(dec);
    for (const m of [0, 1] as const) {
      const total = std.subarray(m * d, (m + 1) * d).reduce((s, x) => s + x * x, 0);
      expect(Math.abs(model.normalization.scale[m] - 2 / Math.sqrt(total))).toBeLessThan(1e-5);
      expect(model.normalization.mean[m].every((x) => x === 0.25)).toBe(true);
    }
    expect(model.normalization.targetRms).toBe(2);
  });

  it('treats an L1 CrossCoder without k or threshold as ReLU, and a NaN mean as no normalisation', async () => {
    const bytes = rawFile([
      { name: 'encoder.weight', dtype: 'F32', shape: [2, d, D], bytes: f32(new Float32Array(2 * d * D)) },
      { name: 'encoder.bias', dtype: 'F32', shape: [D], bytes: f32(new Float32Array(D)) },
      { name: 'decoder.weight', dtype: 'F32', shape: [2, D, d], bytes: f32(new Float32Array(2 * D * d)) },
      { name: 'decoder.bias', dtype: 'F32', shape: [2, d], bytes: f32(new Float32Array(2 * d)) },
      { name: 'activation_mean', dtype: 'F32', shape: [2, d], bytes: f32(new Float32Array(2 * d).fill(NaN)) },
    ]);
    const model = await loadCrosscoder(bytesSource(bytes, 'l1.safetensors'));
    expect(model.activation).toBe('relu');
    expect(model.threshold).toBe(-1);
    expect(model.normalization.scale).toEqual([1, 1]);
  });

  const good = () => [
    { name: 'encoder.weight', dtype: 'F32', shape: [2, d, D], bytes: f32(new Float32Array(2 * d * D)) },
    { name: 'encoder.bias', dtype: 'F32', shape: [D], bytes: f32(new Float32Array(D)) },
    { name: 'decoder.weight', dtype: 'F32', shape: [2, D, d], bytes: f32(new Float32Array(2 * D * d)) },
    { name: 'decoder.bias', dtype: 'F32', shape: [2, d], bytes: f32(new Float32Array(2 * d)) },
  ];
  const cases: Array<[string, ReturnType<typeof good>, RegExp]> = [
    ['no decoder', good().filter((t) => t.name !== 'decoder.weight'), /no tensor "decoder.weight": not a crosscoder/],
    ['three models', good().map((t) => (t.name === 'encoder.weight' ? { ...t, shape: [3, d, D], bytes: f32(new Float32Array(3 * d * D)) } : t)), /3 layers\/models; a model-diffing crosscoder pairs exactly 2/],
    ['mismatched decoder', good().map((t) => (t.name === 'decoder.weight' ? { ...t, shape: [2, d, D] } : t)), /decoder.weight has shape \[2, 6, 10\], expected \[2, 10, 6\]/],
    ['per-model threshold', [...good(), { name: 'threshold', dtype: 'F32', shape: [2], bytes: f32([1, 2]) }], /per-model thresholds \(DECOUPLED/],
    ['MIXED code normalisation', [...good(), { name: 'code_normalization_id', dtype: 'I64', shape: [], bytes: i64(3) }], /code_normalization_id 3 \(MIXED\) is not supported/],
    ['k of 0', [...good(), { name: 'k', dtype: 'I32', shape: [], bytes: new Uint8Array(4) }], /k must be a positive integer, found 0/],
    ['float k', [...good(), { name: 'k', dtype: 'F32', shape: [], bytes: f32([3]) }], /k is F32, expected an integer/],
  ];
  for (const [label, tensors, message] of cases) {
    it(`rejects a file with ${label}, naming the file`, async () => {
      const err = await loadCrosscoder(bytesSource(rawFile(tensors), 'bad.safetensors')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FormatError);
      expect((err as FormatError).message).toMatch(/^bad\.safetensors: /);
      expect((err as FormatError).message).toMatch(message);
    });
  }
});
