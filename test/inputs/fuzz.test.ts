// Broken, hostile and extreme inputs for every format, generated from tiny valid models with a fixed
// seed. Every case must end in one of three ways: a clean error (an Error whose message starts with
// the file it is about and is not a JavaScript engine's own text), a flagged result (non-finite
// weights allowed and reported), or success with finite logits (benign changes). Never a crash, a
// hang, an internal error or garbage. The counts per class are printed.
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { nonFiniteSummary } from '../../src/io/finite.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openModel, type OpenOptions } from '../../src/io/open-model.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { bytesSource, type ByteSource, type FileSet } from '../../src/io/source.ts';
import { writeGguf, type GgufKv, type GgufTensorIn } from '../../src/io/test-helpers.ts';
import { loadModelFromStore } from '../../src/model/load.ts';
import { loraAdapterFromStore } from '../../src/model/lora.ts';

const SEED = 20261202;
const be = createCpuBackend();
const enc = (s: string) => new TextEncoder().encode(s);
const json = (v: unknown) => enc(JSON.stringify(v));

/** mulberry32: a small seeded generator, so every run makes the same cases. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(SEED);
const randInt = (n: number) => Math.floor(rand() * n);
const randn = (n: number, scale = 0.3) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);

// A tiny Llama: vocab 16, width 8, 2 heads of 4, MLP 12, 2 layers, tied embeddings.
const V = 16;
const D = 8;
const M = 12;
const L = 2;
const CONFIG = {
  model_type: 'llama',
  hidden_size: D,
  intermediate_size: M,
  num_hidden_layers: L,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  vocab_size: V,
  max_position_embeddings: 32,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
};
type T = { name: string; shape: number[]; data: Float32Array };
function tensors(): T[] {
  const out: T[] = [{ name: 'model.embed_tokens.weight', shape: [V, D], data: randn(V * D) }];
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      { name: `${p}input_layernorm.weight`, shape: [D], data: new Float32Array(D).fill(1) },
      ...['q', 'k', 'v', 'o'].map((x) => ({ name: `${p}self_attn.${x}_proj.weight`, shape: [D, D], data: randn(D * D) })),
      { name: `${p}post_attention_layernorm.weight`, shape: [D], data: new Float32Array(D).fill(1) },
      { name: `${p}mlp.gate_proj.weight`, shape: [M, D], data: randn(M * D) },
      { name: `${p}mlp.up_proj.weight`, shape: [M, D], data: randn(M * D) },
      { name: `${p}mlp.down_proj.weight`, shape: [D, M], data: randn(D * M) },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [D], data: new Float32Array(D).fill(1) });
  return out;
}
const TENSORS = tensors();
const WORDS = ['<unk>', '<s>', '</s>', 'the', 'sea', 'boat', 'wave', 'shell', 'a', 'is', 'blue', 'big', 'fish', 'sun', 'and', 'sand'];
const TOKENIZER = {
  version: '1.0',
  added_tokens: [{ id: 1, content: '<s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
  normalizer: null,
  pre_tokenizer: { type: 'WhitespaceSplit' },
  post_processor: null,
  decoder: null,
  model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), unk_token: '<unk>' },
};

const files = (entries: Record<string, Uint8Array>): FileSet => new Map(Object.entries(entries).map(([n, b]) => [n, bytesSource(b, n)] as [string, ByteSource]));
const st = (ts: readonly T[] = TENSORS) => writeSafetensors(ts);
const hf = (over: Partial<{ config: unknown; model: Uint8Array; tokenizer: unknown }> = {}) =>
  files({ 'config.json': json(over.config ?? CONFIG), 'model.safetensors': over.model ?? st(), 'tokenizer.json': json(over.tokenizer ?? TOKENIZER) });

type Outcome = 'error' | 'flagged' | 'ok';
const INTERNAL = /Cannot read prop|is not a function|is not iterable|is not a constructor|Invalid array length|Invalid typed array length|Maximum call stack|out of memory|of undefined|of null|\bNaN\b.*\bNaN\b|\[object Object\]/;

/** Opens, loads and runs a model (and an adapter over it); the outcome, or the reason the case failed. */
async function run(fs: FileSet, opts: OpenOptions & { adapter?: FileSet } = {}): Promise<{ outcome: Outcome; message: string }> {
  try {
    const opened = await openModel(fs, opts);
    let adapter;
    let adapterStore;
    if (opts.adapter) {
      const a = await openModel(opts.adapter, opts);
      adapterStore = a.store;
      adapter = loraAdapterFromStore(a.store, a.config, 'adapter_config.json');
    }
    const model = await loadModelFromStore(opened.store, opened.config, be, { memoryBudgetBytes: 64 << 20, ...(adapter ? { adapter } : {}) }, opened.label);
    const ids = [1, 3, 4, 9, 10];
    // The tokenizer, where there is one, must give text for the ids (its vocabulary was checked against the model's).
    if (opened.tokenizer && typeof opened.tokenizer.decode(ids) !== 'string') throw new Garbage('the tokenizer gave no text');
    const logits = (await be.read(model.forward([ids]).logits!)) as Float32Array;
    model.dispose();
    const flag = nonFiniteSummary(opened.store, adapterStore);
    if (flag) return { outcome: 'flagged', message: flag };
    const bad = logits.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new Garbage(`logit ${bad} is ${logits[bad]} with no flag`);
    return { outcome: 'ok', message: '' };
  } catch (e) {
    if (e instanceof Garbage) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    if (!(e instanceof Error) || e instanceof TypeError || e instanceof ReferenceError || e instanceof SyntaxError) throw new Error(`internal error: ${String(e)}`, { cause: e });
    if (!/^[^\s:][^\n]*?: \S/.test(msg)) throw new Error(`message does not start with the file: ${msg}`, { cause: e });
    if (INTERNAL.test(msg)) throw new Error(`internal text in the message: ${msg}`, { cause: e });
    return { outcome: 'error', message: msg };
  }
}
class Garbage extends Error {}

