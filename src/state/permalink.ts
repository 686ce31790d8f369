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
  resultCache: { link: false },
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
} satisfies Record<LinkKey, z.ZodType>;

/** The name a key has in links (the model refs travel as "models"). */
const paramOf = (key: LinkKey): string => {
  const conf = STORE_KEYS[key];
  return 'param' in conf ? conf.param : key;
};
const linkSchema = z.strictObject(Object.fromEntries(LINK_KEYS.map((k) => [paramOf(k), linkShape[k]])));

export type DecodeResult = { ok: true; state: LinkState } | { ok: false; message: string };

const MAX_MESSAGE_LENGTH = 300;
// Messages can quote a key from the link; a hostile link must not flood the page with it.
const fail = (message: string): DecodeResult => ({
  ok: false,
  message: message.length > MAX_MESSAGE_LENGTH ? message.slice(0, MAX_MESSAGE_LENGTH) + '…' : message,
});

/** Reads a location hash ("#state=…" or ""). Never throws; a bad link gives a message saying what is wrong. */
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
  const parsed = linkSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
    return fail(issues.join('; '));
  }
  const state: LinkState = {};
  for (const key of LINK_KEYS) {
    const value = parsed.data[paramOf(key)];
    if (value !== undefined) Object.assign(state, { [key]: value });
  }
  return { ok: true, state };
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
 * Applies the link in the address to the store (a bad link leaves the defaults and sets `linkError`),
 * then keeps the address in step with the store. Returns the disconnect function.
 */
export function connectPermalink(store: AppStore, win: LocationLike): () => void {
  const defaults = pickLinkState(store.getState());
  let written = '';
  const applyHash = () => {
    const result = decodeLink(win.location.hash);
    if (result.ok) {
      store.setState({ ...defaults, ...result.state, linkError: null });
      written = encodeLink(pickLinkState(store.getState()), defaults);
    } else {
      store.getState().setLinkError(result.message);
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
