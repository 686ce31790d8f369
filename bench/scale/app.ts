// The app as a user runs it: the built app in headless Chromium (Debian's), a generated pair given as
// two folders (the folder inputs of the drop zones), then each view in turn in the same page. Per
// step: the wall time until its result shows, the peak of the summed RSS of every Chromium process,
// and the memory mode the page names.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { getPriority, setPriority, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { CHROMIUM, CHROMIUM_ARGS, serve } from '../lib/browser.ts';
import { availableBytes, processTree, RssSampler } from '../lib/memory.ts';
import type { ScaleModel } from './inputs.ts';
import { CC_SETTINGS, MIN_AVAILABLE_BYTES, type Step, type StepResult } from './steps.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Chromium's processes: descendants of this one whose command is Chromium (not esbuild or a CLI child). */
function chromiumPids(): number[] {
  return processTree(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('chrom');
    } catch {
      return false;
    }
  });
}

/** Builds the app (vite.config.ts) into a temporary folder. */
export async function buildApp(): Promise<string> {
  const outDir = mkdtempSync(join(tmpdir(), 'neurodiff-scale-app-'));
  await build({ root: ROOT, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  return outDir;
}

const hash = (state: object) => '#state=' + encodeURIComponent(JSON.stringify(state));

/** The memory plan in the page's words, where a result line names it. */
async function memoryMode(page: Page): Promise<string | null> {
  const text = await page.locator('main').textContent();
  const m = /(both models resident|one model at a time)[^)]*\)?/.exec(text ?? '');
  return m ? m[0] : null;
}

/** Waits for `done` (returns its text) or `error` (throws its text). */
async function outcome(page: Page, done: string, error: string, timeoutMs: number): Promise<string> {
  const d = page.locator(done);
  const e = page.locator(error);
  await d.or(e).first().waitFor({ timeout: timeoutMs });
  if ((await e.count()) > 0) throw new Error((await e.first().textContent()) ?? 'failed');
  return (await d.first().textContent()) ?? '';
}