interface Case {
  name: string;
  make(): Promise<{ files: FileSet; adapter?: FileSet; allowNonfinite?: boolean }> | { files: FileSet; adapter?: FileSet; allowNonfinite?: boolean };
  /** What must happen; a list allows either (benign byte flips may or may not matter). */
  want: Outcome | Outcome[];
  /** The message must match (for errors). */
  says?: RegExp;
}

const counts = new Map<string, Record<Outcome, number>>();
function note(cls: string, o: Outcome) {
  const c = counts.get(cls) ?? { error: 0, flagged: 0, ok: 0 };
  c[o]++;
  counts.set(cls, c);
}

async function check(cls: string, c: Case) {
  const made = await c.make();
  const { outcome, message } = await run(made.files, { ...(made.adapter ? { adapter: made.adapter } : {}), ...(made.allowNonfinite ? { allowNonfinite: true } : {}) }).catch((e: Error) => {
    throw new Error(`${cls} / ${c.name}: ${e.message}`);
  });
  const want = Array.isArray(c.want) ? c.want : [c.want];
  expect(want, `${cls} / ${c.name}: got ${outcome}${message ? ` (${message})` : ''}`).toContain(outcome);
  if (c.says && outcome === 'error') expect(message, `${cls} / ${c.name}`).toMatch(c.says);
  if (outcome === 'flagged') expect(message).toMatch(/^\d+ tensors? holds? NaN or infinite values/);
  note(cls, outcome);
}

// ---- safetensors --------------------------------------------------------------------------------

