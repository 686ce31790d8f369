// Which models the session holds, as a permalink names them (model-ref.ts), and opening the models
// a link names: URLs and the demo are fetched; for local files the drop zone asks for them and the
// dropped files must match the link's fingerprint.
import type { StateCreator } from 'zustand/vanilla';
import { fingerprintModel, type ModelFingerprint } from '../io/fingerprint.ts';
import type { FileSet } from '../io/source.ts';
import type { QueryClient } from '@tanstack/react-query';
import { createQueryClient } from './query-client.ts';
import type { StoredResults } from './stored-results.ts';
import { DEMO, loadDemo } from './demo.ts';
import { fingerprintMismatch, fingerprintRef, foreignHosts, isDemoRef, isFingerprintRef, isUrlRef, linkedSubset, sameRef, type DemoRef, type ModelRef, type ModelRefs, type UrlRef } from './model-ref.ts';
import type { Role } from './models.ts';
import { fileSetFromUrls, parseUrlList, urlFileSet } from './remote.ts';
import type { AppStore } from './store.ts';

export const ROLES: readonly Role[] = ['base', 'ft'];

export type LinkModelStatus =
  | { kind: 'idle' }
  /** The link names URLs on other servers: nothing is requested until the user agrees (loadLinkModel). */
  | { kind: 'confirm'; hosts: string[] }
  /** The link's URLs (or the demo's) are being opened. */
  | { kind: 'fetching' }
  /** Dropped files are being fingerprinted against the link's. */
  | { kind: 'checking' }
  /** The dropped files are not the link's; they are kept so the user can open them anyway. */
  | { kind: 'mismatch'; message: string; files: FileSet }
  | { kind: 'cancelled' }
  | { kind: 'error'; message: string };

export interface SessionSlice {
  /** What each model is, as links name it: null while unknown (files dropped and still being fingerprinted). */
  modelRefs: ModelRefs;
  /** The files each ref describes; null for a ref a link asks for that is not open yet. */
  refFiles: Record<Role, FileSet | null>;
  linkModelStatus: Record<Role, LinkModelStatus>;
  /** The analysis queries' cache (queries.ts). */
  queryClient: QueryClient;
  /** Analysis results kept in this browser (the queries' persister); null where there is none (tests, no IndexedDB). */
  storedResults: StoredResults | null;
  setStoredResults(stored: StoredResults | null): void;
  setModelRef(role: Role, ref: ModelRef | null, files: FileSet | null): void;
  setLinkModelStatus(role: Role, status: LinkModelStatus): void;
  /** Starts an operation on the role's model, ending the previous one (its fetch is aborted, its result dropped). */
  beginModelOp(role: Role): ModelOp;
  /** Stops asking for the link's model of this role. */
  forgetLinkModel(role: Role): void;
  /** Stops fetching the link's model; the link keeps naming it, and it can be loaded again. */
  cancelLinkModel(role: Role): void;
}

export interface ModelOp {
  /** Still the role's latest operation. */
  current(): boolean;
  signal: AbortSignal;
}

// Refs the app set itself (not read from a link): a ref that appears in the store and is not one
// of these came from a link, and asks for its model.
const ownRefs = new WeakSet<ModelRef>();

export const createSessionSlice: StateCreator<SessionSlice, [], [], SessionSlice> = (set, get) => {
  const latest: Partial<Record<Role, AbortController>> = {};
  const setStatus = (role: Role, status: LinkModelStatus) => set((s) => ({ linkModelStatus: { ...s.linkModelStatus, [role]: status } }));
  return {
    modelRefs: { base: null, ft: null },
    refFiles: { base: null, ft: null },
    linkModelStatus: { base: { kind: 'idle' }, ft: { kind: 'idle' } },
    queryClient: createQueryClient(),
    storedResults: null,
    setStoredResults: (storedResults) => set({ storedResults }),
    setModelRef(role, ref, files) {
      if (ref) ownRefs.add(ref);
      set((s) => ({ modelRefs: { ...s.modelRefs, [role]: ref }, refFiles: { ...s.refFiles, [role]: files } }));
    },
    setLinkModelStatus: setStatus,
    beginModelOp(role) {
      latest[role]?.abort(new DOMException('loading the model was cancelled', 'AbortError'));
      const controller = new AbortController();
      latest[role] = controller;
      return { current: () => latest[role] === controller, signal: controller.signal };
    },
    forgetLinkModel(role) {
      get().beginModelOp(role);
      if (wantedRef(get(), role)) get().setModelRef(role, null, null);
      setStatus(role, { kind: 'idle' });
    },
    cancelLinkModel(role) {
      get().beginModelOp(role);
      setStatus(role, { kind: 'cancelled' });
    },
  };
};

/** The ref a link asks for that no open files satisfy yet, or null. */
export function wantedRef(s: SessionSlice, role: Role): ModelRef | null {
  return s.refFiles[role] === null ? s.modelRefs[role] : null;
}

const fingerprints = new WeakMap<FileSet, Promise<ModelFingerprint>>();

