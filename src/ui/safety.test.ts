import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { decodeLink } from '../state/permalink.ts';
import { LinkModelView } from './LinkModelPanel.tsx';

const SRC = new URL('..', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|tsx)$/.test(name) && !/\.test\.ts$/.test(name) ? [path] : [];
  });
}

// Ways to turn a string into markup: none of them may appear in the views, so text from a link,
// a model file or a tokenizer can only ever be rendered as text.
const MARKUP_SINKS = [/dangerouslySetInnerHTML/, /\.innerHTML\b/, /\.outerHTML\b/, /insertAdjacentHTML/, /document\.write/, /\.html\(/, /createContextualFragment/, /\beval\(/, /new Function\(/];

describe('no markup from strings', () => {
  it('finds no HTML sinks in src/ui or src/state', () => {
    const files = [...sourceFiles(join(SRC, 'ui')), ...sourceFiles(join(SRC, 'state'))];
    expect(files.length).toBeGreaterThan(10);
    const hits = files.flatMap((f) => {
      const text = readFileSync(f, 'utf8');
      return MARKUP_SINKS.filter((re) => re.test(text)).map((re) => `${relative(SRC, f)}: ${re.source}`);
    });
    expect(hits).toEqual([]);
  });
});

describe('a link naming models', () => {
  const actions = { forget() {}, cancel() {}, retry() {}, openAnyway() {} };

  it('shows URLs and file names from the link as text', () => {
    const hostile = 'https://example.org/<img src=x onerror=alert(1)>/model.safetensors';
    const decoded = decodeLink(
      '#state=' +
        encodeURIComponent(
          JSON.stringify({ models: { base: { url: [hostile] }, ft: { fingerprint: 'a'.repeat(64), files: [{ name: '<script>alert(2)</script>', size: 3 }] } } }),
        ),
    );
    if (!decoded.ok) throw new Error(decoded.message);
    const refs = decoded.state.modelRefs!;
    const base = renderToStaticMarkup(createElement(LinkModelView, { role: 'base', wanted: refs.base!, status: { kind: 'fetching' }, actions }));
    const ft = renderToStaticMarkup(createElement(LinkModelView, { role: 'ft', wanted: refs.ft!, status: { kind: 'mismatch', message: '<b>x</b> differs', files: new Map() }, actions }));
    expect(base).not.toContain('<img');
    expect(base).toContain('https://example.org/&lt;img src=x onerror=alert(1)&gt;/model.safetensors');
    expect(ft).not.toContain('<script');
    expect(ft).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(ft).toContain('3 bytes');
    expect(ft).toContain('These are not the files the link was made with: &lt;b&gt;x&lt;/b&gt; differs.');
    expect(base).toContain('data-testid="link-model-cancel-base"');
  });
});
