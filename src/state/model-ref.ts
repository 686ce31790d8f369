// How a permalink names a model without carrying it: by the URLs it was read from, by the
// built-in demo's name, or by a fingerprint of local files (names, sizes, sampled SHA-256) that
// the recipient's own copy must match.
import { z } from 'zod';
import type { FileFingerprint, ModelFingerprint } from '../io/fingerprint.ts';
import type { FileSet } from '../io/source.ts';

export const MAX_MODEL_URLS = 64;
export const MAX_URL_LENGTH = 2048;
export const MAX_MODEL_FILES = 256;
export const MAX_FILE_NAME_LENGTH = 512;
/** Hex digits of each file's digest kept in a link: enough to say which file differs. */
export const FILE_DIGEST_LENGTH = 16;
export const DEMO_MODELS = ['base', 'ocean'] as const;
export type DemoModel = (typeof DEMO_MODELS)[number];

export interface LinkedFile {
  name: string;
  size: number;
  digest?: string;
}

export type UrlRef = { url: string[] };
export type FingerprintRef = { fingerprint: string; files: LinkedFile[] };
export type DemoRef = { demo: DemoModel };
export type ModelRef = UrlRef | FingerprintRef | DemoRef;
export type ModelRefs = { base: ModelRef | null; ft: ModelRef | null };

const isHttpUrl = (s: string) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
};

const linkedFile = z.strictObject({
  name: z.string().min(1).max(MAX_FILE_NAME_LENGTH),
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  digest: z
    .string()
    .regex(new RegExp(`^[0-9a-f]{${FILE_DIGEST_LENGTH}}$`), `must be ${FILE_DIGEST_LENGTH} lowercase hex digits`)
    .optional(),
});

// One object with a refinement rather than a union, so a bad URL is reported as such and not as
// "matches none of the options".
const modelRefSchema = z
  .strictObject({
    url: z
      .array(z.string().max(MAX_URL_LENGTH).refine(isHttpUrl, 'must be an absolute http(s) URL'))
      .min(1)
      .max(MAX_MODEL_URLS)
      .optional(),
    fingerprint: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits (SHA-256)')
      .optional(),
    files: z.array(linkedFile).min(1).max(MAX_MODEL_FILES).optional(),
    demo: z.enum(DEMO_MODELS).optional(),
  })
  .superRefine((v, ctx) => {
    const kinds = [v.url && 'url', v.fingerprint && 'fingerprint', v.demo && 'demo'].filter(Boolean);
    if (kinds.length !== 1) ctx.addIssue({ code: 'custom', message: `needs exactly one of "url", "fingerprint" and "demo", found ${kinds.length === 0 ? 'none' : kinds.join(' and ')}` });
    else if (v.fingerprint !== undefined && v.files === undefined) ctx.addIssue({ code: 'custom', message: 'a fingerprint needs its "files" (names and sizes)' });
    else if (v.fingerprint === undefined && v.files !== undefined) ctx.addIssue({ code: 'custom', message: '"files" belongs with a fingerprint' });
    const names = new Set<string>();
    for (const f of v.files ?? []) {
      if (names.has(f.name)) ctx.addIssue({ code: 'custom', message: `the file "${f.name}" is listed twice` });
      names.add(f.name);
    }
  })
  .transform((v): ModelRef => {
    if (v.url) return { url: v.url };
    if (v.demo) return { demo: v.demo };
    return { fingerprint: v.fingerprint!, files: v.files!.map(({ name, size, digest }) => (digest === undefined ? { name, size } : { name, size, digest })) };
  });

export const modelRefsSchema = z.strictObject({ base: modelRefSchema.nullable(), ft: modelRefSchema.nullable() });

export const isUrlRef = (r: ModelRef): r is UrlRef => 'url' in r;
export const isFingerprintRef = (r: ModelRef): r is FingerprintRef => 'fingerprint' in r;
export const isDemoRef = (r: ModelRef): r is DemoRef => 'demo' in r;

