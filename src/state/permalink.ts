// The permalink: which store keys travel in the URL hash, and their validation on the way in.
// The hash never reaches a server, and model files never enter it: a link names views and
// settings, and the recipient drops the same models.
import { z } from 'zod';
import type { AppState, AppStore } from './store.ts';
import { HOOK_KINDS } from '../analysis/activations/differences.ts';
import { DELTA_SCALES, MAX_ADL_SAMPLES, MAX_TOKENS_PER_SAMPLE, PATCH_POSITIONS } from './activations.ts';
import { MIN_TOKENS_PER_SAMPLE } from '../jobs/activations.ts';
import { ccSettingsLink, latentFilterLink, MAX_LATENT } from './crosscoder.ts';
import { methodSettingsLink } from './methods.ts';
import { METRICS } from './metrics.ts';
import { modelRefsSchema } from './model-ref.ts';
import { organismFormLink } from './organisms.ts';
import { VIEWS } from './views.ts';

type DataKey = { [K in keyof AppState]: AppState[K] extends (...args: never[]) => unknown ? never : K }[keyof AppState];

export const MAX_PROMPT_LENGTH = 4000;
export const MAX_LAYER = 1023;
export const MAX_HASH_LENGTH = 16384;
export const MAX_TENSOR_NAME_LENGTH = 512;
export const MAX_POSITION = 4095;
const PREFIX = 'state=';

/** Every data key of the store, and the schema it is read with from a link (false: never in a link). */
export const STORE_KEYS = {
  view: { link: z.enum(VIEWS) },
  prompt: { link: z.string().max(MAX_PROMPT_LENGTH) },
  layer: { link: z.number().int().min(0).max(MAX_LAYER).nullable() },
  adlLayer: { link: z.number().int().min(0).max(MAX_LAYER).nullable() },
  ccLayer: { link: z.number().int().min(0).max(MAX_LAYER).nullable() },
  adlPosition: { link: z.number().int().min(0).max(MAX_POSITION).nullable() },
  linkError: { link: false },
  gpu: { link: false },
  deviceLost: { link: false },
  metric: { link: z.enum(METRICS) },
  tensor: { link: z.string().min(1).max(MAX_TENSOR_NAME_LENGTH).nullable() },
  models: { link: false },
  modelLoader: { link: false },
  demo: { link: false },
  demoError: { link: false },
  weightsRun: { link: false },
  weightsPair: { link: false },
  weightsRunner: { link: false },
  position: { link: z.number().int().min(0).max(MAX_POSITION).nullable() },
  hookKind: { link: z.enum(HOOK_KINDS) },
  deltaScale: { link: z.enum(DELTA_SCALES) },
  adlSamples: { link: z.number().int().min(1).max(MAX_ADL_SAMPLES) },
  adlTokens: { link: z.number().int().min(MIN_TOKENS_PER_SAMPLE).max(MAX_TOKENS_PER_SAMPLE) },
  patchPositions: { link: z.enum(PATCH_POSITIONS) },
  corpus: { link: false },
  activationRuns: { link: false },
  activationsPair: { link: false },
  activationsInfo: { link: false },
  activationsRunner: { link: false },
  modelRefs: { link: modelRefsSchema, param: 'models' },
  refFiles: { link: false },
  linkModelStatus: { link: false },
  queryClient: { link: false },
  storedResults: { link: false },
  ccSettings: { link: ccSettingsLink },
  latent: { link: z.number().int().min(0).max(MAX_LATENT).nullable() },
  latentFilter: { link: latentFilterLink },
  ccCorpus: { link: false },
  ccRun: { link: false },
  ccCurve: { link: false },
  ccResult: { link: false },
  ccDetail: { link: false },
  ccSteer: { link: false },
  ccPair: { link: false },
  ccRunner: { link: false },
  methods: { link: methodSettingsLink },
  organism: { link: organismFormLink },
  orgText: { link: false },
  orgRun: { link: false },
  orgCurve: { link: false },
  orgResult: { link: false },
  orgRunner: { link: false },
} as const satisfies Record<DataKey, { link: z.ZodType | false; param?: string }>;

type Keys = typeof STORE_KEYS;
export type LinkKey = { [K in keyof Keys]: Keys[K]['link'] extends false ? never : K }[keyof Keys];
export type LinkState = { [K in LinkKey]?: AppState[K] };

