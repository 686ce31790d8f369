// llama2.c checkpoints (.bin) and tokenizers (tok*.bin), read into Hugging Face names and layout.
// Checkpoint versions (llama2.c export.py): v0 "legacy" (a header of 7 int32, the vocabulary size
// negative when the classifier is not shared), v1 (a 256-byte header starting "ak42", float32) and
// v2 (the same header plus a group size, int8 weights with a float32 scale per group).
import { decodeF32 } from './dtype.ts';
import { interleavedToRotateHalf } from './rotary.ts';
import { FormatError, type ByteSource } from './source.ts';
import type { StoredDType, StoredTensor, WeightStore } from './store.ts';
import { SentencePieceTokenizer, type PieceKind } from './tokenizer.ts';

const MAGIC = 0x616b3432;
const V1_HEADER = 256;

export interface Llama2cHeader {
  readonly version: 0 | 1 | 2;
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly seqLen: number;
  readonly sharedClassifier: boolean;
  /** v2 only: values per int8 group sharing one scale. */
  readonly groupSize: number;
}

interface Llama2cEntry extends StoredTensor {
  readonly offset: number;
  /** Heads whose rotary rows are reordered on reading (Q and K projections). */
  readonly rotaryHeads: number;
}

function fail(src: ByteSource, detail: string): never {
  throw new FormatError(src.name, detail);
}

