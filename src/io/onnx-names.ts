// Hugging Face names and layouts for the initializers of an exported ONNX graph. Exporters rename
// weights (PyTorch 2's `val_88`, the TorchScript exporter's `onnx::MatMul_935`) and store linear
// weights transposed; the graph still says what each one is. Every initializer is followed through
// the ops that only move or convert it (Transpose, Cast, Identity, DequantizeLinear) to the op that
// uses it (MatMul's B is Wᵀ, Gemm's B is W when transB is set, Gather reads an embedding, a norm
// multiplies by its weight), and the module that op belongs to is read from, in order:
//   1. the node's `pkg.torch.onnx.name_scopes` metadata (PyTorch 2's exporter), whose second-to-last
//      entry is the module path ("model.layers.0.self_attn.q_proj");
//   2. the node name as the TorchScript exporter and Optimum write it ("/model/layers.0/self_attn/q_proj/MatMul");
//   3. for nodes with neither (onnxruntime's quantizer drops both), the position: the n-th linear
//      op inside a decoder layer (the layer read from the nearest named node before it) is the
//      n-th linear module of that architecture's block, in the order Hugging Face calls them.
// One initializer used under two names (a tied embedding and head) keeps the embedding's name; the
// other is reported as an alias.
import { readInitializerF32, readOnnxModel, type OnnxInitializer, type OnnxNode } from './onnx.ts';
import { FormatError, type ByteSource, type FileSet } from './source.ts';
import type { StoredTensor, WeightStore } from './store.ts';

/** How an integer initializer becomes float weights. */
export type OnnxQuantization =
  /** (q − zero point) · scale, per tensor or per slice along `axis` of the stored tensor. */
  | { readonly kind: 'linear'; readonly scale: string; readonly zeroPoint?: string; readonly axis: number }
  /** onnxruntime's MatMulNBits: B packed [N, blocks, blockSize·bits/8], scales per (row, block). */
  | { readonly kind: 'nbits'; readonly scales: string; readonly zeroPoints?: string; readonly bits: number; readonly blockSize: number; readonly k: number; readonly n: number };

export type NameSource = 'kept' | 'name_scopes' | 'node name' | 'position';

export interface RecoveredTensor {
  /** Hugging Face name ("model.layers.0.self_attn.q_proj.weight"). */
  readonly name: string;
  /** The initializer holding it. */
  readonly onnx: string;
  /** Shape in Hugging Face layout ([out, in] for a linear weight). */
  readonly shape: readonly number[];
  /** Stored [in, out]: transposed on reading. */
  readonly transposed: boolean;
  readonly how: NameSource;
  /** Other names the same initializer serves (a tied head). */
  readonly aliases: readonly string[];
  readonly quantization?: OnnxQuantization;
}

export interface OnnxNaming {
  readonly tensors: readonly RecoveredTensor[];
  /** Weight-like initializers (float or quantized matrices) that no use named: kept under their ONNX names. */
  readonly unrecovered: readonly { readonly name: string; readonly shape: readonly number[]; readonly reason: string }[];
  /** Initializers that are constants of the computation (shapes, masks, rotary tables, quantization parameters). */
  readonly constants: number;
}

/** Linear modules of one decoder block, in the order a Hugging Face forward pass calls them. */
const LINEAR_ORDER: Readonly<Record<string, readonly string[]>> = {
  llama: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'],
  gpt2: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'],
  phi3: ['self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'],
};
const LINEAR_FAMILY: Readonly<Record<string, string>> = { llama: 'llama', mistral: 'llama', qwen2: 'llama', qwen3: 'llama', gemma2: 'llama', gemma3: 'llama', gemma3_text: 'llama', gpt2: 'gpt2', phi3: 'phi3' };

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const INT_DTYPES = new Set(['I8', 'U8']);

type UseKind = 'linear' | 'embedding' | 'norm' | 'bias';

