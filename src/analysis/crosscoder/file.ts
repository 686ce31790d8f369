// Crosscoder files: safetensors with the tensor names and layouts of dictionary_learning's
// BatchTopKCrossCoder / CrossCoder (science-of-finetuning/crosscoder_learning and diffing-toolkit),
// so that checkpoints trained there load here and files written here keep those names:
//
//   encoder.weight  [2, d, D]   W_enc^m (m = 0 base, 1 fine-tune); stored here as [2, D, d]
//   encoder.bias    [D]
//   decoder.weight  [2, D, d]   d_j^m
//   decoder.bias    [2, d]
//   k               []  int     BatchTopK k; absent in L1 (ReLU) CrossCoders
//   threshold       []  float   inference threshold θ (negative: none); shape [2] (DECOUPLED) is refused
//   code_normalization_id [] int  1 CROSSCODER, 2 SAE, 4 NONE; 3 MIXED and 5 DECOUPLED are refused
//   activation_mean [2, d], activation_std [2, d], activation_global_scale [2], target_rms []
//                                the reference's input normalisation x' = (x − mean)·global_scale
//                                (keep_relative_variance); NaN mean means none
//
// Our settings go to __metadata__ (format "neurodiff-crosscoder"). We write activation_std so that
// the reference recomputes our global scale (target_rms / sqrt(Σ std²)); its per-dimension values
// are not the data's. Writing k and code_normalization_id as int32 (the reference uses int32 and
// int64) relies on load_state_dict converting dtypes; this was not tried against PyTorch here.
import { readEntryF32, readSafetensorsHeader, writeSafetensors, type SafetensorsEntry } from '../../io/safetensors.ts';
import { FormatError, type ByteSource } from '../../io/source.ts';
import type { Activation, CodeNormalization, CrosscoderModel, Normalization } from './model.ts';

const CODE_NORM_IDS: Record<CodeNormalization, number> = { crosscoder: 1, sae: 2, none: 4 };
const FORMAT = 'neurodiff-crosscoder';

export function saveCrosscoder(model: CrosscoderModel): Uint8Array {
  const { d, D, encW, encB, decW, decB } = model.params;
  const encRef = new Float32Array(2 * d * D);
  for (let m = 0; m < 2; m++) {
    for (let j = 0; j < D; j++) for (let i = 0; i < d; i++) encRef[(m * d + i) * D + j] = encW[(m * D + j) * d + i]!;
  }
  const norm = model.normalization;
  const identity = norm.scale[0] === 1 && norm.scale[1] === 1 && norm.mean.every((mu) => mu.every((x) => x === 0));
  const mean = new Float32Array(2 * d);
  const std = new Float32Array(2 * d);
  for (const m of [0, 1] as const) {
    mean.set(norm.mean[m], m * d);
    std.fill(norm.targetRms / norm.scale[m] / Math.sqrt(d), m * d, (m + 1) * d);
  }
  if (identity) {
    mean.fill(NaN);
    std.fill(NaN);
  }
  const tensors: Array<{ name: string; shape: number[]; data: Float32Array | Int32Array }> = [
    { name: 'encoder.weight', shape: [2, d, D], data: encRef },
    { name: 'encoder.bias', shape: [D], data: Float32Array.from(encB) },
    { name: 'decoder.weight', shape: [2, D, d], data: Float32Array.from(decW) },
    { name: 'decoder.bias', shape: [2, d], data: Float32Array.from(decB) },
    { name: 'code_normalization_id', shape: [], data: new Int32Array([CODE_NORM_IDS[model.codeNormalization]]) },
    { name: 'activation_mean', shape: [2, d], data: mean },
    { name: 'activation_std', shape: [2, d], data: std },
    { name: 'activation_global_scale', shape: [2], data: identity ? new Float32Array([1, 1]) : new Float32Array(norm.scale) },
    { name: 'target_rms', shape: [], data: new Float32Array([norm.targetRms]) },
  ];
  if (model.activation === 'batchtopk') {
    tensors.push({ name: 'k', shape: [], data: new Int32Array([model.k]) });
    tensors.push({ name: 'threshold', shape: [], data: new Float32Array([model.threshold]) });
  }
  const metadata: Record<string, string> = {
    ...model.info,
    format: FORMAT,
    version: '1',
    activation: model.activation,
    code_normalization: model.codeNormalization,
    d: String(d),
    D: String(D),
  };
  return writeSafetensors(tensors, metadata);
}

