import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

// COOP/COEP make the page cross-origin isolated, which onnxruntime-web needs for threads.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

// The built app's Content-Security-Policy: scripts, workers, styles and fonts only from the app
// itself (WebAssembly compiled in place for the CPU kernels and onnxruntime-web), no plugins, no
// frames. A meta policy cannot change at run time, so connect-src allows any https: server and
// localhost: the app fetches only model and corpus URLs the user typed or a permalink names, by
// range requests, and sends nothing (no analytics, no remote fonts).
const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "connect-src 'self' https: http://localhost:* http://127.0.0.1:*",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'none'",
].join('; ');

// Builds only: the dev server's React refresh preamble is an inline script and its HMR a websocket.
const contentSecurityPolicy: Plugin = {
  name: 'neurodiff-csp',
  apply: 'build',
  transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CSP }, injectTo: 'head-prepend' }],
};

export default defineConfig({
  plugins: [react(), contentSecurityPolicy],
  server: { headers: isolation, port: 5173 },
  preview: { headers: { ...isolation, 'Content-Security-Policy': `${CSP}; frame-ancestors 'none'` }, port: 4173 },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
  worker: { format: 'es' },
});