interface Use {
  readonly kind: UseKind;
  readonly node: OnnxNode;
  readonly nodeIndex: number;
  /** Stored as [in, out] relative to Hugging Face's [out, in]. */
  readonly transposed: boolean;
  readonly quantization?: OnnxQuantization;
  /** Hugging Face shape, when the op changes it (MatMulNBits unpacks [N, blocks, bytes] to [N, K]). */
  readonly shape?: readonly number[];
}

/** The module path of a node: from PyTorch 2's name scopes, or from a "/model/layers.0/…/Op" node name. */
export function modulePath(node: OnnxNode): { path: string; how: NameSource } | undefined {
  const scopes = node.metadata.get('pkg.torch.onnx.name_scopes');
  if (scopes !== undefined) {
    const parts = parsePythonStrings(scopes);
    // The last entry is the op itself ("linear"); the one before it is the innermost module.
    const path = parts.length >= 2 ? parts[parts.length - 2]! : '';
    return path ? { path, how: 'name_scopes' } : undefined;
  }
  if (node.name.startsWith('/')) {
    const parts = node.name.split('/').slice(1, -1);
    return parts.length > 0 ? { path: parts.join('.'), how: 'node name' } : undefined;
  }
  return undefined;
}

/** The strings of a Python list literal as PyTorch writes it: "['', 'model', 'model.layers.0']". */
function parsePythonStrings(text: string): string[] {
  const out: string[] = [];
  const re = /'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2] ?? '');
  return out;
}

const intAttr = (node: OnnxNode, name: string, fallback: number): number => {
  const a = node.attributes.get(name);
  return a?.kind === 'int' ? a.value : fallback;
};