/** Reads a crosscoder written by saveCrosscoder or by dictionary_learning (see the table above). */
export async function loadCrosscoder(source: ByteSource, signal?: AbortSignal): Promise<CrosscoderModel> {
  const file = await readSafetensorsHeader(source);
  const name = source.name;
  const need = (key: string): SafetensorsEntry => {
    const e = file.entries.get(key);
    if (!e) throw new FormatError(name, `no tensor "${key}": not a crosscoder (tensors: ${[...file.entries.keys()].slice(0, 12).join(', ') || 'none'})`);
    return e;
  };
  const shapeIs = (e: SafetensorsEntry, shape: number[]) => e.shape.length === shape.length && e.shape.every((s, i) => s === shape[i]);
  const enc = need('encoder.weight');
  if (enc.shape.length !== 3) throw new FormatError(name, `encoder.weight has shape [${enc.shape.join(', ')}], expected [2, d, D]`);
  const [L, d, D] = enc.shape as [number, number, number];
  if (L !== 2) throw new FormatError(name, `encoder.weight has ${L} layers/models; a model-diffing crosscoder pairs exactly 2 (base, fine-tune)`);
  const dec = need('decoder.weight');
  if (!shapeIs(dec, [2, D, d])) throw new FormatError(name, `decoder.weight has shape [${dec.shape.join(', ')}], expected [2, ${D}, ${d}] to match encoder.weight`);
  const encBias = need('encoder.bias');
  if (!shapeIs(encBias, [D])) throw new FormatError(name, `encoder.bias has shape [${encBias.shape.join(', ')}], expected [${D}]`);
  const decBias = need('decoder.bias');
  if (!shapeIs(decBias, [2, d])) throw new FormatError(name, `decoder.bias has shape [${decBias.shape.join(', ')}], expected [2, ${d}]`);

  const encRef = await readEntryF32(enc, signal);
  const encW = new Float32Array(2 * D * d);
  for (let m = 0; m < 2; m++) {
    for (let i = 0; i < d; i++) for (let j = 0; j < D; j++) encW[(m * D + j) * d + i] = encRef[(m * d + i) * D + j]!;
  }
  const params = { d, D, encW, encB: await readEntryF32(encBias, signal), decW: await readEntryF32(dec, signal), decB: await readEntryF32(decBias, signal) };

  const meta = file.metadata;
  const kEntry = file.entries.get('k');
  let k = 0;
  let activation: Activation = 'relu';
  if (kEntry) {
    k = await readIntScalar(kEntry, name, signal);
    activation = 'batchtopk';
  } else if (meta.activation === 'batchtopk') {
    k = Number(meta.k);
    activation = 'batchtopk';
  }
  if (activation === 'batchtopk' && !(Number.isInteger(k) && k > 0)) throw new FormatError(name, `BatchTopK k must be a positive integer, found ${k}`);

  let threshold = -1;
  const th = file.entries.get('threshold');
  if (th) {
    if (th.shape.reduce((a, b) => a * b, 1) !== 1) {
      throw new FormatError(name, `threshold has shape [${th.shape.join(', ')}]: per-model thresholds (DECOUPLED code normalisation) are not supported`);
    }
    threshold = (await readEntryF32(th, signal))[0]!;
  }

  let codeNormalization: CodeNormalization = 'crosscoder';
  const cn = file.entries.get('code_normalization_id');
  if (cn) {
    const id = await readIntScalar(cn, name, signal);
    const found = (Object.entries(CODE_NORM_IDS) as Array<[CodeNormalization, number]>).find(([, v]) => v === id);
    if (!found) throw new FormatError(name, `code_normalization_id ${id} (${id === 3 ? 'MIXED' : id === 5 ? 'DECOUPLED' : 'unknown'}) is not supported; supported: 1 CROSSCODER, 2 SAE, 4 NONE`);
    codeNormalization = found[0];
  } else if (meta.code_normalization === 'sae' || meta.code_normalization === 'none') {
    codeNormalization = meta.code_normalization;
  }

  const normalization = await readNormalization(file.entries, d, name, signal);
  const info: Record<string, string> = {};
  for (const [key, v] of Object.entries(meta)) if (!['format', 'version', 'activation', 'code_normalization', 'd', 'D', 'k'].includes(key)) info[key] = v;
  return { params, activation, codeNormalization, k, threshold, normalization, info };
}

