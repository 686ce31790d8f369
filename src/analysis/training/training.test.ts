// The training engine against finite differences (per op) and against PyTorch (per architecture):
// test/fixtures/training/<arch>.safetensors holds PyTorch's loss and gradients for a fixed batch, full
// and LoRA, and the loss curve of 50 LoRA steps (scripts/training-reference.py wrote them).
import { describe, expect, it } from 'vitest';
import { pathFileSet, pathSource } from '../../io/node-source.ts';
import { Bf16Bits, bf16FromF32, halfBitsIntoF32 } from '../../io/chunks.ts';
import { readSafetensorsHeader, safetensorsStore } from '../../io/safetensors.ts';
import type { WeightStore } from '../../io/store.ts';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { wasmGemmAvailable, wasmGemmOptions } from '../../gpu/cpu-wasm/gemm.ts';
import { loadModel } from '../../model/load.ts';
import { canonicalShapes, peftFactorName, toCheckpoint } from './export.ts';
import { defaultTargetModules, TrainableTransformer, type Trainable } from './model.ts';
import * as op from './ops.ts';
import { Rng } from './rng.ts';
import { Tape, type Param } from './tape.ts';
import { AdamW, DEFAULT_OPTIMIZER, trainStep } from './train.ts';

function randn(rng: Rng, n: number, s = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.next() + rng.next() + rng.next() - 1.5) * 2 * s;
  return a;
}

/**
 * Checks d(Σ out · R)/d(input) from the tape against central differences in float64 terms: `run`
 * builds the op from the inputs on a tape and returns its output.
 */
function checkGradients(inputs: Float32Array[], params: Param[], run: (tape: Tape) => Float32Array, seedsItself = false, h = 1e-2): number {
  const rng = new Rng(7);
  const probe = (): number => {
    const out = run(new Tape());
    let s = 0;
    for (let i = 0; i < out.length; i++) s += out[i]! * R[i]!;
    return s;
  };
  // A loss op seeds its own gradient (weight 1): then the probe is the loss itself.
  const R = seedsItself ? new Float32Array([1]) : randn(rng, run(new Tape()).length);
  for (const p of params) p.grad!.fill(0);
  const tape = new Tape();
  const out = run(tape);
  if (!seedsItself) tape.grad(out).set(R);
  const analytic = new Map<Float32Array, Float32Array>();
  // The input gradient buffers, taken before backward clears the tape's map.
  const recorded = inputs.map((x) => tape.grad(x));
  tape.backward();
  inputs.forEach((x, i) => analytic.set(x, recorded[i]!));
  for (const p of params) analytic.set(p.data, p.grad!);
  let worst = 0;
  for (const [x, g] of analytic) {
    for (let i = 0; i < x.length; i += Math.max(1, Math.floor(x.length / 12))) {
      const keep = x[i]!;
      x[i] = keep + h;
      const up = probe();
      x[i] = keep - h;
      const down = probe();
      x[i] = keep;
      const numeric = (up - down) / (2 * h);
      worst = Math.max(worst, Math.abs(numeric - g[i]!) / (1e-2 + Math.abs(numeric)));
    }
  }
  return worst;
}

const param = (data: Float32Array): Param => ({ data, grad: new Float32Array(data.length) });

