import { describe, expect, it } from 'vitest';
import { fingerprintModel } from '../io/fingerprint.ts';
import { pathFileSet } from '../io/node-source.ts';
import { bytesSource, type FileSet } from '../io/source.ts';
import { FILE_DIGEST_LENGTH, fingerprintMismatch, fingerprintRef, foreignHosts, linkedSubset, MAX_MODEL_URLS, MAX_URL_LENGTH, refLabel, type FingerprintRef } from './model-ref.ts';
import { decodeLink, encodeLink, pickLinkState } from './permalink.ts';
import { createAppStore } from './store.ts';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;
const link = (state: unknown) => '#state=' + encodeURIComponent(JSON.stringify(state));
const HEX64 = 'ab'.repeat(32);

function rejected(models: unknown, ...fragments: string[]): string {
  const r = decodeLink(link({ models }));
  if (r.message === undefined || (r.ok && r.state.modelRefs !== undefined)) throw new Error(`expected ${JSON.stringify(models).slice(0, 120)} to be rejected`);
  for (const f of fragments) expect(r.message).toContain(f);
  return r.message;
}

const droppedOf = (files: FileSet) => [...files].map(([name, src]) => ({ name, size: src.size }));

describe('models in links', () => {
  it('round-trips URL, demo and fingerprint refs under the link key "models"', () => {
    const defaults = pickLinkState(createAppStore().getState());
    const modelRefs = {
      base: { url: ['https://example.org/m/config.json', 'http://localhost:8000/m/model.safetensors'] },
      ft: { fingerprint: HEX64, files: [{ name: 'model.safetensors', size: 12, digest: '0123456789abcdef' }, { name: 'config.json', size: 3 }] },
    };
    const hash = encodeLink({ ...defaults, modelRefs }, defaults);
    const json = JSON.parse(decodeURIComponent(hash.slice('state='.length))) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['models']);
    expect(decodeLink('#' + hash)).toEqual({ ok: true, state: { modelRefs } });
    expect(decodeLink(link({ models: { base: { demo: 'base' }, ft: null } }))).toEqual({ ok: true, state: { modelRefs: { base: { demo: 'base' }, ft: null } } });
  });

  it('accepts only absolute http(s) URLs of bounded length and number', () => {
    for (const bad of ['javascript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'ftp://example.org/model.safetensors', '/models/demo/base/config.json', 'not a url']) {
      rejected({ base: { url: [bad] }, ft: null }, 'models.base.url.0', 'must be an absolute http(s) URL');
    }
    rejected({ base: { url: ['https://e.org/' + 'a'.repeat(MAX_URL_LENGTH)] }, ft: null }, 'models.base.url.0');
    rejected({ base: { url: Array.from({ length: MAX_MODEL_URLS + 1 }, (_, i) => `https://e.org/${i}`) }, ft: null }, 'models.base.url');
    rejected({ base: { url: [] }, ft: null }, 'models.base.url');
  });

  it('names what is wrong with a ref', () => {
    rejected({ base: { url: ['https://e.org/a'], demo: 'base' }, ft: null }, 'models.base', 'exactly one of "url", "fingerprint" and "demo", found url and demo');
    rejected({ base: {}, ft: null }, 'found none');
    rejected({ base: { fingerprint: HEX64 }, ft: null }, 'a fingerprint needs its "files"');
    rejected({ base: { url: ['https://e.org/a'], files: [{ name: 'a', size: 1 }] }, ft: null }, '"files" belongs with a fingerprint');
    rejected({ base: { fingerprint: 'xyz', files: [{ name: 'a', size: 1 }] }, ft: null }, 'models.base.fingerprint', '64 lowercase hex digits');
    rejected({ base: { fingerprint: HEX64, files: [{ name: 'a', size: -1 }] }, ft: null }, 'models.base.files.0.size');
    rejected({ base: { fingerprint: HEX64, files: [{ name: 'a', size: 1.5 }] }, ft: null }, 'models.base.files.0.size');
    rejected({ base: { fingerprint: HEX64, files: [{ name: 'a', size: 1, digest: 'ZZ' }] }, ft: null }, 'models.base.files.0.digest');
    rejected({ base: { fingerprint: HEX64, files: [{ name: 'a', size: 1 }, { name: 'a', size: 2 }] }, ft: null }, 'the file "a" is listed twice');
    rejected({ base: { demo: 'space' }, ft: null }, 'models.base.demo');
    rejected({ base: { demo: 'base', script: 1 }, ft: null }, 'script');
    rejected({ base: null }, 'models.ft');
    rejected({ base: null, ft: null, extra: null }, 'extra');
  });
});

