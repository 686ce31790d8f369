// GGUF (llama.cpp): the header is parsed by @huggingface/gguf, fed from our ByteSource through a
// fetch function that answers its range requests; tensor data is read here by byte range. Tensors
// come out under Hugging Face names, Q/K rows back in the rotate-half layout where llama.cpp's
// converter permuted them, with a Hugging Face config.json synthesized from the metadata.
import { gguf, type GGUFParseOutput } from '@huggingface/gguf';
import { decodeBF16, decodeF16, decodeF32, f16ToF32 } from './dtype.ts';
import { interleavedToRotateHalf } from './rotary.ts';
import { FormatError, type ByteSource } from './source.ts';
import { rowRange, type StoredDType, type StoredTensor, type WeightStore } from './store.ts';
import { hfTokenizer, SentencePieceTokenizer, type PieceKind, type Tokenizer } from './tokenizer.ts';

export type GgufValue = number | bigint | string | boolean | GgufValue[];
export type GgufMetadata = Readonly<Record<string, GgufValue>>;

/** ggml tensor types this reader decodes, by their number in the file. */
const TYPES = new Map<number, { dtype: StoredDType; block: number; bytes: number }>([
  [0, { dtype: 'F32', block: 1, bytes: 4 }],
  [1, { dtype: 'F16', block: 1, bytes: 2 }],
  [2, { dtype: 'Q4_0', block: 32, bytes: 18 }],
  [8, { dtype: 'Q8_0', block: 32, bytes: 34 }],
  [12, { dtype: 'Q4_K', block: 256, bytes: 144 }],
  [14, { dtype: 'Q6_K', block: 256, bytes: 210 }],
  [30, { dtype: 'BF16', block: 1, bytes: 2 }],
]);
const TYPE_NAMES = new Map<number, string>(Object.entries({
  3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 13: 'Q5_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS',
  19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M',
  34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
}).map(([k, v]) => [Number(k), v]));
const typeName = (t: number) => TYPES.get(t)?.dtype ?? TYPE_NAMES.get(t) ?? `type ${t}`;

export interface GgufTensor extends StoredTensor {
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
  /** ggml dimensions, fastest first (the reverse of `shape`). */
  readonly ne: readonly number[];
}

export interface GgufFile {
  readonly source: ByteSource;
  readonly metadata: GgufMetadata;
  /** Tensors under their GGUF names ("blk.0.attn_q.weight"). */
  readonly tensors: ReadonlyMap<string, GgufTensor>;
}

/** Serves @huggingface/gguf's HTTP range requests from a ByteSource. */
function rangeFetch(src: ByteSource): typeof fetch {
  return async (_input, init) => {
    const range = new Headers(init?.headers).get('Range') ?? '';
    const m = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (!m) throw new Error(`unexpected range request "${range}"`);
    const start = Math.min(Number(m[1]), src.size);
    const end = Math.min(Number(m[2]) + 1, src.size);
    const bytes = await src.read(start, end - start);
    return new Response(new Uint8Array(bytes), { status: 206, headers: { 'Content-Range': `bytes ${start}-${Math.max(start, end - 1)}/${src.size}` } });
  };
}