export function recoverHfNames(nodes: readonly OnnxNode[], inits: ReadonlyMap<string, OnnxInitializer>, config: Record<string, unknown> = {}): OnnxNaming {
  const consumers = new Map<string, { node: OnnxNode; index: number; at: number }[]>();
  nodes.forEach((node, at) =>
    node.inputs.forEach((value, index) => {
      if (!value) return;
      let list = consumers.get(value);
      if (!list) consumers.set(value, (list = []));
      list.push({ node, index, at });
    }),
  );
  const producer = new Map<string, OnnxNode>();
  for (const node of nodes) for (const o of node.outputs) producer.set(o, node);
  const isInit = (name: string | undefined): name is string => name !== undefined && name !== '' && inits.has(name);
  const quantParams = new Set<string>();
  const linear = (q: OnnxQuantization | undefined): OnnxQuantization | undefined => {
    if (q?.kind === 'linear') {
      quantParams.add(q.scale);
      if (q.zeroPoint) quantParams.add(q.zeroPoint);
    } else if (q?.kind === 'nbits') {
      quantParams.add(q.scales);
      if (q.zeroPoints) quantParams.add(q.zeroPoints);
    }
    return q;
  };
  /** A DequantizeLinear that reads `value` (a gathered or transposed quantized tensor), per tensor. */
  const dequantAfter = (value: string | undefined): OnnxQuantization | undefined => {
    for (const c of consumers.get(value ?? '') ?? []) {
      const n = c.node;
      if (n.opType === 'DequantizeLinear' && c.index === 0 && isInit(n.inputs[1])) {
        return { kind: 'linear', scale: n.inputs[1], ...(isInit(n.inputs[2]) ? { zeroPoint: n.inputs[2] } : {}), axis: intAttr(n, 'axis', 1) };
      }
    }
    return undefined;
  };
  /**
   * The weight scale of a MatMulInteger: its int32 output (cast to float) is multiplied by
   * activation scale × weight scale, a Mul of the DynamicQuantizeLinear scale and an initializer.
   */
  const matMulIntegerScale = (node: OnnxNode, weight: string): string | undefined => {
    let value = node.outputs[0];
    for (let hop = 0; hop < 3 && value; hop++) {
      for (const c of consumers.get(value) ?? []) {
        if (c.node.opType !== 'Mul') continue;
        const other = c.node.inputs[1 - c.index];
        if (isInit(other)) return other;
        const scales = producer.get(other ?? '');
        if (scales?.opType === 'Mul') {
          const w = scales.inputs.find((i) => isInit(i));
          if (w) return w;
        }
      }
      const cast = (consumers.get(value) ?? []).find((c) => c.node.opType === 'Cast');
      value = cast?.node.outputs[0];
    }
    const conventional = weight.replace(/_quantized$/, '_scale');
    return conventional !== weight && inits.has(conventional) ? conventional : undefined;
  };

  const usesOf = (init: OnnxInitializer): Use[] => {
    const uses: Use[] = [];
    const seen = new Set<string>();
    const rank1 = init.shape.length === 1 && (init.shape[0] ?? 0) > 1;
    const walk = (value: string, transposed: boolean, quantization: OnnxQuantization | undefined, depth: number): void => {
      if (seen.has(value) || depth > 8) return;
      seen.add(value);
      for (const { node, index, at } of consumers.get(value) ?? []) {
        const out = node.outputs[0];
        const record = (kind: UseKind, t: boolean, q: OnnxQuantization | undefined, shape?: readonly number[]) =>
          uses.push({ kind, node, nodeIndex: at, transposed: t, ...(q ? { quantization: q } : {}), ...(shape ? { shape } : {}) });
        switch (node.opType) {
          case 'Cast':
          case 'Identity':
            if (out) walk(out, transposed, quantization, depth + 1);
            break;
          case 'Transpose': {
            const perm = node.attributes.get('perm');
            const swaps = perm === undefined || (perm.kind === 'ints' && perm.value.length === 2 && perm.value[0] === 1);
            if (out && swaps && init.shape.length === 2) walk(out, !transposed, quantization, depth + 1);
            break;
          }
          case 'DequantizeLinear':
            if (index === 0 && out && isInit(node.inputs[1])) {
              const q = linear({ kind: 'linear', scale: node.inputs[1], ...(isInit(node.inputs[2]) ? { zeroPoint: node.inputs[2] } : {}), axis: intAttr(node, 'axis', 1) });
              walk(out, transposed, q, depth + 1);
            }
            break;
          case 'Gather':
            if (index === 0 && node.inputs[1] && !isInit(node.inputs[1])) record('embedding', transposed, quantization ?? linear(dequantAfter(out)));
            break;
          case 'MatMul':
            if (index === 1) record('linear', !transposed, quantization);
            break;
          case 'Gemm':
            if (index === 1) record('linear', intAttr(node, 'transB', 0) ? transposed : !transposed, quantization);
            else if (index === 2 && rank1) record('bias', false, quantization);
            break;
          case 'MatMulInteger':
            if (index === 1) {
              const scale = matMulIntegerScale(node, value);
              const zp = node.inputs[3];
              if (scale) record('linear', !transposed, linear({ kind: 'linear', scale, ...(isInit(zp) ? { zeroPoint: zp } : {}), axis: 1 }));
            }
            break;
          case 'QLinearMatMul':
            if (index === 3 && isInit(node.inputs[4])) {
              const zp = node.inputs[5];
              record('linear', !transposed, linear({ kind: 'linear', scale: node.inputs[4], ...(isInit(zp) ? { zeroPoint: zp } : {}), axis: 1 }));
            }
            break;
          case 'MatMulNBits':
            if (index === 1 && isInit(node.inputs[2])) {
              const k = intAttr(node, 'K', 0);
              const n = intAttr(node, 'N', 0);
              const zp = node.inputs[3];
              const q = linear({ kind: 'nbits', scales: node.inputs[2], ...(isInit(zp) ? { zeroPoints: zp } : {}), bits: intAttr(node, 'bits', 4), blockSize: intAttr(node, 'block_size', 32), k, n });
              record('linear', false, q, [n, k]);
            }
            break;
          case 'Mul':
            if (rank1) record('norm', false, quantization);
            break;
          case 'Add':
            if (rank1) record('bias', false, quantization);
            break;
          case 'LayerNormalization':
          case 'SimplifiedLayerNormalization':
          case 'SkipLayerNormalization':
          case 'SkipSimplifiedLayerNormalization': {
            const skip = node.opType.startsWith('Skip') ? 1 : 0;
            if (index === 1 + skip) record('norm', false, quantization);
            else if (index === 2 + skip) record('bias', false, quantization);
            break;
          }
          default:
            break;
        }
      }
    };
    walk(init.name, false, undefined, 0);
    return uses;
  };

  // Position fallback: the module a nameless node's input comes from (following nameless producers
  // up), which puts it in a decoder layer, or after the final norm (the head).
  const family = LINEAR_FAMILY[typeof config.model_type === 'string' && Object.hasOwn(LINEAR_FAMILY, config.model_type) ? config.model_type : ''];
  const order = family ? LINEAR_ORDER[family] : undefined;
  const inputModule = (node: OnnxNode): string | undefined => {
    let value = node.inputs[0];
    for (let hop = 0; hop < 8 && value; hop++) {
      const p = producer.get(value);
      if (!p) return undefined;
      const m = modulePath(p);
      if (m) return m.path;
      value = p.inputs[0];
    }
    return undefined;
  };
  const positional = new Map<OnnxNode, string>();
  if (order) {
    const seenInLayer = new Map<string, number>();
    const linearOps = new Set(['MatMul', 'Gemm', 'MatMulInteger', 'QLinearMatMul', 'MatMulNBits']);
    const fromInit = (v: string | undefined): boolean => {
      const p = producer.get(v ?? '');
      return v !== undefined && (inits.has(v) || ((p?.opType === 'Transpose' || p?.opType === 'DequantizeLinear') && inits.has(p.inputs[0] ?? '')));
    };
    for (const node of nodes) {
      // Only ops with a weight initializer count (attention's Q·Kᵀ and A·V have none).
      if (!linearOps.has(node.opType) || modulePath(node) || !fromInit(node.opType === 'QLinearMatMul' ? node.inputs[3] : node.inputs[1])) continue;
      const from = inputModule(node);
      if (from === undefined) continue;
      const layer = /^(.*?\b(?:layers|h|blocks)\.\d+)(?:\.|$)/.exec(from)?.[1];
      if (layer) {
        const n = seenInLayer.get(layer) ?? 0;
        seenInLayer.set(layer, n + 1);
        const module = order[n];
        if (module) positional.set(node, `${layer}.${module}`);
      } else if (/(^|\.)(norm|ln_f|final_layernorm)$/.test(from)) positional.set(node, 'lm_head');
    }
  }

  const tensors: RecoveredTensor[] = [];
  const unrecovered: { name: string; shape: readonly number[]; reason: string }[] = [];
  let constants = 0;
  const taken = new Set<string>();
  const hfLike = (name: string) => /^[A-Za-z_][\w.]*\.(weight|bias)$/.test(name);
  for (const init of inits.values()) {
    const weightLike = (FLOAT_DTYPES.has(init.dtype) || INT_DTYPES.has(init.dtype)) && init.shape.filter((d) => d > 1).length >= 2;
    if (quantParams.has(init.name)) {
      constants++;
      continue;
    }
    const uses = usesOf(init);
    const named: { name: string; use: Use; how: NameSource }[] = [];
    for (const use of uses) {
      const found = modulePath(use.node);
      const path = found?.path ?? (use.kind === 'linear' ? positional.get(use.node) : undefined);
      if (!path) continue;
      const how: NameSource = found?.how ?? 'position';
      named.push({ name: `${path}.${use.kind === 'bias' ? 'bias' : 'weight'}`, use, how });
    }
    const distinct = [...new Set(named.map((n) => n.name))];
    if (distinct.length === 0) {
      if (hfLike(init.name) && !taken.has(init.name)) {
        taken.add(init.name);
        tensors.push({ name: init.name, onnx: init.name, shape: init.shape, transposed: false, how: 'kept', aliases: [] });
      } else if (weightLike) unrecovered.push({ name: init.name, shape: init.shape, reason: uses.length === 0 ? 'no op uses it as a weight' : `used by ${uses.map((u) => u.node.opType).join(', ')} in a node with no module path` });
      else constants++;
      continue;
    }
    // A tied tensor is named after its embedding use, as Hugging Face checkpoints store it.
    const primary = named.find((n) => n.use.kind === 'embedding') ?? named[0]!;
    if (taken.has(primary.name)) {
      unrecovered.push({ name: init.name, shape: init.shape, reason: `its name ${primary.name} is already taken by another initializer` });
      continue;
    }
    taken.add(primary.name);
    const { use } = primary;
    const stored = use.shape ?? init.shape;
    // GPT-2's Conv1D keeps its weight [in, out], so the layout it is stored in is already Hugging Face's.
    const conv1d = use.kind === 'linear' && ((use.node.metadata.get('pkg.torch.onnx.class_hierarchy') ?? '').includes('.Conv1D') || (family === 'gpt2' && /\.(c_attn|c_proj|c_fc)\.weight$/.test(primary.name)));
    const transposed = (conv1d ? !use.transposed : use.transposed) && stored.length === 2;
    const shape = transposed ? [stored[1]!, stored[0]!] : stored;
    tensors.push({
      name: primary.name,
      onnx: init.name,
      shape,
      transposed,
      how: primary.name === init.name ? 'kept' : primary.how,
      aliases: distinct.filter((n) => n !== primary.name),
      ...(use.quantization ? { quantization: use.quantization } : {}),
    });
  }
  return { tensors, unrecovered, constants };
}