const MODEL = st();
const headerLen = Number(new DataView(MODEL.buffer).getBigUint64(0, true));
const withHeader = (header: Record<string, unknown>, data: Uint8Array, lenDelta = 0) => {
  const h = enc(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length + lenDelta), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
};
const HEADER = JSON.parse(new TextDecoder().decode(MODEL.subarray(8, 8 + headerLen))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
const DATA = MODEL.subarray(8 + headerLen);
const edit = (f: (h: typeof HEADER) => void) => {
  const h = structuredClone(HEADER);
  f(h);
  return hf({ model: withHeader(h, DATA) });
};
const names = Object.keys(HEADER);
const nanAt = (tensor: string, value: number) => hf({ model: st(TENSORS.map((t) => (t.name === tensor ? { ...t, data: Object.assign(t.data.slice(), { 3: value }) } : t))) });

const SAFETENSORS: Case[] = [
  { name: 'valid', make: () => ({ files: hf() }), want: 'ok' },
  ...Array.from({ length: 10 }, (_, i): Case => {
    const at = randInt(MODEL.length - 1);
    return { name: `truncated at ${at} (${i})`, make: () => ({ files: hf({ model: MODEL.subarray(0, at) }) }), want: 'error', says: /^model\.safetensors: / };
  }),
  ...Array.from({ length: 12 }, (_, i): Case => {
    const at = 8 + randInt(headerLen);
    const bit = 1 << randInt(8);
    return { name: `header byte ${at} flipped (${i})`, make: () => ({ files: hf({ model: Object.assign(MODEL.slice(), { [at]: MODEL[at]! ^ bit }) }) }), want: ['error', 'ok'] };
  }),
  ...Array.from({ length: 12 }, (_, i): Case => {
    const at = 8 + headerLen + randInt(DATA.length);
    return { name: `data byte ${at} flipped (${i})`, make: () => ({ files: hf({ model: Object.assign(MODEL.slice(), { [at]: MODEL[at]! ^ 0xff }) }) }), want: ['error', 'ok'] };
  }),
  ...[-8, -1, 1, 8, 2 ** 40].map((d): Case => ({
    name: `header length ${d > 0 ? '+' : ''}${d}`,
    make: () => {
      const m = MODEL.slice();
      new DataView(m.buffer).setBigUint64(0, BigInt(headerLen + d), true);
      return { files: hf({ model: m }) };
    },
    want: 'error',
    says: /^model\.safetensors: /,
  })),
  { name: 'header length over the limit', make: () => ({ files: hf({ model: withHeader(HEADER, DATA, 200 << 20) }) }), want: 'error', says: /over the 100 MiB limit/ },
  { name: 'aliased data_offsets', make: () => ({ files: edit((h) => (h[names[2]!]!.data_offsets = [...h[names[1]!]!.data_offsets])) }), want: 'error', says: /overlap|lies about sizes/ },
  { name: 'overlapping data_offsets', make: () => ({ files: edit((h) => (h[names[3]!]!.data_offsets = h[names[3]!]!.data_offsets.map((o) => o - 4) as [number, number])) }), want: 'error', says: /overlap|gap/ },
  { name: 'a gap in the data', make: () => ({ files: hf({ model: withHeader(Object.fromEntries(Object.entries(HEADER).map(([k, v]) => [k, { ...v, data_offsets: v.data_offsets.map((o) => o + 4) }])), new Uint8Array([...new Uint8Array(4), ...DATA])) }) }), want: 'error', says: /gap/ },
  { name: 'trailing bytes', make: () => ({ files: hf({ model: new Uint8Array([...MODEL, 0, 0, 0, 0]) }) }), want: 'error', says: /trailing bytes/ },
  { name: 'tensors listed out of order (benign)', make: () => ({ files: hf({ model: withHeader(Object.fromEntries(Object.entries(HEADER).reverse()), DATA) }) }), want: 'ok' },
  { name: 'dtype lie F32 → F16', make: () => ({ files: edit((h) => (h[names[1]!]!.dtype = 'F16')) }), want: 'error', says: /lies about sizes/ },
  { name: 'dtype lie F32 → F64', make: () => ({ files: edit((h) => (h[names[0]!]!.dtype = 'F64')) }), want: 'error', says: /lies about sizes/ },
  ...['constructor', '__proto__', 'toString', 'Q4_K'].map((dtype): Case => ({ name: `dtype "${dtype}"`, make: () => ({ files: edit((h) => (h[names[0]!]!.dtype = dtype)) }), want: 'error', says: /unsupported dtype/ })),
  { name: 'shape lie', make: () => ({ files: edit((h) => (h[names[0]!]!.shape = [V, D + 1])) }), want: 'error', says: /lies about sizes/ },
  { name: 'a tensor named __proto__', make: () => ({ files: hf({ model: withHeader({ __proto__: HEADER[names[0]!], ...HEADER }, DATA) }) }), want: ['error', 'ok'] },
  { name: '__metadata__ not strings', make: () => ({ files: hf({ model: withHeader({ __metadata__: { a: 1 }, ...HEADER }, DATA) }) }), want: 'error', says: /__metadata__/ },
  { name: 'NaN weight', make: () => ({ files: nanAt('model.layers.1.mlp.up_proj.weight', NaN) }), want: 'error', says: /"model\.layers\.1\.mlp\.up_proj\.weight" holds 1 NaN values/ },
  { name: 'infinite weight', make: () => ({ files: nanAt('model.embed_tokens.weight', -Infinity) }), want: 'error', says: /holds 1 infinite values/ },
  { name: 'NaN weight, allowed', make: () => ({ files: nanAt('model.layers.0.self_attn.q_proj.weight', NaN), allowNonfinite: true }), want: 'flagged' },
  { name: 'NaN norm weight, allowed', make: () => ({ files: nanAt('model.norm.weight', Infinity), allowNonfinite: true }), want: 'flagged' },
  {
    name: 'NaN in bf16, allowed',
    make: () => {
      const t = TENSORS.map((x) => ({ ...x, dtype: 'BF16' as const, data: Uint16Array.from(x.data, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16) }));
      t[3]!.data[5] = 0x7fc0;
      return { files: hf({ model: writeSafetensors(t) }), allowNonfinite: true };
    },
    want: 'flagged',
  },
];

// ---- config.json and the sharded index ----------------------------------------------------------

const withConfig = (over: Record<string, unknown>) => hf({ config: { ...CONFIG, ...over } });
const index = (weightMap: unknown, shards: Record<string, Uint8Array> = { 'model-1.safetensors': MODEL }) =>
  files({ 'config.json': json(CONFIG), 'model.safetensors.index.json': json({ weight_map: weightMap }), ...shards });
const allIn = (shard: string) => Object.fromEntries(names.map((n) => [n, shard]));

const CONFIGS: Case[] = [
  ...[0, -1, 1e308, '1e-5', null].map((eps): Case => ({ name: `rms_norm_eps ${String(eps)}`, make: () => ({ files: withConfig({ rms_norm_eps: eps }) }), want: eps === null ? 'ok' : 'error', says: /rms_norm_eps/ })),
  ...[0, -10000].map((theta): Case => ({ name: `rope_theta ${theta}`, make: () => ({ files: withConfig({ rope_theta: theta }) }), want: 'error', says: /rope_theta/ })),
  ...['1e400', '-1e400', '1e308'].map((n): Case => ({
    name: `rms_norm_eps written as ${n}`,
    make: () => ({ files: files({ 'config.json': enc(JSON.stringify(CONFIG).replace('"rms_norm_eps":0.00001', `"rms_norm_eps":${n}`)), 'model.safetensors': MODEL, 'tokenizer.json': json(TOKENIZER) }) }),
    want: 'error',
    says: /rms_norm_eps/,
  })),
  ...[1e9, 2 ** 53, 2 ** 31, 3, 0, -1, 1.5].map((n): Case => ({ name: `num_hidden_layers ${n}`, make: () => ({ files: withConfig({ num_hidden_layers: n }) }), want: 'error', says: /num_hidden_layers|layers/ })),
  { name: 'fewer layers than the checkpoint', make: () => ({ files: withConfig({ num_hidden_layers: 1 }) }), want: 'error', says: /does not use: model\.layers\.1\./ },
  ...[1e12, 0, 2 ** 31].map((n): Case => ({ name: `vocab_size ${n}`, make: () => ({ files: withConfig({ vocab_size: n }) }), want: 'error', says: /vocab_size|vocabulary|shape/ })),
  ...[2 ** 31, 16, 7].map((n): Case => ({ name: `hidden_size ${n}`, make: () => ({ files: withConfig({ hidden_size: n }) }), want: 'error', says: /hidden_size|shape|multiple/ })),
  ...['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty'].flatMap((k): Case[] => [
    { name: `model_type ${k}`, make: () => ({ files: withConfig({ model_type: k }) }), want: 'error', says: /model_type .* is not a supported architecture/ },
    { name: `hidden_act ${k}`, make: () => ({ files: withConfig({ hidden_act: k }) }), want: 'error', says: /activation .* is not supported/ },
  ]),
  { name: 'bos_token_id 1e9 (past the vocabulary: left out)', make: () => ({ files: withConfig({ bos_token_id: 1e9 }) }), want: 'ok' },
  { name: 'bos_token_id -3', make: () => ({ files: withConfig({ bos_token_id: -3 }) }), want: 'error', says: /bos_token_id/ },
  { name: 'rope_scaling of an unknown type', make: () => ({ files: withConfig({ rope_scaling: { rope_type: 'yarn', factor: 4 } }) }), want: 'error', says: /rope type "yarn"/ },
  { name: 'rope_scaling factor 1e308', make: () => ({ files: withConfig({ rope_scaling: { rope_type: 'linear', factor: 1e308 } }) }), want: 'error', says: /factor/ },
  { name: 'config is an array', make: () => ({ files: hf({ config: [CONFIG] }) }), want: 'error', says: /config\.json: is not a JSON object/ },
  { name: 'sharded, valid', make: () => ({ files: index(allIn('model-1.safetensors')) }), want: 'ok' },
  ...[null, [], 'x', 3].map((wm): Case => ({ name: `weight_map ${JSON.stringify(wm)}`, make: () => ({ files: index(wm) }), want: 'error', says: /weight_map/ })),
  { name: 'index file is null', make: () => ({ files: files({ 'config.json': json(CONFIG), 'model.safetensors.index.json': enc('null'), 'model-1.safetensors': MODEL }) }), want: 'error', says: /model\.safetensors\.index\.json: has no "weight_map"/ },
  ...['../model-1.safetensors', '/etc/passwd', 'a/../../b.safetensors', 'C:\\x.safetensors'].map((shard): Case => ({ name: `shard name ${shard}`, make: () => ({ files: index({ ...allIn('model-1.safetensors'), [names[0]!]: shard }) }), want: 'error', says: /outside the model's folder: refused/ })),
  { name: 'shard maps to a number', make: () => ({ files: index({ ...allIn('model-1.safetensors'), [names[0]!]: 7 }) }), want: 'error', says: /not a shard file name/ },
  { name: 'index lists a missing tensor', make: () => ({ files: index({ ...allIn('model-1.safetensors'), 'model.extra.weight': 'model-1.safetensors' }) }), want: 'error', says: /in none of the shards/ },
  { name: 'a tensor in two shards', make: () => ({ files: index({ ...allIn('model-1.safetensors'), x: 'model-2.safetensors' }, { 'model-1.safetensors': MODEL, 'model-2.safetensors': MODEL }) }), want: 'error', says: /more than one shard/ },
];

// ---- tokenizer.json --------------------------------------------------------------------------

const withTokenizer = (f: (t: typeof TOKENIZER & Record<string, unknown>) => unknown) => hf({ tokenizer: f(structuredClone(TOKENIZER)) });
const TOKENIZERS: Case[] = [
  { name: 'vocab is an array', make: () => ({ files: withTokenizer((t) => ({ ...t, model: { ...t.model, vocab: WORDS } })) }), want: 'error', says: /tokenizer\.json: the WordLevel "vocab" must map tokens to ids/ },
  ...[2 ** 31, 1e9, -1, 0.5, 2 ** 24].map((id): Case => ({ name: `vocabulary id ${id}`, make: () => ({ files: withTokenizer((t) => ({ ...t, model: { ...t.model, vocab: { ...t.model.vocab, sea: id } } })) }), want: 'error', says: /token ids must be integers|vocabulary .* has/ })),
  ...[2 ** 31, 1e9].map((id): Case => ({ name: `added token id ${id}`, make: () => ({ files: withTokenizer((t) => ({ ...t, added_tokens: [{ ...t.added_tokens[0]!, id }] })) }), want: 'error', says: /added token "<s>" has id/ })),
  { name: 'more tokens than the model', make: () => ({ files: withTokenizer((t) => ({ ...t, model: { ...t.model, vocab: { ...t.model.vocab, extra: 20 } } })) }), want: 'error', says: /belongs to another model/ },
  { name: 'a __proto__ token', make: () => ({ files: hf({ tokenizer: JSON.parse(JSON.stringify(TOKENIZER).replace('"<unk>":0', '"__proto__":0,"<unk>":0')) as unknown }) }), want: ['ok', 'error'] },
  { name: 'no model', make: () => ({ files: withTokenizer(() => ({ version: '1.0' })) }), want: 'error', says: /not a tokenizer\.json/ },
  { name: 'added_tokens is an object', make: () => ({ files: withTokenizer((t) => ({ ...t, added_tokens: { a: 1 } })) }), want: 'error', says: /added_tokens/ },
  { name: 'not JSON', make: () => ({ files: files({ 'config.json': json(CONFIG), 'model.safetensors': MODEL, 'tokenizer.json': enc('{"model": ') }) }), want: 'error', says: /tokenizer\.json: not valid JSON/ },
];

// ---- PEFT adapters --------------------------------------------------------------------------

const LORA_CONFIG = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] };
function adapterFiles(over: Record<string, unknown> = {}, factor?: (name: string, d: Float32Array) => Float32Array): FileSet {
  const ts: T[] = [];
  for (let i = 0; i < L; i++) {
    for (const x of ['q', 'v']) {
      const m = `base_model.model.model.layers.${i}.self_attn.${x}_proj`;
      ts.push({ name: `${m}.lora_A.weight`, shape: [2, D], data: randn(2 * D) }, { name: `${m}.lora_B.weight`, shape: [D, 2], data: randn(2 * D) });
    }
  }
  return files({ 'adapter_config.json': json({ ...LORA_CONFIG, ...over }), 'adapter_model.safetensors': st(factor ? ts.map((t) => ({ ...t, data: factor(t.name, t.data) })) : ts) });
}
const ADAPTERS: Case[] = [
  { name: 'valid', make: () => ({ files: hf(), adapter: adapterFiles() }), want: 'ok' },
  { name: 'target_modules matching nothing', make: () => ({ files: hf(), adapter: adapterFiles({ target_modules: ['c_attn'] }) }), want: 'error', says: /target_modules \[c_attn\] .* does not name/ },
  ...[1e308, Infinity, -4, 0, 'x'].map((alpha): Case => ({ name: `lora_alpha ${String(alpha)}`, make: () => ({ files: hf(), adapter: adapterFiles({ lora_alpha: alpha }) }), want: 'error', says: /lora_alpha/ })),
  { name: 'lora_alpha 1e6 (the limit: finite)', make: () => ({ files: hf(), adapter: adapterFiles({ lora_alpha: 1e6 }) }), want: 'ok' },
  { name: 'catastrophic rank_pattern key', make: () => ({ files: hf(), adapter: adapterFiles({ rank_pattern: { '(.|.)*Z': 4, ['(a+)+'.repeat(20)]: 3 } }) }), want: 'ok' },
  { name: 'rank_pattern naming a module by suffix', make: () => ({ files: hf(), adapter: adapterFiles({ rank_pattern: { 'layers.1.self_attn.v_proj': 3 } }) }), want: 'error', says: /has rank 2 but .* says r = 3/ },
  ...['constructor', '__proto__', 'toString'].map((k): Case => ({ name: `rank_pattern key ${k}`, make: () => ({ files: hf(), adapter: adapterFiles({ rank_pattern: JSON.parse(`{"${k}": 4}`) as unknown }) }), want: 'ok' })),
  { name: 'alpha_pattern value 1e308', make: () => ({ files: hf(), adapter: adapterFiles({ alpha_pattern: { q_proj: 1e308 } }) }), want: 'error', says: /alpha_pattern\.q_proj/ },
  { name: 'r disagrees with the factors', make: () => ({ files: hf(), adapter: adapterFiles({ r: 4 }) }), want: 'error', says: /has rank 2 but .* says r = 4/ },
  { name: 'NaN in a LoRA factor', make: () => ({ files: hf(), adapter: adapterFiles({}, (n, d) => (n.includes('layers.1.self_attn.v_proj.lora_B') ? Object.assign(d.slice(), { 0: NaN }) : d)) }), want: 'error', says: /adapter_model\.safetensors: tensor ".*lora_B\.weight" holds 1 NaN/ },
  { name: 'NaN in a LoRA factor, allowed', make: () => ({ files: hf(), adapter: adapterFiles({}, (n, d) => (n.includes('lora_A') ? Object.assign(d.slice(), { 1: NaN }) : d)), allowNonfinite: true }), want: 'flagged' },
  { name: 'huge factors overflow', make: () => ({ files: hf(), adapter: adapterFiles({ lora_alpha: 1e6 }, (_n, d) => d.map(() => 1e30)) }), want: 'error', says: /overflows float32/ },
  { name: 'target_modules a number', make: () => ({ files: hf(), adapter: adapterFiles({ target_modules: 3 }) }), want: 'error', says: /target_modules/ },
];

// ---- GGUF --------------------------------------------------------------------------------------

const ARCH_KV: Record<string, GgufKv> = {
  'general.architecture': { type: 'string', value: 'llama' },
  'llama.embedding_length': { type: 'u32', value: D },
  'llama.block_count': { type: 'u32', value: L },
  'llama.attention.head_count': { type: 'u32', value: 2 },
  'llama.attention.head_count_kv': { type: 'u32', value: 2 },
  'llama.feed_forward_length': { type: 'u32', value: M },
  'llama.context_length': { type: 'u32', value: 32 },
  'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
  'tokenizer.ggml.model': { type: 'string', value: 'llama' },
  'tokenizer.ggml.tokens': { type: 'array', of: 'string', value: WORDS.map((w) => (w.startsWith('<') ? w : `\u2581${w}`)) },
  'tokenizer.ggml.scores': { type: 'array', of: 'f32', value: WORDS.map((_, i) => -i) },
  'tokenizer.ggml.token_type': { type: 'array', of: 'i32', value: WORDS.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : 1)) },
  'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
  'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
};
const GGUF_NAMES: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
};
const ggufName = (hfName: string) =>
  GGUF_NAMES[hfName] ??
  hfName
    .replace(/^model\.layers\.(\d+)\./, 'blk.$1.')
    .replace('input_layernorm', 'attn_norm')
    .replace('post_attention_layernorm', 'ffn_norm')
    .replace(/self_attn\.(q|k|v)_proj/, 'attn_$1')
    .replace('self_attn.o_proj', 'attn_output')
    .replace(/mlp\.(gate|up|down)_proj/, 'ffn_$1');