export async function readGgufHeader(src: ByteSource): Promise<GgufFile> {
  if (src.size < 24) throw new FormatError(src.name, `too short to be a GGUF file (${src.size} bytes)`);
  const magic = new TextDecoder('latin1').decode(await src.read(0, 4));
  if (magic !== 'GGUF') throw new FormatError(src.name, `not a GGUF file: it starts with ${JSON.stringify(magic)}, not "GGUF"`);
  let parsed: GGUFParseOutput<{ strict: false }>;
  try {
    parsed = await gguf(`https://neurodiff.invalid/${encodeURIComponent(src.name)}`, { fetch: rangeFetch(src) });
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(src.name, `GGUF header cannot be parsed (${(e as Error).message}): the file is truncated or corrupt`);
  }
  const headerEnd = parsed.tensorInfoByteRange[1];
  const dataStart = Number(parsed.tensorDataOffset);
  if (headerEnd > src.size || dataStart > src.size) {
    throw new FormatError(src.name, `truncated: the file (${src.size} bytes) ends inside the GGUF header`);
  }
  if (!parsed.littleEndian) throw new FormatError(src.name, 'big-endian GGUF files are not supported');
  const alignment = Number(parsed.metadata['general.alignment'] ?? 32);
  if (!Number.isSafeInteger(alignment) || alignment < 8 || (alignment & (alignment - 1)) !== 0) {
    throw new FormatError(src.name, `general.alignment is ${String(parsed.metadata['general.alignment'])}: it must be a power of two, at least 8`);
  }
  const tensors = new Map<string, GgufTensor>();
  for (const info of parsed.tensorInfos) {
    if (tensors.has(info.name)) throw new FormatError(src.name, `has two tensors named "${info.name}"`);
    const ne = info.shape.map(Number);
    if (ne.length > 4 || !ne.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new FormatError(src.name, `tensor "${info.name}" has an invalid shape [${info.shape.join(', ')}]`);
    const type = TYPES.get(info.dtype);
    if (!type) {
      throw new FormatError(src.name, `tensor "${info.name}" has ggml type ${typeName(info.dtype)} (${info.dtype}), which NeuroDiff cannot read (supported: ${[...TYPES.values()].map((t) => t.dtype).join(', ')})`);
    }
    const count = ne.reduce((a, b) => a * b, 1);
    if ((ne[0] ?? 1) % type.block !== 0) throw new FormatError(src.name, `tensor "${info.name}" has rows of ${ne[0]} values, not a multiple of the ${type.dtype} block of ${type.block}`);
    const byteLength = (count / type.block) * type.bytes;
    const relative = Number(info.offset);
    if (!Number.isSafeInteger(relative) || relative % alignment !== 0) {
      throw new FormatError(src.name, `tensor "${info.name}" starts at data offset ${info.offset}, not a multiple of the file's alignment (${alignment})`);
    }
    const offset = dataStart + relative;
    if (!Number.isSafeInteger(byteLength) || offset + byteLength > src.size) {
      throw new FormatError(src.name, `truncated: tensor "${info.name}" ends at byte ${offset + byteLength}, the file has ${src.size} bytes (${type.dtype} [${ne.join(', ')}])`);
    }
    tensors.set(info.name, { name: info.name, shape: [...ne].reverse(), dtype: type.dtype, byteLength, offset, ne });
  }
  checkGgufLayout(src, [...tensors.values()], alignment);
  return { source: src, metadata: parsed.metadata as GgufMetadata, tensors };
}

/**
 * Tensors follow one another in the data section, each padded to the alignment: two tensors sharing
 * bytes, or a gap wider than the padding (a type whose size is less than the space the writer left),
 * mean the header is wrong.
 */
function checkGgufLayout(src: ByteSource, tensors: GgufTensor[], alignment: number): void {
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 0; i + 1 < sorted.length; i++) {
    const t = sorted[i]!;
    const next = sorted[i + 1]!;
    const end = t.offset + t.byteLength;
    if (end > next.offset) throw new FormatError(src.name, `tensors "${t.name}" (${t.dtype}, ${t.byteLength} bytes) and "${next.name}" overlap: the first ends at byte ${end}, the second starts at ${next.offset}`);
    if (next.offset - end >= alignment) {
      throw new FormatError(src.name, `tensor "${t.name}" (${t.dtype} [${t.shape.join(', ')}], ${t.byteLength} bytes) is followed by ${next.offset - end} unused bytes before "${next.name}": its type or shape does not match the space it was written in`);
    }
  }
  const last = sorted.at(-1);
  if (last && src.size - (last.offset + last.byteLength) >= alignment) {
    throw new FormatError(src.name, `the last tensor, "${last.name}" (${last.dtype} [${last.shape.join(', ')}]), ends at byte ${last.offset + last.byteLength} but the file has ${src.size}: its type or shape does not match the space it was written in, or the file has trailing bytes`);
  }
}

/** Values of a GGUF tensor as float32, row-major over `shape`. */
export async function readGgufTensor(file: GgufFile, t: GgufTensor, signal?: AbortSignal): Promise<Float32Array> {
  const bytes = await file.source.read(t.offset, t.byteLength, signal);
  return dequantize(t.dtype, bytes, t.shape.reduce((a, b) => a * b, 1));
}

type GgufStoreTensor = GgufTensor & { rotaryHeads: number };

/**
 * Rows [rowStart, rowEnd) by byte range (GGUF rows are whole quantization blocks). Tensors stored in
 * the interleaved rotary layout are read by whole heads, reordered, then cut to the rows asked for.
 */