describe('training ops: gradients against finite differences', () => {
  const rng = new Rng(1);
  it('linear with bias and LoRA (fused rows)', () => {
    const x = randn(rng, 6 * 5);
    const w = param(randn(rng, 4 * 5));
    const b = param(randn(rng, 4));
    const A = param(randn(rng, 2 * 5));
    const B = param(randn(rng, 7 * 2));
    const lora = { A, B, rank: 2, rows: [2, 6] as const, scaling: 1.5 };
    expect(checkGradients([x], [w, b, A, B], (t) => op.linear(t, x, 5, w, 4, b, lora))).toBeLessThan(2e-3);
    // One row: LoRA kept apart from the weight (x Wᵀ + s (x Aᵀ) Bᵀ), the same function.
    const x1 = x.subarray(0, 5);
    expect(checkGradients([x1], [w, b, A, B], (t) => op.linear(t, x1, 5, w, 4, b, lora))).toBeLessThan(2e-3);
    const merged = op.linear(new Tape(), x, 5, w, 4, b, lora).subarray(0, 4);
    const apart = op.linear(new Tape(), x1, 5, w, 4, b, lora);
    for (let j = 0; j < 4; j++) expect(Math.abs(apart[j]! - merged[j]!)).toBeLessThan(1e-6 + 1e-6 * Math.abs(merged[j]!));
  });
  it('RMS norm (plain and 1 + w) and layer norm', () => {
    const x = randn(rng, 4 * 8);
    const w = param(randn(rng, 8));
    const b = param(randn(rng, 8));
    expect(checkGradients([x], [w], (t) => op.rmsNorm(t, x, 8, w, 1e-5, false))).toBeLessThan(2e-3);
    expect(checkGradients([x], [w], (t) => op.rmsNorm(t, x, 8, w, 1e-5, true))).toBeLessThan(2e-3);
    expect(checkGradients([x], [w, b], (t) => op.layerNorm(t, x, 8, w, b, 1e-5))).toBeLessThan(2e-3);
  });
  it('rotary (partial) and attention with GQA, window and soft-cap', () => {
    const q = randn(rng, 2 * 5 * 4 * 4, 0.7);
    const k = randn(rng, 2 * 5 * 2 * 4, 0.7);
    const v = randn(rng, 2 * 5 * 2 * 4);
    expect(checkGradients([q], [], (t) => op.rope(t, q, 5, 4, 4, { theta: 100, rotaryDim: 2 }))).toBeLessThan(2e-3);
    const shape = { batch: 2, seq: 5, nHeads: 4, nKvHeads: 2, headDim: 4, scale: 0.5, window: 3, softcap: 2 };
    expect(checkGradients([q, k, v], [], (t) => op.attention(t, q, k, v, shape))).toBeLessThan(2e-3);
    expect(checkGradients([q, k, v], [], (t) => op.attention(t, q, k, v, { ...shape, window: 0, softcap: 0 }))).toBeLessThan(2e-3);
  });
  it('activations, gating, embedding, soft-cap and cross-entropy', () => {
    const x = randn(rng, 24);
    const y = randn(rng, 24);
    for (const act of ['silu', 'gelu', 'gelu_tanh'] as const) {
      expect(checkGradients([x], [], (t) => op.activation(t, x, act)), act).toBeLessThan(2e-3);
      expect(checkGradients([x, y], [], (t) => op.gated(t, x, y, act)), act).toBeLessThan(2e-3);
    }
    expect(checkGradients([x], [], (t) => op.softcap(t, x, 1.5))).toBeLessThan(2e-3);
    const w = param(randn(rng, 5 * 3));
    expect(checkGradients([], [w], (t) => op.embedding(t, w, new Int32Array([4, 0, 4, 2]), 3))).toBeLessThan(2e-3);
    const logits = randn(rng, 3 * 6);
    const targets = new Int32Array([2, -1, 5]);
    const ce = (t: Tape): Float32Array => new Float32Array([op.crossEntropy(t, logits, 6, targets, 1)]);
    expect(checkGradients([logits], [], ce, true)).toBeLessThan(2e-3);
  });
});

/** An op's output and its inputs' gradients for a fixed random output gradient (or its own seed: a loss op). */
function outputsAndGradients(inputs: Float32Array[], run: (tape: Tape) => Float32Array, seedsItself = false): Float32Array[] {
  const tape = new Tape();
  const out = run(tape);
  if (!seedsItself) tape.grad(out).set(randn(new Rng(3), out.length));
  const grads = inputs.map((x) => tape.grad(x));
  tape.backward();
  return [out, ...grads];
}

