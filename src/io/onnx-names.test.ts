import { describe, expect, it } from 'vitest';
import { pathFileSet } from './node-source.ts';
import { openOnnxStore } from './onnx-names.ts';
import { openModel } from './open-model.ts';
import { concatBytes, lenField, varintField } from './protobuf.ts';
import { openSafetensorsFolder } from './safetensors.ts';
import { bytesSource } from './source.ts';
import type { WeightStore } from './store.ts';
import { onnxBuild as b } from './test-helpers.ts';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;
const FLOAT = 1;

/** ‖a − e‖ / ‖e‖. */
function relative(a: Float32Array, e: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < e.length; i++) {
    d += (a[i]! - e[i]!) ** 2;
    n += e[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

async function compare(store: WeightStore, reference: WeightStore): Promise<Map<string, number>> {
  const errors = new Map<string, number>();
  for (const [name, t] of reference.tensors) {
    expect(store.tensors.get(name)?.shape, name).toEqual(t.shape);
    errors.set(name, relative(await store.readF32(name), await reference.readF32(name)));
  }
  return errors;
}

describe('Hugging Face names recovered from ONNX graphs (arch/llama and arch/gpt2 exported by test/fixtures/onnx/make_onnx.py)', () => {
  // Each variant: how the 22 projection weights are named, and the largest relative error allowed
  // against the safetensors original (0 for float exports; quantization noise otherwise, and more than
  // 1e-4 so that a weight read without its scale or zero point cannot pass).
  // `renamed`: how many weights the export renamed (llama: 21 projections and the head; GPT-2's
  // exporter keeps the Conv1D weights' names and layout, and only the position embedding is renamed).
  const variants = [
    { dir: 'llama/base', ref: 'llama', how: 'name_scopes', renamed: 22, max: 0 },
    { dir: 'llama/legacy', ref: 'llama', how: 'node name', renamed: 22, max: 0 },
    { dir: 'llama/int8', ref: 'llama', how: 'position', renamed: 22, max: 0.02 },
    { dir: 'llama/qdq', ref: 'llama', how: 'node name', renamed: 22, max: 0.02 },
    { dir: 'llama/qlinear', ref: 'llama', how: 'node name', renamed: 22, max: 0.02 },
    { dir: 'llama/q4', ref: 'llama', how: 'position', renamed: 22, max: 0.2 },
    { dir: 'gpt2', ref: 'gpt2', how: 'name_scopes', renamed: 1, max: 0 },
  ] as const;
  for (const v of variants) {
    it(`${v.dir}: every weight under its Hugging Face name and layout`, async () => {
      const opened = await openModel(await pathFileSet(`${FIXTURES}onnx/${v.dir}`));
      expect(opened.kind).toBe('onnx');
      expect(opened.warnings).toEqual([]);
      const reference = await openSafetensorsFolder(await pathFileSet(`${FIXTURES}arch/${v.ref}/base`));
      expect([...opened.store.tensors.keys()].sort()).toEqual([...reference.tensors.keys()].sort());
      const naming = opened.onnxNames!;
      expect(naming.unrecovered).toEqual([]);
      const renamed = naming.tensors.filter((t) => t.how !== 'kept');
      expect(renamed.filter((t) => /_proj\.weight$|^lm_head/.test(t.name)).every((t) => t.how === v.how)).toBe(true);
      expect(renamed.length).toBeGreaterThanOrEqual(v.renamed);
      const errors = await compare(opened.store, reference);
      for (const [name, err] of errors) {
        const quantized = naming.tensors.find((t) => t.name === name)?.quantization !== undefined;
        expect(err, name).toBeLessThanOrEqual(quantized ? v.max : 0);
        if (quantized) expect(err, name).toBeGreaterThan(1e-4);
      }
    }, 30_000);
  }

  it('picks up the external data file beside a single .onnx file', async () => {
    const files = await pathFileSet(`${FIXTURES}onnx/llama/base`);
    expect([...files.keys()].sort()).toEqual(['config.json', 'model.onnx', 'model.onnx.data']);
    const lone = new Map([['model.onnx', files.get('model.onnx')!]]);
    await expect(openModel(lone)).rejects.toThrow(/model\.onnx: initializer ".*" keeps its data in the external file "model\.onnx\.data", which is not among the files given/);
  });
});

describe('ONNX naming rules on small graphs', () => {
  const meta = (scopes: string[]) => lenField(9, concatBytes([lenField(1, 'pkg.torch.onnx.name_scopes'), lenField(2, `[${scopes.map((s) => `'${s}'`).join(', ')}]`)]));
  const node = (op: string, inputs: string[], outputs: string[], name: string, extra: Uint8Array[] = []) => concatBytes([b.node(op, inputs, outputs, name), ...extra]);
  const intAttr = (name: string, v: number) => lenField(5, concatBytes([lenField(1, name), varintField(3, v), varintField(20, 2)]));
  const W = new Float32Array([1, 2, 3, 4, 5, 6]); // [3, 2]: vocab 3, d 2
  const G = new Float32Array([1, 0, 0, 1, 2, 2, -1, 3]); // [4, 2]: out 4, in 2, stored [out, in] with transB
  const model = b.model({
    nodes: [
      node('Gather', ['shared', 'ids'], ['emb'], 'node_embedding', [meta(['', 'model', 'model.embed_tokens', 'embedding'])]),
      node('Gemm', ['emb', 'g', 'gb'], ['h'], '/model/layers.0/mlp/fc/Gemm', [intAttr('transB', 1)]),
      node('Transpose', ['shared'], ['sharedT'], 'node_Transpose_9', [meta(['', 'lm_head', 'linear'])]),
      node('MatMul', ['emb', 'sharedT'], ['logits'], 'node_linear', [meta(['', 'lm_head', 'linear'])]),
    ],
    initializers: [
      b.tensor({ name: 'shared', dims: [3, 2], dataType: FLOAT, raw: new Uint8Array(W.buffer) }),
      b.tensor({ name: 'g', dims: [4, 2], dataType: FLOAT, raw: new Uint8Array(G.buffer) }),
      b.tensor({ name: 'gb', dims: [4], dataType: FLOAT, floatData: [0.5, 0.5, 0.5, 0.5] }),
    ],
    inputs: [b.valueInfo('ids', 7, ['batch', 'seq'])],
    outputs: [b.valueInfo('logits', FLOAT, ['batch', 'seq', 3])],
  });

  it('names a tied embedding after its embedding use, keeps Gemm transB layouts and biases', async () => {
    const store = await openOnnxStore(bytesSource(model, 'tied.onnx'), undefined);
    expect([...store.tensors.keys()].sort()).toEqual(['model.embed_tokens.weight', 'model.layers.0.mlp.fc.bias', 'model.layers.0.mlp.fc.weight']);
    const tied = store.naming.tensors.find((t) => t.name === 'model.embed_tokens.weight')!;
    expect(tied).toMatchObject({ onnx: 'shared', how: 'name_scopes', aliases: ['lm_head.weight'], transposed: false, shape: [3, 2] });
    expect([...(await store.readF32('model.embed_tokens.weight'))]).toEqual([...W]);
    expect(store.naming.tensors.find((t) => t.name === 'model.layers.0.mlp.fc.weight')).toMatchObject({ how: 'node name', transposed: false, shape: [4, 2] });
    expect([...(await store.readF32('model.layers.0.mlp.fc.weight'))]).toEqual([...G]);
    expect([...(await store.readF32('model.layers.0.mlp.fc.bias'))]).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  it('refuses a tensor with 300,000 dimensions with a clear error, not a stack overflow', async () => {
    const dims = new Uint8Array(300_000).fill(1);
    const tensor = concatBytes([lenField(8, 'huge'), lenField(1, dims), varintField(2, FLOAT), lenField(9, new Uint8Array(4))]);
    const bad = b.model({ nodes: [], initializers: [tensor], inputs: [], outputs: [] });
    await expect(openOnnxStore(bytesSource(bad, 'huge.onnx'), undefined)).rejects.toThrow(/^huge\.onnx: initializer "huge" has more than 64 dimensions$/);
  });
});
