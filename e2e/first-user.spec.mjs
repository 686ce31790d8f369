// The first-time user: the demo loads, every view opens, a link copied with "Copy link" opens the
// same view in another browser (a new context: no session cache), checked by what it shows.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const config = JSON.parse(readFileSync(join(root, 'public', 'models', 'demo', 'base', 'config.json'), 'utf8'));
const L = config.num_hidden_layers;
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const RUN_TIMEOUT = 45_000;
const Q3 = 'model.layers.3.self_attn.q_proj.weight';
// Small corpus settings keep the ADL to seconds on a shared CPU; the link carries them to every view.
const SMALL_ADL = { adlSamples: 16, adlTokens: 24 };

function linkState(address) {
  const hash = new URL(address).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

async function waitForTask(page, task) {
  const done = page.getByTestId(`${task}-done`);
  await done.or(page.getByTestId(`${task}-error`)).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await page.getByTestId(`${task}-error`).count()) assert.fail(await page.getByTestId(`${task}-error`).textContent());
  return done;
}

const openView = (page, label) => page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: label, exact: true }).click();

/** Clicks the view's Copy link button and returns what it wrote to the clipboard. */
async function copyLink(page) {
  await page.getByTestId('copy-link').click();
  await page.getByTestId('copy-link').filter({ hasText: 'Link copied' }).waitFor();
  return page.evaluate(() => navigator.clipboard.readText());
}

/** Every statistic of the open tensor panel, by its test id. */
const tensorStats = (page) =>
  page.getByTestId('tensor-stats').locator('[data-testid^="stat-"]').evaluateAll((cells) => Object.fromEntries(cells.map((c) => [c.getAttribute('data-testid'), c.textContent])));

/** The selected lens cell as shown: its heading, KL, both models' top tokens with probabilities, and the grid's top tokens. */
async function lensContent(page) {
  const detail = page.getByTestId('lens-detail');
  await detail.waitFor({ timeout: RUN_TIMEOUT });
  const rows = (id) => detail.getByTestId(id).locator('tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  return {
    heading: await detail.locator('h2').textContent(),
    kl: await detail.getByTestId('detail-kl').textContent(),
    base: await rows('detail-base'),
    ft: await rows('detail-ft'),
    grid: await page.getByTestId('lens-grid').getByTestId('lens-ft').allTextContents(),
  };
}

