// Browser tests: serves dist/ with COOP/COEP on localhost, drives Debian's Chromium (SwiftShader
// WebGPU) with playwright-core, and runs every e2e/*.spec.mjs. Usage: node e2e/run.mjs [name filter];
// E2E_TIMEOUT_S raises the 90 s limit of a test (a loaded machine). E2E_LANES sets how many tests run at
// once, each lane in its own browser (default 2 where the machine has 2 cores or more: much of a test waits
// on one busy thread, the page's or its worker's, so two lanes on 2 cores take about two thirds of the time).
// A spec that exports `oneLane = true` (tests that already drive two busy pages side by side) has its tests
// run one after another in the first lane, never beside each other.
import { readdir } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const screenshots = join(here, 'screenshots');
const TEST_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_S ?? 90) * 1000;
const LANES = Number(process.env.E2E_LANES ?? Math.min(2, availableParallelism()));
if (!Number.isInteger(LANES) || LANES < 1) {
  // Otherwise no lane would start and the run would report "0 passed, 0 failed" as a success.
  console.error(`E2E_LANES must be a whole number ≥ 1, not "${process.env.E2E_LANES}"`);
  process.exit(1);
}
const filter = process.argv[2] ?? '';

const specFiles = (await readdir(here)).filter((f) => f.endsWith('.spec.mjs')).sort();
const tests = [];
for (const file of specFiles) {
  const mod = await import(pathToFileURL(join(here, file)).href);
  for (const [name, fn] of Object.entries(mod.tests ?? {})) {
    if (`${file} ${name}`.includes(filter)) tests.push({ file, name, fn, oneLane: mod.oneLane === true });
  }
}
if (tests.length === 0) {
  console.error(`no tests found in e2e/*.spec.mjs${filter ? ` matching "${filter}"` : ''}`);
  console.log('0 passed, 0 failed');
  process.exit(1);
}

mkdirSync(screenshots, { recursive: true });
let server;
const browsers = [];
try {
  server = await startServer(dist);
  for (let i = 0; i < Math.min(LANES, tests.length); i++) {
    browsers.push(
      await launchChromium().catch((e) => {
        throw new Error(`${e.message}\n(the browser is Debian's /usr/bin/chromium: apt-get install chromium; never a downloaded one)`);
      }),
    );
  }
} catch (e) {
  console.error(`cannot start the e2e run: ${e.message}`);
  for (const b of browsers) await b.close();
  await server?.close();
  console.log(`0 passed, ${tests.length} failed`);
  process.exit(1);
}

const slug = (s) => s.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
let passed = 0;
let failed = 0;
const firstLaneOnly = tests.filter((t) => t.oneLane);
const queue = tests.filter((t) => !t.oneLane);
/**
 * One lane: takes the next test until none is left, each in fresh contexts of its browser. The first lane
 * takes the one-lane tests first, then helps with the rest.
 */
async function lane(browser, index) {
  const next = () => (index === 0 && firstLaneOnly.shift()) || queue.shift();
  for (let t = next(); t; t = next()) {
    const log = [];
    const pageErrors = [];
    const contexts = [];
    const openPage = async (options = {}) => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
      contexts.push(context);
      const p = await context.newPage();
      p.setDefaultTimeout(20_000);
      const tag = contexts.length > 1 ? `[context ${contexts.length}] ` : '';
      p.on('console', (m) => log.push(`${tag}console.${m.type()}: ${m.text()}`));
      p.on('pageerror', (e) => pageErrors.push(e));
      return p;
    };
    const page = await openPage();
    const ctx = {
      page,
      url: (path = '/') => server.url + path,
      screenshot: (name, of = page) => of.screenshot({ path: join(screenshots, `${slug(name)}.png`), fullPage: true }),
      /** A page in a new browser context (its own storage and cache, as another person's browser), closed after the test. */
      newPage: openPage,
    };
    const started = Date.now();
    try {
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS / 1000} s`)), TEST_TIMEOUT_MS);
      });
      await Promise.race([t.fn(ctx), timeout]).finally(() => clearTimeout(timer));
      if (pageErrors.length) throw new Error(`uncaught error in the page: ${pageErrors[0].stack ?? pageErrors[0].message}`);
      passed++;
      console.log(`ok   ${t.file} › ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.file} › ${t.name} (${Date.now() - started} ms)`);
      console.log(`     ${String(e?.stack ?? e).split('\n').join('\n     ')}`);
      if (log.length) console.log(`     page log:\n       ${log.slice(-20).join('\n       ')}`);
      const shot = join(screenshots, `FAILED-${slug(t.name)}.png`);
      await page.screenshot({ path: shot, fullPage: true }).then(
        () => console.log(`     screenshot: ${shot}`),
        () => {},
      );
    } finally {
      for (const c of contexts) await c.close();
    }
  }
}
try {
  await Promise.all(browsers.map((b, i) => lane(b, i)));
} finally {
  for (const b of browsers) await b.close();
  await server.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