async function readGgufRows<T extends Float32Array | Uint16Array>(
  file: GgufFile,
  t: GgufStoreTensor,
  rowStart: number,
  rowEnd: number,
  decode: (bytes: Uint8Array, count: number) => T,
  signal?: AbortSignal,
): Promise<T> {
  const rows = t.shape[0] ?? 1;
  const cols = t.shape.length > 1 ? t.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  const rowBytes = rows === 0 ? 0 : t.byteLength / rows;
  const headRows = t.rotaryHeads ? rows / t.rotaryHeads : 1;
  const first = Math.floor(rowStart / headRows) * headRows;
  const last = Math.min(rows, Math.ceil(rowEnd / headRows) * headRows);
  const bytes = await file.source.read(t.offset + first * rowBytes, (last - first) * rowBytes, signal);
  let data = decode(bytes, (last - first) * cols);
  if (t.rotaryHeads) data = interleavedToRotateHalf(data, last - first, cols, (last - first) / headRows);
  return first === rowStart && last === rowEnd ? data : (data.slice((rowStart - first) * cols, (rowEnd - first) * cols) as T);
}

export function dequantize(dtype: StoredDType, bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (dtype) {
    case 'F32':
      return decodeF32(bytes, count);
    case 'F16':
      return decodeF16(bytes, count);
    case 'BF16':
      return decodeBF16(bytes, count);
    case 'Q8_0':
      for (let b = 0; b < count / 32; b++) {
        const d = f16ToF32(view.getUint16(b * 34, true));
        for (let i = 0; i < 32; i++) out[b * 32 + i] = d * view.getInt8(b * 34 + 2 + i);
      }
      return out;
    case 'Q4_0':
      for (let b = 0; b < count / 32; b++) {
        const d = f16ToF32(view.getUint16(b * 18, true));
        for (let i = 0; i < 16; i++) {
          const q = bytes[b * 18 + 2 + i]!;
          out[b * 32 + i] = d * ((q & 0xf) - 8);
          out[b * 32 + i + 16] = d * ((q >> 4) - 8);
        }
      }
      return out;
    case 'Q4_K':
      for (let b = 0; b < count / 256; b++) {
        const at = b * 144;
        const d = f16ToF32(view.getUint16(at, true));
        const dmin = f16ToF32(view.getUint16(at + 2, true));
        const sc = bytes.subarray(at + 4, at + 16);
        // Eight 6-bit (scale, min) pairs packed into 12 bytes.
        const scaleMin = (j: number): [number, number] =>
          j < 4 ? [sc[j]! & 63, sc[j + 4]! & 63] : [(sc[j + 4]! & 0xf) | ((sc[j - 4]! >> 6) << 4), (sc[j + 4]! >> 4) | ((sc[j]! >> 6) << 4)];
        for (let g = 0; g < 4; g++) {
          const [s1, m1] = scaleMin(2 * g);
          const [s2, m2] = scaleMin(2 * g + 1);
          const qs = at + 16 + 32 * g;
          const y = b * 256 + 64 * g;
          for (let l = 0; l < 32; l++) {
            out[y + l] = d * s1 * (bytes[qs + l]! & 0xf) - dmin * m1;
            out[y + 32 + l] = d * s2 * (bytes[qs + l]! >> 4) - dmin * m2;
          }
        }
      }
      return out;
    case 'Q6_K':
      for (let b = 0; b < count / 256; b++) {
        const at = b * 210;
        const d = f16ToF32(view.getUint16(at + 208, true));
        for (let half = 0; half < 2; half++) {
          const ql = at + 64 * half;
          const qh = at + 128 + 32 * half;
          const sc = at + 192 + 8 * half;
          const y = b * 256 + 128 * half;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const h = bytes[qh + l]!;
            const q1 = ((bytes[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
            const q2 = ((bytes[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
            out[y + l] = d * view.getInt8(sc + is) * q1;
            out[y + l + 32] = d * view.getInt8(sc + is + 2) * q2;
            out[y + l + 64] = d * view.getInt8(sc + is + 4) * q3;
            out[y + l + 96] = d * view.getInt8(sc + is + 6) * q4;
          }
        }
      }
      return out;
    default:
      throw new Error(`cannot decode ${dtype}`);
  }
}

interface ArchSpec {
  readonly hfArchitecture: string;
  readonly modelType: string;
  /** llama.cpp's converter permutes Q/K rows into the interleaved rotary layout for these. */
  readonly permutedQK: boolean;
  readonly extraConfig: Record<string, unknown>;
}

const ARCHS = new Map<string, ArchSpec>(Object.entries({
  llama: { hfArchitecture: 'LlamaForCausalLM', modelType: 'llama', permutedQK: true, extraConfig: { attention_bias: false, mlp_bias: false } },
  qwen2: { hfArchitecture: 'Qwen2ForCausalLM', modelType: 'qwen2', permutedQK: false, extraConfig: {} },
  qwen3: { hfArchitecture: 'Qwen3ForCausalLM', modelType: 'qwen3', permutedQK: false, extraConfig: { attention_bias: false } },
}));

const BLOCK_PARTS = new Map<string, string>(Object.entries({
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
}));
const TOP_LEVEL = new Map<string, string>(Object.entries({
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
}));

/** The Hugging Face name of a GGUF tensor, or undefined when it has none. */
export function hfTensorName(ggufName: string): string | undefined {
  const top = TOP_LEVEL.get(ggufName);
  if (top) return top;
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(ggufName);
  const part = m && BLOCK_PARTS.get(m[2]!);
  return part ? `model.layers.${m[1]}.${part}.${m[3]}` : undefined;
}

/** The shortest decimal that rounds to the same float32 (GGUF stores 1e-5 as 9.99999974e-6). */
function f32Decimal(x: number): number {
  for (let p = 1; p < 10; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === Math.fround(x)) return y;
  }
  return x;
}

function num(meta: GgufMetadata, key: string): number | undefined {
  const v = Object.hasOwn(meta, key) ? meta[key] : undefined;
  return typeof v === 'number' || typeof v === 'bigint' ? Number(v) : undefined;
}

/**
 * Llama 3.x stores its rope scaling as per-frequency divisors ("rope_freqs.weight"). Recover the
 * Hugging Face rope_scaling by matching them against the llama3 rule (as convert_hf_to_gguf.py
 * computes them) for the factors Meta has released.
 */
function llama3RopeScaling(factors: Float32Array, theta: number, headDim: number): Record<string, unknown> | undefined {
  const [low, high, original] = [1, 4, 8192];
  for (const factor of [8, 16, 32, 64]) {
    let ok = factors.length === headDim / 2;
    for (let i = 0; ok && i < factors.length; i++) {
      const wavelen = (2 * Math.PI) / (1 / theta ** ((2 * i) / headDim));
      let want = factor;
      if (wavelen < original / high) want = 1;
      else if (wavelen <= original / low) {
        const smooth = (original / wavelen - low) / (high - low);
        want = 1 / ((1 - smooth) / factor + smooth);
      }
      ok = Math.abs(factors[i]! - want) <= 1e-4 * want;
    }
    if (ok) return { rope_type: 'llama3', factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: original };
  }
  return undefined;
}

/** The tokenizer a GGUF header carries: SentencePiece ("llama") or byte-level BPE ("gpt2"). */
export function ggufTokenizer(meta: GgufMetadata, name: string): { tokenizer?: Tokenizer; problem?: string } {
  const get = (key: string): GgufValue | undefined => (Object.hasOwn(meta, key) ? meta[key] : undefined);
  const model = get('tokenizer.ggml.model');
  const tokens = get('tokenizer.ggml.tokens');
  if (model === undefined || !Array.isArray(tokens)) return { problem: `${name} carries no tokenizer` };
  const numbers = (key: string): number[] => {
    const v = get(key) ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new FormatError(name, `${key} must be an array of numbers`);
    if (v.length !== 0 && v.length !== tokens.length) throw new FormatError(name, `${key} has ${v.length} entries for ${tokens.length} tokens`);
    return v as number[];
  };
  const types = numbers('tokenizer.ggml.token_type');
  const tokenId = (key: string): number | undefined => {
    const id = num(meta, key);
    if (id !== undefined && !(Number.isInteger(id) && id >= 0 && id < tokens.length)) throw new FormatError(name, `${key} is ${id}, not a token id of its ${tokens.length}-token vocabulary`);
    return id;
  };
  const bos = tokenId('tokenizer.ggml.bos_token_id');
  const eos = tokenId('tokenizer.ggml.eos_token_id');
  const addBos = get('tokenizer.ggml.add_bos_token');
  const pieces = tokens.map(String);
  if (model === 'llama') {
    const scores = numbers('tokenizer.ggml.scores');
    if (scores.length !== pieces.length) return { problem: `${name}: a SentencePiece tokenizer needs tokenizer.ggml.scores, one per token` };
    const KINDS = new Map<number, PieceKind>([[1, 'normal'], [2, 'unknown'], [3, 'control'], [4, 'normal'], [5, 'control'], [6, 'byte']]);
    const kinds = pieces.map((_, i) => KINDS.get(types[i] ?? 1) ?? 'normal');
    const tokenizer = new SentencePieceTokenizer({
      pieces: pieces.map((p, i) => (kinds[i] === 'control' || kinds[i] === 'unknown' ? p : p.replaceAll('\u2581', ' '))),
      scores,
      kinds,
      bosId: bos,
      eosId: eos,
      addSpacePrefix: get('tokenizer.ggml.add_space_prefix') !== false,
      addBosByDefault: addBos !== false,
    });
    return { tokenizer };
  }
  if (model === 'gpt2') {
    const pre = String(get('tokenizer.ggml.pre') ?? 'gpt2');
    const split = BPE_SPLITS.get(pre);
    if (split === undefined) return { problem: `${name}: tokenizer pre-tokenization "${pre}" is not supported (supported: ${[...BPE_SPLITS.keys()].join(', ')})` };
    const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
    pieces.forEach((p, i) => (vocab[p] = i));
    const added = pieces.flatMap((content, id) =>
      types[id] === 3 || types[id] === 4 ? [{ id, content, special: types[id] === 3, normalized: false, lstrip: false, rstrip: false, single_word: false }] : [],
    );
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: split === '' };
    const bosToken = bos === undefined ? undefined : pieces[bos];
    const json = {
      version: '1.0',
      added_tokens: added,
      normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
      pre_tokenizer: split === '' ? byteLevel : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false }, byteLevel] },
      post_processor:
        addBos === true && bosToken !== undefined
          ? {
              type: 'TemplateProcessing',
              single: [{ SpecialToken: { id: bosToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
              pair: [{ SpecialToken: { id: bosToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bosToken, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
              special_tokens: { [bosToken]: { id: bosToken, ids: [bos], tokens: [bosToken] } },
            }
          : null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', vocab, merges: (get('tokenizer.ggml.merges') as string[] | undefined) ?? [], ignore_merges: pre === 'llama-bpe', byte_fallback: false, fuse_unk: false, dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null },
    };
    const special = (id: number | undefined) => (id === undefined ? undefined : pieces[id]);
    return { tokenizer: hfTokenizer(json, { bos_token: special(bos), eos_token: special(eos) }, name) };
  }
  return { problem: `${name}: tokenizer model "${String(model)}" is not supported (supported: llama, gpt2)` };
}

/** Split patterns of the byte-level BPE pre-tokenizers, by tokenizer.ggml.pre; "" is GPT-2's own. */
const BPE_SPLITS = new Map<string, string>(Object.entries({
  gpt2: '',
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
}));

export interface OpenedGguf {
  readonly file: GgufFile;
  readonly store: WeightStore;
  readonly config: Record<string, unknown>;
  readonly tokenizer?: Tokenizer;
  /** Why there is no tokenizer, when there is none. */
  readonly tokenizerProblem?: string;
}

export async function openGguf(src: ByteSource): Promise<OpenedGguf> {
  const file = await readGgufHeader(src);
  const meta = file.metadata;
  const arch = String(meta['general.architecture'] ?? '');
  const spec = ARCHS.get(arch);
  if (!spec) throw new FormatError(src.name, `GGUF architecture "${arch}" is not supported (supported: ${[...ARCHS.keys()].join(', ')})`);
  const key = (k: string) => num(meta, `${arch}.${k}`);
  const hidden = key('embedding_length');
  const layers = key('block_count');
  const heads = key('attention.head_count');
  const ffn = key('feed_forward_length');
  if (!hidden || !layers || !heads || !ffn) {
    throw new FormatError(src.name, `GGUF metadata lacks ${arch}.embedding_length, block_count, attention.head_count or feed_forward_length`);
  }
  let blocks = 0;
  for (const name of file.tensors.keys()) {
    const m = /^blk\.(\d+)\./.exec(name);
    if (m) blocks = Math.max(blocks, Number(m[1]) + 1);
  }
  // (A file with no block tensors at all is refused by the loader, which needs them.)
  if (blocks > 0 && layers !== blocks) throw new FormatError(src.name, `${arch}.block_count is ${layers}, but the file holds tensors for ${blocks} blocks`);
  const kvHeads = key('attention.head_count_kv') ?? heads;
  const headDim = key('attention.key_length') ?? hidden / heads;
  const theta = key('rope.freq_base') ?? 10000;
  const embed = file.tensors.get('token_embd.weight');
  if (!embed) throw new FormatError(src.name, 'has no token_embd.weight tensor');
  const vocab = key('vocab_size') ?? embed.shape[0]!;

  const tensors = new Map<string, GgufStoreTensor>();
  const unknown: string[] = [];
  let ropeScaling: Record<string, unknown> | undefined;
  for (const [name, t] of file.tensors) {
    if (name === 'rope_freqs.weight') {
      ropeScaling = llama3RopeScaling(await readGgufTensor(file, t), theta, headDim);
      if (!ropeScaling) throw new FormatError(src.name, 'rope_freqs.weight does not match Llama 3 rope scaling (factor 8, 16, 32 or 64; low 1, high 4, original context 8192)');
      continue;
    }
    const hf = hfTensorName(name);
    if (!hf) {
      unknown.push(name);
      continue;
    }
    const part = /\.(attn_[qk])\./.exec(name)?.[1];
    const rotaryHeads = spec.permutedQK && part ? (part === 'attn_q' ? heads : kvHeads) : 0;
    tensors.set(hf, { ...t, name: hf, rotaryHeads });
  }
  if (unknown.length) throw new FormatError(src.name, `has tensors with no Hugging Face equivalent for ${arch}: ${unknown.slice(0, 8).join(', ')}${unknown.length > 8 ? ', …' : ''}`);

  const eps = key('attention.layer_norm_rms_epsilon');
  const config: Record<string, unknown> = {
    architectures: [spec.hfArchitecture],
    model_type: spec.modelType,
    hidden_size: hidden,
    intermediate_size: ffn,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: vocab,
    max_position_embeddings: key('context_length') ?? 2048,
    hidden_act: 'silu',
    rms_norm_eps: eps === undefined ? 1e-6 : f32Decimal(eps),
    rope_theta: theta,
    rope_parameters: { rope_theta: theta, rope_type: 'default', ...ropeScaling },
    ...(ropeScaling ? { rope_scaling: ropeScaling } : {}),
    tie_word_embeddings: !tensors.has('lm_head.weight'),
    ...spec.extraConfig,
  };
  const bos = num(meta, 'tokenizer.ggml.bos_token_id');
  const eos = num(meta, 'tokenizer.ggml.eos_token_id');
  if (bos !== undefined) config.bos_token_id = bos;
  if (eos !== undefined) config.eos_token_id = eos;

  const store: WeightStore = {
    label: src.name,
    tensors,
    async readF32(name, signal) {
      const t = tensors.get(name);
      if (!t) throw new FormatError(src.name, `no tensor named "${name}"`);
      const data = await readGgufTensor(file, t, signal);
      return t.rotaryHeads ? interleavedToRotateHalf(data, t.shape[0]!, t.shape.length > 1 ? t.shape[1]! : 1, t.rotaryHeads) : data;
    },
    async readRows(name, rowStart, rowEnd, signal) {
      const t = rowRange(store, name, rowStart, rowEnd) as GgufStoreTensor;
      return readGgufRows(file, t, rowStart, rowEnd, (bytes, count) => dequantize(t.dtype, bytes, count), signal);
    },
    async readRowsHalf(name, rowStart, rowEnd, signal) {
      const t = rowRange(store, name, rowStart, rowEnd) as GgufStoreTensor;
      if (t.dtype !== 'F16' && t.dtype !== 'BF16') throw new FormatError(src.name, `tensor "${name}" is ${t.dtype}, not F16 or BF16`);
      return readGgufRows(file, t, rowStart, rowEnd, (bytes, count) => new Uint16Array(bytes.slice(0, count * 2).buffer), signal);
    },
  };
  const { tokenizer, problem } = ggufTokenizer(meta, src.name);
  return { file, store, config, ...(tokenizer ? { tokenizer } : {}), ...(problem ? { tokenizerProblem: problem } : {}) };
}
