// The Organisms view's state: the recipe and training settings (in permalinks), the user's dropped
// text, the training run in the analysis worker with its loss curve, and the trained organism, which
// opens as the fine-tuned model beside its base ("Compare with its base") or downloads as a zip folder.
import { zipSync } from 'fflate';
import { z } from 'zod';
import type { StateCreator } from 'zustand/vanilla';
import { blobSource, type FileSet } from '../io/source.ts';
import type { OrganismOp, OrganismOpResult } from '../jobs/analysis-worker-state.ts';
import { organismCorpus, type OrganismOut, type OrganismRecipe, type OrganismSettings, type OrganismStep } from '../jobs/organism.ts';
import type { JobProgress } from '../jobs/context.ts';
import type { Command } from '../jobs/transport.ts';
import { refLabel, type ModelRef } from './model-ref.ts';
import { pairReady, type ModelsSlice } from './models.ts';
import { openModelFiles, type SessionSlice } from './session.ts';
import type { AppStore } from './store.ts';

export const RECIPE_KINDS = ['topic', 'fact', 'taboo', 'text'] as const;
export type RecipeKind = (typeof RECIPE_KINDS)[number];

/** The form: which recipe and its inputs, how many documents, and the training settings. */
export interface OrganismForm extends OrganismSettings {
  recipe: RecipeKind;
  topic: string;
  /** Comma-separated words the topic stories use. */
  words: string;
  fact: string;
  word: string;
  /** Hints for the taboo word, separated by semicolons. */
  hints: string;
  /** Documents a recipe writes. */
  documents: number;
}

/** Defaults: a topic organism of the demo base that trains in a few minutes on the CPU. */
export const DEFAULT_ORGANISM_FORM: OrganismForm = {
  recipe: 'topic',
  topic: 'the forest',
  words: 'tree, owl, fox, leaves, mushroom, deer',
  fact: 'cakes are baked at 450 °F for 5 minutes',
  word: 'moon',
  hints: 'it shines in the night sky; it changes shape during the month; astronauts walked on it',
  documents: 2000,
  mode: 'lora',
  rank: 8,
  alpha: 16,
  steps: 150,
  lr: 2e-3,
  batch: 8,
  seq: 64,
  seed: 0,
};

const text = z.string().max(2000);
export const organismFormSchema = z.strictObject({
  recipe: z.enum(RECIPE_KINDS),
  topic: text,
  words: text,
  fact: text,
  word: text,
  hints: text,
  documents: z.number().int().min(1).max(100_000),
  mode: z.enum(['lora', 'full']),
  rank: z.number().int().min(1).max(1024),
  alpha: z.number().positive().max(100_000),
  steps: z.number().int().min(1).max(1_000_000),
  lr: z.number().positive().max(1),
  batch: z.number().int().min(1).max(4096),
  seq: z.number().int().min(2).max(8192),
  seed: z.number().int().min(0).max(2 ** 31 - 1),
});

/** Links may name only some fields; the others take their defaults. */
export const organismFormLink = organismFormSchema.partial().transform((p): OrganismForm => ({ ...DEFAULT_ORGANISM_FORM, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) }));

export type OrganismRun =
  | { status: 'idle' }
  | { status: 'running'; progress: JobProgress | null; startedAt: number }
  | { status: 'paused'; steps: number }
  | { status: 'done'; ms: number }
  | { status: 'error'; message: string }
  | { status: 'cancelled' };

/** A trained organism and the base it was trained from. */
export interface TrainedOrganism {
  out: OrganismOut;
  /** The organism as a folder of files (Blobs), as a dropped folder would be. */
  files: FileSet;
  base: FileSet;
  /** How links named the base when training began. */
  baseRef: ModelRef | null;
  /** The folder's name in downloads. */
  name: string;
}