const GGUF_TENSORS: GgufTensorIn[] = TENSORS.map((t) => ({ name: ggufName(t.name), ne: [...t.shape].reverse(), type: 0, data: new Uint8Array(t.data.slice().buffer) }));
const gguf = (kv: Record<string, GgufKv> = ARCH_KV, ts: GgufTensorIn[] = GGUF_TENSORS, alignment = 32) => files({ 'model.gguf': writeGguf(kv, ts, alignment) });
const GGUF_BYTES = writeGguf(ARCH_KV, GGUF_TENSORS);

/** Rewrites the type or data offset of a tensor in a GGUF's tensor infos (found by its name). */
function patchInfo(bytes: Uint8Array, name: string, patch: { type?: number; offset?: number; name?: string }): Uint8Array {
  const out = bytes.slice();
  const needle = enc(name);
  let at = -1;
  for (let i = 0; i + needle.length <= out.length && at < 0; i++) {
    if (new DataView(out.buffer).getBigUint64(i, true) === BigInt(needle.length) && needle.every((b, j) => out[i + 8 + j] === b)) at = i + 8;
  }
  if (at < 0) throw new Error(`no tensor info for ${name}`);
  if (patch.name) out.set(enc(patch.name), at);
  const v = new DataView(out.buffer);
  const dims = v.getUint32(at + needle.length, true);
  const typeAt = at + needle.length + 4 + 8 * dims;
  if (patch.type !== undefined) v.setUint32(typeAt, patch.type, true);
  if (patch.offset !== undefined) v.setBigUint64(typeAt + 4, BigInt(patch.offset), true);
  return out;
}
const dataOffset = (bytes: Uint8Array, name: string) => {
  const needle = enc(name);
  for (let i = 0; i + needle.length <= bytes.length; i++) {
    if (new DataView(bytes.buffer).getBigUint64(i, true) === BigInt(needle.length) && needle.every((b, j) => bytes[i + 8 + j] === b)) {
      const dims = new DataView(bytes.buffer).getUint32(i + 8 + needle.length, true);
      return Number(new DataView(bytes.buffer).getBigUint64(i + 8 + needle.length + 4 + 8 * dims + 4, true));
    }
  }
  throw new Error(name);
};
const ggufFiles = (b: Uint8Array) => files({ 'model.gguf': b });