export function fingerprintRef(fp: ModelFingerprint): FingerprintRef {
  return { fingerprint: fp.fingerprint, files: fp.files.map((f) => ({ name: f.name, size: f.size, digest: f.digest.slice(0, FILE_DIGEST_LENGTH) })) };
}

/**
 * The servers other than the app's own that opening a ref would send requests to, each once, in
 * the order the link names them: empty for the demo, fingerprinted local files and URLs on the
 * app's origin. A link naming any must be confirmed before the first request (the hosts can be
 * services on the user's network that were never meant to receive requests from a web page).
 */
export function foreignHosts(ref: ModelRef, appOrigin: string): string[] {
  if (!isUrlRef(ref)) return [];
  const hosts = new Set<string>();
  for (const u of ref.url) {
    const url = new URL(u);
    if (url.origin !== appOrigin) hosts.add(url.protocol === 'https:' ? url.host : `${url.protocol}//${url.host}`);
  }
  return [...hosts];
}

export const sameRef = (a: ModelRef | null, b: ModelRef | null) => JSON.stringify(a) === JSON.stringify(b);

const bytes = (n: number) => `${n.toLocaleString('en-US')} bytes`;

/** The files of `files` that the link names; extra files (a README, another format) are left out. */
export function linkedSubset(files: FileSet, ref: FingerprintRef): FileSet {
  const wanted = new Set(ref.files.map((f) => f.name));
  return new Map([...files].filter(([name]) => wanted.has(name)));
}

/**
 * Why files do not match a link's fingerprint, naming each file and what differs; null when they
 * match. `actual` is the fingerprint of `linkedSubset(dropped, expected)`; `dropped` lists every
 * dropped file's name and size.
 */
export function fingerprintMismatch(expected: FingerprintRef, actual: ModelFingerprint, dropped: readonly { name: string; size: number }[]): string | null {
  if (actual.fingerprint === expected.fingerprint) return null;
  const got = new Map<string, FileFingerprint>(actual.files.map((f) => [f.name, f]));
  const problems: string[] = [];
  for (const want of expected.files) {
    const have = got.get(want.name);
    if (!have) problems.push(`${want.name} is missing (the link expects ${bytes(want.size)})`);
    else if (have.size !== want.size) problems.push(`${want.name} is ${bytes(have.size)}, the link expects ${bytes(want.size)}`);
    else if (want.digest !== undefined && !have.digest.startsWith(want.digest)) problems.push(`${want.name} has the expected size but different content (its sampled bytes hash to ${have.digest.slice(0, FILE_DIGEST_LENGTH)}, the link expects ${want.digest})`);
  }
  if (problems.length === 0) problems.push(`the files have the expected names and sizes but different content (fingerprint ${actual.fingerprint.slice(0, 16)}…, the link expects ${expected.fingerprint.slice(0, 16)}…)`);
  const missingAll = expected.files.every((f) => !got.has(f.name));
  if (missingAll && dropped.length > 0) {
    const shown = dropped.slice(0, 4).map((f) => f.name).join(', ');
    problems.push(`the dropped files (${shown}${dropped.length > 4 ? ', …' : ''}) have none of the link's names`);
  }
  const shown = problems.slice(0, 4);
  if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
  return shown.join('; ');
}

/** A short name for a model ref, for cache entries and reports. */
export function refLabel(ref: ModelRef): string {
  if (isDemoRef(ref)) return `demo ${ref.demo}`;
  if (isUrlRef(ref)) {
    const first = new URL(ref.url[0]!);
    const folder = first.pathname.slice(0, first.pathname.lastIndexOf('/') + 1);
    return `${first.host}${folder}${ref.url.length > 1 ? ` (${ref.url.length} files)` : ref.url[0]!.slice(ref.url[0]!.lastIndexOf('/') + 1)}`;
  }
  const largest = ref.files.reduce((a, b) => (b.size > a.size ? b : a));
  return `${largest.name}${ref.files.length > 1 ? ` + ${ref.files.length - 1} files` : ''} (${ref.fingerprint.slice(0, 8)})`;
}
