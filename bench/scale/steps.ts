// The steps of a scale run and what one step's measurement holds. ADL runs last: it is the slowest
// (its Patchscope runs the fine-tuned model at 30 scales), and a step stopped by its time limit keeps
// the page's worker busy.

export const STEPS = ['summary', 'weights', 'lens', 'crosscoder', 'adl'] as const;
export type Step = (typeof STEPS)[number];

export const STEP_LABELS: Record<Step, string> = {
  summary: 'loaded summary',
  weights: 'Weights',
  lens: 'Lens (16-token prompt)',
  adl: 'ADL (32 × 32 tokens)',
  crosscoder: 'crosscoder collection (8,192 tokens)',
};

/** ADL: samples × tokens per sample (the demo's generic stories). */
export const ADL_SAMPLES = 32;
export const ADL_TOKENS = 32;
/** Crosscoder: 128 samples × 64 tokens = 8,192 tokens collected at the default layer; a small dictionary and one step, since only the collection is timed. */
export const CC_SETTINGS = { samples: 128, tokensPerSample: 64, dict: 256, k: 8, steps: 1, batch: 128 } as const;

export interface StepResult {
  step: Step;
  /** Wall time until the result showed (null: not finished; `note` says why). */
  ms: number | null;
  /** Peak RSS during the step: all Chromium processes summed, or the CLI process's own. */
  peakBytes: number | null;
  /** The memory plan as the front end names it (status line, or `--json` memory). */
  mode: string | null;
  note?: string;
  /** The front end's own result line (the app's "done" text). */
  detail?: string;
}

/** Stops a step when the machine runs short: available memory below this. */
export const MIN_AVAILABLE_BYTES = 2 * 2 ** 30;
