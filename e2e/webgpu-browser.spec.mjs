// The browser's WebGPU path (issue 17): with "Compute on" set to WebGPU (Chromium's SwiftShader here),
// analyses run on WebGPU inside the analysis worker, and their numbers match the CPU backend's run on
// the same inputs. Each backend runs in a browser context of its own, so neither reads the other's
// session cache; the numbers come from the session JSON export (unrounded).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './browser.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The weight diff of the demo pair (56 tensors of 192 wide) takes ~30 s on the CPU of a shared
// machine and longer on SwiftShader; the 3-layer llama fixture keeps each run to seconds.
const arch = join(root, 'test', 'fixtures', 'arch', 'llama');
// Patching and crosscoders need a tokenizer: the stories260K pair (64 wide, 5 layers, 512 tokens)
// costs an eighth of the demo pair's unembedding, which dominates a forward pass on SwiftShader.
const stories = join(root, 'test', 'fixtures', 'stories260K');

// A run may take most of the test's limit, which E2E_TIMEOUT_S raises on a loaded machine (see run.mjs).
const RUN_TIMEOUT = Number(process.env.E2E_TIMEOUT_S ?? 90) * 1000 - 10_000; // the runner's limit for a test (e2e/run.mjs), less 10 s
// The stories260K pair's tied embedding (512 × 64 float32, 128 KiB: the lens's unembedding too) and MLP
// matrices (172 × 64, 44 KiB) exceed this and are kept as row blocks; its attention matrices (16 KiB) are not.
const ROW_BLOCK_BYTES = 32 * 1024;
// A small ADL: 8 built-in stories of 16 tokens; its Patchscope still sweeps 30 scales on 3 identity prompts
// for each of 5 positions (one batched step of 30 rows per prompt and position).
const SMALL_ADL = { adlSamples: 8, adlTokens: 16 };
// A few steps of a tiny crosscoder: 8 stories of 16 tokens, 32 latents, batches of 32 tokens.
const TINY_CROSSCODER = { samples: 8, tokensPerSample: 16, dict: 32, k: 4, steps: 8, batch: 32, lr: 0.01 };
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));

/**
 * A page in a fresh browser context with "Compute on" set before the app starts; `bindingBytes` sets the
 * test-only storage binding size above which WebGPU keeps tensors as row blocks.
 */
async function pageOn(newPage, backend, bindingBytes = 0) {
  const page = await newPage();
  await page.addInitScript(([b, n]) => {
    localStorage.setItem('neurodiff.compute', b);
    if (n > 0) localStorage.setItem('neurodiff.test.maxBindingBytes', String(n));
  }, [backend, bindingBytes]);
  return page;
}

/** Opens the stories260K pair from its folders with the link's settings, then the view named `label` in the rail. */
async function openStories(page, url, settings, label) {
  await page.goto(url(link({ view: 'models', ...settings })));
  await page.getByTestId('use-own-models').click();
  await page.getByTestId('input-folder-base').setInputFiles(join(stories, 'base'));
  await page.getByTestId('input-folder-ft').setInputFiles(join(stories, 'ocean', 'model'));
  await page.getByTestId('drop-ft').getByTestId('load-status').and(page.locator('.ok')).waitFor();
  await page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: label, exact: true }).click();
}

async function waitDone(page, task) {
  const done = page.getByTestId(`${task}-done`);
  await done.or(page.getByTestId(`${task}-error`)).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await page.getByTestId(`${task}-error`).count()) assert.fail(await page.getByTestId(`${task}-error`).textContent());
  return { text: (await done.textContent()) ?? '', ms: Number(await done.getAttribute('data-ms')) };
}

async function sessionReport(page) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-session').click()]);
  return JSON.parse(readFileSync(await file.path(), 'utf8'));
}

/**
 * Compares every number of two results (same shape): |a − b| ≤ abs + rel·|b|. Returns the number of
 * values compared and the largest deviations, and fails naming the first path out of tolerance.
 */