export const tests = {
  async 'a first-time user: the demo loads, every view opens, and a copied link shows the same view in a new browser'({ page, url, screenshot, newPage }) {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url() });
    await page.goto(url(link(SMALL_ADL)));
    await page.getByTestId('demo-banner').waitFor();

    // Weights: the demo opens it; a tensor's panel is opened from the heatmap.
    await (await waitForTask(page, 'weights')).waitFor();
    await page.getByTestId('heatmap').locator(`rect.cell[data-tensor="${Q3}"]`).click();
    await page.getByTestId('tensor-panel').waitFor();
    const stats = await tensorStats(page);
    assert.ok(Number(stats['stat-frobenius']) > 0, `the tensor changed: ${JSON.stringify(stats)}`);
    const weightsLink = await copyLink(page);
    assert.equal(weightsLink, page.url(), 'the button copies the address');
    assert.deepEqual([linkState(weightsLink).view, linkState(weightsLink).tensor], ['weights', Q3]);
    await screenshot('first-user-weights');

    // Lens: a cell selected; its link is the one the other browser opens.
    await openView(page, 'Activations / Lens');
    await waitForTask(page, 'lens');
    await waitForTask(page, 'deltas');
    const T = await page.getByTestId('prompt-tokens').locator('.token-chip').count();
    await page.getByTestId('lens-grid').locator(`g.lens-cell[data-layer="${L - 2}"][data-position="${T - 1}"]`).click();
    const lens = await lensContent(page);
    assert.match(lens.heading, new RegExp(`^Layer ${L - 2}, position ${T - 1}:`));
    assert.equal(lens.base.length, 5, 'the top 5 of the base model');
    assert.ok(lens.ft.every(([token, , prob]) => token.length > 0 && /%$/.test(prob)), `tokens with probabilities: ${JSON.stringify(lens.ft)}`);
    const lensLink = await copyLink(page);
    assert.deepEqual([linkState(lensLink).view, linkState(lensLink).layer, linkState(lensLink).position], ['lens', L - 2, T - 1]);
    await screenshot('first-user-lens');

    // ADL, Patching and Crosscoders open on the same pair.
    await openView(page, 'ADL');
    await waitForTask(page, 'adl');
    await page.getByTestId('hide-non-words').first().uncheck();
    assert.equal(await page.getByTestId('adl-top').locator('td.adl-token').count(), 20 * 5);
    assert.match(await page.getByTestId('corpus-used').textContent(), /16 samples × 24 tokens used/);
    await screenshot('first-user-adl');
    await openView(page, 'Patching');
    await waitForTask(page, 'patching');
    assert.equal(await page.getByTestId('recovery-ft-into-base').locator('rect.cell').count(), L * 4);
    await screenshot('first-user-patching');
    await openView(page, 'Crosscoders');
    await page.getByTestId('cc-train-button').waitFor();
    assert.equal(linkState(page.url()).view, 'crosscoders');
    await screenshot('first-user-crosscoders');

    // The session file holds every result computed so far.
    const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-session').click()]);
    const session = JSON.parse(readFileSync(await file.path(), 'utf8'));
    assert.deepEqual(Object.keys(session.results.activations).sort(), ['adl', 'deltas', 'lens', 'patching']);
    assert.equal(session.results.activations.lens.result.kl.length, L * T);
    assert.equal(session.results.weights.result.tensors.length, 56);

    // Another browser: no session cache, so everything is computed there, and shows the same.
    const other = await newPage();
    let started = Date.now();
    await other.goto(lensLink);
    const otherLens = await lensContent(other);
    const coldMs = Date.now() - started;
    assert.equal(await other.getByTestId('lens-done').getAttribute('data-cached'), 'false', 'the new browser computed the lens');
    assert.deepEqual(otherLens, lens, 'the same cell, KL, top tokens and grid');
    await screenshot('first-user-lens-reopened', other);
    await other.goto('about:blank');
    started = Date.now();
    await other.goto(weightsLink);
    await other.getByTestId('tensor-panel').waitFor({ timeout: RUN_TIMEOUT });
    const coldWeightsMs = Date.now() - started;
    assert.equal(await other.getByTestId('weights-done').getAttribute('data-cached'), 'false');
    assert.equal(await other.getByTestId('tensor-name').textContent(), Q3);
    assert.deepEqual(await tensorStats(other), stats, 'the same tensor statistics');
    await screenshot('first-user-weights-reopened', other);

    // The first browser again: the session cache shows the view without computing.
    await page.goto('about:blank');
    started = Date.now();
    await page.goto(lensLink);
    const warm = await lensContent(page);
    const warmMs = Date.now() - started;
    assert.equal(await page.getByTestId('lens-done').getAttribute('data-cached'), 'session', 'the lens came from the session cache');
    assert.deepEqual(warm, lens);
    await page.goto('about:blank');
    started = Date.now();
    await page.goto(weightsLink);
    await page.getByTestId('tensor-panel').waitFor({ timeout: RUN_TIMEOUT });
    const warmWeightsMs = Date.now() - started;
    assert.equal(await page.getByTestId('weights-done').getAttribute('data-cached'), 'true', 'the weight diff came from the session cache');
    assert.deepEqual(await tensorStats(page), stats);
    console.log(`     time to content, new browser vs session cache: lens cell ${coldMs} vs ${warmMs} ms, tensor panel ${coldWeightsMs} vs ${warmWeightsMs} ms`);
    const stored = await page.evaluate(async () => (await navigator.storage.estimate()).usageDetails?.indexedDB ?? null);
    console.log(`     IndexedDB of the first browser (lens, deltas, ADL, patching, weights cached): ${stored === null ? 'not reported' : `${(stored / 2 ** 20).toFixed(2)} MiB`}`);
  },
};
