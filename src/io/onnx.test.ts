import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from './dtype.ts';
import { addGraphOutputs, onnxGraphInfo, readOnnxInitializers } from './onnx.ts';
import { bytesSource, type ByteSource } from './source.ts';
import { onnxBuild as b } from './test-helpers.ts';

const FLOAT = 1;
const INT64 = 7;
const FLOAT16 = 10;
const BFLOAT16 = 16;

const W1 = new Float32Array([1, 2, 3, 4, -1, -2, -3, -4, 0.5, 0.5, 0.5, 0.5]);
const HALF = [0.1, -2.5, 1000, 3e-5];
const BF = [1.5, -0.25, 65536, 3.140625];
const bf16Bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16;

function sampleModel(extra: Uint8Array[] = []): Uint8Array {
  return b.model({
    nodes: [b.node('MatMul', ['x', 'w1'], ['h'], 'mm1'), b.node('Add', ['h', 'b1'], ['hb'], 'add1'), b.node('Relu', ['hb'], ['y'], 'relu')],
    initializers: [
      b.tensor({ name: 'w1', dims: [3, 4], dataType: FLOAT, raw: new Uint8Array(W1.buffer) }),
      b.tensor({ name: 'b1', dims: [4], dataType: FLOAT, floatData: [0.1, -0.2, 0.3, -0.4] }),
      b.tensor({ name: 'unpacked', dims: [2], dataType: FLOAT, floatData: [7, -8], packed: false }),
      b.tensor({ name: 'half_raw', dims: [2, 2], dataType: FLOAT16, raw: new Uint8Array(new Uint16Array(HALF.map(f32ToF16)).buffer) }),
      b.tensor({ name: 'bf_typed', dims: [4], dataType: BFLOAT16, int32Data: BF.map(bf16Bits) }),
      b.tensor({ name: 'shape', dims: [3], dataType: INT64, int64Data: [2, -1, 300] }),
      ...extra,
    ],
    inputs: [b.valueInfo('x', FLOAT, ['batch', 3])],
    outputs: [b.valueInfo('y', FLOAT, ['batch', 4])],
  });
}

describe('ONNX initializers', () => {
  it('reads raw, packed, unpacked and typed initializers of each float and integer type', async () => {
    const store = await readOnnxInitializers(bytesSource(sampleModel(), 'tiny.onnx'));
    expect([...store.tensors.keys()]).toEqual(['w1', 'b1', 'unpacked', 'half_raw', 'bf_typed', 'shape']);
    expect(store.tensors.get('w1')).toMatchObject({ shape: [3, 4], dtype: 'F32', byteLength: 48 });
    expect([...(await store.readF32('w1'))]).toEqual([...W1]);
    expect([...(await store.readF32('b1'))]).toEqual([...new Float32Array([0.1, -0.2, 0.3, -0.4])]);
    expect([...(await store.readF32('unpacked'))]).toEqual([7, -8]);
    expect(store.tensors.get('half_raw')?.dtype).toBe('F16');
    expect([...(await store.readF32('half_raw'))]).toEqual(HALF.map((x) => f16ToF32(f32ToF16(x))));
    expect([...(await store.readF32('bf_typed'))]).toEqual(BF);
    expect([...(await store.readF32('shape'))]).toEqual([2, -1, 300]);
  });

  it('walks initializers larger than its read window', async () => {
    const big = new Float32Array(100_000).map((_, i) => i * 0.5 - 7);
    const tail = b.tensor({ name: 'after', dims: [2], dataType: FLOAT, floatData: [4, 5] });
    const model = sampleModel([b.tensor({ name: 'big', dims: [100, 1000], dataType: FLOAT, raw: new Uint8Array(big.buffer) }), tail]);
    const store = await readOnnxInitializers(bytesSource(model, 'big.onnx'));
    expect(store.tensors.get('big')?.shape).toEqual([100, 1000]);
    expect([...(await store.readF32('big'))]).toEqual([...big]);
    expect([...(await store.readF32('after'))]).toEqual([4, 5]);
    await expect(readOnnxInitializers(bytesSource(model.subarray(0, 200_000), 'cut.onnx'))).rejects.toThrow(/cut\.onnx: not a readable ONNX model: field 7 of \d+ bytes at byte \d+ runs past the end of its message \(byte 200000\)/);
  });

  it('reads external data from a file beside the model, and names the file when it is missing', async () => {
    const data = new Float32Array([9, 8, 7, 6, 5]);
    const blob = new Uint8Array(64 + data.byteLength);
    blob.set(new Uint8Array(data.buffer), 64);
    const ext = b.tensor({ name: 'big', dims: [5], dataType: FLOAT, external: { location: 'model.onnx_data', offset: '64', length: '20' } });
    const model = sampleModel([ext]);
    const files = new Map<string, ByteSource>([['model.onnx', bytesSource(model, 'model.onnx')], ['model.onnx_data', bytesSource(blob, 'model.onnx_data')]]);
    const store = await readOnnxInitializers(files.get('model.onnx')!, files);
    expect([...(await store.readF32('big'))]).toEqual([...data]);
    await expect(readOnnxInitializers(bytesSource(model, 'model.onnx'))).rejects.toThrow(/model\.onnx: initializer "big" keeps its data in the external file "model\.onnx_data", which is not among the files given/);
  });

  it('rejects truncated files, junk and unsupported types, naming the file', async () => {
    const model = sampleModel();
    await expect(readOnnxInitializers(bytesSource(model.subarray(0, model.length - 40), 'cut.onnx'))).rejects.toThrow(/cut\.onnx: .*(runs past the end|no graph)/);
    await expect(readOnnxInitializers(bytesSource(new TextEncoder().encode('{"not": "onnx"}'), 'x.onnx'))).rejects.toThrow(/x\.onnx: /);
    const str = b.tensor({ name: 'names', dims: [1], dataType: 8 });
    await expect(readOnnxInitializers(bytesSource(sampleModel([str]), 's.onnx'))).rejects.toThrow(/s\.onnx: initializer "names" has ONNX data type STRING/);
    const short = b.tensor({ name: 'short', dims: [4], dataType: FLOAT, raw: new Uint8Array(12) });
    await expect(readOnnxInitializers(bytesSource(sampleModel([short]), 'r.onnx'))).rejects.toThrow(/r\.onnx: initializer "short" has 12 bytes of raw_data but F32\[4\] needs 16/);
  });
});

describe('ONNX graph edits', () => {
  it('lists nodes and adds graph outputs without disturbing the rest of the model', async () => {
    const model = sampleModel();
    const info = await onnxGraphInfo(model);
    expect(info.inputs).toEqual(['x']);
    expect(info.outputs).toEqual(['y']);
    expect(info.nodes.map((n) => `${n.opType}:${n.name}:${n.inputs.join('+')}->${n.outputs.join('+')}`)).toEqual(['MatMul:mm1:x+w1->h', 'Add:add1:h+b1->hb', 'Relu:relu:hb->y']);
    const edited = addGraphOutputs(model, ['h', 'hb']);
    const after = await onnxGraphInfo(edited);
    expect(after.outputs).toEqual(['y', 'h', 'hb']);
    expect(after.nodes).toEqual(info.nodes);
    const store = await readOnnxInitializers(bytesSource(edited, 'edited.onnx'));
    expect([...(await store.readF32('w1'))]).toEqual([...W1]);
  });
});
