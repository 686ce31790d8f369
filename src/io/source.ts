// Byte sources: a file, blob, URL or path read by byte range, so multi-GB checkpoints are never
// held whole in memory (Chromium caps an ArrayBuffer near 2 GB).

export interface ByteSource {
  /** File name (or path relative to the dropped folder). Used in error messages. */
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Where the bytes come from, in a form a Web Worker can be sent and read itself (sourceFromOrigin). */
  readonly origin?: SourceOrigin;
}

/** A Blob (File) or a URL: both can be posted to a worker, which then reads the bytes without the page. */
export type SourceOrigin = { kind: 'blob'; blob: Blob } | { kind: 'url'; url: string };

/** A folder of files by relative path ("config.json", "model-00001-of-00002.safetensors"). */
export type FileSet = ReadonlyMap<string, ByteSource>;

export class FormatError extends Error {
  constructor(
    readonly file: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'FormatError';
  }
}

export function checkRange(src: ByteSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new FormatError(src.name, `read of ${length} bytes at ${offset} is past the end of the file (${src.size} bytes): the file is truncated or its header is wrong`);
  }
}

export function blobSource(blob: Blob, name: string): ByteSource {
  const src: ByteSource = {
    name,
    size: blob.size,
    origin: { kind: 'blob', blob },
    async read(offset, length) {
      checkRange(src, offset, length);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
  return src;
}

export function bytesSource(bytes: Uint8Array, name: string): ByteSource {
  const src: ByteSource = {
    name,
    size: bytes.byteLength,
    async read(offset, length) {
      checkRange(src, offset, length);
      return bytes.subarray(offset, offset + length);
    },
  };
  return src;
}

/** A remote file read with HTTP range requests. The size comes from a HEAD request. */
export async function urlSource(url: string, signal?: AbortSignal): Promise<ByteSource> {
  const name = decodeURIComponent(new URL(url, globalThis.location?.href).pathname.split('/').pop() ?? url);
  const head = await fetchOrSay(name, url, { method: 'HEAD', ...(signal ? { signal } : {}) });
  if (!head.ok) throw new FormatError(name, `HTTP ${head.status}${head.statusText ? ` ${head.statusText}` : ''} for ${url}`);
  const size = Number(head.headers.get('content-length'));
  if (!Number.isFinite(size)) throw new FormatError(name, `the server did not give the file size (Content-Length) for ${url}`);
  return sizedUrlSource(url, name, size);
}

/** A remote file of known size read with HTTP range requests. */
export function sizedUrlSource(url: string, name: string, size: number): ByteSource {
  const src: ByteSource = {
    name,
    size,
    origin: { kind: 'url', url },
    async read(offset, length, sig) {
      checkRange(src, offset, length);
      if (length === 0) return new Uint8Array(0);
      const res = await fetchOrSay(name, url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` }, ...(sig ? { signal: sig } : {}) });
      if (res.status !== 206 && !(res.status === 200 && offset === 0 && length === size)) {
        throw new FormatError(name, `the server does not support range requests (HTTP ${res.status}) for ${url}`);
      }
      const buf = new Uint8Array(await res.arrayBuffer());
      if (buf.byteLength !== length) throw new FormatError(name, `expected ${length} bytes at ${offset}, got ${buf.byteLength}`);
      return buf;
    },
  };
  return src;
}

/**
 * fetch, with a network failure said in words naming the URL (the browser's own message is only
 * "Failed to fetch"). A cancel stays an AbortError.
 */
async function fetchOrSay(name: string, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    if (init.signal?.aborted) throw e;
    throw new FormatError(
      name,
      `the request to ${url} failed (${(e as Error).message}): the server cannot be reached, does not allow reads from this page (CORS), or the page's Content-Security-Policy refused it`,
    );
  }
}

export async function readText(src: ByteSource): Promise<string> {
  return new TextDecoder().decode(await src.read(0, src.size));
}

export async function readJson(src: ByteSource): Promise<unknown> {
  const text = await readText(src);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new FormatError(src.name, `not valid JSON (${(e as Error).message})`);
  }
}

/** The source a worker reads itself, from what the page sent it (a ByteSource's origin, name and size). */
export function sourceFromOrigin(origin: SourceOrigin, name: string, size: number): ByteSource {
  return origin.kind === 'blob' ? blobSource(origin.blob, name) : sizedUrlSource(origin.url, name, size);
}
