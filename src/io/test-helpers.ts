// Helpers shared by the io tests (Node only).
import { expect } from 'vitest';
import { pathSource } from './node-source.ts';
import { encodeVarint, lenField, message, varintField } from './protobuf.ts';
import { f16ToF32, f32ToF16 } from './dtype.ts';
import { readSafetensorsHeader } from './safetensors.ts';
import type { WeightStore } from './store.ts';

/** Every tensor of `want` is in `got` with its shape, and |got − want| ≤ atol + rtol·|want| everywhere. */
export async function expectSameTensors(got: WeightStore, want: WeightStore, atol: number, rtol: number): Promise<void> {
  for (const [name, t] of want.tensors) {
    const g = got.tensors.get(name);
    expect(g, name).toBeDefined();
    expect(g!.shape, name).toEqual(t.shape);
    const a = await got.readF32(name);
    const b = await want.readF32(name);
    let bad = 0;
    for (let i = 0; i < b.length; i++) if (!(Math.abs(a[i]! - b[i]!) <= atol + rtol * Math.abs(b[i]!))) bad++;
    expect(bad, name).toBe(0);
  }
}

/** The int32 `input_ids` [B, T] stored in a golden captures file. */
export async function goldenInputIds(path: string): Promise<number[][]> {
  const f = await readSafetensorsHeader(await pathSource(path));
  const e = f.entries.get('input_ids');
  if (!e || e.dtype !== 'I32') throw new Error(`${path} has no int32 input_ids`);
  const bytes = await e.source.read(e.offset, e.byteLength);
  const ids = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const [rows, cols] = e.shape as [number, number];
  return Array.from({ length: rows }, (_, r) => [...ids.subarray(r * cols, (r + 1) * cols)]);
}

export type GgufKv =
  | { type: 'u32' | 'i32' | 'f32' | 'u64'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: string[] }
  | { type: 'array'; of: 'f32' | 'i32'; value: number[] };

export interface GgufTensorIn {
  name: string;
  /** ggml dimensions, fastest first. */
  ne: number[];
  /** ggml type number (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 12 Q4_K, 14 Q6_K, 30 BF16, …). */
  type: number;
  data: Uint8Array;
}

/** A GGUF v3 file, written from the format's description independently of the reader under test. */
export function writeGguf(kv: Record<string, GgufKv>, tensors: GgufTensorIn[], alignment = 32): Uint8Array {
  const parts: number[] = [];
  const u8 = (...b: number[]) => parts.push(...b);
  const fixed = (n: number, set: (v: DataView) => void) => {
    const v = new DataView(new ArrayBuffer(n));
    set(v);
    u8(...new Uint8Array(v.buffer));
  };
  const u32 = (x: number) => fixed(4, (v) => v.setUint32(0, x, true));
  const u64 = (x: number) => fixed(8, (v) => v.setBigUint64(0, BigInt(x), true));
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    u8(...b);
  };
  const TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const;
  const scalar = (type: 'u32' | 'i32' | 'f32' | 'u64' | 'bool' | 'string', x: number | boolean | string) => {
    if (type === 'u32') u32(x as number);
    else if (type === 'i32') fixed(4, (v) => v.setInt32(0, x as number, true));
    else if (type === 'f32') fixed(4, (v) => v.setFloat32(0, x as number, true));
    else if (type === 'u64') u64(x as number);
    else if (type === 'bool') u8(x ? 1 : 0);
    else str(x as string);
  };
  u8(...new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(kv).length);
  for (const [key, entry] of Object.entries(kv)) {
    str(key);
    u32(TYPE[entry.type]);
    if (entry.type === 'array') {
      u32(TYPE[entry.of]);
      u64(entry.value.length);
      for (const x of entry.value) scalar(entry.of, x);
    } else scalar(entry.type, entry.value);
  }
  const pad = (n: number) => Math.ceil(n / alignment) * alignment;
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(offset);
    offset = pad(offset + t.data.length);
  }
  const dataStart = pad(parts.length);
  const out = new Uint8Array(dataStart + offset);
  out.set(parts);
  let at = dataStart;
  for (const t of tensors) {
    out.set(t.data, at);
    at = pad(at + t.data.length);
  }
  return out;
}