function compareNumbers(gpu, cpu, { abs, rel }, path = '', stats = { n: 0, maxAbs: 0, maxRel: 0 }) {
  if (typeof cpu === 'number' || cpu === null) {
    if (cpu === null || typeof gpu !== 'number') {
      assert.equal(gpu, cpu, `${path}: ${gpu} vs ${cpu}`);
      return stats;
    }
    const d = Math.abs(gpu - cpu);
    stats.n++;
    stats.maxAbs = Math.max(stats.maxAbs, d);
    if (Math.abs(cpu) > abs) stats.maxRel = Math.max(stats.maxRel, d / Math.abs(cpu));
    assert.ok(d <= abs + rel * Math.abs(cpu), `${path}: WebGPU ${gpu} vs CPU ${cpu} (|Δ| ${d.toExponential(2)} > ${abs} + ${rel}·|CPU|)`);
  } else if (Array.isArray(cpu)) {
    assert.ok(Array.isArray(gpu) && gpu.length === cpu.length, `${path}: length ${gpu?.length} vs ${cpu.length}`);
    cpu.forEach((c, i) => compareNumbers(gpu[i], c, { abs, rel }, `${path}[${i}]`, stats));
  } else if (typeof cpu === 'object') {
    assert.deepEqual(Object.keys(gpu).sort(), Object.keys(cpu).sort(), `${path}: the same fields`);
    for (const k of Object.keys(cpu)) compareNumbers(gpu[k], cpu[k], { abs, rel }, `${path}.${k}`, stats);
  } else if (!path.endsWith('.method')) {
    // A method note ("householder 1/7") counts the fallbacks that rounding chose; it may differ.
    assert.equal(gpu, cpu, `${path}`);
  }
  return stats;
}

/**
 * Runs one view on both backends (one context each, side by side) and returns both session reports;
 * `bindingBytes` makes WebGPU keep tensors above that size as row blocks (a test setting).
 */
/**
 * Compares two ranked token lists by probability (|a − b| ≤ abs + rel·|b|); the tokens at a place must be
 * the same unless the CPU's probability there ties with a neighbour's within that tolerance (a near-tie
 * may swap). Returns the number of swapped places.
 */
function compareRanking(gpu, cpu, { abs, rel }, path) {
  assert.equal(gpu.length, cpu.length, `${path}: ${gpu.length} vs ${cpu.length} tokens`);
  const near = (a, b) => Math.abs(a - b) <= abs + rel * Math.abs(b);
  let swaps = 0;
  cpu.forEach((c, j) => {
    const g = gpu[j];
    assert.ok(near(g.prob, c.prob), `${path}[${j}]: WebGPU p ${g.prob} vs CPU ${c.prob}`);
    if (g.id !== c.id) {
      assert.ok([cpu[j - 1], cpu[j + 1]].some((n) => n && near(n.prob, c.prob)), `${path}[${j}]: WebGPU token ${g.id} vs CPU ${c.id} at p ${c.prob}, not a near-tie`);
      swaps++;
    } else if (c.scales !== undefined) {
      assert.equal(g.scales, c.scales, `${path}[${j}]: scales holding token ${c.id}`);
    }
  });
  return swaps;
}

async function bothBackends(newPage, open, tasks, { bindingBytes = 0 } = {}) {
  const run = async (backend) => {
    const page = await pageOn(newPage, backend, backend === 'webgpu' ? bindingBytes : 0);
    const t0 = Date.now();
    await open(page);
    const done = {};
    for (const task of tasks) done[task] = await waitDone(page, task);
    console.log(`     ${backend}: ${tasks.map((t) => `${t} ${done[t].ms} ms`).join(', ')} (${Date.now() - t0} ms in all)`);
    return { page, done, report: await sessionReport(page) };
  };
  const [cpu, gpu] = await Promise.all([run('cpu'), run('webgpu')]);
  return { cpu, gpu };
}

// Each test drives two pages side by side (CPU and WebGPU), so they run one at a time (e2e/run.mjs).
export const oneLane = true;

