import type { StateCreator } from 'zustand/vanilla';
import type { FileSet } from '../io/source.ts';

export type Role = 'base' | 'ft';

/** What the loader reports about a model once it is loaded; shown in the UI. */
export interface ModelSummary {
  architecture: string;
  parameterCount: number;
  layers: number;
  dModel: number;
  vocabSize: number;
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
    setPendingFiles(role, files) {
      abort(role);
      setSlot(role, { pending: files, status: { kind: 'idle' } });
    },
    clearModel(role) {
      abort(role);
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