/** Builders for tiny ONNX models in tests (onnx.proto field numbers). */
export const onnxBuild = {
  tensor(t: { name: string; dims: number[]; dataType: number; raw?: Uint8Array; floatData?: number[]; packed?: boolean; int32Data?: number[]; int64Data?: number[]; external?: Record<string, string> }): Uint8Array {
    const parts = [lenField(8, t.name), ...t.dims.map((d) => varintField(1, d)), varintField(2, t.dataType)];
    if (t.raw) parts.push(lenField(9, t.raw));
    if (t.floatData) {
      const f = new Float32Array(t.floatData);
      if (t.packed === false) for (const x of f) parts.push(message(new Uint8Array([(4 << 3) | 5]), new Uint8Array(new Float32Array([x]).buffer)));
      else parts.push(lenField(4, new Uint8Array(f.buffer)));
    }
    if (t.int32Data) parts.push(lenField(5, new Uint8Array(t.int32Data.flatMap((x) => encodeVarint(x)))));
    if (t.int64Data) parts.push(lenField(7, new Uint8Array(t.int64Data.flatMap((x) => encodeVarint(x)))));
    if (t.external) {
      for (const [k, v] of Object.entries(t.external)) parts.push(lenField(13, message(lenField(1, k), lenField(2, v))));
      parts.push(varintField(14, 1));
    }
    return message(...parts);
  },
  valueInfo(name: string, elemType?: number, dims?: (number | string)[]): Uint8Array {
    if (elemType === undefined) return lenField(1, name);
    const shape = message(...(dims ?? []).map((d) => lenField(1, typeof d === 'number' ? varintField(1, d) : lenField(2, d))));
    return message(lenField(1, name), lenField(2, lenField(1, message(varintField(1, elemType), lenField(2, shape)))));
  },
  node(opType: string, inputs: string[], outputs: string[], name: string): Uint8Array {
    return message(...inputs.map((i) => lenField(1, i)), ...outputs.map((o) => lenField(2, o)), lenField(3, name), lenField(4, opType));
  },
  model(g: { nodes: Uint8Array[]; initializers: Uint8Array[]; inputs: Uint8Array[]; outputs: Uint8Array[] }): Uint8Array {
    const graph = message(...g.nodes.map((n) => lenField(1, n)), lenField(2, 'test'), ...g.initializers.map((t) => lenField(5, t)), ...g.inputs.map((v) => lenField(11, v)), ...g.outputs.map((v) => lenField(12, v)));
    return message(varintField(1, 8), lenField(2, 'neurodiff-test'), lenField(7, graph), lenField(8, message(lenField(1, ''), varintField(2, 17))));
  },
};

// GGUF files made from a Hugging Face checkpoint, for the loader and end-to-end tests.

const f16 = (x: number) => f16ToF32(f32ToF16(x));
export const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Hugging Face rotate-half rows to llama.cpp's layout: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2). */
export function permuteForGguf(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const hd = rows / nHead;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++)
    for (let i = 0; i < hd / 2; i++)
      for (let j = 0; j < 2; j++) out.set(w.subarray((h * hd + j * (hd / 2) + i) * cols, (h * hd + j * (hd / 2) + i + 1) * cols), (h * hd + 2 * i + j) * cols);
  return out;
}

/** ggml's quantize_row_q8_0_ref; also returns the values it decodes to. */
export function quantizeQ8_0(x: Float32Array): { bytes: Uint8Array; decoded: Float32Array } {
  const blocks = x.length / 32;
  const bytes = new Uint8Array(blocks * 34);
  const v = new DataView(bytes.buffer);
  const decoded = new Float32Array(x.length);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]!));
    const d = Math.fround(amax / 127);
    v.setUint16(b * 34, f32ToF16(d), true);
    for (let i = 0; i < 32; i++) {
      const q = d ? Math.round(Math.fround(x[b * 32 + i]! * Math.fround(1 / d))) : 0;
      v.setInt8(b * 34 + 2 + i, q);
      decoded[b * 32 + i] = f16(d) * q;
    }
  }
  return { bytes, decoded };
}