const LINK_KEYS = (Object.keys(STORE_KEYS) as (keyof Keys)[]).filter(
  (k): k is LinkKey => STORE_KEYS[k].link !== false,
);

const linkShape = {
  view: STORE_KEYS.view.link.optional(),
  prompt: STORE_KEYS.prompt.link.optional(),
  layer: STORE_KEYS.layer.link.optional(),
  adlLayer: STORE_KEYS.adlLayer.link.optional(),
  ccLayer: STORE_KEYS.ccLayer.link.optional(),
  adlPosition: STORE_KEYS.adlPosition.link.optional(),
  metric: STORE_KEYS.metric.link.optional(),
  tensor: STORE_KEYS.tensor.link.optional(),
  position: STORE_KEYS.position.link.optional(),
  hookKind: STORE_KEYS.hookKind.link.optional(),
  deltaScale: STORE_KEYS.deltaScale.link.optional(),
  adlSamples: STORE_KEYS.adlSamples.link.optional(),
  adlTokens: STORE_KEYS.adlTokens.link.optional(),
  patchPositions: STORE_KEYS.patchPositions.link.optional(),
  modelRefs: STORE_KEYS.modelRefs.link.optional(),
  ccSettings: STORE_KEYS.ccSettings.link.optional(),
  latent: STORE_KEYS.latent.link.optional(),
  latentFilter: STORE_KEYS.latentFilter.link.optional(),
  methods: STORE_KEYS.methods.link.optional(),
  organism: STORE_KEYS.organism.link.optional(),
} satisfies Record<LinkKey, z.ZodType>;

/** The name a key has in links (the model refs travel as "models"). */
const paramOf = (key: LinkKey): string => {
  const conf = STORE_KEYS[key];
  return 'param' in conf ? conf.param : key;
};
const KEY_OF_PARAM = new Map<string, LinkKey>(LINK_KEYS.map((k) => [paramOf(k), k]));

/**
 * A readable link: its valid settings, and `message` saying in words which settings were left out and
 * why (absent when all were used). A link that cannot be read at all gives ok: false.
 */
export type DecodeResult = { ok: true; state: LinkState; message?: string } | { ok: false; message: string };

const MAX_MESSAGE_LENGTH = 300;
// Messages can quote a key from the link; a hostile link must not flood the page with it.
const clip = (message: string) => (message.length > MAX_MESSAGE_LENGTH ? message.slice(0, MAX_MESSAGE_LENGTH) + '…' : message);
const fail = (message: string): DecodeResult => ({ ok: false, message: clip(message) });
const quote = (v: unknown): string => {
  const text = v === undefined ? 'missing' : typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : (JSON.stringify(v) ?? String(v));
  return text.length > 48 ? text.slice(0, 48) + '…' : text;
};

/** The value at a path inside a link's setting. */
function at(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const p of path) v = typeof v === 'object' && v !== null && Object.hasOwn(v, p) ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/** What a validation issue means, in words: "must be at most 1023", "must be one of lens, adl". */
function inWords(issues: readonly z.core.$ZodIssue[]): string {
  // A number past the safe integers fails two maxima: the setting's own is the one to name.
  const bigs = issues.filter((i) => i.code === 'too_big');
  const issue = bigs.length > 1 ? bigs.reduce((a, b) => (Number(b.maximum) < Number(a.maximum) ? b : a)) : issues[0]!;
  switch (issue.code) {
    case 'too_big':
      return issue.origin === 'string' ? `must be at most ${issue.maximum} characters long` : issue.origin === 'array' ? `may list at most ${issue.maximum} entries` : `must be at most ${issue.maximum}`;
    case 'too_small':
      return issue.origin === 'string' ? (Number(issue.minimum) === 1 ? 'must not be empty' : `must be at least ${issue.minimum} characters long`) : issue.origin === 'array' ? `must list at least ${issue.minimum} entries` : `must be at least ${issue.minimum}`;
    case 'invalid_type':
      return issue.expected === 'int' ? 'must be a whole number' : `must be ${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map(String).join(', ')}`;
    case 'unrecognized_keys':
      return `has no setting ${issue.keys.map(quote).join(', ')}`;
    default:
      return issue.message;
  }
}

