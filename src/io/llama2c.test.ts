import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openLlama2c, readLlama2cTokenizer } from './llama2c.ts';
import { pathFileSet, pathSource } from './node-source.ts';
import { openSafetensorsFolder } from './safetensors.ts';
import { bytesSource } from './source.ts';
import { expectSameTensors, goldenInputIds } from './test-helpers.ts';

const MODEL = 'test/fixtures/llama2c/stories260K.bin';
const TOKENIZER = 'test/fixtures/llama2c/tok512.bin';

describe('llama2.c checkpoint', () => {
  it('gives the Hugging Face tensors of the converted model (Q/K rows reordered to rotate-half)', async () => {
    const { store, config, header } = await openLlama2c(await pathSource(MODEL));
    expect(header).toMatchObject({ version: 0, dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
    const hf = await openSafetensorsFolder(await pathFileSet('test/fixtures/stories260K/base'));
    expect([...store.tensors.keys()].sort()).toEqual([...hf.tensors.keys()].sort());
    await expectSameTensors(store, hf, 0, 0);
    const hfConfig = JSON.parse(readFileSync('test/fixtures/stories260K/base/config.json', 'utf8')) as Record<string, unknown>;
    for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'tie_word_embeddings']) {
      expect(config[key], key).toEqual(hfConfig[key]);
    }
  });

  it('reads the version 2 (int8) export with its per-group scales', async () => {
    // Re-export the fixture as llama2.c's version2_export does, then read it back.
    const { store: v0, header } = await openLlama2c(await pathSource(MODEL));
    const raw = readFileSync(MODEL);
    const f32 = (offset: number, count: number) => new Float32Array(raw.buffer.slice(raw.byteOffset + offset, raw.byteOffset + offset + count * 4));
    const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = header;
    const kv = (dim / header.nHeads) * header.nKvHeads;
    // legacy order: emb, att norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm
    const sizes = [V * dim, ...Array(L).fill(dim), ...Array(L).fill(dim * dim), ...Array(L).fill(kv * dim), ...Array(L).fill(kv * dim), ...Array(L).fill(dim * dim), ...Array(L).fill(dim), ...Array(3 * L).fill(dim * hid), dim];
    const legacy: Float32Array[] = [];
    let at = 28;
    for (const n of sizes) {
      legacy.push(f32(at, n));
      at += n * 4;
    }
    const pick = (start: number, n: number) => legacy.slice(start, start + n);
    const norms = [...pick(1, L), ...pick(1 + 5 * L, L), legacy[1 + 9 * L]!];
    const mats = [legacy[0]!, ...pick(1 + L, 4 * L), ...pick(1 + 6 * L, 3 * L)];
    const group = 32;
    const parts: Uint8Array[] = [];
    const headerBytes = new Uint8Array(256);
    const hv = new DataView(headerBytes.buffer);
    hv.setUint32(0, 0x616b3432, true);
    hv.setInt32(4, 2, true);
    [dim, hid, L, header.nHeads, header.nKvHeads, V, header.seqLen].forEach((x, i) => hv.setInt32(8 + 4 * i, x, true));
    hv.setUint8(36, 1);
    hv.setInt32(37, group, true);
    parts.push(headerBytes);
    for (const n of norms) parts.push(new Uint8Array(n.buffer));
    let worstRelToScale = 0;
    const scalesOf: Float32Array[] = [];
    for (const w of mats) {
      const q = new Int8Array(w.length);
      const s = new Float32Array(w.length / group);
      for (let g = 0; g < s.length; g++) {
        let m = 0;
        for (let i = 0; i < group; i++) m = Math.max(m, Math.abs(w[g * group + i]!));
        s[g] = m / 127;
        for (let i = 0; i < group; i++) q[g * group + i] = Math.round(w[g * group + i]! / s[g]!);
      }
      scalesOf.push(s);
      parts.push(new Uint8Array(q.buffer), new Uint8Array(s.buffer));
    }
    const file = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let pos = 0;
    for (const p of parts) {
      file.set(p, pos);
      pos += p.length;
    }
    const { store, header: h2 } = await openLlama2c(bytesSource(file, 'q80.bin'));
    expect(h2).toMatchObject({ version: 2, groupSize: group, sharedClassifier: true });
    const maxScale = Math.max(...scalesOf.map((s) => Math.max(...s)));
    for (const name of v0.tensors.keys()) {
      const a = await store.readF32(name);
      const b = await v0.readF32(name);
      for (let i = 0; i < b.length; i++) worstRelToScale = Math.max(worstRelToScale, Math.abs(a[i]! - b[i]!) / maxScale);
    }
    // Rounding to the nearest step leaves at most half a step per value.
    expect(worstRelToScale).toBeLessThanOrEqual(0.5 + 1e-6);
    const norm = await store.readF32('model.norm.weight');
    expect([...norm]).toEqual([...(await v0.readF32('model.norm.weight'))]);
  });

  it('rejects a truncated checkpoint, naming the file and the sizes', async () => {
    const raw = readFileSync(MODEL);
    await expect(openLlama2c(bytesSource(raw.subarray(0, raw.length - 100), 'cut.bin'))).rejects.toThrow(/cut\.bin: truncated.*1056540 bytes, the file has 1056440/);
    await expect(openLlama2c(bytesSource(raw.subarray(0, 20), 'tiny.bin'))).rejects.toThrow(/tiny\.bin: too short/);
    const junk = new TextEncoder().encode('PK\u0003\u0004 this is a zip archive, as pytorch_model.bin files are........');
    await expect(openLlama2c(bytesSource(junk, 'pytorch_model.bin'))).rejects.toThrow(/pytorch_model\.bin: is a PyTorch checkpoint \(a zip of pickles\), not a llama2\.c checkpoint/);
  });
});

