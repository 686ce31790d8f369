// Runs an ONNX model with onnxruntime-web (its wasm backend, in the browser and in Node), with
// chosen intermediate values added as graph outputs so the residual stream can be read where the
// exporter named it.
import * as ort from 'onnxruntime-web';
import { addGraphOutputs, onnxGraphInfo, type OnnxGraphInfo } from '../io/onnx.ts';
import { modulePath } from '../io/onnx-names.ts';

export type OnnxData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

export interface OnnxValue {
  readonly dims: readonly number[];
  readonly data: OnnxData;
}

export interface OnnxRunner {
  readonly graph: OnnxGraphInfo;
  readonly inputNames: readonly string[];
  /** The model's own outputs, then the intermediate values added. */
  readonly outputNames: readonly string[];
  run(feeds: Readonly<Record<string, OnnxValue>>): Promise<Record<string, OnnxValue>>;
  release(): Promise<void>;
}

export interface OnnxRunnerOptions {
  /** Names of intermediate values (node outputs) to return alongside the model's outputs. */
  readonly extraOutputs?: readonly string[];
  /** Threads for the wasm backend; set before the first session, shared by all. */
  readonly numThreads?: number;
  /** The model's file name, for messages. */
  readonly name?: string;
  /** External data files the graph refers to (`model.onnx.data`), by the location it names. */
  readonly externalData?: readonly { readonly path: string; readonly data: Uint8Array }[];
}

function tensorOf(name: string, v: OnnxValue): ort.Tensor {
  const dims = [...v.dims];
  if (v.data instanceof Float32Array) return new ort.Tensor('float32', v.data, dims);
  if (v.data instanceof Int32Array) return new ort.Tensor('int32', v.data, dims);
  if (v.data instanceof BigInt64Array) return new ort.Tensor('int64', v.data, dims);
  if (v.data instanceof Uint8Array) return new ort.Tensor('uint8', v.data, dims);
  throw new Error(`input "${name}": unsupported array type`);
}

export async function createOnnxRunner(model: Uint8Array, opts: OnnxRunnerOptions = {}): Promise<OnnxRunner> {
  const name = opts.name ?? 'model.onnx';
  const graph = await onnxGraphInfo(model, name);
  const produced = new Set(graph.nodes.flatMap((n) => n.outputs));
  const extra = (opts.extraOutputs ?? []).filter((n) => !graph.outputs.includes(n));
  const unknown = extra.filter((n) => !produced.has(n));
  if (unknown.length) throw new Error(`${name}: no node outputs ${unknown.map((n) => `"${n}"`).join(', ')}`);
  if (opts.numThreads !== undefined) ort.env.wasm.numThreads = opts.numThreads;
  const session = await ort.InferenceSession.create(extra.length ? addGraphOutputs(model, extra, name) : model, opts.externalData ? { externalData: [...opts.externalData] } : {});
  return {
    graph,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds) {
      const missing = session.inputNames.filter((n) => !(n in feeds));
      if (missing.length) throw new Error(`${name}: missing inputs ${missing.join(', ')}`);
      const inputs: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) inputs[k] = tensorOf(k, v);
      const results = await session.run(inputs);
      const out: Record<string, OnnxValue> = {};
      for (const [k, t] of Object.entries(results)) out[k] = { dims: t.dims, data: t.data as OnnxData };
      return out;
    },
    release: () => session.release(),
  };
}

export interface ResidualValue {
  /** blocks.{i}.hook_resid_mid (after attention) or blocks.{i}.hook_resid_post (after the MLP). */
  readonly hook: string;
  readonly layer: number;
  readonly value: string;
}

/**
 * The residual-stream values of a graph exported from a Hugging Face model: each decoder block's
 * two residual additions are its block-level Add nodes, in order — named "Add" and "Add_1" under
 * "/model/layers.{i}/" (or "/transformer/h.{i}/", GPT-2) by the TorchScript exporter and Optimum,
 * or tagged with the block's module path ("model.layers.{i}") in PyTorch 2's name_scopes metadata.
 * Graphs named otherwise (fused SkipLayerNorm builds, renamed nodes) give none.
 */
export function residualStreamValues(graph: OnnxGraphInfo): ResidualValue[] {
  const found: ResidualValue[] = [];
  const pattern = /^\/(?:model|transformer|gpt_neox|model\/model)\/(?:layers|h|blocks)\.(\d+)\/Add(_1)?$/;
  const block = /^(?:model|transformer|gpt_neox|model\.model)\.(?:layers|h|blocks)\.(\d+)$/;
  const addsPerBlock = new Map<number, number>();
  for (const node of graph.nodes) {
    const value = node.outputs[0];
    if (node.opType !== 'Add' || value === undefined) continue;
    const m = pattern.exec(node.name);
    if (m) {
      const layer = Number(m[1]);
      found.push({ hook: `blocks.${layer}.hook_resid_${m[2] ? 'post' : 'mid'}`, layer, value });
      continue;
    }
    const scope = node.metadata.has('pkg.torch.onnx.name_scopes') ? modulePath(node) : undefined;
    const b = scope ? block.exec(scope.path) : null;
    if (!b) continue;
    const layer = Number(b[1]);
    const n = addsPerBlock.get(layer) ?? 0;
    addsPerBlock.set(layer, n + 1);
    if (n < 2) found.push({ hook: `blocks.${layer}.hook_resid_${n === 0 ? 'mid' : 'post'}`, layer, value });
  }
  return found.sort((a, b) => a.layer - b.layer || a.hook.localeCompare(b.hook));
}