export async function runApp(model: ScaleModel, steps: readonly Step[], opts: { appDir: string; stepTimeoutMs: number; log(line: string): void }): Promise<{ results: StepResult[]; browser: string }> {
  const { server, url } = await serve(opts.appDir);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const sampler = new RssSampler(chromiumPids);
  const results: StepResult[] = [];
  let stoppedLow = false;
  const watch = setInterval(() => {
    // Chromium raises its own processes' priority; keep them at this process's niceness (nice -n 10).
    for (const pid of chromiumPids()) {
      try {
        if (getPriority(pid) < getPriority()) setPriority(pid, getPriority());
      } catch {
        // The process ended.
      }
    }
    if (stoppedLow || availableBytes() >= MIN_AVAILABLE_BYTES) return;
    stoppedLow = true;
    opts.log(`  chromium: available memory below ${MIN_AVAILABLE_BYTES / 2 ** 30} GiB: closing the browser`);
    void browser.close();
  }, 500);
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(60_000);
    page.on('pageerror', (e) => opts.log(`  page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') opts.log(`  console.error: ${m.text()}`);
    });
    await page.goto(url);
    await page.getByTestId('use-own-models').click();
    const rail = page.getByRole('navigation', { name: 'Views' });

    const measure = async (step: Step, run: () => Promise<{ note?: string; detail?: string } | undefined>): Promise<boolean> => {
      sampler.reset();
      const t0 = performance.now();
      try {
        const out = await run();
        const ms = performance.now() - t0;
        const r: StepResult = { step, ms, peakBytes: sampler.peakBytes(), mode: await memoryMode(page), ...out };
        results.push(r);
        opts.log(`  chromium ${step}: ${(ms / 1000).toFixed(1)} s, peak ${(r.peakBytes! / 2 ** 30).toFixed(2)} GiB${r.mode ? `, ${r.mode}` : ''}`);
        return true;
      } catch (e) {
        const progress = await page.locator('.run-status').allTextContents().catch(() => []);
        // A task left running would hold the worker during the next step: cancel what still runs.
        for (const cancel of await page.locator('.run-status button[data-testid$="-cancel"]').all().catch(() => [])) await cancel.click({ timeout: 5000 }).catch(() => undefined);
        const why = stoppedLow ? 'stopped: available memory fell below 2 GiB' : e instanceof Error ? e.message.split('\n')[0]! : String(e);
        const message = progress.length > 0 ? `${why} (then: ${progress.join(' | ')})` : why;
        results.push({ step, ms: null, peakBytes: sampler.peakBytes(), mode: await memoryMode(page).catch(() => null), note: `failed after ${((performance.now() - t0) / 1000).toFixed(0)} s: ${message}` });
        opts.log(`  chromium ${step}: FAILED: ${message}`);
        return false;
      }
    };

    // The summary is every later step's start, so it always runs.
    const loaded = await measure('summary', async () => {
      // Handing a folder of gigabytes to the page can take longer than Playwright's default minute on a loaded machine.
      const timeout = opts.stepTimeoutMs;
      await Promise.all([page.getByTestId('input-folder-base').setInputFiles(model.base, { timeout }), page.getByTestId('input-folder-ft').setInputFiles(model.ft, { timeout })]);
      await Promise.all(['base', 'ft'].map((role) => outcome(page, `[data-testid="drop-${role}"] .status.summary`, `[data-testid="drop-${role}"] .status.error`, opts.stepTimeoutMs)));
      return undefined;
    });
    if (!loaded) return { results, browser: browser.version() };

    if (steps.includes('weights'))
      await measure('weights', async () => {
        await rail.getByRole('button', { name: 'Weights', exact: true }).click();
        return { detail: await outcome(page, '[data-testid="weights-done"]', '[data-testid="weights-error"]', opts.stepTimeoutMs) };
      });
    if (steps.includes('lens'))
      await measure('lens', async () => {
        await page.evaluate((h) => (location.hash = h), hash({ view: 'lens', prompt: model.prompt }));
        const lens = await outcome(page, '[data-testid="lens-done"]', '[data-testid="lens-error"]', opts.stepTimeoutMs);
        await outcome(page, '[data-testid="deltas-done"]', '[data-testid="deltas-error"]', opts.stepTimeoutMs);
        const chips = await page.getByTestId('prompt-tokens').locator('.token-chip').count();
        return { note: `${chips} prompt tokens`, detail: lens };
      });
    if (steps.includes('crosscoder'))
      await measure('crosscoder', async () => {
        await page.evaluate((h) => (location.hash = h), hash({ view: 'crosscoders', prompt: model.prompt, ccSettings: CC_SETTINGS }));
        await page.getByTestId('cc-corpus').getByText(/mixed_stories\.txt/).waitFor();
        await page.getByTestId('cc-train-button').click();
        // Collection ends where training starts (or the run is done: one step trains in no time).
        await page.locator('[data-testid="cc-progress"][data-stage="training"], [data-testid="cc-done"], [data-testid="cc-error"]').first().waitFor({ timeout: opts.stepTimeoutMs });
        if ((await page.getByTestId('cc-error').count()) > 0) throw new Error((await page.getByTestId('cc-error').textContent()) ?? 'failed');
        const done = page.getByTestId('cc-done');
        if ((await done.count()) > 0) return { note: `collection ${(Number(await done.getAttribute('data-collect-ms')) / 1000).toFixed(1)} s in the worker`, detail: (await done.textContent()) ?? '' };
        // Stop the rest of the run (training, then a pass over the tokens for the latents) so the next step has the worker.
        await page.getByTestId('cc-cancel').click();
        await page.getByTestId('cc-cancelled').waitFor({ timeout: opts.stepTimeoutMs });
        return { note: 'timed until training started' };
      });
    if (steps.includes('adl'))
      await measure('adl', async () => {
        await page.evaluate((h) => (location.hash = h), hash({ view: 'adl', prompt: model.prompt, adlSamples: 32, adlTokens: 32 }));
        return { detail: await outcome(page, '[data-testid="adl-done"]', '[data-testid="adl-error"]', opts.stepTimeoutMs) };
      });
    return { results, browser: browser.version() };
  } finally {
    clearInterval(watch);
    sampler.stop();
    await browser.close();
    server.close();
  }
}

export function removeApp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
