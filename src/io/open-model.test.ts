import { describe, expect, it } from 'vitest';
import { pathFileSet } from './node-source.ts';
import { detectModel, openModel } from './open-model.ts';
import { bytesSource, type ByteSource, type FileSet } from './source.ts';
import { onnxBuild } from './test-helpers.ts';

const text = (s: string, name: string): [string, ByteSource] => [name, bytesSource(new TextEncoder().encode(s), name)];

describe('openModel', () => {
  it('opens the same model from a Hugging Face folder, a GGUF file and a llama2.c folder', async () => {
    const hf = await openModel(await pathFileSet('test/fixtures/stories260K/base'));
    const gguf = await openModel(await pathFileSet('test/fixtures/gguf/stories260K.gguf'));
    const l2c = await openModel(await pathFileSet('test/fixtures/llama2c'));
    expect([hf.kind, gguf.kind, l2c.kind]).toEqual(['hf', 'gguf', 'llama2c']);
    expect([hf.label, gguf.label, l2c.label]).toEqual(['model.safetensors', 'stories260K.gguf', 'stories260K.bin']);
    for (const m of [hf, gguf, l2c]) {
      expect(m.config.hidden_size, m.kind).toBe(64);
      expect(m.tokenizer?.encode('Once upon a time'), m.kind).toEqual([1, 403, 407, 261, 378]);
      for (const name of hf.store.tensors.keys()) expect(m.store.tensors.get(name)?.shape, `${m.kind} ${name}`).toEqual(hf.store.tensors.get(name)!.shape);
    }
    const q = 'model.layers.2.self_attn.k_proj.weight';
    expect([...(await l2c.store.readF32(q))]).toEqual([...(await hf.store.readF32(q))]);
    expect(l2c.warnings).toEqual([]);
  });

  it('opens a PEFT adapter folder with its adapter_config.json', async () => {
    const files = await pathFileSet('test/fixtures/stories260K/space/adapter');
    expect(await detectModel(files)).toBe('peft-adapter');
    const m = await openModel(files);
    expect(m.config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8 });
    expect([...m.store.tensors.keys()].some((n) => n.includes('lora_A'))).toBe(true);
  });

  it('opens an .onnx file with its initializers', async () => {
    const model = onnxBuild.model({ nodes: [], initializers: [onnxBuild.tensor({ name: 'model.norm.weight', dims: [2], dataType: 1, floatData: [1, 2] })], inputs: [], outputs: [] });
    const m = await openModel(new Map([['model.onnx', bytesSource(model, 'model.onnx')]]));
    expect(m.kind).toBe('onnx');
    expect([...(await m.store.readF32('model.norm.weight'))]).toEqual([1, 2]);
  });

  it('warns when a llama2.c checkpoint has no tokenizer beside it', async () => {
    const m = await openModel(await pathFileSet('test/fixtures/llama2c/stories260K.bin'));
    expect(m.tokenizer).toBeUndefined();
    expect(m.warnings.join('\n')).toMatch(/no llama2\.c tokenizer beside stories260K\.bin/);
  });

  it('names the files it saw when nothing fits', async () => {
    const notes: FileSet = new Map([text('hello', 'notes.txt'), text('PK\u0003\u0004 zipped pickle, not a llama2.c checkpoint', 'weights.bin')]);
    await expect(detectModel(notes)).rejects.toThrow(/^weights\.bin: is a PyTorch checkpoint \(a zip of pickles\)/);
    await expect(detectModel(new Map([text('hello', 'notes.txt')]))).rejects.toThrow(/folder: no model recognised: .* \(files seen: notes\.txt\)/);
    const badHeader: FileSet = new Map([text('x'.repeat(64), 'model.bin')]);
    await expect(detectModel(badHeader)).rejects.toThrow(/^model\.bin: not a llama2\.c checkpoint: in its header .* dim 2021161080 is not in 1\.\.65536/);
    await expect(openModel(new Map())).rejects.toThrow(/files seen: none/);
    const pickled: FileSet = new Map([text('{}', 'config.json'), text('PK', 'pytorch_model.bin')]);
    await expect(detectModel(pickled)).rejects.toThrow(/config\.json: the weights beside it are PyTorch pickles/);
    const noConfig: FileSet = new Map([text('x', 'model.safetensors')]);
    await expect(detectModel(noConfig)).rejects.toThrow(/model\.safetensors: has no config\.json beside it/);
    const adapterBin: FileSet = new Map([text('{}', 'adapter_config.json'), text('PK', 'adapter_model.bin')]);
    await expect(detectModel(adapterBin)).rejects.toThrow(/adapter_config\.json: the adapter weights are a PyTorch pickle/);
  });
});
