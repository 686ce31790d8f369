// Models read from URLs by HTTP range requests: the demo folder, or URLs the user pastes.
import { FormatError, urlSource, type FileSet } from '../io/source.ts';

/** Requests in flight at once while sizing a link's files (a link may name 64 URLs per model). */
export const MAX_PARALLEL_HEADS = 4;

/** `f` over `items`, at most `limit` at a time, results in order; the first failure stops the rest. */
async function mapLimited<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await f(items[i]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A file set of remote files under `folderUrl`, each sized with a HEAD request. */
export async function urlFileSet(folderUrl: string, names: readonly string[], signal?: AbortSignal): Promise<FileSet> {
  const sources = await mapLimited(names, MAX_PARALLEL_HEADS, (n) => urlSource(new URL(n, folderUrl).href, signal));
  return new Map(names.map((n, i) => [n, sources[i]!]));
}

/**
 * Pasted URLs, one per line (blank lines and "#" comments skipped), resolved against `base` and
 * checked: http(s) only, each naming a file, no two with the same file name.
 */
export function parseUrlList(text: string, base: string): { url: string; name: string }[] {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new FormatError('URL list', 'is empty: give one URL per line');
  const urls = lines.map((line, i) => {
    let url: URL;
    try {
      url = new URL(line, base);
    } catch {
      throw new FormatError('URL list', `line ${i + 1} is not a URL: ${line}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FormatError('URL list', `line ${i + 1} is not an http(s) URL: ${line}`);
    const name = decodeURIComponent(url.pathname.split('/').pop() ?? '');
    if (name === '') throw new FormatError('URL list', `line ${i + 1} names a folder, not a file: ${line}`);
    return { url: url.href, name };
  });
  const seen = new Set<string>();
  for (const { name } of urls) {
    if (seen.has(name)) throw new FormatError('URL list', `two URLs end in the same file name "${name}"`);
    seen.add(name);
  }
  return urls;
}

/**
 * A file set from pasted URLs, one per line, keyed by each URL's file name (so config.json,
 * model.safetensors and the others sit side by side as in a folder). `base` resolves relative URLs.
 */
export async function fileSetFromUrls(text: string, base: string, signal?: AbortSignal): Promise<FileSet> {
  const urls = parseUrlList(text, base);
  const sources = await mapLimited(urls, MAX_PARALLEL_HEADS, ({ url }) => urlSource(url, signal));
  return new Map(urls.map(({ name }, i) => [name, sources[i]!]));
}
