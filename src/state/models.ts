import type { StateCreator } from 'zustand/vanilla';
import type { ModelSourceKind } from '../io/open-model.ts';
import type { FileSet } from '../io/source.ts';

export type Role = 'base' | 'ft';

/** What the loader reports about a model once it is loaded; shown in the UI. */
export interface ModelSummary {
  /** A full model, or a PEFT adapter (fine-tuned role only: applied to the base). */
  kind: 'model' | 'adapter';
  format: ModelSourceKind;
  /** The weights file(s), as named in messages. */
  label: string;
  /** model_type for a model ("llama"); for an adapter, what it was trained on. */
  architecture: string;
  parameterCount: number;
  layers: number | null;
  dModel: number | null;
  vocabSize: number | null;
  /** Parameters per stored dtype ("F16": 3151104). */
  dtypes: Record<string, number>;
  /** Bytes the tensors take in their files. */
  weightBytes: number;
  largestTensor: { name: string; elements: number } | null;
  /** Tensor name → shape: the pair check compares the two models with it. */
  shapes: ReadonlyMap<string, readonly number[]>;
  /** The weights an adapter changes, with the shape of their ΔW. */
  adapter?: { r: number; alpha: number; targets: { name: string; shape: [number, number] }[] };
}

export type LoadStatus =
  | { kind: 'idle' }
  | { kind: 'loading'; bytesDone: number; bytesTotal: number }
  | { kind: 'loaded'; summary: ModelSummary }
  | { kind: 'error'; message: string };

export interface ModelSlot {
  /** Files dropped for this role and not yet replaced; they stay on the user's machine. */
  pending: FileSet | null;
  status: LoadStatus;
}

/**
 * Turns a dropped file set into a model. Whoever implements loading registers one with
 * `setModelLoader`; it keeps the model it builds and returns the summary for the UI.
 */
export type ModelLoader = (
  files: FileSet,
  role: Role,
  onProgress: (bytesDone: number, bytesTotal: number) => void,
  signal: AbortSignal,
) => Promise<ModelSummary>;

export interface ModelsSlice {
  models: Record<Role, ModelSlot>;
  modelLoader: ModelLoader | null;
  /** The built-in demo pair is what is loaded (set by loadDemo, cleared by any drop). */
  demo: boolean;
  /** Why the built-in demo could not be loaded. */
  demoError: string | null;
  setDemo(demo: boolean): void;
  setDemoError(message: string | null): void;
  setPendingFiles(role: Role, files: FileSet): void;
  clearModel(role: Role): void;
  setModelLoader(loader: ModelLoader | null): void;
  /** Runs the registered loader on the role's pending files. Never rejects: failures land in the status. */
  loadModel(role: Role): Promise<void>;
}

export function fileSetBytes(files: FileSet): number {
  let total = 0;
  for (const src of files.values()) total += src.size;
  return total;
}

export function bothModelsLoaded(models: Record<Role, ModelSlot>): boolean {
  return models.base.status.kind === 'loaded' && models.ft.status.kind === 'loaded';
}

const describeModel = (s: ModelSummary) =>
  `${s.architecture} with ${s.layers ?? '?'} layers, d_model ${s.dModel ?? '?'}, vocabulary ${s.vocabSize ?? '?'}`;

/**
 * Why two loaded models cannot be compared, naming their files; null when they can (or are not both loaded).
 * A fine-tuned adapter must target tensors of the base with their shapes.
 */
