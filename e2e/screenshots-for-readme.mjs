// The README's pictures: the weights view with a tensor open and the lens view with a cell selected,
// on the built-in demo, written to docs/screenshot-*.png. Not part of npm test.
// Usage: npx vite build && node e2e/screenshots-for-readme.mjs
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const docs = join(root, 'docs');
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const TIMEOUT = 60_000;
const MAX_BYTES = 300 * 1024;

const shots = [
  {
    file: 'screenshot-weights.png',
    state: { view: 'weights', tensor: 'model.layers.3.self_attn.q_proj.weight' },
    ready: (page) => page.getByTestId('tensor-panel').waitFor({ timeout: TIMEOUT }),
    height: 860,
  },
  {
    file: 'screenshot-lens.png',
    state: { view: 'lens', layer: 4, position: 10 },
    ready: async (page) => {
      await page.getByTestId('lens-detail').waitFor({ timeout: TIMEOUT });
      await page.getByTestId('deltas-done').waitFor({ timeout: TIMEOUT });
    },
    height: 1160,
  },
];

mkdirSync(docs, { recursive: true });
const server = await startServer(join(root, 'dist'));
const browser = await launchChromium();
try {
  for (const shot of shots) {
    // A context per picture: nothing cached, so each view is computed as a first visitor sees it.
    const context = await browser.newContext({ viewport: { width: 1280, height: shot.height } });
    const page = await context.newPage();
    await page.goto(server.url + link(shot.state));
    await shot.ready(page);
    const path = join(docs, shot.file);
    await page.screenshot({ path });
    await context.close();
    const bytes = statSync(path).size;
    console.log(`${path}: ${(bytes / 1024).toFixed(0)} KiB`);
    if (bytes > MAX_BYTES) throw new Error(`${shot.file} is ${bytes} bytes, more than the ${MAX_BYTES} a README picture should take`);
  }
} finally {
  await browser.close();
  await server.close();
}