async function readNormalization(entries: ReadonlyMap<string, SafetensorsEntry>, d: number, name: string, signal?: AbortSignal): Promise<Normalization> {
  const meanE = entries.get('activation_mean');
  const identity: Normalization = { mean: [new Float32Array(d), new Float32Array(d)], scale: [1, 1], targetRms: 1 };
  if (!meanE) return identity;
  if (meanE.shape.length !== 2 || meanE.shape[0] !== 2 || meanE.shape[1] !== d) {
    throw new FormatError(name, `activation_mean has shape [${meanE.shape.join(', ')}], expected [2, ${d}]`);
  }
  const mean = await readEntryF32(meanE, signal);
  if (mean.some((x) => Number.isNaN(x))) return identity;
  const rmsE = entries.get('target_rms');
  const targetRms = rmsE ? (await readEntryF32(rmsE, signal))[0]! : 1;
  const scaleE = entries.get('activation_global_scale');
  let scale: [number, number];
  if (scaleE) {
    if (scaleE.shape.length !== 1 || scaleE.shape[0] !== 2) throw new FormatError(name, `activation_global_scale has shape [${scaleE.shape.join(', ')}], expected [2]`);
    const s = await readEntryF32(scaleE, signal);
    scale = [s[0]!, s[1]!];
  } else {
    const stdE = entries.get('activation_std');
    if (!stdE) throw new FormatError(name, 'has activation_mean but neither activation_global_scale nor activation_std');
    const std = await readEntryF32(stdE, signal);
    const total = (m: number) => {
      let s = 0;
      for (let i = 0; i < d; i++) s += std[m * d + i]! ** 2;
      return targetRms / Math.sqrt(s + 1e-8);
    };
    scale = [total(0), total(1)];
  }
  if (!scale.every((s) => Number.isFinite(s) && s > 0)) throw new FormatError(name, `activation_global_scale must be positive and finite, found [${scale.join(', ')}]`);
  return { mean: [mean.slice(0, d), mean.slice(d, 2 * d)], scale, targetRms };
}

async function readIntScalar(e: SafetensorsEntry, name: string, signal?: AbortSignal): Promise<number> {
  if (e.shape.reduce((a, b) => a * b, 1) !== 1) throw new FormatError(name, `${e.name} should be a scalar, has shape [${e.shape.join(', ')}]`);
  const bytes = await e.source.read(e.offset, e.byteLength, signal);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (e.dtype) {
    case 'I64':
      return Number(v.getBigInt64(0, true));
    case 'I32':
      return v.getInt32(0, true);
    case 'I16':
      return v.getInt16(0, true);
    case 'I8':
      return v.getInt8(0);
    case 'U8':
      return v.getUint8(0);
    default:
      throw new FormatError(name, `${e.name} is ${e.dtype}, expected an integer`);
  }
}