const GGUF: Case[] = [
  { name: 'valid', make: () => ({ files: gguf() }), want: 'ok' },
  ...Array.from({ length: 8 }, (_, i): Case => {
    const at = randInt(GGUF_BYTES.length - 1);
    return { name: `truncated at ${at} (${i})`, make: () => ({ files: ggufFiles(GGUF_BYTES.subarray(0, at)) }), want: 'error', says: /^model\.gguf: / };
  }),
  ...Array.from({ length: 10 }, (_, i): Case => {
    const at = randInt(GGUF_BYTES.length);
    return { name: `byte ${at} flipped (${i})`, make: () => ({ files: ggufFiles(Object.assign(GGUF_BYTES.slice(), { [at]: GGUF_BYTES[at]! ^ 0x5a })) }), want: ['error', 'ok'] };
  }),
  ...[1, 7, 0, 3, 12].map((a): Case => ({ name: `general.alignment ${a}`, make: () => ({ files: gguf({ ...ARCH_KV, 'general.alignment': { type: 'u32', value: a } }, GGUF_TENSORS, Math.max(a, 1)) }), want: 'error', says: /alignment/ })),
  { name: 'general.alignment 64 (benign)', make: () => ({ files: gguf({ ...ARCH_KV, 'general.alignment': { type: 'u32', value: 64 } }, GGUF_TENSORS, 64) }), want: 'ok' },
  { name: 'unaligned tensor', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.0.attn_q.weight', { offset: dataOffset(GGUF_BYTES, 'blk.0.attn_q.weight') + 4 })) }), want: 'error', says: /not a multiple of the file's alignment/ },
  { name: 'two tensors sharing offsets', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.0.attn_k.weight', { offset: dataOffset(GGUF_BYTES, 'blk.0.attn_q.weight') })) }), want: 'error', says: /overlap/ },
  { name: 'dtype lie F32 → F16', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.1.ffn_up.weight', { type: 1 })) }), want: 'error', says: /does not match the space it was written in/ },
  { name: 'dtype lie F32 → Q8_0', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.0.attn_v.weight', { type: 8 })) }), want: 'error', says: /block of 32|does not match the space/ },
  { name: 'dtype lie F32 → unknown type', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.0.attn_v.weight', { type: 77 })) }), want: 'error', says: /cannot read|cannot be parsed/ },
  { name: 'duplicate tensor name', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'blk.0.attn_k.weight', { name: 'blk.0.attn_q.weight' })) }), want: 'error', says: /two tensors named "blk\.0\.attn_q\.weight"/ },
  ...[1e9, 2 ** 32 - 1, 1, 0].map((n): Case => ({ name: `block_count ${n}`, make: () => ({ files: gguf({ ...ARCH_KV, 'llama.block_count': { type: 'u32', value: n } }) }), want: 'error', says: /block_count|lacks/ })),
  ...[1e9, 16].map((id): Case => ({ name: `bos_token_id ${id}`, make: () => ({ files: gguf({ ...ARCH_KV, 'tokenizer.ggml.bos_token_id': { type: 'u32', value: id } }) }), want: 'error', says: /tokenizer\.ggml\.bos_token_id is \d+, not a token id of its 16-token vocabulary/ })),
  { name: 'architecture "constructor"', make: () => ({ files: gguf({ ...ARCH_KV, 'general.architecture': { type: 'string', value: 'constructor' } }) }), want: 'error', says: /architecture "constructor" is not supported/ },
  { name: 'a tensor named "constructor"', make: () => ({ files: ggufFiles(patchInfo(GGUF_BYTES, 'token_embd.weight', { name: 'constructor\0\0\0\0\0\0' })) }), want: 'error', says: /no Hugging Face equivalent|no token_embd\.weight tensor/ },
  { name: 'scores of the wrong length', make: () => ({ files: gguf({ ...ARCH_KV, 'tokenizer.ggml.scores': { type: 'array', of: 'f32', value: [1, 2] } }) }), want: 'error', says: /tokenizer\.ggml\.scores has 2 entries for 16 tokens/ },
  {
    name: 'NaN weight',
    make: () => ({ files: gguf(ARCH_KV, GGUF_TENSORS.map((t) => (t.name === 'blk.1.ffn_down.weight' ? { ...t, data: new Uint8Array(Object.assign(new Float32Array(t.data.slice().buffer), { 7: NaN }).buffer) } : t))) }),
    want: 'error',
    says: /holds 1 NaN/,
  },
  {
    name: 'NaN in an F16 tensor, allowed',
    make: () => {
      const f16 = (t: GgufTensorIn) => {
        const bits = new Uint16Array(t.data.length / 4).fill(0x2e66);
        bits[5] = 0x7e00;
        return { ...t, type: 1, data: new Uint8Array(bits.buffer) };
      };
      return { files: gguf(ARCH_KV, GGUF_TENSORS.map((t) => (t.name === 'blk.0.ffn_gate.weight' ? f16(t) : t))), allowNonfinite: true };
    },
    want: 'flagged',
  },
];

