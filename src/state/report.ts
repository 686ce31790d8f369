// The whole session as one JSON document: how each model is named (ref, fingerprint, summary),
// the settings a permalink carries, and every analysis result the session holds.
import type { ModelRef } from './model-ref.ts';
import type { ModelSummary, Role } from './models.ts';
import { pickLinkState } from './permalink.ts';
import { fingerprintOf, ROLES } from './session.ts';
import type { AppState } from './store.ts';

export const SESSION_FORMAT = 'neurodiff-session';
export const SESSION_VERSION = 1;

export interface ModelReport {
  /** How links name the model: URLs, the demo, or a file fingerprint. */
  ref: ModelRef | null;
  /** SHA-256 over the files' names, sizes and sampled bytes (io/fingerprint.ts), whatever their origin. */
  fingerprint: string | null;
  files: { name: string; size: number }[];
  summary: Omit<ModelSummary, 'shapes'> | null;
  /** Why the model is not loaded, when it is not. */
  status: string;
}

export interface SessionReport {
  format: typeof SESSION_FORMAT;
  version: typeof SESSION_VERSION;
  created: string;
  models: Record<Role, ModelReport>;
  /** The permalink's settings (view, metric, tensor, prompt, layer, …), model refs aside. */
  settings: Record<string, unknown>;
  results: {
    weights: { backend: string; ms: number; cached_at: string | null; result: unknown } | null;
    activations: Record<string, { backend: string; ms: number; cached: boolean; cached_at: string | null; result: unknown }>;
    /** The crosscoder shown: its analysis summary and the loss, FVU and dead latents of every training step. */
    crosscoder: { backend: string; summary: unknown; curve: unknown[] } | null;
  };
}

async function modelReport(state: AppState, role: Role): Promise<ModelReport> {
  const slot = state.models[role];
  const files = slot.pending;
  let fingerprint: string | null = null;
  if (files && files.size > 0) {
    try {
      fingerprint = (await fingerprintOf(files)).fingerprint;
    } catch {
      fingerprint = null;
    }
  }
  let summary: ModelReport['summary'] = null;
  if (slot.status.kind === 'loaded') {
    const { shapes: _shapes, ...rest } = slot.status.summary;
    summary = rest;
  }
  const status = slot.status.kind === 'error' ? `error: ${slot.status.message}` : slot.status.kind;
  return { ref: state.modelRefs[role], fingerprint, files: files ? [...files].map(([name, src]) => ({ name, size: src.size })) : [], summary, status };
}

export async function buildSessionReport(state: AppState, now = new Date()): Promise<SessionReport> {
  const { modelRefs: _refs, ...settings } = pickLinkState(state);
  const [base, ft] = await Promise.all(ROLES.map((r) => modelReport(state, r)));
  const run = state.weightsRun;
  const activations: SessionReport['results']['activations'] = {};
  for (const [task, r] of Object.entries(state.activationRuns)) {
    if (r?.status === 'done') activations[task] = { backend: r.backend, ms: r.ms, cached: r.cached, cached_at: r.cachedAt === null ? null : new Date(r.cachedAt).toISOString(), result: r.result };
  }
  return {
    format: SESSION_FORMAT,
    version: SESSION_VERSION,
    created: now.toISOString(),
    models: { base: base!, ft: ft! },
    settings,
    results: {
      weights: run.status === 'done' ? { backend: run.backend, ms: run.ms, cached_at: run.cachedAt === undefined ? null : new Date(run.cachedAt).toISOString(), result: run.result } : null,
      activations,
      crosscoder: state.ccResult ? { backend: state.ccResult.pair.backend, summary: state.ccResult.summary, curve: state.ccCurve } : null,
    },
  };
}

/** JSON text of a report: typed arrays as arrays, Maps as objects, non-finite numbers as null. */
export function reportJson(report: unknown): string {
  return JSON.stringify(
    report,
    (_key, v: unknown) => {
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
      if (v instanceof Map) return Object.fromEntries(v);
      if (typeof v === 'bigint') return Number(v);
      return v;
    },
    2,
  );
}