/** ggml's quantize_row_q4_0_ref. */
export function quantizeQ4_0(x: Float32Array): { bytes: Uint8Array; decoded: Float32Array } {
  const blocks = x.length / 32;
  const bytes = new Uint8Array(blocks * 18);
  const v = new DataView(bytes.buffer);
  const decoded = new Float32Array(x.length);
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let i = 0; i < 32; i++) if (Math.abs(x[b * 32 + i]!) > Math.abs(max)) max = x[b * 32 + i]!;
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    v.setUint16(b * 18, f32ToF16(d), true);
    const q = (i: number) => Math.min(15, Math.trunc(Math.fround(x[b * 32 + i]! * id) + 8.5));
    for (let j = 0; j < 16; j++) {
      bytes[b * 18 + 2 + j] = q(j) | (q(j + 16) << 4);
      decoded[b * 32 + j] = f16(d) * (q(j) - 8);
      decoded[b * 32 + j + 16] = f16(d) * (q(j + 16) - 8);
    }
  }
  return { bytes, decoded };
}

export const llamaKv = (extra: Record<string, GgufKv> = {}): Record<string, GgufKv> => ({
  'general.architecture': { type: 'string', value: 'llama' },
  'llama.context_length': { type: 'u32', value: 512 },
  'llama.embedding_length': { type: 'u32', value: 64 },
  'llama.feed_forward_length': { type: 'u32', value: 172 },
  'llama.block_count': { type: 'u32', value: 5 },
  'llama.attention.head_count': { type: 'u32', value: 8 },
  'llama.attention.head_count_kv': { type: 'u32', value: 4 },
  'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
  ...extra,
});

/** The stories260K HF checkpoint written as GGUF the way llama.cpp's converter names and permutes it. */
export async function hfToGguf(hf: WeightStore, typeOf: (ggufName: string) => number): Promise<{ tensors: GgufTensorIn[]; expected: Map<string, Float32Array> }> {
  const parts: Record<string, string> = {
    input_layernorm: 'attn_norm', 'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
    post_attention_layernorm: 'ffn_norm', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
  };
  const tensors: GgufTensorIn[] = [];
  const expected = new Map<string, Float32Array>();
  for (const [name, t] of hf.tensors) {
    let gname = name === 'model.embed_tokens.weight' ? 'token_embd.weight' : name === 'model.norm.weight' ? 'output_norm.weight' : '';
    const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
    if (m) gname = `blk.${m[1]}.${parts[m[2]!]}.weight`;
    const [rows, cols] = t.shape.length === 2 ? (t.shape as [number, number]) : [1, t.shape[0]!];
    let w = await hf.readF32(name);
    if (gname.includes('attn_q')) w = permuteForGguf(w, rows, cols, 8);
    if (gname.includes('attn_k')) w = permuteForGguf(w, rows, cols, 4);
    const type = typeOf(gname);
    const ne = [...t.shape].reverse();
    if (type === 8 || type === 2) {
      const { bytes, decoded } = type === 8 ? quantizeQ8_0(w) : quantizeQ4_0(w);
      tensors.push({ name: gname, ne, type, data: bytes });
      expected.set(gname, decoded);
    } else if (type === 1 || type === 30) {
      const bits = new Uint16Array(w.length);
      const decoded = new Float32Array(w.length);
      for (let i = 0; i < w.length; i++) {
        bits[i] = type === 1 ? f32ToF16(w[i]!) : new Uint32Array(new Float32Array([w[i]!]).buffer)[0]! >>> 16;
        decoded[i] = type === 1 ? f16ToF32(bits[i]!) : new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]!;
      }
      tensors.push({ name: gname, ne, type, data: new Uint8Array(bits.buffer) });
      expected.set(gname, decoded);
    } else {
      tensors.push({ name: gname, ne, type: 0, data: f32Bytes(w) });
    }
  }
  return { tensors, expected };
}