describe('training ops: the WebAssembly kernels against the JavaScript path', () => {
  const rng = new Rng(2);
  /** Runs `run` with the kernels and without them (wasmGemmOptions.enabled), expecting the same values within abs + rel·|x|. */
  function expectSame(inputs: Float32Array[], run: (tape: Tape) => Float32Array, abs: number, rel: number, seedsItself = false): void {
    const fast = outputsAndGradients(inputs, run, seedsItself);
    wasmGemmOptions.enabled = false;
    let slow: Float32Array[];
    try {
      slow = outputsAndGradients(inputs, run, seedsItself);
    } finally {
      wasmGemmOptions.enabled = true;
    }
    fast.forEach((f, i) => {
      const want = slow[i]!;
      expect(f.length).toBe(want.length);
      let worst = 0;
      for (let j = 0; j < f.length; j++) worst = Math.max(worst, Math.abs(f[j]! - want[j]!) - (abs + rel * Math.abs(want[j]!)));
      expect(worst, `output ${i}`).toBeLessThanOrEqual(0);
    });
  }
  it('attention (grouped heads, with and without a window): output and the gradients of q, k, v', () => {
    expect(wasmGemmAvailable()).toBe(true);
    const B = 2, T = 24, H = 4, Hkv = 2, hd = 16;
    const q = randn(rng, B * T * H * hd, 0.7);
    const k = randn(rng, B * T * Hkv * hd, 0.7);
    const v = randn(rng, B * T * Hkv * hd);
    for (const window of [0, 7]) {
      const shape = { batch: B, seq: T, nHeads: H, nKvHeads: Hkv, headDim: hd, scale: 0.25, window, softcap: 0 };
      expectSame([q, k, v], (t) => op.attention(t, q, k, v, shape), 1e-6, 1e-5);
    }
    // Against finite differences too (the kernels' path on its own).
    const q8 = randn(rng, 8 * 2 * 8, 0.7);
    const k8 = randn(rng, 8 * 1 * 8, 0.7);
    const v8 = randn(rng, 8 * 1 * 8);
    const small = { batch: 1, seq: 8, nHeads: 2, nKvHeads: 1, headDim: 8, scale: 0.35, window: 0, softcap: 0 };
    expect(checkGradients([q8, k8, v8], [], (t) => op.attention(t, q8, k8, v8, small))).toBeLessThan(2e-3);
  });
  it("RMS norm (plain and 1 + w, threaded over 300 rows): output, the input's gradient and the gain's", () => {
    const n = 192;
    const x = randn(rng, 300 * n, 2);
    for (const addOne of [false, true]) {
      const w = param(randn(rng, n, 0.5));
      const wGrads: Float32Array[] = [];
      expectSame(
        [x],
        (t) => {
          const g = new Float32Array(n);
          wGrads.push(g);
          return op.rmsNorm(t, x, n, { data: w.data, grad: g }, 1e-5, addOne);
        },
        1e-6,
        2e-5,
      );
      // [kernels, JavaScript]: the gain's gradient sums 300 rows.
      const [fast, slow] = wGrads as [Float32Array, Float32Array];
      let worst = 0;
      for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(fast[j]! - slow[j]!) - (1e-5 + 2e-5 * Math.abs(slow[j]!)));
      expect(worst).toBeLessThanOrEqual(0);
      expect(Math.max(...fast.map(Math.abs))).toBeGreaterThan(1);
    }
  });
  it("linear with LoRA (rank 8, fused rows): output, the input's gradient and both factors'", () => {
    const M = 70, K = 36, N = 20, r = 8;
    const x = randn(rng, M * K);
    const w = { data: randn(rng, N * K, 0.3), grad: undefined };
    const A = randn(rng, r * K, 0.3);
    const B = randn(rng, 28 * r, 0.3);
    const grads: { A: Float32Array; B: Float32Array }[] = [];
    expectSame(
      [x],
      (t) => {
        const gA = new Float32Array(A.length);
        const gB = new Float32Array(B.length);
        grads.push({ A: gA, B: gB });
        return op.linear(t, x, K, w, N, undefined, { A: { data: A, grad: gA }, B: { data: B, grad: gB }, rank: r, rows: [4, 24], scaling: 2 });
      },
      1e-5,
      1e-5,
    );
    // [kernels, JavaScript]; B's rows outside 4..24 belong to another part of the fused module and stay 0.
    const [fast, slow] = grads as [{ A: Float32Array; B: Float32Array }, { A: Float32Array; B: Float32Array }];
    for (const f of ['A', 'B'] as const) {
      let worst = 0;
      for (let i = 0; i < fast[f].length; i++) worst = Math.max(worst, Math.abs(fast[f][i]! - slow[f][i]!) - (1e-5 + 1e-5 * Math.abs(slow[f][i]!)));
      expect(worst, f).toBeLessThanOrEqual(0);
      expect(Math.max(...fast[f].map(Math.abs)), f).toBeGreaterThan(0.1);
    }
    expect(Math.max(...fast.B.subarray(0, 4 * r).map(Math.abs), ...fast.B.subarray(24 * r).map(Math.abs))).toBe(0);
  });
  it('silu and gelu_tanh (plain and gated) and cross-entropy over a vocabulary of 64', () => {
    const x = randn(rng, 1001, 4);
    const y = randn(rng, 1001);
    for (const act of ['silu', 'gelu_tanh'] as const) {
      expectSame([x], (t) => op.activation(t, x, act), 1e-7, 2e-6);
      expectSame([x, y], (t) => op.gated(t, x, y, act), 1e-7, 2e-6);
    }
    const logits = randn(rng, 5 * 64, 3);
    const targets = new Int32Array([2, -1, 63, 0, 17]);
    expectSame([logits], (t) => new Float32Array([op.crossEntropy(t, logits, 64, targets, 0.25)]), 1e-7, 2e-6, true);
  });
});