/** Float weights from an integer initializer and its quantization parameters. */
async function dequantize(q: OnnxQuantization, values: Float32Array, stored: readonly number[], read: (name: string) => Promise<Float32Array>, label: string): Promise<Float32Array> {
  if (q.kind === 'linear') {
    const scale = await read(q.scale);
    const zero = q.zeroPoint ? await read(q.zeroPoint) : undefined;
    const axis = q.axis < 0 ? q.axis + stored.length : q.axis;
    const along = stored[axis] ?? 1;
    if (scale.length !== 1 && scale.length !== along) throw new FormatError(label, `quantization scale "${q.scale}" has ${scale.length} values, expected 1 or ${along} (blocked quantization is not supported)`);
    if (zero && zero.length !== scale.length) throw new FormatError(label, `zero point "${q.zeroPoint}" has ${zero.length} values, its scale ${scale.length}`);
    let inner = 1;
    for (const d of stored.slice(axis + 1)) inner *= d;
    const out = new Float32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const c = scale.length === 1 ? 0 : Math.floor(i / inner) % along;
      out[i] = (values[i]! - (zero ? zero[c]! : 0)) * scale[c]!;
    }
    return out;
  }
  const { bits, blockSize, k, n } = q;
  if (bits !== 4 && bits !== 8) throw new FormatError(label, `MatMulNBits with ${bits}-bit weights is not supported (4 and 8 are)`);
  const blocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  if (values.length !== n * blocks * blob) throw new FormatError(label, `MatMulNBits weight holds ${values.length} bytes, N ${n} × ${blocks} blocks × ${blob} bytes expected`);
  const scales = await read(q.scales);
  if (scales.length !== n * blocks) throw new FormatError(label, `MatMulNBits scales "${q.scales}" hold ${scales.length} values, ${n * blocks} expected`);
  const zeros = q.zeroPoints ? await read(q.zeroPoints) : undefined;
  // Packed zero points: one byte holds 8/bits of them per row, rows padded to whole bytes.
  const packedZeros = zeros !== undefined && zeros.length !== n * blocks;
  const zeroRow = Math.ceil((blocks * bits) / 8);
  const zeroAt = (row: number, b: number): number => {
    if (!zeros) return 1 << (bits - 1);
    if (!packedZeros) return zeros[row * blocks + b]!;
    if (bits === 8) return zeros[row * zeroRow + b]!;
    const byte = zeros[row * zeroRow + (b >> 1)]!;
    return b & 1 ? byte >> 4 : byte & 15;
  };
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      const s = scales[row * blocks + b]!;
      const z = zeroAt(row, b);
      const base = (row * blocks + b) * blob;
      for (let j = 0; j < blockSize && b * blockSize + j < k; j++) {
        const q8 = bits === 8 ? values[base + j]! : j & 1 ? values[base + (j >> 1)]! >> 4 : values[base + (j >> 1)]! & 15;
        out[row * k + b * blockSize + j] = (q8 - z) * s;
      }
    }
  }
  return out;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(data.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = data[i * cols + j]!;
  return t;
}

