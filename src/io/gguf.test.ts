import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from './dtype.ts';
import { ggufTokenizer, hfTensorName, openGguf, readGgufHeader, readGgufTensor, type GgufMetadata } from './gguf.ts';
import { pathFileSet, pathSource } from './node-source.ts';
import { openSafetensorsFolder } from './safetensors.ts';
import { bytesSource } from './source.ts';
import { expectSameTensors, f32Bytes, goldenInputIds, hfToGguf, llamaKv, writeGguf, type GgufKv } from './test-helpers.ts';

const FIXTURE = 'test/fixtures/gguf/stories260K.gguf';
const HF_DIR = 'test/fixtures/stories260K/base';

const f16 = (x: number) => f16ToF32(f32ToF16(x));

describe('GGUF', () => {
  it('gives the tensors of the Hugging Face conversion (names mapped, Q/K rows un-permuted)', async () => {
    const { store, config, tokenizer, file } = await openGguf(await pathSource(FIXTURE));
    expect(file.tensors.get('token_embd.weight')?.ne).toEqual([64, 512]);
    const hf = await openSafetensorsFolder(await pathFileSet(HF_DIR));
    await expectSameTensors(store, hf, 1e-7, 0);
    // The converter wrote the tied classifier out as output.weight.
    expect([...(await store.readF32('lm_head.weight'))]).toEqual([...(await hf.readF32('model.embed_tokens.weight'))]);
    const hfConfig = JSON.parse(readFileSync(`${HF_DIR}/config.json`, 'utf8')) as Record<string, unknown>;
    for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'rms_norm_eps', 'bos_token_id', 'eos_token_id', 'model_type', 'architectures']) {
      expect(config[key], key).toEqual(hfConfig[key]);
    }
    expect(config.tie_word_embeddings).toBe(false);
    expect(tokenizer).toBeDefined();
    const cases = JSON.parse(readFileSync('test/fixtures/tokenizers/stories260K/encodings_tokenizers.json', 'utf8')) as Record<string, number[]>;
    for (const [text, ids] of Object.entries(cases)) {
      expect(tokenizer!.encode(text), text).toEqual(ids);
      expect(tokenizer!.decode(ids), text).toBe(text);
    }
    expect(tokenizer!.decodeToken(403)).toBe(' Once');
    const stories = readFileSync('test/fixtures/stories260K/generic_stories.txt', 'utf8').split('\n');
    const golden = await goldenInputIds('test/fixtures/stories260K/base_golden.safetensors');
    golden.forEach((ids, i) => expect(tokenizer!.encode(stories[i]!).slice(0, ids.length)).toEqual(ids));
  });

  it('decodes Q8_0, Q4_0, F16 and BF16 tensors', async () => {
    const hf = await openSafetensorsFolder(await pathFileSet(HF_DIR));
    const typeOf = (n: string) => (/attn_[qkvo]/.test(n) ? 8 : /ffn_(gate|up)/.test(n) ? 2 : n.includes('ffn_down') ? 1 : n.startsWith('token_embd') ? 30 : 0);
    const { tensors, expected } = await hfToGguf(hf, typeOf);
    const bytes = writeGguf(llamaKv(), tensors);
    const { store, file, config } = await openGguf(bytesSource(bytes, 'quantized.gguf'));
    expect(file.tensors.get('blk.0.attn_q.weight')?.dtype).toBe('Q8_0');
    expect(file.tensors.get('blk.0.ffn_up.weight')?.dtype).toBe('Q4_0');
    expect(file.tensors.get('blk.0.ffn_down.weight')?.dtype).toBe('F16');
    expect(file.tensors.get('token_embd.weight')?.dtype).toBe('BF16');
    expect(config.tie_word_embeddings).toBe(true);
    // Bit-exact against the values the encoder wrote (Q and K are compared below, after un-permuting).
    for (const [gname, want] of expected) {
      if (/attn_[qk]\./.test(gname)) continue;
      const got = await store.readF32(hfTensorName(gname)!);
      let bad = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) bad++;
      expect(bad, gname).toBe(0);
    }
    // Within quantization error of the float32 weights, per type, after un-permuting Q/K.
    for (const [name] of hf.tensors) {
      const w = await hf.readF32(name);
      const got = await store.readF32(name);
      let amax = 0;
      for (const x of w) amax = Math.max(amax, Math.abs(x));
      // Q8_0: half a step of amax/127; Q4_0: up to amax/8, as it clamps the far end of the range to
      // 7 steps; f16 rounds and bf16 (written here by truncation) cuts relative to the value itself.
      const rel = name.includes('self_attn') ? 1 / 254 + 2e-3 : /gate|up/.test(name) ? 1 / 8 + 2e-3 : name.includes('down') ? 2 ** -11 : name.includes('embed') ? 2 ** -7 : 0;
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(got[i]! - w[i]!) - rel * (name.includes('embed') || name.includes('down') ? Math.abs(w[i]!) : amax));
      expect(worst, name).toBeLessThanOrEqual(1e-7);
    }
  });

  it('decodes Q4_K and Q6_K super-blocks', async () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) >>> 0) % n;
    const blocks = 3;
    // Q4_K: d, dmin, 8 six-bit (scale, min) pairs in 12 bytes, 256 four-bit values.
    const q4k = new Uint8Array(blocks * 144);
    const want4 = new Float32Array(blocks * 256);
    for (let b = 0; b < blocks; b++) {
      const v = new DataView(q4k.buffer, b * 144, 144);
      const d = 0.01 * (b + 1);
      const dmin = 0.003 * (b + 2);
      v.setUint16(0, f32ToF16(d), true);
      v.setUint16(2, f32ToF16(dmin), true);
      const sc = Array.from({ length: 8 }, () => rand(64));
      const mn = Array.from({ length: 8 }, () => rand(64));
      const s = new Uint8Array(12);
      for (let j = 0; j < 8; j++) {
        if (j < 4) {
          s[j] = sc[j]!;
          s[j + 4] = mn[j]!;
        } else {
          s[j + 4] = (sc[j]! & 0xf) | ((mn[j]! & 0xf) << 4);
          s[j - 4]! |= (sc[j]! >> 4) << 6;
          s[j]! |= (mn[j]! >> 4) << 6;
        }
      }
      q4k.set(s, b * 144 + 4);
      const q = Array.from({ length: 256 }, () => rand(16));
      for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) q4k[b * 144 + 16 + 32 * g + l] = q[64 * g + l]! | (q[64 * g + 32 + l]! << 4);
      for (let k = 0; k < 256; k++) want4[b * 256 + k] = f16(d) * sc[k >> 5]! * q[k]! - f16(dmin) * mn[k >> 5]!;
    }
    // Q6_K: 256 six-bit values (low nibbles in ql, high bits in qh), 16 int8 scales, d.
    const q6k = new Uint8Array(blocks * 210);
    const want6 = new Float32Array(blocks * 256);
    for (let b = 0; b < blocks; b++) {
      const at = b * 210;
      const L = Array.from({ length: 256 }, () => rand(64));
      const scales = Array.from({ length: 16 }, () => rand(256) - 128);
      const d = 0.002 * (b + 1);
      for (let half = 0; half < 2; half++) {
        const Lh = L.slice(128 * half);
        for (let l = 0; l < 32; l++) {
          q6k[at + 64 * half + l] = (Lh[l]! & 0xf) | ((Lh[l + 64]! & 0xf) << 4);
          q6k[at + 64 * half + l + 32] = (Lh[l + 32]! & 0xf) | ((Lh[l + 96]! & 0xf) << 4);
          q6k[at + 128 + 32 * half + l] = (Lh[l]! >> 4) | ((Lh[l + 32]! >> 4) << 2) | ((Lh[l + 64]! >> 4) << 4) | ((Lh[l + 96]! >> 4) << 6);
        }
      }
      scales.forEach((s, i) => new DataView(q6k.buffer).setInt8(at + 192 + i, s));
      new DataView(q6k.buffer).setUint16(at + 208, f32ToF16(d), true);
      for (let k = 0; k < 256; k++) want6[b * 256 + k] = f16(d) * scales[k >> 4]! * (L[k]! - 32);
    }
    const bytes = writeGguf({}, [
      { name: 'a', ne: [256, blocks], type: 12, data: q4k },
      { name: 'b', ne: [256, blocks], type: 14, data: q6k },
    ]);
    const file = await readGgufHeader(bytesSource(bytes, 'k.gguf'));
    for (const [name, want] of [['a', want4], ['b', want6]] as const) {
      const t = file.tensors.get(name)!;
      expect(t.shape).toEqual([blocks, 256]);
      const got = await readGgufTensor(file, t);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1e-6 + 1e-6 * Math.abs(want[i]!)));
      expect(worst, name).toBeLessThanOrEqual(1);
    }
  });

  it('maps Qwen2 names without un-permuting, keeping biases', async () => {
    const q = new Float32Array(16 * 16).map((_, i) => i);
    const bias = new Float32Array(16).map((_, i) => i);
    const kv: Record<string, GgufKv> = {
      'general.architecture': { type: 'string', value: 'qwen2' },
      'qwen2.embedding_length': { type: 'u32', value: 16 },
      'qwen2.feed_forward_length': { type: 'u32', value: 32 },
      'qwen2.block_count': { type: 'u32', value: 1 },
      'qwen2.attention.head_count': { type: 'u32', value: 2 },
      'qwen2.attention.head_count_kv': { type: 'u32', value: 1 },
      'qwen2.rope.freq_base': { type: 'f32', value: 1000000 },
    };
    const bytes = writeGguf(kv, [
      { name: 'token_embd.weight', ne: [16, 4], type: 0, data: f32Bytes(new Float32Array(64)) },
      { name: 'blk.0.attn_q.weight', ne: [16, 16], type: 0, data: f32Bytes(q) },
      { name: 'blk.0.attn_q.bias', ne: [16], type: 0, data: f32Bytes(bias) },
    ]);
    const { store, config } = await openGguf(bytesSource(bytes, 'qwen.gguf'));
    expect([...(await store.readF32('model.layers.0.self_attn.q_proj.weight'))]).toEqual([...q]);
    expect([...(await store.readF32('model.layers.0.self_attn.q_proj.bias'))]).toEqual([...bias]);
    expect(config).toMatchObject({ model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], rope_theta: 1000000, vocab_size: 4, head_dim: 8 });
  });

  it('recovers Llama 3 rope scaling from rope_freqs', async () => {
    const headDim = 64;
    const theta = 500000;
    const factors = new Float32Array(headDim / 2).map((_, i) => {
      const wavelen = (2 * Math.PI) / (1 / theta ** ((2 * i) / headDim));
      if (wavelen < 8192 / 4) return 1;
      if (wavelen > 8192) return 32;
      const smooth = (8192 / wavelen - 1) / 3;
      return 1 / ((1 - smooth) / 32 + smooth);
    });
    const kv = llamaKv({ 'llama.embedding_length': { type: 'u32', value: 128 }, 'llama.attention.head_count': { type: 'u32', value: 2 }, 'llama.rope.freq_base': { type: 'f32', value: theta } });
    const bytes = writeGguf(kv, [
      { name: 'token_embd.weight', ne: [128, 2], type: 0, data: f32Bytes(new Float32Array(256)) },
      { name: 'rope_freqs.weight', ne: [32], type: 0, data: f32Bytes(factors) },
    ]);
    const { config, store } = await openGguf(bytesSource(bytes, 'llama3.gguf'));
    expect(config.rope_scaling).toEqual({ rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    expect(store.tensors.has('rope_freqs.weight')).toBe(false);
  });

  it('builds a byte-level BPE tokenizer from gpt2-style metadata', () => {
    const json = JSON.parse(readFileSync('test/fixtures/tokenizers/gpt2/tokenizer.json', 'utf8')) as { model: { vocab: Record<string, number>; merges: (string | string[])[] } };
    const tokens: string[] = [];
    for (const [piece, id] of Object.entries(json.model.vocab)) tokens[id] = piece;
    const meta: GgufMetadata = {
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'gpt2',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.token_type': tokens.map((_, i) => (i === 50256 ? 3 : 1)),
      'tokenizer.ggml.merges': json.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m)),
      'tokenizer.ggml.bos_token_id': 50256,
      'tokenizer.ggml.eos_token_id': 50256,
    };
    const { tokenizer } = ggufTokenizer(meta, 'gpt2.gguf');
    const cases = JSON.parse(readFileSync('test/fixtures/tokenizers/gpt2/encodings.json', 'utf8')) as Record<string, number[]>;
    for (const [text, ids] of Object.entries(cases)) {
      expect(tokenizer!.encode(text), text).toEqual(ids);
      expect(tokenizer!.decode(ids), text).toBe(text);
    }
    expect(tokenizer!.decodeToken(995)).toBe(' world');
    // Llama 3 ("llama-bpe") splits digits in runs of up to three, Qwen2 one by one; BOS when the header asks.
    const piece = (s: string) => tokenizer!.encode(s);
    const llama3 = ggufTokenizer({ ...meta, 'tokenizer.ggml.pre': 'llama-bpe', 'tokenizer.ggml.add_bos_token': true }, 'l3.gguf').tokenizer!;
    expect(llama3.encode('12345')).toEqual([50256, ...piece('123'), ...piece('45')]);
    const qwen = ggufTokenizer({ ...meta, 'tokenizer.ggml.pre': 'qwen2' }, 'q.gguf').tokenizer!;
    expect(qwen.encode('12345')).toEqual([...'12345'].flatMap(piece));
    expect(ggufTokenizer({ ...meta, 'tokenizer.ggml.pre': 'deepseek-coder' }, 'x.gguf').problem).toMatch(/x\.gguf: tokenizer pre-tokenization "deepseek-coder" is not supported/);
  });

  it('rejects truncated files, wrong magic and unsupported tensor types, naming the file', async () => {
    const raw = new Uint8Array(readFileSync(FIXTURE));
    await expect(openGguf(bytesSource(raw.subarray(0, raw.length - 1000), 'cut.gguf'))).rejects.toThrow(/cut\.gguf: truncated: tensor "[^"]+" ends at byte \d+, the file has 1184376 bytes/);
    await expect(openGguf(bytesSource(raw.subarray(0, 5000), 'header.gguf'))).rejects.toThrow(/header\.gguf: truncated: the file \(5000 bytes\) ends inside the GGUF header/);
    const wrong = new Uint8Array(raw.subarray(0, 4096));
    wrong.set(new TextEncoder().encode('GGML'));
    await expect(openGguf(bytesSource(wrong, 'old.gguf'))).rejects.toThrow(/old\.gguf: not a GGUF file: it starts with "GGML"/);
    const q5k = writeGguf(llamaKv(), [{ name: 'blk.0.attn_q.weight', ne: [256, 1], type: 13, data: new Uint8Array(176) }]);
    await expect(openGguf(bytesSource(q5k, 'q5.gguf'))).rejects.toThrow(/q5\.gguf: tensor "blk\.0\.attn_q\.weight" has ggml type Q5_K \(13\), which NeuroDiff cannot read/);
    const gemma = writeGguf({ 'general.architecture': { type: 'string', value: 'gemma2' } }, []);
    await expect(openGguf(bytesSource(gemma, 'g.gguf'))).rejects.toThrow(/g\.gguf: GGUF architecture "gemma2" is not supported/);
  });
});
