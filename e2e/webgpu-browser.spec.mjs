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

const RUN_TIMEOUT = 50_000;
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));

/** A page in a fresh browser context with "Compute on" set before the app starts. */
async function pageOn(newPage, backend) {
  const page = await newPage();
  await page.addInitScript((b) => localStorage.setItem('neurodiff.compute', b), backend);
  return page;
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

/** Runs one view on both backends (one context each, side by side) and returns both session reports. */
async function bothBackends(newPage, open, tasks) {
  const run = async (backend) => {
    const page = await pageOn(newPage, backend);
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
      assert.match(cpu.done[task].text, /on the CPU in a worker \(chosen\)/);
      const [g, c] = [gpu, cpu].map((r) => r.report.results.activations[task]);
      assert.ok(g && c, `both sessions hold the ${task} result`);
      const stats = compareNumbers(g.result, c.result, { abs: 1e-4, rel: 1e-3 }, task);
      console.log(`     ${task}: ${stats.n} numbers, max |Δ| ${stats.maxAbs.toExponential(2)}, max rel ${stats.maxRel.toExponential(2)}`);
    }
    await screenshot('webgpu-lens', gpu.page);
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
};