export interface OnnxStore extends WeightStore {
  readonly naming: OnnxNaming;
}

/**
 * An .onnx file's weights under Hugging Face names and layouts (transposed back, dequantized),
 * plus the weight-like initializers no use could name, under their ONNX names.
 */
export async function openOnnxStore(src: ByteSource, files: FileSet | undefined, config: Record<string, unknown> = {}): Promise<OnnxStore> {
  const { initializers, nodes } = await readOnnxModel(src, files);
  const naming = recoverHfNames(nodes, initializers, config);
  const entries = new Map<string, { info: StoredTensor; recovered?: RecoveredTensor; init: OnnxInitializer }>();
  for (const r of naming.tensors) {
    const init = initializers.get(r.onnx)!;
    const q = r.quantization;
    const dtype = !q ? init.dtype : q.kind === 'nbits' && q.bits === 4 ? 'QINT4' : 'QINT8';
    entries.set(r.name, { info: { name: r.name, shape: r.shape, dtype, byteLength: init.byteLength }, recovered: r, init });
  }
  for (const u of naming.unrecovered) {
    const init = initializers.get(u.name)!;
    if (!entries.has(u.name)) entries.set(u.name, { info: { name: u.name, shape: init.shape, dtype: init.dtype, byteLength: init.byteLength }, init });
  }
  const tensors = new Map([...entries].map(([k, v]) => [k, v.info]));
  const readInit = async (name: string, signal?: AbortSignal): Promise<Float32Array> => {
    const t = initializers.get(name);
    if (!t) throw new FormatError(src.name, `no initializer named "${name}"`);
    return readInitializerF32(t, signal);
  };
  return {
    label: src.name,
    tensors,
    naming,
    async readF32(name, signal) {
      const e = entries.get(name);
      if (!e) throw new FormatError(src.name, `no tensor named "${name}"`);
      let values = await readInitializerF32(e.init, signal);
      const r = e.recovered;
      if (!r) return values;
      if (r.quantization) values = await dequantize(r.quantization, values, e.init.shape, (n) => readInit(n, signal), src.name);
      if (r.transposed) values = transpose2d(values, r.shape[1]!, r.shape[0]!);
      return values;
    },
  };
}

/** What `inspect` says about the names: how many were recovered each way, and what was not. */
export function describeNaming(naming: OnnxNaming): Record<string, unknown> {
  const by: Record<string, number> = {};
  for (const t of naming.tensors) by[t.how] = (by[t.how] ?? 0) + 1;
  return {
    recovered: by,
    transposed: naming.tensors.filter((t) => t.transposed).length,
    dequantized: naming.tensors.filter((t) => t.quantization).length,
    tied: naming.tensors.filter((t) => t.aliases.length > 0).map((t) => ({ name: t.name, aliases: t.aliases })),
    tensors: naming.tensors.map((t) => ({ name: t.name, onnx: t.onnx, how: t.how, ...(t.transposed ? { transposed: true } : {}), ...(t.quantization ? { quantization: t.quantization.kind === 'nbits' ? `MatMulNBits ${t.quantization.bits}-bit` : 'linear int8' } : {}) })),
    unrecovered: naming.unrecovered,
    constants: naming.constants,
  };
}