describe('fingerprint checks', () => {
  const files = (entries: Record<string, Uint8Array | string>): FileSet =>
    new Map(Object.entries(entries).map(([name, v]) => [name, bytesSource(typeof v === 'string' ? new TextEncoder().encode(v) : v, name)]));

  it('keeps short per-file digests of the fingerprint', async () => {
    const fp = await fingerprintModel(files({ 'config.json': '{}', 'model.safetensors': new Uint8Array(300_000).fill(7) }));
    const ref = fingerprintRef(fp);
    expect(ref.fingerprint).toBe(fp.fingerprint);
    expect(ref.files).toEqual(fp.files.map((f) => ({ name: f.name, size: f.size, digest: f.digest.slice(0, FILE_DIGEST_LENGTH) })));
    expect(refLabel(ref)).toBe(`model.safetensors + 1 files (${fp.fingerprint.slice(0, 8)})`);
  });

  it('accepts the same files, with extra files left out', async () => {
    const base = await pathFileSet(`${FIXTURES}demo/base`);
    const ref = fingerprintRef(await fingerprintModel(base));
    const withReadme = new Map([...base, ['README.md', bytesSource(new TextEncoder().encode('# notes'), 'README.md')]]);
    const subset = linkedSubset(withReadme, ref);
    expect([...subset.keys()].sort()).toEqual([...base.keys()].sort());
    expect(fingerprintMismatch(ref, await fingerprintModel(subset), droppedOf(withReadme))).toBeNull();
  });

  it('names the file whose content differs: the fine-tune dropped for the base', async () => {
    const ref = fingerprintRef(await fingerprintModel(await pathFileSet(`${FIXTURES}demo/base`)));
    const ocean = await pathFileSet(`${FIXTURES}demo/ocean/model`);
    const message = fingerprintMismatch(ref, await fingerprintModel(linkedSubset(ocean, ref)), droppedOf(ocean))!;
    expect(message).toMatch(/^model\.safetensors has the expected size but different content \(its sampled bytes hash to [0-9a-f]{16}, the link expects [0-9a-f]{16}\)$/);
    expect(message).not.toContain('tokenizer.json');
  });

  it('names missing files, wrong sizes, and files with none of the names', async () => {
    const good = files({ 'config.json': '{"a":1}', 'model.safetensors': 'weights!' });
    const ref = fingerprintRef(await fingerprintModel(good));
    const wrongSize = files({ 'config.json': '{"a":1}', 'model.safetensors': 'weights!!' });
    expect(fingerprintMismatch(ref, await fingerprintModel(linkedSubset(wrongSize, ref)), droppedOf(wrongSize))).toBe('model.safetensors is 9 bytes, the link expects 8 bytes');
    const onlyConfig = files({ 'config.json': '{"a":1}' });
    expect(fingerprintMismatch(ref, await fingerprintModel(linkedSubset(onlyConfig, ref)), droppedOf(onlyConfig))).toBe('model.safetensors is missing (the link expects 8 bytes)');
    const other = files({ 'weights.gguf': 'gguf' });
    expect(fingerprintMismatch(ref, await fingerprintModel(linkedSubset(other, ref)), droppedOf(other))).toBe(
      'config.json is missing (the link expects 7 bytes); model.safetensors is missing (the link expects 8 bytes); the dropped files (weights.gguf) have none of the link\'s names',
    );
  });

  it('says the content differs when a hand-made link has no per-file digests', async () => {
    const good = files({ 'model.safetensors': 'weights!' });
    const fp = await fingerprintModel(good);
    const ref: FingerprintRef = { fingerprint: fp.fingerprint, files: [{ name: 'model.safetensors', size: 8 }] };
    const changed = files({ 'model.safetensors': 'weightz!' });
    expect(fingerprintMismatch(ref, await fingerprintModel(changed), droppedOf(changed))).toMatch(/^the files have the expected names and sizes but different content \(fingerprint [0-9a-f]{16}…, the link expects [0-9a-f]{16}…\)$/);
  });
});

describe('foreignHosts', () => {
  const app = 'https://neurodiff.example';
  it('lists each other server once, in link order; none for the app itself, the demo and local files', () => {
    const url = ['https://hf.example/a/config.json', `${app}/m/model.safetensors`, 'http://127.0.0.1:9000/x.json', 'https://hf.example/a/model.safetensors', 'https://hf.example:8443/b'];
    expect(foreignHosts({ url }, app)).toEqual(['hf.example', 'http://127.0.0.1:9000', 'hf.example:8443']);
    expect(foreignHosts({ url: [`${app}/m/config.json`] }, app)).toEqual([]);
    expect(foreignHosts({ demo: 'base' }, app)).toEqual([]);
    expect(foreignHosts({ fingerprint: 'a'.repeat(64), files: [{ name: 'model.safetensors', size: 1 }] }, app)).toEqual([]);
  });
});