async function referenceStore(arch: string): Promise<WeightStore> {
  const path = `test/fixtures/training/${arch}.safetensors`;
  return safetensorsStore([await readSafetensorsHeader(await pathSource(path))], path);
}

async function trainable(arch: string, mode: Trainable): Promise<TrainableTransformer> {
  const model = await loadModel(await pathFileSet(`test/fixtures/arch/${arch}/base`), createCpuBackend());
  return TrainableTransformer.fromTransformer(model, mode);
}

/** ‖a − b‖ / ‖b‖. */
function relError(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

async function ids(path: string, name: string): Promise<{ ids: Int32Array; shape: readonly number[] }> {
  const e = (await readSafetensorsHeader(await pathSource(path))).entries.get(name)!;
  const bytes = await e.source.read(e.offset, e.byteLength);
  return { ids: new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), shape: e.shape };
}

async function loadFactors(model: TrainableTransformer, ref: WeightStore, prefix: string, zeroB: boolean): Promise<void> {
  for (const m of model.lora.values()) {
    m.A.data.set(await ref.readF32(`${prefix}${peftFactorName(m.module, 'A')}`));
    if (zeroB) m.B.data.fill(0);
    else m.B.data.set(await ref.readF32(`${prefix}${peftFactorName(m.module, 'B')}`));
  }
}

const ARCHS = ['llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gpt2', 'gemma2', 'gemma3'] as const;