/**
 * Reads a location hash ("#state=…" or ""). Never throws. Each setting is checked on its own: a bad
 * one is left out and named in `message`, in words, and the others are kept.
 */
export function decodeLink(hash: string): DecodeResult {
  const body = hash.startsWith('#') ? hash.slice(1) : hash;
  if (body === '') return { ok: true, state: {} };
  if (body.length > MAX_HASH_LENGTH) {
    return fail(`the link's state is ${body.length} characters long, more than the ${MAX_HASH_LENGTH} accepted`);
  }
  if (!body.startsWith(PREFIX)) return fail(`the part after "#" should start with "${PREFIX}"`);
  let text: string;
  try {
    text = decodeURIComponent(body.slice(PREFIX.length));
  } catch {
    return fail('the state is not valid percent-encoding');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`the state is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('the state is not a JSON object of settings');
  const state: LinkState = {};
  const problems: string[] = [];
  for (const [param, value] of Object.entries(json)) {
    const key = KEY_OF_PARAM.get(param);
    if (!key) {
      problems.push(`${quote(param)} is not a setting links carry`);
      continue;
    }
    const parsed = linkShape[key].safeParse(value);
    if (parsed.success) {
      if (parsed.data !== undefined) Object.assign(state, { [key]: parsed.data });
      continue;
    }
    const path = parsed.error.issues[0]!.path;
    const where = [param, ...path.map(String)].join('.');
    const sameSpot = parsed.error.issues.filter((i) => i.path.length === path.length && i.path.every((p, j) => p === path[j]));
    problems.push(`${where} is ${quote(at(value, path))} but ${inWords(sameSpot)}`);
  }
  if (problems.length === 0) return { ok: true, state };
  const shown = problems.slice(0, 3).join('; ') + (problems.length > 3 ? `; and ${problems.length - 3} more` : '');
  return { ok: true, state, message: clip(`${problems.length === 1 ? 'one setting was' : `${problems.length} settings were`} left out: ${shown}`) };
}

export function pickLinkState(state: AppState): Required<LinkState> {
  return Object.fromEntries(LINK_KEYS.map((k) => [k, state[k]])) as Required<LinkState>;
}

/** The hash for a state ("" when everything is at its default), without the leading "#". */
export function encodeLink(state: Required<LinkState>, defaults: Required<LinkState>): string {
  const changed: Record<string, unknown> = {};
  for (const key of LINK_KEYS) {
    if (JSON.stringify(state[key]) !== JSON.stringify(defaults[key])) changed[paramOf(key)] = state[key];
  }
  return Object.keys(changed).length === 0 ? '' : PREFIX + encodeURIComponent(JSON.stringify(changed));
}

export interface LocationLike {
  location: { hash: string; pathname: string; search: string };
  history: { replaceState(data: unknown, unused: string, url: string): void };
  addEventListener(type: 'hashchange', cb: () => void): void;
  removeEventListener(type: 'hashchange', cb: () => void): void;
}

/**
 * Applies the link in the address to the store (its valid settings; `linkError` says what was left out,
 * or that an unreadable link left the defaults),
 * then keeps the address in step with the store. Returns the disconnect function.
 */
export function connectPermalink(store: AppStore, win: LocationLike): () => void {
  const defaults = pickLinkState(store.getState());
  let written = '';
  const applyHash = () => {
    const result = decodeLink(win.location.hash);
    if (result.ok) {
      store.setState({ ...defaults, ...result.state, linkError: result.message === undefined ? null : `${result.message}. The rest of the link was applied` });
      written = encodeLink(pickLinkState(store.getState()), defaults);
    } else {
      store.getState().setLinkError(`${result.message}. NeuroDiff started with its default settings`);
    }
  };
  applyHash();
  const unsubscribe = store.subscribe((state) => {
    const hash = encodeLink(pickLinkState(state), defaults);
    if (hash === written) return;
    written = hash;
    win.history.replaceState(null, '', hash ? `#${hash}` : win.location.pathname + win.location.search);
  });
  win.addEventListener('hashchange', applyHash);
  return () => {
    unsubscribe();
    win.removeEventListener('hashchange', applyHash);
  };
}