describe('llama2.c tokenizer', () => {
  const encodings = (file: string) => JSON.parse(readFileSync(`test/fixtures/tokenizers/stories260K/${file}`, 'utf8')) as Record<string, number[]>;

  it('encodes "Once upon a time" as run.c does', async () => {
    const tok = await readLlama2cTokenizer(await pathSource(TOKENIZER), 512);
    expect(tok.vocabSize).toBe(512);
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { addBos: false })).toEqual([403, 407, 261, 378]);
    const stories = readFileSync('test/fixtures/stories260K/generic_stories.txt', 'utf8').split('\n');
    const golden = await goldenInputIds('test/fixtures/stories260K/base_golden.safetensors');
    golden.forEach((ids, i) => expect(tok.encode(stories[i]!).slice(0, ids.length)).toEqual(ids));
  });

  it('matches Hugging Face tokenizers on every test string, and sentencepiece where whitespace is single', async () => {
    const tok = await readLlama2cTokenizer(await pathSource(TOKENIZER));
    const hf = encodings('encodings_tokenizers.json');
    const sp = encodings('encodings_sentencepiece_bos.json');
    let compared = 0;
    for (const [text, ids] of Object.entries(hf)) {
      expect(tok.encode(text), text).toEqual(ids);
      if (!/^\s| {2}/.test(text)) {
        expect(tok.encode(text), text).toEqual(sp[text]);
        compared++;
      }
    }
    expect(compared).toBeGreaterThanOrEqual(9);
  });

  it('decodes, strips the dummy prefix, and turns byte pieces back into text', async () => {
    const tok = await readLlama2cTokenizer(await pathSource(TOKENIZER));
    for (const text of Object.keys(encodings('encodings_tokenizers.json'))) {
      expect(tok.decode(tok.encode(text)), text).toBe(text);
    }
    expect(tok.decodeToken(403)).toBe(' Once');
    expect(tok.decodeToken(1)).toBe('<s>');
    expect(tok.decodeToken(13)).toBe('\n'); // <0x0A>
    const golden = readFileSync('test/fixtures/llama2c/stories260K_t0_n200.txt', 'utf8').trimEnd();
    const ids = tok.encode(golden);
    expect(tok.decode(ids)).toBe(golden);
    expect(ids.map((id) => tok.decodeToken(id)).join('')).toBe('<s> ' + golden);
  });

  it('merges as run.c does on every generic story and on random text', async () => {
    // run.c's encode, transcribed: per code point lookup (else bytes + 3), then rescan for the best pair.
    const raw = readFileSync(TOKENIZER);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const vocab: string[] = [];
    const scores: number[] = [];
    for (let at = 4; at < raw.length; ) {
      scores.push(view.getFloat32(at, true));
      const len = view.getInt32(at + 4, true);
      vocab.push(new TextDecoder().decode(raw.subarray(at + 8, at + 8 + len)));
      at += 8 + len;
    }
    const lookup = new Map<string, number>();
    vocab.forEach((v, i) => lookup.has(v) || lookup.set(v, i));
    const runC = (text: string): number[] => {
      const tokens: number[] = [1];
      if (text !== '') tokens.push(lookup.get(' ')!);
      for (const ch of text) {
        const id = lookup.get(ch);
        if (id !== undefined) tokens.push(id);
        else for (const byte of new TextEncoder().encode(ch)) tokens.push(byte + 3);
      }
      for (;;) {
        let best = -1e10;
        let bestId = -1;
        let bestAt = -1;
        for (let i = 1; i + 1 < tokens.length; i++) {
          const id = lookup.get(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!);
          if (id !== undefined && scores[id]! > best) [best, bestId, bestAt] = [scores[id]!, id, i];
        }
        if (bestAt < 0) return tokens;
        tokens.splice(bestAt, 2, bestId);
      }
    };
    const tok = await readLlama2cTokenizer(await pathSource(TOKENIZER));
    const stories = readFileSync('test/fixtures/stories260K/generic_stories.txt', 'utf8').split('\n').filter((l) => l);
    expect(stories.length).toBeGreaterThanOrEqual(200);
    for (const story of stories) expect(tok.encode(story)).toEqual(runC(story));
    let seed = 3;
    const alphabet = 'aaeeiioo nnttsshh,.!\'"é\n日😀';
    for (let k = 0; k < 200; k++) {
      let s = '';
      for (let i = 0; i < 40; i++) s += [...alphabet][((seed = (seed * 1103515245 + 12345) % 2 ** 31) >>> 8) % [...alphabet].length];
      expect(tok.encode(s), JSON.stringify(s)).toEqual(runC(s));
    }
  });

  it('rejects a truncated tokenizer file', async () => {
    const raw = readFileSync(TOKENIZER);
    await expect(readLlama2cTokenizer(bytesSource(raw.subarray(0, raw.length - 3), 'tok512.bin'))).rejects.toThrow(/tok512\.bin: token 511 has length/);
    await expect(readLlama2cTokenizer(bytesSource(raw, 'tok512.bin'), 600)).rejects.toThrow(/has 512 tokens, the model's vocabulary has 600/);
  });
});