describe('training engine against PyTorch', () => {
  for (const arch of ARCHS) {
    it(`${arch}: full fine-tuning loss and every parameter's gradient`, async () => {
      const ref = await referenceStore(arch);
      const model = await trainable(arch, { kind: 'full' });
      const { ids: x, shape } = await ids(ref.label, 'input_ids');
      const [B, T] = shape as [number, number];
      const { loss, tokens } = model.lossAndGrad(x, B, T, 1 / (B * (T - 1)));
      const want = (await ref.readF32('full.loss'))[0]!;
      expect(Math.abs(loss / tokens - want) / want).toBeLessThan(1e-5);
      const grads = new Map([...model.weights].map(([n, p]) => [n, p.grad!]));
      const ours = toCheckpoint(grads, model.sources, canonicalShapes(model));
      const refNames = [...ref.tensors.keys()].filter((n) => n.startsWith('full.grad.')).map((n) => n.slice('full.grad.'.length));
      expect(ours.map((t) => t.name).sort()).toEqual(refNames.sort());
      let worst = 0;
      for (const t of ours) {
        expect(t.shape, t.name).toEqual(ref.tensors.get(`full.grad.${t.name}`)!.shape);
        const e = relError(t.data, await ref.readF32(`full.grad.${t.name}`));
        worst = Math.max(worst, e);
        expect(e, t.name).toBeLessThan(1e-4);
      }
      console.log(`${arch} full: loss ${(loss / tokens).toFixed(6)} vs ${want.toFixed(6)}; worst gradient ‖Δ‖/‖g‖ ${worst.toExponential(2)} over ${ours.length} tensors`);
    });

    it(`${arch}: LoRA loss and every factor's gradient`, async () => {
      const ref = await referenceStore(arch);
      const meta = ref.tensors;
      const config = (await trainable(arch, { kind: 'full' })).config;
      const lora = { rank: 4, alpha: 8, rslora: arch === 'qwen3', targetModules: defaultTargetModules(config) };
      const model = await trainable(arch, { kind: 'lora', lora });
      await loadFactors(model, ref, 'lora.init.', false);
      const { ids: x, shape } = await ids(ref.label, 'input_ids');
      const [B, T] = shape as [number, number];
      model.zeroGrad();
      const { loss, tokens } = model.lossAndGrad(x, B, T, 1 / (B * (T - 1)));
      const want = (await ref.readF32('lora.loss'))[0]!;
      expect(Math.abs(loss / tokens - want) / want).toBeLessThan(1e-5);
      // LoRA forms no gradient of a base weight: they have no buffer to receive one.
      for (const [n, p] of model.weights) expect(p.grad, n).toBeUndefined();
      const names = [...meta.keys()].filter((n) => n.startsWith('lora.grad.'));
      expect(names.length).toBe(2 * model.lora.size);
      let worst = 0;
      for (const m of model.lora.values()) {
        for (const [f, p] of [['A', m.A], ['B', m.B]] as const) {
          const name = `lora.grad.${peftFactorName(m.module, f)}`;
          const e = relError(p.grad!, await ref.readF32(name));
          worst = Math.max(worst, e);
          expect(e, name).toBeLessThan(1e-4);
        }
      }
      console.log(`${arch} LoRA: loss ${(loss / tokens).toFixed(6)} vs ${want.toFixed(6)}; worst factor gradient ‖Δ‖/‖g‖ ${worst.toExponential(2)} over ${names.length} factors`);
    });
  }

  for (const arch of ['llama', 'gpt2'] as const) {
    it(`${arch}: 50 LoRA AdamW steps (warm-up, cosine, clipping, weight decay, micro-batches) follow PyTorch's loss curve`, async () => {
      const ref = await referenceStore(arch);
      const config = (await trainable(arch, { kind: 'full' })).config;
      const model = await trainable(arch, { kind: 'lora', lora: { rank: 4, alpha: 8, rslora: false, targetModules: defaultTargetModules(config) } });
      await loadFactors(model, ref, 'curve.init.', true);
      const { ids: all, shape } = await ids(ref.label, 'curve.ids');
      const [steps, B, T] = shape as [number, number, number];
      const want = await ref.readF32('curve.loss');
      const opt = new AdamW([...model.params().values()], { ...DEFAULT_OPTIMIZER, lr: 1e-2, steps, warmupSteps: 5, weightDecay: 0.01, maxGradNorm: 1 });
      let worst = 0;
      for (let s = 0; s < steps; s++) {
        const { loss } = trainStep(model, opt, all.subarray(s * B * T, (s + 1) * B * T), B, T, 2);
        worst = Math.max(worst, Math.abs(loss - want[s]!) / want[s]!);
      }
      expect(want[steps - 1]!).toBeLessThan(want[0]! - 0.1);
      console.log(`${arch}: loss curve ${want[0]!.toFixed(4)} → ${want[steps - 1]!.toFixed(4)}, worst relative difference to PyTorch ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(0.01);
    });
  }
});

describe("the training step's buffer pool", () => {
  // A step reuses the arrays of the one before (Tape with a BufferPool): a third step after two on other
  // tokens must give exactly the gradients a fresh model gives, so no op reads a recycled array it did not write.
  const cases: Array<[(typeof ARCHS)[number], 'full' | 'lora']> = [['llama', 'lora'], ['gpt2', 'full'], ['gemma2', 'full'], ['phi3', 'lora'], ['qwen3', 'full']];
  for (const [arch, kind] of cases) {
    it(`${arch} ${kind}: the third step's loss and gradients equal a fresh model's, bit for bit`, async () => {
      const ref = await referenceStore(arch);
      const { ids: x, shape } = await ids(ref.label, 'input_ids');
      const [B, T] = shape as [number, number];
      const config = (await trainable(arch, { kind: 'full' })).config;
      const mode: Trainable = kind === 'full' ? { kind } : { kind, lora: { rank: 4, alpha: 8, rslora: false, targetModules: defaultTargetModules(config) } };
      const make = async (): Promise<TrainableTransformer> => {
        const m = await trainable(arch, mode);
        // Non-zero B, so that the LoRA path's every product matters.
        for (const f of m.lora.values()) f.B.data.set(randn(new Rng(3), f.B.data.length, 0.05));
        return m;
      };
      const other = x.map((t, i) => (t * 7 + i) % config.vocab);
      const reused = await make();
      for (const batch of [other, x.map((t) => (t + 1) % config.vocab)]) {
        reused.zeroGrad();
        reused.lossAndGrad(batch, B, T, 1);
      }
      reused.zeroGrad();
      const a = reused.lossAndGrad(x, B, T, 1);
      const fresh = await make();
      fresh.zeroGrad();
      const b = fresh.lossAndGrad(x, B, T, 1);
      expect(a.loss).toBe(b.loss);
      const pa = reused.params();
      let compared = 0;
      for (const [name, p] of fresh.params()) {
        const q = pa.get(name)!;
        let diff = 0;
        for (let i = 0; i < p.grad!.length; i++) diff = Math.max(diff, Math.abs(p.grad![i]! - q.grad![i]!));
        expect(diff, name).toBe(0);
        compared++;
      }
      expect(compared).toBeGreaterThan(0);
    });
  }
});

describe('LoRA on a 16-bit base', () => {
  // The frozen matrices stay bfloat16 (Bf16Bits): the GEMM and the embedding widen them as they read.
  // Against the same values widened to float32 up front, loss and gradients must agree bit for bit,
  // with LoRA merged into the weight (a batch) and kept apart (a few tokens).
  it('llama and gpt2: bf16 storage gives the float32 path bit for bit, merged and unmerged', async () => {
    for (const arch of ['llama', 'gpt2'] as const) {
      const base = await trainable(arch, { kind: 'full' });
      const lora = { kind: 'lora', lora: { rank: 4, alpha: 8, rslora: false, targetModules: defaultTargetModules(base.config) } } as const;
      const half = new Map<string, Float32Array | Uint16Array>();
      const wide = new Map<string, Float32Array | Uint16Array>();
      for (const [name, p] of base.weights) {
        const bits = bf16FromF32(p.data as Float32Array);
        const isMatrix = /W_(E|U|pos|Q|K|V|O|gate|in|out)$/.test(name);
        half.set(name, isMatrix ? bits : (p.data as Float32Array));
        const w = new Float32Array(bits.length);
        halfBitsIntoF32(bits, w);
        wide.set(name, isMatrix ? w : (p.data as Float32Array));
      }
      const a = new TrainableTransformer(base.config, half, base.sources, lora, 5);
      const b = new TrainableTransformer(base.config, wide, base.sources, lora, 5);
      expect([...a.weights.values()].some((w) => w.data instanceof Bf16Bits)).toBe(true);
      for (const m of [a, b]) for (const f of m.lora.values()) f.B.data.set(randn(new Rng(3), f.B.data.length, 0.05));
      const ref = await referenceStore(arch);
      const { ids: x, shape } = await ids(ref.label, 'input_ids');
      const [B, T] = shape as [number, number];
      for (const [rows, batch, seq] of [[x, B, T], [x.subarray(0, 3), 1, 3]] as const) {
        a.zeroGrad();
        b.zeroGrad();
        const la = a.lossAndGrad(rows, batch, seq, 1);
        const lb = b.lossAndGrad(rows, batch, seq, 1);
        expect(la.loss, `${arch} ${batch}×${seq}`).toBe(lb.loss);
        const pb = b.params();
        for (const [name, p] of a.params()) expect(p.grad, `${arch} ${batch}×${seq} ${name}`).toEqual(pb.get(name)!.grad);
      }
    }
  });
});
