// Runs a page-side benchmark in headless Chromium: builds bench/browser with Vite into a temp dir,
// serves it on localhost with COOP/COEP (cross-origin isolation, which ORT's wasm threads need),
// and calls window.neurodiffBench.run(name, options) with Debian's Chromium (never a downloaded one).

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build } from 'vite';

const PAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'browser');
/** onnxruntime-web's dist folder (where its Node entry lives). */
const ORT_DIST = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  // Timestamp queries at full resolution (Chromium rounds them to 100 µs otherwise): bench/kernels.
  '--enable-webgpu-developer-features',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.json': 'application/json',
  '.map': 'application/json',
};

/** Serves `root` and, under /ort/, onnxruntime-web's dist folder. Resolves with the server's URL. */
export function serve(root: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const [base, rel] = path.startsWith('/ort/') ? [ORT_DIST, path.slice(5)] : [root, path === '/' ? 'index.html' : path];
    const file = normalize(join(base, rel));
    let body: Buffer | undefined;
    if (file.startsWith(base + sep) && statSync(file, { throwIfNoEntry: false })?.isFile()) body = readFileSync(file);
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    if (!body) {
      res.writeHead(404).end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, { 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream' }).end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('bench server has no port'));
      resolve({ server, url: `http://localhost:${address.port}/` });
    });
  });
}

export interface PageRun<T> {
  result: T;
  /** Chromium's version string. */
  browserVersion: string;
}

export async function runInBrowser<T>(name: string, options: unknown, log: (line: string) => void): Promise<PageRun<T>> {
  const outDir = mkdtempSync(join(tmpdir(), 'neurodiff-bench-'));
  try {
    await build({
      root: PAGE_DIR,
      configFile: false,
      logLevel: 'warn',
      base: './',
      build: { outDir, emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 8192, reportCompressedSize: false },
      worker: { format: 'es' },
    });
    const { server, url } = await serve(outDir);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage();
      page.on('console', (m) => log(m.text()));
      page.on('pageerror', (e) => log(`page error: ${e.message}`));
      await page.goto(url);
      await page.waitForFunction(() => 'neurodiffBench' in window);
      const result = (await page.evaluate(([n, o]) => window.neurodiffBench.run(n, o), [name, options] as const)) as T;
      return { result, browserVersion: browser.version() };
    } finally {
      await browser.close();
      server.close();
    }
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}