/** The fingerprint of a file set, computed once per set. */
export function fingerprintOf(files: FileSet): Promise<ModelFingerprint> {
  let fp = fingerprints.get(files);
  if (!fp) {
    fp = fingerprintModel(files);
    fingerprints.set(files, fp);
    fp.catch(() => fingerprints.delete(files));
  }
  return fp;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function open(store: AppStore, role: Role, files: FileSet, ref: ModelRef | null, op: ModelOp): void {
  const s = store.getState();
  s.setPendingFiles(role, files);
  s.setModelRef(role, ref, files);
  s.setLinkModelStatus(role, { kind: 'idle' });
  if (s.modelLoader && files.size > 0) void s.loadModel(role);
  if (ref || files.size === 0) return;
  fingerprintOf(files).then(
    (fp) => {
      if (op.current() && store.getState().models[role].pending === files) store.getState().setModelRef(role, fingerprintRef(fp), files);
    },
    // A file that cannot be read fails the load too, which says why; the link just names no model.
    () => {},
  );
}

/**
 * Opens files for a role. Where the link asks for a fingerprint, the files are checked first
 * (files the link does not name are left out) and a mismatch is reported instead of loading.
 */
export async function openModelFiles(store: AppStore, role: Role, files: FileSet, origin: 'files' | UrlRef | DemoRef): Promise<void> {
  const op = store.getState().beginModelOp(role);
  const wanted = wantedRef(store.getState(), role);
  if (!wanted || !isFingerprintRef(wanted) || (origin !== 'files' && sameRef(origin, wanted))) {
    open(store, role, files, origin === 'files' ? null : origin, op);
    return;
  }
  store.getState().setLinkModelStatus(role, { kind: 'checking' });
  const subset = linkedSubset(files, wanted);
  let fp: ModelFingerprint;
  try {
    fp = await fingerprintOf(subset);
  } catch (e) {
    if (op.current()) store.getState().setLinkModelStatus(role, { kind: 'error', message: `the dropped files could not be read: ${message(e)}` });
    return;
  }
  if (!op.current()) return;
  const problem = fingerprintMismatch(wanted, fp, [...files].map(([name, src]) => ({ name, size: src.size })));
  if (problem) store.getState().setLinkModelStatus(role, { kind: 'mismatch', message: problem, files });
  else open(store, role, subset, wanted, op);
}

/** Pasted URLs (one per line): fetched, opened, and named by their URLs in links. Rejects with what is wrong. */
export async function openUrlModel(store: AppStore, role: Role, text: string, base: string): Promise<void> {
  const url = parseUrlList(text, base).map((u) => u.url);
  const files = await fileSetFromUrls(url.join('\n'), base);
  await openModelFiles(store, role, files, { url });
}

/** Opens the files of a mismatch anyway: the link's model is forgotten for this role. */
export function openMismatchAnyway(store: AppStore, role: Role): void {
  const status = store.getState().linkModelStatus[role];
  if (status.kind !== 'mismatch') return;
  store.getState().forgetLinkModel(role);
  void openModelFiles(store, role, status.files, 'files');
}

/**
 * Fetches a URL or demo model a link names (fingerprinted models wait for the user's files). Links
 * naming other servers call this only once the user has agreed (status "confirm").
 */
export async function loadLinkModel(store: AppStore, role: Role, root: string): Promise<void> {
  const ref = wantedRef(store.getState(), role);
  if (!ref || isFingerprintRef(ref)) return;
  const op = store.getState().beginModelOp(role);
  store.getState().setLinkModelStatus(role, { kind: 'fetching' });
  try {
    const files = isUrlRef(ref)
      ? await fileSetFromUrls(ref.url.join('\n'), root, op.signal)
      : await urlFileSet(new URL(ref.demo === 'base' ? DEMO.base : DEMO.ft, root).href, DEMO.files, op.signal);
    if (op.current()) open(store, role, files, ref, op);
  } catch (e) {
    if (op.current()) store.getState().setLinkModelStatus(role, { kind: 'error', message: message(e) });
  }
}

function loadWanted(store: AppStore, root: string): void {
  const s = store.getState();
  const base = wantedRef(s, 'base');
  const ft = wantedRef(s, 'ft');
  if (base && ft && isDemoRef(base) && isDemoRef(ft) && base.demo === 'base' && ft.demo === 'ocean') {
    void loadDemo(store, root);
    return;
  }
  for (const role of ROLES) {
    const ref = wantedRef(s, role);
    const hosts = ref ? foreignHosts(ref, new URL(root).origin) : [];
    if (hosts.length > 0) {
      s.beginModelOp(role);
      s.setLinkModelStatus(role, { kind: 'confirm', hosts });
    } else void loadLinkModel(store, role, root);
  }
}

/**
 * Opens the models the link in the address names, or the built-in demo when it names none; then
 * follows links pasted later. Returns the disconnect function.
 */
export function connectLinkModels(store: AppStore, root: string): () => void {
  const s = store.getState();
  if (s.modelRefs.base === null && s.modelRefs.ft === null) void loadDemo(store, root);
  else loadWanted(store, root);
  return store.subscribe((now, prev) => {
    let changed = false;
    for (const role of ROLES) {
      const ref = now.modelRefs[role];
      if (ref === prev.modelRefs[role] || (ref !== null && ownRefs.has(ref))) continue;
      const before = prev.modelRefs[role];
      const files = now.refFiles[role];
      // A link without this model, or naming what is open already, leaves the open model alone.
      if (files !== null && before !== null && (ref === null || sameRef(ref, before))) now.setModelRef(role, before, files);
      else if (ref !== null) {
        now.setModelRef(role, ref, null);
        changed = true;
      }
    }
    if (changed) loadWanted(store, root);
  });
}

/** A ref belongs to the files it was made for: once other files (or none) are loaded, it is dropped. */
export function keepModelRefsCurrent(store: AppStore): () => void {
  return store.subscribe((s) => {
    for (const role of ROLES) {
      const files = s.refFiles[role];
      if (files !== null && files !== s.models[role].pending) s.setModelRef(role, null, null);
    }
  });
}