export function pairProblem(models: Record<Role, ModelSlot>): string | null {
  const b = models.base.status;
  const f = models.ft.status;
  if (b.kind !== 'loaded' || f.kind !== 'loaded') return null;
  const base = b.summary;
  const ft = f.summary;
  if (base.kind === 'adapter') {
    return `the base model (${base.label}) is a PEFT adapter: drop the model it was trained on as the base, and the adapter as the fine-tuned model`;
  }
  if (ft.kind === 'adapter') {
    const targets = ft.adapter?.targets ?? [];
    const named = targets.filter((t) => base.shapes.has(t.name));
    if (targets.length > 0 && named.length === 0) {
      return `the adapter (${ft.label}) targets ${targets.length} tensors such as "${targets[0]!.name}", none of which is in the base model (${base.label}): it was trained on another model`;
    }
    const fits = (t: { name: string; shape: [number, number] }) => {
      const s = base.shapes.get(t.name);
      return s !== undefined && s.length === 2 && s[0] === t.shape[0] && s[1] === t.shape[1];
    };
    const misfit = named.find((t) => !fits(t));
    if (misfit && !named.some(fits)) {
      const s = base.shapes.get(misfit.name)!;
      return `the adapter (${ft.label}) changes "${misfit.name}" as [${misfit.shape.join(', ')}] but the base model (${base.label}) has it as [${s.join(', ')}]: it was trained on another model`;
    }
    return null;
  }
  const same = base.architecture === ft.architecture && base.layers === ft.layers && base.dModel === ft.dModel && base.vocabSize === ft.vocabSize;
  if (!same) {
    return `the base model (${base.label}) is ${describeModel(base)}, the fine-tuned model (${ft.label}) is ${describeModel(ft)}: a fine-tune has its base's architecture`;
  }
  let shared = 0;
  for (const name of ft.shapes.keys()) if (base.shapes.has(name)) shared++;
  if (shared === 0) return `the base model (${base.label}) and the fine-tuned model (${ft.label}) have no tensor name in common`;
  return null;
}

/** Both models are loaded and fit together: the analysis views can open. */
export function pairReady(models: Record<Role, ModelSlot>): boolean {
  return bothModelsLoaded(models) && pairProblem(models) === null;
}

const emptySlot = (): ModelSlot => ({ pending: null, status: { kind: 'idle' } });

export const createModelsSlice: StateCreator<ModelsSlice, [], [], ModelsSlice> = (set, get) => {
  // One controller per role: a new drop or load aborts the previous load, and a stale load's result is dropped.
  const inFlight: Partial<Record<Role, AbortController>> = {};
  const abort = (role: Role) => {
    inFlight[role]?.abort();
    delete inFlight[role];
  };
  const setSlot = (role: Role, slot: Partial<ModelSlot>) =>
    set((s) => ({ models: { ...s.models, [role]: { ...s.models[role], ...slot } } }));

  return {
    models: { base: emptySlot(), ft: emptySlot() },
    modelLoader: null,
    demo: false,
    demoError: null,
    setDemo: (demo) => set({ demo }),
    setDemoError: (demoError) => set({ demoError }),
    setPendingFiles(role, files) {
      abort(role);
      set({ demo: false });
      setSlot(role, { pending: files, status: { kind: 'idle' } });
    },
    clearModel(role) {
      abort(role);
      set({ demo: false });
      setSlot(role, emptySlot());
    },
    setModelLoader(loader) {
      set({ modelLoader: loader });
    },
    async loadModel(role) {
      const { modelLoader, models } = get();
      const files = models[role].pending;
      if (!modelLoader) {
        setSlot(role, { status: { kind: 'error', message: 'no model loader is registered' } });
        return;
      }
      if (!files || files.size === 0) {
        setSlot(role, { status: { kind: 'error', message: 'no files were dropped for this model' } });
        return;
      }
      abort(role);
      const controller = new AbortController();
      inFlight[role] = controller;
      const current = () => inFlight[role] === controller;
      setSlot(role, { status: { kind: 'loading', bytesDone: 0, bytesTotal: fileSetBytes(files) } });
      try {
        const summary = await modelLoader(
          files,
          role,
          (bytesDone, bytesTotal) => {
            if (current()) setSlot(role, { status: { kind: 'loading', bytesDone, bytesTotal } });
          },
          controller.signal,
        );
        if (current()) setSlot(role, { status: { kind: 'loaded', summary } });
      } catch (e) {
        if (current()) setSlot(role, { status: { kind: 'error', message: e instanceof Error ? e.message : String(e) } });
      } finally {
        if (current()) delete inFlight[role];
      }
    },
  };
};
