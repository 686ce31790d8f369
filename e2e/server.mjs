// A static file server for dist/, with the cross-origin isolation headers the app is served with
// and HTTP range requests (the app reads model files by byte range).
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Serves `root` on an ephemeral port of localhost. Resolves once listening.
 * `delay: {pattern, ms}` holds every response whose path (with query) matches the RegExp for `ms`,
 * to test slow models: a client that gives up meanwhile gets nothing.
 */
export async function startServer(root, { delay } = {}) {
  const index = join(root, 'index.html');
  try {
    await stat(index);
  } catch {
    throw new Error(`${index} is missing: run "npx vite build" first (npm run test:e2e does)`);
  }
  // The policy the build put in index.html, also sent as a header (which can forbid framing).
  const meta = /<meta http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(await readFile(index, 'utf8'));
  const csp = meta ? `${meta[1].replace(/&#39;/g, "'")}; frame-ancestors 'none'` : null;
  const timers = new Set();
  /** Delayed requests, and those the client gave up on before their answer. */
  const stats = { delayed: 0, abandoned: 0 };
  const server = createServer(async (req, res) => {
    if (delay && delay.pattern.test(req.url ?? '')) {
      stats.delayed++;
      const gaveUp = await new Promise((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          res.off('close', onClose);
          resolve(false);
        }, delay.ms);
        const onClose = () => {
          clearTimeout(timer);
          timers.delete(timer);
          resolve(true);
        };
        timers.add(timer);
        res.once('close', onClose);
      });
      if (gaveUp) {
        stats.abandoned++;
        return;
      }
    }
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
      'Accept-Ranges': 'bytes',
      ...(csp ? { 'Content-Security-Policy': csp } : {}),
    };
    let file;
    try {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
      file = normalize(join(root, path === '/' ? 'index.html' : path));
    } catch {
      res.writeHead(400, headers).end('bad request');
      return;
    }
    if (!file.startsWith(root + sep)) {
      res.writeHead(403, headers).end('forbidden');
      return;
    }
    let size;
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404, headers).end('not found');
      return;
    }
    headers['Content-Type'] = TYPES[extname(file)] ?? 'application/octet-stream';
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = size - 1;
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start > end) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    res.writeHead(range ? 206 : 200, { ...headers, 'Content-Length': end - start + 1 });
    if (req.method === 'HEAD' || size === 0) res.end();
    else createReadStream(file, { start, end }).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://localhost:${port}`,
    stats,
    close: () =>
      new Promise((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