export async function readLlama2cHeader(src: ByteSource): Promise<Llama2cHeader> {
  if (src.size < 28) fail(src, `too short to be a llama2.c checkpoint (${src.size} bytes; the header alone is 28)`);
  const head = await src.read(0, Math.min(src.size, 41));
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (view.getUint32(0, true) === 0x04034b50) fail(src, 'is a PyTorch checkpoint (a zip of pickles), not a llama2.c checkpoint: pickles are not supported, convert it to safetensors');
  let version: 0 | 1 | 2 = 0;
  let at = 0;
  if (view.getUint32(0, true) === MAGIC) {
    const v = view.getInt32(4, true);
    if (v !== 1 && v !== 2) fail(src, `llama2.c checkpoint version ${v} is not supported (only 0, 1 and 2 exist)`);
    if (src.size < V1_HEADER) fail(src, `truncated: a version ${v} llama2.c header is ${V1_HEADER} bytes, the file has ${src.size}`);
    version = v;
    at = 8;
  }
  const ints = Array.from({ length: 7 }, (_, i) => view.getInt32(at + 4 * i, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = ints as [number, number, number, number, number, number, number];
  const vocabSize = Math.abs(rawVocab);
  const fields: Array<[string, number, number]> = [
    ['dim', dim, 1 << 16],
    ['hidden_dim', hiddenDim, 1 << 20],
    ['n_layers', nLayers, 1024],
    ['n_heads', nHeads, 1024],
    ['n_kv_heads', nKvHeads, 1024],
    ['vocab_size', vocabSize, 1 << 24],
    ['seq_len', seqLen, 1 << 24],
  ];
  const problems = fields.filter(([, v, max]) => !(v > 0 && v <= max)).map(([name, v, max]) => `${name} ${v} is not in 1..${max}`);
  if (problems.length === 0) {
    if (dim % nHeads !== 0) problems.push(`dim ${dim} is not a multiple of n_heads ${nHeads}`);
    else if ((dim / nHeads) % 2 !== 0) problems.push(`the head size dim / n_heads = ${dim / nHeads} is odd`);
    if (nHeads % nKvHeads !== 0) problems.push(`n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  }
  if (problems.length > 0) {
    fail(src, `not a llama2.c checkpoint: in its header [dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len] = [${ints.join(', ')}], ${problems.join('; ')}`);
  }
  const sharedClassifier = version === 0 ? rawVocab > 0 : view.getUint8(36) !== 0;
  const groupSize = version === 2 ? view.getInt32(37, true) : 0;
  if (version === 2 && (groupSize <= 0 || dim % groupSize !== 0)) fail(src, `llama2.c v2 checkpoint has an invalid group size ${groupSize}`);
  return { version, dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier, groupSize };
}

/** The tensors in file order, with their Hugging Face names, shapes and byte offsets. */
function layout(h: Llama2cHeader): { entries: Llama2cEntry[]; end: number } {
  const headDim = h.dim / h.nHeads;
  const kvDim = h.nKvHeads * headDim;
  const L = h.nLayers;
  const layer = (i: number, name: string) => `model.layers.${i}.${name}`;
  type Spec = { name: string; shape: number[]; rotaryHeads?: number };
  const perLayer = (name: string, shape: number[], rotaryHeads?: number): Spec[] =>
    Array.from({ length: L }, (_, i) => ({ name: layer(i, name), shape, ...(rotaryHeads ? { rotaryHeads } : {}) }));
  const attNorm = perLayer('input_layernorm.weight', [h.dim]);
  const ffnNorm = perLayer('post_attention_layernorm.weight', [h.dim]);
  const finalNorm: Spec = { name: 'model.norm.weight', shape: [h.dim] };
  const embed: Spec = { name: 'model.embed_tokens.weight', shape: [h.vocabSize, h.dim] };
  const matrices = [
    ...perLayer('self_attn.q_proj.weight', [h.dim, h.dim], h.nHeads),
    ...perLayer('self_attn.k_proj.weight', [kvDim, h.dim], h.nKvHeads),
    ...perLayer('self_attn.v_proj.weight', [kvDim, h.dim]),
    ...perLayer('self_attn.o_proj.weight', [h.dim, h.dim]),
  ];
  const mlp = [
    ...perLayer('mlp.gate_proj.weight', [h.hiddenDim, h.dim]),
    ...perLayer('mlp.down_proj.weight', [h.dim, h.hiddenDim]),
    ...perLayer('mlp.up_proj.weight', [h.hiddenDim, h.dim]),
  ];
  const classifier: Spec[] = h.sharedClassifier ? [] : [{ name: 'lm_head.weight', shape: [h.vocabSize, h.dim] }];
  const entries: Llama2cEntry[] = [];
  let offset = h.version === 0 ? 28 : V1_HEADER;
  const push = (s: Spec, dtype: StoredDType) => {
    const count = s.shape.reduce((a, b) => a * b, 1);
    const byteLength = dtype === 'F32' ? count * 4 : count + (count / h.groupSize) * 4;
    entries.push({ name: s.name, shape: s.shape, dtype, byteLength, offset, rotaryHeads: s.rotaryHeads ?? 0 });
    offset += byteLength;
  };
  if (h.version === 0) {
    const [wq, wk, wv, wo] = [0, 1, 2, 3].map((k) => matrices.slice(k * L, (k + 1) * L)) as [Spec[], Spec[], Spec[], Spec[]];
    for (const s of [embed, ...attNorm, ...wq, ...wk, ...wv, ...wo, ...ffnNorm, ...mlp, finalNorm]) push(s, 'F32');
    offset += 2 * h.seqLen * (headDim / 2) * 4; // freq_cis_real and freq_cis_imag, recomputed by the model
    for (const s of classifier) push(s, 'F32');
  } else {
    for (const s of [...attNorm, ...ffnNorm, finalNorm]) push(s, 'F32');
    for (const s of [embed, ...matrices, ...mlp, ...classifier]) push(s, h.version === 1 ? 'F32' : 'Q8_0');
  }
  return { entries, end: offset };
}

async function readEntry(src: ByteSource, h: Llama2cHeader, e: Llama2cEntry, signal?: AbortSignal): Promise<Float32Array> {
  const count = e.shape.reduce((a, b) => a * b, 1);
  const bytes = await src.read(e.offset, e.byteLength, signal);
  let out: Float32Array;
  if (e.dtype === 'F32') out = decodeF32(bytes, count);
  else {
    const scales = decodeF32(bytes.subarray(count), count / h.groupSize);
    out = new Float32Array(count);
    const q = new Int8Array(bytes.buffer, bytes.byteOffset, count);
    for (let i = 0; i < count; i++) out[i] = q[i]! * scales[Math.floor(i / h.groupSize)]!;
  }
  return e.rotaryHeads ? interleavedToRotateHalf(out, e.shape[0]!, e.shape[1]!, e.rotaryHeads) : out;
}

export function llama2cConfig(h: Llama2cHeader): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    head_dim: h.dim / h.nHeads,
    vocab_size: h.vocabSize,
    max_position_embeddings: h.seqLen,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_parameters: { rope_theta: 10000, rope_type: 'default' },
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: h.sharedClassifier,
    bos_token_id: 1,
    eos_token_id: 2,
  };
}

export async function openLlama2c(src: ByteSource): Promise<{ header: Llama2cHeader; store: WeightStore; config: Record<string, unknown> }> {
  const header = await readLlama2cHeader(src);
  const { entries, end } = layout(header);
  const dims = `dim ${header.dim}, hidden ${header.hiddenDim}, ${header.nLayers} layers, vocab ${header.vocabSize}`;
  if (src.size < end) fail(src, `truncated: a version ${header.version} llama2.c checkpoint with ${dims} needs ${end} bytes, the file has ${src.size}`);
  if (src.size > end) fail(src, `not a llama2.c checkpoint, or a different export: the header (${dims}) implies ${end} bytes, the file has ${src.size}`);
  const tensors = new Map(entries.map((e) => [e.name, e]));
  const store: WeightStore = {
    label: src.name,
    tensors,
    readF32(name, signal) {
      const e = tensors.get(name);
      if (!e) throw new FormatError(src.name, `no tensor named "${name}"`);
      return readEntry(src, header, e, signal);
    },
  };
  return { header, store, config: llama2cConfig(header) };
}

/**
 * A llama2.c tokenizer file: max_token_length (int32), then per token a float32 score, an int32
 * length and that many bytes. Pieces use " " for "▁", as llama2.c's export_tokenizer.py writes them.
 */
export async function readLlama2cTokenizer(src: ByteSource, vocabSize?: number): Promise<SentencePieceTokenizer> {
  const bytes = await src.read(0, src.size);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) fail(src, `too short to be a llama2.c tokenizer (${bytes.length} bytes)`);
  const maxLen = view.getInt32(0, true);
  if (maxLen <= 0 || maxLen > 1 << 16) fail(src, `not a llama2.c tokenizer: max_token_length is ${maxLen}`);
  const pieces: string[] = [];
  const scores: number[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: false });
  let at = 4;
  while (at < bytes.length) {
    if (at + 8 > bytes.length) fail(src, `truncated in the entry of token ${pieces.length} (byte ${at} of ${bytes.length})`);
    const score = view.getFloat32(at, true);
    const len = view.getInt32(at + 4, true);
    if (len < 0 || len > maxLen || at + 8 + len > bytes.length) fail(src, `token ${pieces.length} has length ${len} at byte ${at + 4}: truncated, or not a llama2.c tokenizer (max_token_length ${maxLen})`);
    scores.push(score);
    pieces.push(utf8.decode(bytes.subarray(at + 8, at + 8 + len)));
    at += 8 + len;
  }
  if (vocabSize !== undefined && pieces.length !== vocabSize) fail(src, `has ${pieces.length} tokens, the model's vocabulary has ${vocabSize}`);
  if (pieces.length < 3) fail(src, `has only ${pieces.length} tokens`);
  // llama2.c's convention: 0 <unk>, 1 BOS, 2 EOS (its export writes them as "\n<s>\n" and "\n</s>\n").
  const kinds: PieceKind[] = pieces.map((_, i) => (i === 0 ? 'unknown' : i < 3 ? 'control' : /^<0x[0-9A-Fa-f]{2}>$/.test(pieces[i]!) ? 'byte' : 'normal'));
  pieces[1] = '<s>';
  pieces[2] = '</s>';
  return new SentencePieceTokenizer({ pieces, scores, kinds, bosId: 1, eosId: 2, addSpacePrefix: true, addBosByDefault: true });
}
