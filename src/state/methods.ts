// The Methods view's settings: which method's tab is open and each method's options (issue #12:
// diff mining, corpus KL, PCA of δ, diff-SAE, amplification, attention diffing). All of it travels
// in the permalink as one key, `methods`, validated field by field (a missing field keeps its default).
import type { StateCreator } from 'zustand/vanilla';
import { z } from 'zod';

export const METHOD_TABS = ['mine', 'kl', 'pca', 'diff-sae', 'amplify', 'attention'] as const;
export type MethodTab = (typeof METHOD_TABS)[number];

export const PCA_HOOKS = ['resid_post', 'resid_pre', 'attn_out', 'mlp_out'] as const;
export const AMPLIFY_MODES = ['logits', 'weights'] as const;
export const MAX_ALPHAS = 8;
export const SAE_SORTS = ['frequency', 'activation'] as const;

export interface MethodSettings {
  tab: MethodTab;
  /** Corpus samples and tokens per sample for the corpus methods (mining, KL, PCA, diff-SAE, attention over a corpus). */
  samples: number;
  tokensPerSample: number;
  /** Diff mining: top-K per position, tokens listed, NMF topics. */
  mineK: number;
  mineTop: number;
  mineTopics: number;
  /** Corpus KL: contexts listed. */
  klTop: number;
  /** PCA: layer (null: half the depth), hook, components. */
  pcaLayer: number | null;
  pcaHook: (typeof PCA_HOOKS)[number];
  pcaComponents: number;
  /** diff-SAE: layer (null: half the depth), dictionary size, k, training steps, tokens per batch, learning rate. */
  saeLayer: number | null;
  saeDict: number;
  saeK: number;
  saeSteps: number;
  saeBatch: number;
  saeLr: number;
  /** The latent whose contexts and lens are shown (null: the most frequent), and the latent table's sort and filter. */
  saeLatent: number | null;
  saeSort: (typeof SAE_SORTS)[number];
  saeQuery: string;
  /** Amplification: mode, α values, new tokens, samples per α, seed, temperature (runs on the shared prompt). */
  ampMode: (typeof AMPLIFY_MODES)[number];
  alphas: number[];
  generate: number;
  ampSamples: number;
  seed: number;
  temperature: number;
  /** Attention: on the prompt, or averaged over the corpus; the head shown side by side. */
  attnCorpus: boolean;
  attnHead: { layer: number; head: number } | null;
}

export const DEFAULT_METHOD_SETTINGS: MethodSettings = {
  tab: 'mine',
  samples: 64,
  tokensPerSample: 32,
  mineK: 10,
  mineTop: 50,
  mineTopics: 5,
  klTop: 50,
  pcaLayer: null,
  pcaHook: 'resid_post',
  pcaComponents: 5,
  saeLayer: null,
  saeDict: 256,
  saeK: 8,
  saeSteps: 300,
  saeBatch: 128,
  saeLr: 4e-3,
  saeLatent: null,
  saeSort: 'frequency',
  saeQuery: '',
  ampMode: 'logits',
  alphas: [0, 1, 2],
  generate: 24,
  ampSamples: 1,
  seed: 0,
  temperature: 1,
  attnCorpus: false,
  attnHead: null,
};

const count = (max: number) => z.number().int().min(1).max(max);
const layer = z.number().int().min(0).max(1023).nullable();

export const methodSettingsSchema = z.strictObject({
  tab: z.enum(METHOD_TABS),
  samples: count(100_000),
  tokensPerSample: z.number().int().min(2).max(4096),
  mineK: count(1000),
  mineTop: count(10_000),
  mineTopics: z.number().int().min(0).max(100),
  klTop: count(10_000),
  pcaLayer: layer,
  pcaHook: z.enum(PCA_HOOKS),
  pcaComponents: count(256),
  saeLayer: layer,
  saeDict: count(1 << 20),
  saeK: count(4096),
  saeSteps: count(10_000_000),
  saeBatch: count(1 << 16),
  saeLr: z.number().positive().max(1),
  saeLatent: z.number().int().min(0).max((1 << 20) - 1).nullable(),
  saeSort: z.enum(SAE_SORTS),
  saeQuery: z.string().max(100),
  ampMode: z.enum(AMPLIFY_MODES),
  alphas: z.array(z.number().min(-100).max(100)).min(1).max(MAX_ALPHAS),
  generate: count(4096),
  ampSamples: count(64),
  seed: z.number().int().min(0).max(2 ** 31 - 1),
  temperature: z.number().min(0).max(100),
  attnCorpus: z.boolean(),
  attnHead: z.strictObject({ layer: z.number().int().min(0).max(1023), head: z.number().int().min(0).max(4095) }).nullable(),
});

/** The permalink's reading of `methods`: any subset of the fields, the rest at their defaults. */
export const methodSettingsLink = methodSettingsSchema
  .partial()
  .transform((p): MethodSettings => ({ ...DEFAULT_METHOD_SETTINGS, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) }));

/** "0, 1, 2.5" → [0, 1, 2.5]; a one-line error naming the bad entry. */
export function parseAlphas(text: string): { ok: true; alphas: number[] } | { ok: false; message: string } {
  const parts = text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 0) return { ok: false, message: 'give at least one α' };
  if (parts.length > MAX_ALPHAS) return { ok: false, message: `at most ${MAX_ALPHAS} values of α, got ${parts.length}` };
  const alphas: number[] = [];
  for (const p of parts) {
    const x = Number(p);
    if (!Number.isFinite(x) || Math.abs(x) > 100) return { ok: false, message: `α must be a number between −100 and 100, got "${p}"` };
    alphas.push(x);
  }
  return { ok: true, alphas };
}

export interface MethodsSlice {
  methods: MethodSettings;
  /** Changes some settings (the others kept). */
  setMethods(patch: Partial<MethodSettings>): void;
}

export const createMethodsSlice: StateCreator<MethodsSlice, [], [], MethodsSlice> = (set) => ({
  methods: DEFAULT_METHOD_SETTINGS,
  setMethods: (patch) => set((s) => ({ methods: { ...s.methods, ...patch } })),
});