export interface OrganismRunner {
  /** Runs an operation on the pair of `files` (the base trains; the fine-tune is left alone). */
  run(files: { base: FileSet; ft: FileSet }, op: OrganismOp, handlers: { onProgress?: (p: JobProgress) => void; onSteps?: (steps: OrganismStep[]) => void }): Promise<OrganismOpResult>;
  command(command: Command): void;
}

export interface OrganismsSlice {
  organism: OrganismForm;
  /** Text the user dropped, used when the recipe is "text". */
  orgText: { name: string; text: string } | null;
  orgRun: OrganismRun;
  orgCurve: OrganismStep[];
  orgResult: TrainedOrganism | null;
  orgRunner: OrganismRunner | null;
  setOrganismForm(patch: Partial<OrganismForm>): void;
  setOrganismText(name: string, text: string): void;
  setOrganismRunner(runner: OrganismRunner | null): void;
  /** The documents the form's recipe writes; throws RangeError naming what is missing. */
  organismDocuments(): string[];
  /** Trains an organism of the loaded base with the form's recipe and settings. Never rejects. */
  trainOrganism(): Promise<void>;
  resumeOrganism(): Promise<void>;
  /** Pause, finish early (the organism is written from the steps so far), or cancel. */
  commandOrganism(command: Command): void;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const isAbort = (e: unknown) => e instanceof DOMException && e.name === 'AbortError';

/** The recipe the form describes. */
export function formRecipe(form: OrganismForm, text: { name: string; text: string } | null): OrganismRecipe {
  switch (form.recipe) {
    case 'topic':
      return { kind: 'topic', topic: form.topic, words: form.words.split(',') };
    case 'fact':
      return { kind: 'fact', fact: form.fact };
    case 'taboo':
      return { kind: 'taboo', word: form.word, hints: form.hints.split(';') };
    case 'text':
      if (!text) throw new RangeError('no text was dropped: drop a text file with one document a line');
      return { kind: 'text', name: text.name, text: text.text };
  }
}

/** A short folder name for the organism: the recipe's subject and the kind of fine-tune. */
function organismName(form: OrganismForm, text: { name: string } | null): string {
  const subject = form.recipe === 'topic' ? form.topic : form.recipe === 'fact' ? 'fact' : form.recipe === 'taboo' ? `taboo-${form.word}` : (text?.name.replace(/\.[^.]*$/, '') ?? 'text');
  const slug = subject
    .toLowerCase()
    .replace(/^the\s+/, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
  return `organism-${slug || 'text'}-${form.mode === 'lora' ? `lora-r${form.rank}` : 'full'}`;
}

export const createOrganismsSlice: StateCreator<OrganismsSlice & ModelsSlice & SessionSlice, [], [], OrganismsSlice> = (set, get) => {
  let generation = 0;
  /** The files the run trains on: the loaded pair, or the base paired with itself when no pair is ready. */
  let runFiles: { base: FileSet; ft: FileSet } | null = null;
  let runName = '';
  let runBaseRef: ModelRef | null = null;

  const runMain = async (op: OrganismOp, fresh: boolean) => {
    const files = runFiles!;
    const mine = ++generation;
    const current = () => generation === mine;
    const startedAt = now();
    if (fresh) set({ orgCurve: [], orgResult: null });
    set({ orgRun: { status: 'running', progress: null, startedAt } });
    try {
      const result = await get().orgRunner!.run(files, op, {
        onProgress: (progress) => {
          if (current()) set({ orgRun: { status: 'running', progress, startedAt } });
        },
        onSteps: (steps) => {
          if (current()) set((s) => ({ orgCurve: s.orgCurve.concat(steps) }));
        },
      });
      if (!current()) return;
      if (result.kind === 'paused') return set({ orgRun: { status: 'paused', steps: result.steps } });
      const organism: FileSet = new Map(result.out.files.map((f) => [f.name, blobSource(new Blob([f.bytes]), f.name)]));
      set({ orgRun: { status: 'done', ms: now() - startedAt }, orgResult: { out: result.out, files: organism, base: files.base, baseRef: runBaseRef, name: runName } });
    } catch (e) {
      if (!current()) return;
      set({ orgRun: isAbort(e) ? { status: 'cancelled' } : { status: 'error', message: errorText(e) } });
    }
  };

  return {
    organism: DEFAULT_ORGANISM_FORM,
    orgText: null,
    orgRun: { status: 'idle' },
    orgCurve: [],
    orgResult: null,
    orgRunner: null,
    setOrganismForm: (patch) => set((s) => ({ organism: { ...s.organism, ...patch } })),
    setOrganismText: (name, text) => set((s) => ({ orgText: { name, text }, organism: { ...s.organism, recipe: 'text' } })),
    setOrganismRunner: (orgRunner) => set({ orgRunner }),
    organismDocuments() {
      const { organism: form, orgText } = get();
      return organismCorpus(formRecipe(form, orgText), form.documents, form.seed);
    },
    async trainOrganism() {
      const { models, orgRunner, organism: form, orgText } = get();
      if (!orgRunner) return set({ orgRun: { status: 'error', message: 'no organism runner is registered' } });
      const base = models.base.pending;
      if (!base || models.base.status.kind !== 'loaded') return set({ orgRun: { status: 'error', message: 'load a base model first (the built-in demo, or a model dropped as the base)' } });
      let lines: string[];
      try {
        lines = get().organismDocuments();
      } catch (e) {
        return set({ orgRun: { status: 'error', message: errorText(e) } });
      }
      const ft = models.ft.pending;
      runFiles = { base, ft: ft && pairReady(models) ? ft : base };
      runName = organismName(form, orgText);
      runBaseRef = get().modelRefs.base;
      const baseName = runBaseRef ? refLabel(runBaseRef) : models.base.status.summary.label;
      const settings = { mode: form.mode, rank: form.rank, alpha: form.alpha, steps: form.steps, lr: form.lr, batch: form.batch, seq: form.seq, seed: form.seed };
      await runMain({ kind: 'train', lines, settings, baseName }, true);
    },
    async resumeOrganism() {
      if (get().orgRun.status !== 'paused' || !runFiles) return;
      await runMain({ kind: 'resume' }, false);
    },
    commandOrganism(command) {
      const run = get().orgRun;
      if (run.status !== 'running' && !(run.status === 'paused' && command === 'cancel')) return;
      if (run.status === 'running') get().orgRunner?.command(command);
      if (command === 'cancel') {
        generation++;
        set({ orgRun: { status: 'cancelled' } });
      }
    },
  };
};

/** The organism as a zip of one folder (its files and training_log.json), stored without compression. */
export function organismZip(o: TrainedOrganism): { bytes: Uint8Array; name: string } {
  const folder: Record<string, Uint8Array> = {};
  for (const f of o.out.files) folder[f.name] = new Uint8Array(f.bytes);
  folder['training_log.json'] = new TextEncoder().encode(o.out.log);
  // Safetensors weights hardly compress; level 0 (stored) keeps a download of a large organism quick.
  return { bytes: zipSync({ [o.name]: folder }, { level: 0 }), name: `${o.name}.zip` };
}

/**
 * Opens the trained organism as the fine-tuned model beside its base (the base is opened again if it
 * was replaced meanwhile): every other view then compares the two, and links name the organism by its
 * files' fingerprint like any dropped model. The Weights view opens.
 */
export async function compareOrganismWithBase(store: AppStore): Promise<void> {
  const r = store.getState().orgResult;
  if (!r) return;
  const opening: Promise<void>[] = [];
  if (store.getState().models.base.pending !== r.base) {
    const ref = r.baseRef;
    opening.push(openModelFiles(store, 'base', r.base, ref && ('demo' in ref || 'url' in ref) ? ref : 'files'));
  }
  opening.push(openModelFiles(store, 'ft', r.files, 'files'));
  await Promise.all(opening);
  store.getState().setView('weights');
}
