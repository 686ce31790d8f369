import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const demo = join(root, 'public', 'models', 'demo');
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const DIFF_TIMEOUT = 45_000;

/** The state the address bar holds now. */
function linkState(page) {
  const hash = new URL(page.url()).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

async function until(cond, what, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const loaded = (page, role) => page.getByTestId(`drop-${role}`).getByTestId('load-status').and(page.locator('.ok'));

/** Clicks an export button and returns the downloaded file's name and bytes. */
async function download(page, click) {
  const [file] = await Promise.all([page.waitForEvent('download'), click()]);
  const path = await file.path();
  return { name: file.suggestedFilename(), bytes: readFileSync(path) };
}

export const tests = {
  async 'a permalink names dropped files by fingerprint; the wrong files are refused, naming what differs'({ page, url, screenshot }) {
    await page.goto(url());
    await page.getByTestId('use-own-models').click();
    await page.getByTestId('input-folder-base').setInputFiles(join(demo, 'base'));
    await page.getByTestId('input-folder-ft').setInputFiles(join(demo, 'ocean'));
    await loaded(page, 'base').waitFor();
    await loaded(page, 'ft').waitFor();
    await until(() => linkState(page).models?.base?.fingerprint && linkState(page).models?.ft?.fingerprint, 'both fingerprints in the link');
    const { models } = linkState(page);
    assert.notEqual(models.base.fingerprint, models.ft.fingerprint);
    assert.deepEqual(
      models.base.files.map((f) => [f.name, f.size]),
      readdirSync(join(demo, 'base')).sort().map((n) => [n, statSync(join(demo, 'base', n)).size]),
      'the link lists the dropped files with their sizes',
    );
    const copied = page.url();

    await page.goto('about:blank');
    await page.goto(copied);
    const panel = page.getByTestId('link-model-base');
    await panel.waitFor();
    assert.equal(await page.getByTestId('demo-banner').count(), 0, 'a link naming files does not load the demo');
    const rows = await page.getByTestId('link-model-files-base').locator('tr').evaluateAll((trs) => trs.map((tr) => tr.cells[0].textContent));
    assert.deepEqual(rows, models.base.files.map((f) => f.name), 'the panel lists the expected files');
    assert.match(await panel.textContent(), /6\.01 MiB.*6,302,416 bytes/, 'sizes are shown');

    // The fine-tune's folder for the base: same names and sizes, other weights.
    await page.getByTestId('input-folder-base').setInputFiles(join(demo, 'ocean'));
    const status = page.getByTestId('link-model-status-base');
    await status.and(page.locator('.error')).waitFor();
    assert.match(await status.textContent(), /^These are not the files the link was made with: model\.safetensors has the expected size but different content \(its sampled bytes hash to [0-9a-f]{16}, the link expects [0-9a-f]{16}\)\.$/);
    assert.equal(await page.getByTestId('drop-base').getByTestId('load-status').count(), 0, 'the wrong files were not loaded');
    await screenshot('link-fingerprint-mismatch');

    // One wrong file: it is named with its size, and the missing ones too.
    await page.getByTestId('input-files-base').setInputFiles([{ name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.alloc(1000) }]);
    await until(async () => /model\.safetensors is 1,000 bytes, the link expects 6,302,416 bytes/.test(await status.textContent()), 'the size message');
    assert.match(await status.textContent(), /config\.json is missing \(the link expects 715 bytes\)/);

    await page.getByTestId('input-folder-base').setInputFiles(join(demo, 'base'));
    await loaded(page, 'base').waitFor();
    assert.equal(await panel.count(), 0, 'the right files satisfy the link');
    assert.deepEqual(linkState(page).models.base, models.base, 'the link still names the same files');
    await screenshot('link-fingerprint-matched');
  },

  async 'a slow URL model named by a link can be cancelled, and the app stays usable'({ page, screenshot }) {
    const slow = await startServer(join(root, 'dist'), { delay: { pattern: /\/ocean\/model\.safetensors/, ms: 120_000 } });
    try {
      const files = (folder) => ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => `${slow.url}/models/demo/${folder}/${f}`);
      await page.goto(slow.url + link({ view: 'weights', models: { base: { url: files('base') }, ft: { url: files('ocean') } } }));
      await loaded(page, 'base').waitFor();
      const panel = page.getByTestId('link-model-ft');
      assert.deepEqual(await page.getByTestId('link-model-urls-ft').locator('li').allTextContents(), files('ocean'), 'the URLs are listed as text');
      await page.getByTestId('link-model-status-ft').getByText('Opening the link’s model…').waitFor();
      await until(() => slow.stats.delayed > 0, 'the slow request');
      await screenshot('link-url-slow');
      await page.getByTestId('link-model-cancel-ft').click();
      await page.getByTestId('link-model-status-ft').getByText('Loading the link’s model was cancelled.').waitFor();
      await until(() => slow.stats.abandoned === slow.stats.delayed, 'the slow request to be dropped');
      assert.equal(linkState(page).models.ft.url.length, 4, 'the link keeps naming the cancelled model');
      assert.ok(await page.getByTestId('link-model-retry-ft').isVisible(), 'it can be loaded again');
      await screenshot('link-url-cancelled');

      await page.getByTestId('link-model-forget-ft').click();
      assert.equal(await panel.count(), 0);
      assert.equal(linkState(page).models.ft, null, 'a forgotten model leaves the link');
      await page.getByTestId('input-folder-ft').setInputFiles(join(demo, 'ocean'));
      await page.getByTestId('weights-done').waitFor({ timeout: DIFF_TIMEOUT });
      assert.equal(await page.getByTestId('heatmap').count(), 1, 'the weights view the link asked for opens');
    } finally {
      await slow.close();
    }
  },

  async 'export figures, the table and the session; copy the link; a reopened link reads the session cache'({ page, url, screenshot }) {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url() });
    await page.goto(url());
    const done = page.getByTestId('weights-done');
    await done.waitFor({ timeout: DIFF_TIMEOUT });
    assert.equal(await done.getAttribute('data-cached'), 'false');

    await page.getByTestId('copy-link').first().click();
    await page.getByText('Link copied').waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), page.url(), 'the copied link is the address');
    assert.deepEqual(linkState(page).models, { base: { demo: 'base' }, ft: { demo: 'ocean' } });

    const heatmapMenu = page.getByTestId('export-weights-heatmap-relative');
    await heatmapMenu.locator('summary').click();
    const svg = await download(page, () => heatmapMenu.getByRole('button', { name: 'SVG' }).click());
    assert.equal(svg.name, 'weights-heatmap-relative.svg');
    const svgText = svg.bytes.toString('utf8');
    assert.match(svgText, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    const cells = svgText.match(/<rect [^>]*data-tensor="[^"]+"[^>]*>/g) ?? [];
    assert.equal(cells.length, 6 * 9 + 2, 'every heatmap cell is in the SVG');
    assert.ok(cells.every((c) => /style="[^"]*fill:\s*(rgb\(|url\()/.test(c)), 'cells carry their colour inline');
    assert.ok(!svgText.includes('class='), 'no class depends on the page stylesheet');

    const png = await download(page, () => heatmapMenu.getByRole('button', { name: 'PNG' }).click());
    assert.deepEqual([...png.bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
    const svgWidth = Number(/<svg [^>]*width="(\d+)"/.exec(svgText)[1]);
    assert.equal(png.bytes.readUInt32BE(16), 2 * svgWidth, 'drawn at twice the SVG width');

    const tableMenu = page.getByTestId('export-weights-tensors');
    await tableMenu.locator('summary').click();
    const csv = await download(page, () => tableMenu.getByRole('button', { name: 'CSV' }).click());
    const lines = csv.bytes.toString('utf8').split('\r\n');
    assert.equal(lines.at(-1), '', 'ends with a line break');
    assert.equal(lines[0].split(',')[0], 'name');
    assert.equal(lines.length - 2, 56, 'one line per compared tensor');
    const q3 = lines.find((l) => l.startsWith('model.layers.3.self_attn.q_proj.weight,'));
    const fields = q3.split(',');
    const cellValue = Number(await page.locator('rect.cell[data-tensor="model.layers.3.self_attn.q_proj.weight"]').getAttribute('data-value'));
    assert.ok(Math.abs(Number(fields[5]) - cellValue) <= 1e-12 + 1e-9 * Math.abs(cellValue), `the CSV keeps the unrounded relative change (${fields[5]} vs ${cellValue})`);

    const session = await download(page, () => page.getByTestId('export-session').click());
    const report = JSON.parse(session.bytes.toString('utf8'));
    assert.equal(report.format, 'neurodiff-session');
    assert.deepEqual(report.models.base.ref, { demo: 'base' });
    assert.match(report.models.ft.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(report.models.base.summary.layers, 6);
    assert.equal(report.settings.view, 'weights');
    assert.equal(report.results.weights.result.tensors.length, 56);
    await screenshot('export-menus');

    // The same link again: the diff comes from IndexedDB.
    const copied = page.url();
    await page.goto('about:blank');
    await page.goto(copied);
    await done.waitFor({ timeout: DIFF_TIMEOUT });
    assert.equal(await done.getAttribute('data-cached'), 'true', 'the reopened link reads the session cache');
    assert.match(await done.textContent(), /^56 tensors, from this browser’s session cache/);

    await page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: 'Models', exact: true }).click();
    const entries = page.getByTestId('cache-entry');
    await entries.first().waitFor();
    assert.equal(await entries.count(), 1);
    assert.match(await entries.first().textContent(), /^weightsdemo base vs demo ocean[\d.]+ KiB/);
    await screenshot('cache-panel');
    await page.getByTestId('cache-clear').click();
    await page.getByTestId('cache-empty').waitFor();
  },
};