export const tests = {
  async 'on WebGPU a weight diff runs in the worker and matches the CPU backend'({ url, newPage, screenshot }) {
    const open = async (page) => {
      await page.goto(url());
      await page.getByTestId('use-own-models').click();
      await page.getByTestId('input-folder-base').setInputFiles(join(arch, 'base'));
      await page.getByTestId('input-folder-ft').setInputFiles(join(arch, 'ft'));
      await page.getByTestId('drop-ft').getByTestId('load-status').and(page.locator('.ok')).waitFor();
      await page.getByTestId('open-weights').click();
    };
    const { cpu, gpu } = await bothBackends(newPage, open, ['weights']);
    assert.match(gpu.done.weights.text, /on the WebGPU \(.*\) in a worker/, 'the status line names the WebGPU backend');
    assert.match(cpu.done.weights.text, /on the CPU in a worker \(chosen\)/);
    assert.match(gpu.report.results.weights.backend, /^WebGPU/);
    const stats = compareNumbers(gpu.report.results.weights.result, cpu.report.results.weights.result, { abs: 1e-4, rel: 1e-3 }, 'weights');
    console.log(`     weights: ${stats.n} numbers, max |Δ| ${stats.maxAbs.toExponential(2)}, max rel ${stats.maxRel.toExponential(2)}`);
    await screenshot('webgpu-weights', gpu.page);
  },

  async 'on WebGPU the demo pair\'s lens runs in the worker and matches the CPU backend'({ url, newPage, screenshot }) {
    const address = url(link({ view: 'lens', prompt: 'Once upon' }));
    const { cpu, gpu } = await bothBackends(newPage, (page) => page.goto(address), ['lens', 'deltas']);
    for (const task of ['lens', 'deltas']) {
      console.log(`     ${task} on WebGPU: ${gpu.done[task].text}`);
      assert.match(gpu.done[task].text, /on the WebGPU \(.*\) in a worker/, `the ${task} status line names the WebGPU backend`);
      // The worker's device was created with the adapter's limits, not WebGPU's defaults (256 MiB buffers, 128 MiB bindings, shown as 0.25 and 0.13 GiB).
      const [, buffers, bindings] = /GPU buffers up to ([\d.]+) GiB, bindings up to ([\d.]+) GiB/.exec(gpu.done[task].text) ?? [];
      assert.ok(Number(buffers) > 0.25 && Number(bindings) > 0.13, `the device has the adapter's limits: buffers ${buffers} GiB, bindings ${bindings} GiB`);
      assert.match(cpu.done[task].text, /on the CPU in a worker \(chosen\)/);
      const [g, c] = [gpu, cpu].map((r) => r.report.results.activations[task]);
      assert.ok(g && c, `both sessions hold the ${task} result`);
      const stats = compareNumbers(g.result, c.result, { abs: 1e-4, rel: 1e-3 }, task);
      console.log(`     ${task}: ${stats.n} numbers, max |Δ| ${stats.maxAbs.toExponential(2)}, max rel ${stats.maxRel.toExponential(2)}`);
    }
    await screenshot('webgpu-lens', gpu.page);
  },

  async 'on WebGPU tensors above the binding size go through the row-block path in the worker and match the CPU backend'({ url, newPage }) {
    // The real limit (1 GiB on SwiftShader) cannot be exceeded cheaply: the test setting lowers it.
    const { cpu, gpu } = await bothBackends(newPage, (page) => openStories(page, url, { prompt: 'Once upon a time' }, 'Activations / Lens'), ['lens', 'deltas'], { bindingBytes: ROW_BLOCK_BYTES });
    for (const task of ['lens', 'deltas']) {
      // The setting reached the worker's backend: its status line names it, and the memory plan's binding limit is the setting.
      assert.match(gpu.done[task].text, new RegExp(`on the WebGPU \\(.*; row blocks above ${ROW_BLOCK_BYTES} bytes, a test setting\\) in a worker.*bindings up to 0\\.00 GiB`));
      const [g, c] = [gpu, cpu].map((r) => r.report.results.activations[task]);
      const stats = compareNumbers(g.result, c.result, { abs: 1e-4, rel: 1e-3 }, task);
      console.log(`     ${task} (row blocks): ${stats.n} numbers, max |Δ| ${stats.maxAbs.toExponential(2)}, max rel ${stats.maxRel.toExponential(2)}`);
    }
  },

  async 'on WebGPU the stories260K pair\'s patching runs in the worker and matches the CPU backend'({ url, newPage, screenshot }) {
    const { cpu, gpu } = await bothBackends(newPage, (page) => openStories(page, url, { prompt: 'Once upon' }, 'Patching'), ['patching']);
    assert.match(gpu.done.patching.text, /on the WebGPU \(.*\) in a worker/, 'the patching status line names the WebGPU backend');
    const [g, c] = [gpu, cpu].map((r) => r.report.results.activations.patching);
    const stats = compareNumbers(g.result, c.result, { abs: 1e-4, rel: 1e-3 }, 'patching');
    console.log(`     patching: ${stats.n} numbers, max |Δ| ${stats.maxAbs.toExponential(2)}, max rel ${stats.maxRel.toExponential(2)}`);
    await screenshot('webgpu-patching', gpu.page);
  },

  async 'on WebGPU a small ADL with its Patchscope runs in the worker and matches the CPU backend'({ url, newPage, screenshot }) {
    const { cpu, gpu } = await bothBackends(newPage, (page) => openStories(page, url, SMALL_ADL, 'ADL'), ['adl']);
    assert.match(gpu.done.adl.text, /on the WebGPU \(.*\) in a worker/, 'the ADL status line names the WebGPU backend');
    const [g, c] = [gpu, cpu].map((r) => r.report.results.activations.adl.result);
    assert.equal(c.samples, SMALL_ADL.adlSamples);
    assert.equal(c.positions.length, 5);
    const tol = { abs: 1e-4, rel: 1e-3 };
    const numbers = compareNumbers([g.layer, g.samples, g.ftNorm, ...g.positions.map((p) => [p.position, p.norm, p.consistency, p.consistencyPerSample])], [c.layer, c.samples, c.ftNorm, ...c.positions.map((p) => [p.position, p.norm, p.consistency, p.consistencyPerSample])], tol, 'adl');
    let lists = 0;
    let swaps = 0;
    c.positions.forEach((cp, pi) => {
      const gp = g.positions[pi];
      const ranked = [
        [gp.top, cp.top, 'top'],
        [gp.topNegative, cp.topNegative, 'topNegative'],
        [gp.patchscope.stable, cp.patchscope.stable, 'patchscope.stable'],
        ...cp.patchscope.scales.map((s, si) => {
          assert.equal(gp.patchscope.scales[si].scale, s.scale);
          return [gp.patchscope.scales[si].top, s.top, `patchscope scale ${s.scale}`];
        }),
      ];
      for (const [gl, cl, name] of ranked) {
        swaps += compareRanking(gl, cl, tol, `position ${cp.position} ${name}`);
        lists++;
      }
    });
    assert.equal(c.positions[0].patchscope.scales.length, 30, 'the Patchscope swept 30 scales');
    console.log(`     adl: ${numbers.n} numbers, max |Δ| ${numbers.maxAbs.toExponential(2)}, max rel ${numbers.maxRel.toExponential(2)}; ${lists} token lists, ${swaps} near-tie swaps`);
    await screenshot('webgpu-adl', gpu.page);
  },

  async 'on WebGPU a short crosscoder training runs in the worker and matches the CPU engine'({ url, newPage, screenshot }) {
    const train = async (page) => {
      await openStories(page, url, { ccSettings: TINY_CROSSCODER }, 'Crosscoders');
      await page.getByTestId('cc-corpus').getByText(/mixed_stories\.txt \(800 lines/).waitFor({ timeout: RUN_TIMEOUT });
      await page.getByTestId('cc-train-button').click();
    };
    const run = async (backend) => {
      const page = await pageOn(newPage, backend);
      const t0 = Date.now();
      await train(page);
      await page.getByTestId('cc-done').or(page.getByTestId('cc-error')).first().waitFor({ timeout: RUN_TIMEOUT });
      if (await page.getByTestId('cc-error').count()) assert.fail(await page.getByTestId('cc-error').textContent());
      const done = page.getByTestId('cc-done');
      const ms = async (name) => Number(await done.getAttribute(`data-${name}-ms`));
      console.log(`     ${backend}: collect ${await ms('collect')} ms, train ${await ms('train')} ms, analyse ${await ms('analyse')} ms (${Date.now() - t0} ms in all)`);
      return { page, report: await sessionReport(page) };
    };
    const [cpu, gpu] = await Promise.all([run('cpu'), run('webgpu')]);
    const [g, c] = [gpu.report.results.crosscoder, cpu.report.results.crosscoder];
    assert.ok(g && c, 'both sessions hold the crosscoder');
    assert.match(g.backend, /^WebGPU \(.*\) in a worker/, 'the crosscoder trained on the WebGPU backend');
    assert.match(c.backend, /^CPU in a worker \(chosen\)/);
    assert.equal(c.curve.length, TINY_CROSSCODER.steps, 'every step is on the curve');
    // BatchTopK keeps the same entries on both engines: the same dead latents at each step, and each
    // latent fires on the same number of analysed tokens (frequency · tokens).
    assert.deepEqual(g.curve.map((p) => p.dead), c.curve.map((p) => p.dead), 'dead latents per step');
    const counts = (s) => s.latents.frequency.map((f) => Math.round(f * s.tokens));
    assert.deepEqual(counts(g.summary), counts(c.summary), 'tokens each latent fires on');
    const curve = compareNumbers(g.curve, c.curve, { abs: 1e-5, rel: 1e-4 }, 'curve');
    const { ms: _gms, ...gs } = g.summary;
    const { ms: _cms, ...cs } = c.summary;
    const summary = compareNumbers(gs, cs, { abs: 1e-4, rel: 1e-3 }, 'summary');
    console.log(`     curve: ${curve.n} numbers, max |Δ| ${curve.maxAbs.toExponential(2)}; summary: ${summary.n} numbers, max |Δ| ${summary.maxAbs.toExponential(2)}, max rel ${summary.maxRel.toExponential(2)}`);
    await screenshot('webgpu-crosscoder', gpu.page);
  },

  async 'losing the device mid-analysis in the worker fails the run with the reason; the next run gets a new device'({ url, screenshot }) {
    // A browser of its own: crashing the GPU process must not touch the browser the other tests share.
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.addInitScript(() => localStorage.setItem('neurodiff.compute', 'webgpu'));
      await page.goto(url());
      await page.getByTestId('use-own-models').click();
      await page.getByTestId('input-folder-base').setInputFiles(join(arch, 'base'));
      await page.getByTestId('input-folder-ft').setInputFiles(join(arch, 'ft'));
      await page.getByTestId('drop-ft').getByTestId('load-status').and(page.locator('.ok')).waitFor();
      await page.getByTestId('open-weights').click();
      await page.getByTestId('weights-progress').getByText(/^tensor \d+ of \d+/).waitFor({ timeout: RUN_TIMEOUT });
      const cdp = await browser.newBrowserCDPSession();
      await cdp.send('Browser.crashGpuProcess');
      const error = page.getByTestId('weights-error');
      await error.waitFor({ timeout: 20_000 });
      const message = (await error.textContent()) ?? '';
      console.log(`     ${message}`);
      assert.match(message, /The weight diff failed: .*(device|GPU).*lost/i, 'the run fails naming the lost device');
      await page.getByTestId('device-lost').waitFor({ timeout: 20_000 });
      assert.match(await page.getByTestId('device-lost').textContent(), /WebGPU device lost/);
      await screenshot('webgpu-worker-device-lost', page);
      await error.getByRole('button', { name: 'Run again' }).click();
      const { text, ms } = await waitDone(page, 'weights');
      console.log(`     rerun: ${text} (${ms} ms)`);
      assert.match(text, /on the WebGPU \(.*\) in a worker/, 'the rerun computes on a new WebGPU device');
    } finally {
      await browser.close();
    }
  },

  async 'losing the device while the crosscoder trains on WebGPU in the worker fails the run with the reason; training again gets a new device'({ url, screenshot }) {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.setDefaultTimeout(20_000);
      await page.addInitScript(() => localStorage.setItem('neurodiff.compute', 'webgpu'));
      await openStories(page, (path) => url(path), { ccSettings: { ...TINY_CROSSCODER, steps: 5000 } }, 'Crosscoders');
      await page.getByTestId('cc-corpus').getByText(/mixed_stories\.txt \(800 lines/).waitFor({ timeout: RUN_TIMEOUT });
      await page.getByTestId('cc-train-button').click();
      await page.locator('[data-testid="curve-loss"][d^="M"]').waitFor({ timeout: RUN_TIMEOUT });
      const cdp = await browser.newBrowserCDPSession();
      await cdp.send('Browser.crashGpuProcess');
      const error = page.getByTestId('cc-error');
      await error.waitFor();
      const message = (await error.textContent()) ?? '';
      console.log(`     ${message}`);
      assert.match(message, /(device|GPU).*lost/i, 'the run fails naming the lost device');
      await page.getByTestId('device-lost').waitFor();
      assert.match(await page.getByTestId('device-lost').textContent(), /WebGPU device lost/);
      await screenshot('webgpu-crosscoder-device-lost', page);
      await page.getByTestId('cc-train-button').click();
      await page.locator('[data-testid="curve-loss"][d^="M"]').waitFor({ timeout: RUN_TIMEOUT });
      await page.getByTestId('cc-finish').click();
      await page.getByTestId('cc-done').or(error).first().waitFor({ timeout: RUN_TIMEOUT });
      if (await error.count()) assert.fail(`training again failed: ${await error.textContent()}`);
      assert.match(await page.getByTestId('cc-summary').textContent(), /on the WebGPU \(.*\) in a worker/, 'training again ran on a new WebGPU device');
    } finally {
      await browser.close();
    }
  },
};
