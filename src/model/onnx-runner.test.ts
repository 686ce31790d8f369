import { describe, expect, it } from 'vitest';
import { readOnnxInitializers } from '../io/onnx.ts';
import { bytesSource } from '../io/source.ts';
import { onnxBuild as b } from '../io/test-helpers.ts';
import { createOnnxRunner, residualStreamValues } from './onnx-runner.ts';

const FLOAT = 1;
const d = 4;
const hidden = 3;

/**
 * Two residual blocks named as torch.onnx names a Hugging Face export:
 * h = x + relu(x·A_i + c_i)·B_i, with the block-level residual Add under "/model/layers.{i}/".
 */
function residualModel(A: Float32Array[], c: Float32Array[], B: Float32Array[]): Uint8Array {
  const nodes: Uint8Array[] = [];
  const inits: Uint8Array[] = [];
  let h = 'input';
  for (let i = 0; i < 2; i++) {
    const p = `/model/layers.${i}`;
    nodes.push(
      b.node('MatMul', [h, `A${i}`], [`${p}/mlp/MatMul_output_0`], `${p}/mlp/MatMul`),
      b.node('Add', [`${p}/mlp/MatMul_output_0`, `c${i}`], [`${p}/mlp/Add_output_0`], `${p}/mlp/Add`),
      b.node('Relu', [`${p}/mlp/Add_output_0`], [`${p}/mlp/Relu_output_0`], `${p}/mlp/Relu`),
      b.node('MatMul', [`${p}/mlp/Relu_output_0`, `B${i}`], [`${p}/mlp/MatMul_1_output_0`], `${p}/mlp/MatMul_1`),
      b.node('Add', [h, `${p}/mlp/MatMul_1_output_0`], [`${p}/Add_1_output_0`], `${p}/Add_1`),
    );
    inits.push(
      b.tensor({ name: `A${i}`, dims: [d, hidden], dataType: FLOAT, raw: new Uint8Array(A[i]!.buffer) }),
      b.tensor({ name: `c${i}`, dims: [hidden], dataType: FLOAT, floatData: [...c[i]!] }),
      b.tensor({ name: `B${i}`, dims: [hidden, d], dataType: FLOAT, raw: new Uint8Array(B[i]!.buffer) }),
    );
    h = `${p}/Add_1_output_0`;
  }
  nodes.push(b.node('Identity', [h], ['output'], 'out'));
  return b.model({ nodes, initializers: inits, inputs: [b.valueInfo('input', FLOAT, ['batch', d])], outputs: [b.valueInfo('output', FLOAT, ['batch', d])] });
}

function reference(x: Float32Array, rows: number, A: Float32Array[], c: Float32Array[], B: Float32Array[]): Float32Array[] {
  const states: Float32Array[] = [];
  let h = x;
  for (let i = 0; i < 2; i++) {
    const next = new Float32Array(h);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < hidden; k++) {
        let z = c[i]![k]!;
        for (let j = 0; j < d; j++) z += h[r * d + j]! * A[i]![j * hidden + k]!;
        const a = Math.max(0, z);
        for (let j = 0; j < d; j++) next[r * d + j]! += a * B[i]![k * d + j]!;
      }
    }
    states.push(next);
    h = next;
  }
  return states;
}

describe('ONNX runner', () => {
  const rand = (n: number, seed: number) => new Float32Array(n).map((_, i) => Math.sin(seed * 97 + i * 1.7) * 0.8);
  const A = [rand(d * hidden, 1), rand(d * hidden, 2)];
  const c = [rand(hidden, 3), rand(hidden, 4)];
  const B = [rand(hidden * d, 5), rand(hidden * d, 6)];
  const model = residualModel(A, c, B);

  it('reads the initializers it runs with', async () => {
    const store = await readOnnxInitializers(bytesSource(model, 'resid.onnx'));
    expect([...(await store.readF32('A1'))]).toEqual([...A[1]!]);
    expect([...(await store.readF32('c0'))]).toEqual([...c[0]!]);
  });

  it('runs the graph and returns the residual stream where the export names it', async () => {
    const runner = await createOnnxRunner(model, { numThreads: 1, name: 'resid.onnx' });
    const resid = residualStreamValues(runner.graph);
    expect(resid.map((r) => r.hook)).toEqual(['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']);
    await runner.release();

    const withResid = await createOnnxRunner(model, { numThreads: 1, extraOutputs: resid.map((r) => r.value) });
    expect(withResid.outputNames).toEqual(['output', ...resid.map((r) => r.value)]);
    const rows = 3;
    const x = rand(rows * d, 9);
    const out = await withResid.run({ input: { dims: [rows, d], data: x } });
    const want = reference(x, rows, A, c, B);
    const check = (got: Float32Array, ref: Float32Array) => {
      expect(got.length).toBe(ref.length);
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThanOrEqual(1e-5 + 1e-5 * Math.abs(ref[i]!));
    };
    expect(out[resid[0]!.value]!.dims).toEqual([rows, d]);
    check(out[resid[0]!.value]!.data as Float32Array, want[0]!);
    check(out[resid[1]!.value]!.data as Float32Array, want[1]!);
    check(out.output!.data as Float32Array, want[1]!);
    // The first block must change the stream, or the intermediate check proves nothing.
    expect(Math.max(...want[0]!.map((v, i) => Math.abs(v - x[i]!)))).toBeGreaterThan(0.05);
    await withResid.release();
  });

  it('names the values it cannot find', async () => {
    await expect(createOnnxRunner(model, { numThreads: 1, extraOutputs: ['/model/layers.7/Add_1_output_0'], name: 'resid.onnx' })).rejects.toThrow(/resid\.onnx: no node outputs "\/model\/layers\.7\/Add_1_output_0"/);
  });
});