// ---- llama2.c ----------------------------------------------------------------------------------

const SEQ = 16;
function llama2c(ints: number[] = [D, M, L, 2, 2, V, SEQ], floats?: number, value?: (i: number) => number): Uint8Array {
  const [dim, hidden, layers, heads, , vocab, seq] = ints as [number, number, number, number, number, number, number];
  const kv = dim;
  const count = floats ?? vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * dim * hidden) + dim + seq * (dim / heads);
  const out = new Uint8Array(28 + 4 * count);
  const v = new DataView(out.buffer);
  ints.forEach((x, i) => v.setInt32(4 * i, x, true));
  for (let i = 0; i < count; i++) v.setFloat32(28 + 4 * i, value ? value(i) : (rand() * 2 - 1) * 0.3, true);
  return out;
}
const LLAMA2C = llama2c();
const bin = (b: Uint8Array) => files({ 'model.bin': b });
const FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];

const LLAMA2C_CASES: Case[] = [
  { name: 'valid', make: () => ({ files: bin(LLAMA2C) }), want: 'ok' },
  ...Array.from({ length: 6 }, (_, i): Case => {
    const at = 28 + randInt(LLAMA2C.length - 29);
    return { name: `truncated at ${at} (${i})`, make: () => ({ files: bin(LLAMA2C.subarray(0, at)) }), want: 'error', says: /^model\.bin: truncated: a version 0 llama2\.c checkpoint .* needs \d+ bytes/ };
  }),
  { name: 'shorter than a header', make: () => ({ files: bin(LLAMA2C.subarray(0, 20)) }), want: 'error', says: /too short/ },
  { name: 'trailing bytes', make: () => ({ files: bin(new Uint8Array([...LLAMA2C, 1, 2, 3, 4])) }), want: 'error', says: /implies \d+ bytes, the file has/ },
  ...FIELDS.flatMap((field, f): Case[] =>
    [0, -7, 2 ** 30].map((x) => ({
      name: `${field} ${x}`,
      make: () => {
        const b = LLAMA2C.slice();
        new DataView(b.buffer).setInt32(4 * f, x, true);
        return { files: bin(b) };
      },
      want: field === 'vocab_size' && x === -7 ? 'error' : 'error',
      says: new RegExp(`^model\\.bin: (not a llama2\\.c checkpoint: in its header .*${field} ${x} is not in|truncated|not a llama2\\.c checkpoint, or a different export|not a llama2\\.c checkpoint: .*multiple|not a llama2\\.c checkpoint: .*odd)`),
    })),
  ),
  { name: 'bad magic version', make: () => ({ files: bin(new Uint8Array([0x32, 0x34, 0x6b, 0x61, 9, 0, 0, 0, ...LLAMA2C.subarray(8)])) }), want: 'error', says: /version 9 is not supported/ },
  { name: 'a PyTorch zip', make: () => ({ files: bin(new Uint8Array([0x50, 0x4b, 3, 4, ...LLAMA2C.subarray(4, 200)])) }), want: 'error', says: /PyTorch checkpoint/ },
  { name: 'NaN weight', make: () => ({ files: bin(llama2c(undefined, undefined, (i) => (i === 900 ? NaN : 0.1))) }), want: 'error', says: /^model\.bin: tensor ".*" holds 1 NaN values/ },
  { name: 'NaN weight, allowed', make: () => ({ files: bin(llama2c(undefined, undefined, (i) => (i === 900 ? NaN : 0.1))), allowNonfinite: true }), want: 'flagged' },
];

