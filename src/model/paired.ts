// Runs a base model and its fine-tune on the same token batches and hands over the requested hook
// activations of both, batch by batch. When both models' weights fit the memory budget they stay
// loaded together; otherwise the base runs over every batch first (its captures read back to the
// host), is released, and the fine-tune runs second.
import { openSafetensorsFolder } from '../io/safetensors.ts';
import type { FileSet } from '../io/source.ts';
import type { WeightStore } from '../io/store.ts';
import type { Backend, Tensor } from './backend.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { loadModel, loadModelFromStore, readModelConfig, residentBytes, type LoadOptions } from './load.ts';
import type { TokenInput, Transformer } from './transformer.ts';

export interface ModelSource {
  readonly label: string;
  readonly config: ModelConfig;
  /** Bytes of its weights once loaded (residentBytes), for the memory budget. */
  readonly weightBytes: number;
  load(signal?: AbortSignal): Promise<Transformer>;
}

export async function folderSource(files: FileSet, backend: Backend, label: string, opts: LoadOptions = {}): Promise<ModelSource> {
  const config = await readModelConfig(files);
  const weightBytes = residentBytes(await openSafetensorsFolder(files), opts.dtype ?? 'stored', backend.bf16);
  return { label, config, weightBytes, load: (signal) => loadModel(files, backend, signal ? { ...opts, signal } : opts) };
}

export function storeSource(store: WeightStore, rawConfig: unknown, backend: Backend, label: string, opts: LoadOptions = {}): ModelSource {
  const config = parseConfig(rawConfig);
  const weightBytes = residentBytes(store, opts.dtype ?? 'stored', backend.bf16);
  return { label, config, weightBytes, load: (signal) => loadModelFromStore(store, rawConfig, backend, signal ? { ...opts, signal } : opts) };
}

export interface PairedOptions {
  /** One model at a time or both resident, as a memory plan decided (src/jobs/memory.ts); wins over memoryBudgetBytes. */
  mode?: 'resident' | 'sequential';
  /** Bytes the two models' weights may take together; above it they run one at a time. Default: no limit. */
  memoryBudgetBytes?: number;
  signal?: AbortSignal;
}

export interface PairedCaptures {
  index: number;
  /** Hook name → activation, on the backend. Valid during the visit only: the runner disposes them after. */
  base: ReadonlyMap<string, Tensor>;
  ft: ReadonlyMap<string, Tensor>;
}

interface HostCapture {
  data: Float32Array;
  shape: readonly number[];
}

export class PairedRunner {
  readonly mode: 'resident' | 'sequential';
  private loaded: { base: Transformer; ft: Transformer } | undefined;

  constructor(
    readonly base: ModelSource,
    readonly ft: ModelSource,
    readonly backend: Backend,
    private readonly opts: PairedOptions = {},
  ) {
    const both = base.weightBytes + ft.weightBytes;
    this.mode = opts.mode ?? (both <= (opts.memoryBudgetBytes ?? Infinity) ? 'resident' : 'sequential');
  }

  /** Both models, loaded once and kept (resident mode only: analyses that mix the two within one pass, like patching). */
  async models(): Promise<{ base: Transformer; ft: Transformer }> {
    if (this.mode !== 'resident') throw new Error(`${this.base.label} and ${this.ft.label} do not fit the memory budget together`);
    if (!this.loaded) {
      const base = await this.base.load(this.opts.signal);
      try {
        this.loaded = { base, ft: await this.ft.load(this.opts.signal) };
      } catch (e) {
        base.dispose();
        throw e;
      }
    }
    return this.loaded;
  }

  /**
   * Runs both models on every batch and calls `visit` with the captured `hooks` of each. Runs stop
   * after the deepest requested block when neither the final norm nor the logits are asked for.
   */
  async run(batches: readonly TokenInput[], hooks: readonly string[], visit: (c: PairedCaptures) => void | Promise<void>): Promise<void> {
    const signal = this.opts.signal;
    if (this.mode === 'resident') {
      const { base, ft } = await this.models();
      const stop = stopLayer(base, hooks);
      for (let index = 0; index < batches.length; index++) {
        signal?.throwIfAborted();
        const b = capture(base, batches[index]!, hooks, stop);
        const f = capture(ft, batches[index]!, hooks, stop);
        try {
          await visit({ index, base: b, ft: f });
        } finally {
          disposeAll(this.backend, b, f);
        }
      }
      return;
    }

    const stored: Array<Map<string, HostCapture>> = [];
    const base = await this.base.load(signal);
    try {
      const stop = stopLayer(base, hooks);
      for (const batch of batches) {
        signal?.throwIfAborted();
        const b = capture(base, batch, hooks, stop);
        const host = new Map<string, HostCapture>();
        for (const [name, t] of b) host.set(name, { data: (await this.backend.read(t)) as Float32Array, shape: t.shape });
        disposeAll(this.backend, b);
        stored.push(host);
      }
    } finally {
      base.dispose();
    }
    const ft = await this.ft.load(signal);
    try {
      const stop = stopLayer(ft, hooks);
      for (let index = 0; index < batches.length; index++) {
        signal?.throwIfAborted();
        const b = new Map<string, Tensor>();
        for (const [name, h] of stored[index]!) b.set(name, this.backend.fromArray(h.data, h.shape));
        stored[index] = new Map();
        const f = capture(ft, batches[index]!, hooks, stop);
        try {
          await visit({ index, base: b, ft: f });
        } finally {
          disposeAll(this.backend, b, f);
        }
      }
    } finally {
      ft.dispose();
    }
  }

  dispose(): void {
    this.loaded?.base.dispose();
    this.loaded?.ft.dispose();
    this.loaded = undefined;
  }
}

function stopLayer(model: Transformer, hooks: readonly string[]): number | undefined {
  let deepest = -1;
  for (const name of hooks) {
    const point = model.hookPoints.find((p) => p.name === name);
    if (!point) throw new Error(`no hook point named "${name}"`);
    if (point.layer === undefined) return undefined;
    deepest = Math.max(deepest, point.layer);
  }
  return deepest < 0 ? undefined : deepest;
}

function capture(model: Transformer, input: TokenInput, hooks: readonly string[], stop: number | undefined): Map<string, Tensor> {
  const { logits, cache } = model.runWithCache(input, hooks, stop === undefined ? {} : { stopAfterLayer: stop });
  if (logits && !cache.has('logits')) model.backend.dispose(logits);
  return cache;
}

function disposeAll(backend: Backend, ...maps: ReadonlyMap<string, Tensor>[]): void {
  for (const m of maps) for (const t of m.values()) backend.dispose(t);
}