// ---- symbolic links and sparse files (on disk) -------------------------------------------------

let tmp = '';
const onDisk = async (dir: string, entries: Record<string, Uint8Array>) => {
  await mkdir(dir, { recursive: true });
  for (const [n, b] of Object.entries(entries)) await writeFile(join(dir, n), b);
  return dir;
};
const DISK: Case[] = [
  {
    name: 'config.json links outside the folder',
    make: async () => {
      const outside = await onDisk(join(tmp, 'elsewhere'), { 'config.json': json(CONFIG) });
      const dir = await onDisk(join(tmp, 'evil'), { 'model.safetensors': MODEL });
      await symlink(join(outside, 'config.json'), join(dir, 'config.json'));
      return { files: await pathFileSet(dir).catch(() => hf({ config: 'refused' })) };
    },
    want: 'error',
  },
  {
    name: 'a link inside the folder (benign)',
    make: async () => {
      const dir = await onDisk(join(tmp, 'inner'), { 'config.json': json(CONFIG), 'weights.safetensors': MODEL });
      await symlink('weights.safetensors', join(dir, 'model.safetensors'));
      await rm(join(dir, 'weights.safetensors'), { force: true }).then(() => writeFile(join(dir, 'weights.safetensors'), MODEL));
      const fs = await pathFileSet(dir);
      return { files: new Map([...fs].filter(([n]) => n !== 'weights.safetensors')) };
    },
    want: 'ok',
  },
  {
    name: 'a sparse llama2.c file whose header matches its 27 GB',
    make: async () => {
      const header = new Uint8Array(28);
      const ints = [4096, 11008, 32, 32, 32, 32000, 2048];
      ints.forEach((x, i) => new DataView(header.buffer).setInt32(4 * i, x, true));
      const dim = 4096;
      const count = 32000 * dim + 32 * (2 * dim + 4 * dim * dim + 3 * dim * 11008) + dim + 2048 * (dim / 32);
      const path = join(await onDisk(join(tmp, 'sparse'), { 'model.bin': header }), 'model.bin');
      await truncate(path, 28 + 4 * count);
      return { files: await pathFileSet(join(tmp, 'sparse')) };
    },
    want: 'error',
    says: /needs [\d.]+ GB for its weights, budget/,
  },
];

const CLASSES: Record<string, Case[]> = { safetensors: SAFETENSORS, 'config + index': CONFIGS, tokenizer: TOKENIZERS, 'PEFT adapter': ADAPTERS, GGUF, 'llama2.c': LLAMA2C_CASES, 'links + sparse files': DISK };

describe(`hostile inputs (seed ${SEED})`, () => {
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
    const rows = [...counts].map(([cls, c]) => `${cls.padEnd(22)} ${String(c.error + c.flagged + c.ok).padStart(4)} cases: ${c.error} clean errors, ${c.flagged} flagged, ${c.ok} ran`);
    const total = [...counts.values()].reduce((a, c) => a + c.error + c.flagged + c.ok, 0);
    console.log(`hostile inputs, seed ${SEED}:\n${rows.join('\n')}\n${'total'.padEnd(22)} ${String(total).padStart(4)} cases`);
  });

  for (const [cls, cases] of Object.entries(CLASSES)) {
    it(`${cls}: ${cases.length} cases end in a clean error, a flag or success`, async () => {
      if (!tmp) tmp = await mkdtemp(join(tmpdir(), 'neurodiff-fuzz-'));
      for (const c of cases) await check(cls, c);
    });
  }
});
