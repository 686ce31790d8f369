import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const config = JSON.parse(readFileSync(join(root, 'public', 'models', 'demo', 'base', 'config.json'), 'utf8'));
const L = config.num_hidden_layers;
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const RUN_TIMEOUT = 45_000;
// Small corpus settings keep the ADL to seconds on a shared CPU; the default (200 × 64) is measured by hand.
const SMALL_ADL = { adlSamples: 16, adlTokens: 24 };

function linkState(page) {
  const hash = new URL(page.url()).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

/** Waits for a task's result line and logs the time the worker took. */
async function waitForTask(page, task) {
  const done = page.getByTestId(`${task}-done`);
  await done.or(page.getByTestId(`${task}-error`)).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await page.getByTestId(`${task}-error`).count()) assert.fail(await page.getByTestId(`${task}-error`).textContent());
  console.log(`     ${task}: ${await done.textContent()} (${await done.getAttribute('data-ms')} ms)`);
}

/** Clicks an export button and returns the downloaded file's bytes. */
async function download(page, click) {
  const [file] = await Promise.all([page.waitForEvent('download'), click()]);
  return readFileSync(await file.path());
}

export const tests = {
  async 'the lens view shows δ per layer and token and both models\' lens; a reload keeps prompt, layer and position'({ page, url, screenshot }) {
    const prompt = 'Once upon a time, a little girl went to the';
    await page.goto(url(link({ view: 'lens', prompt })));
    await waitForTask(page, 'lens');
    await waitForTask(page, 'deltas');
    const tokens = await page.getByTestId('prompt-tokens').locator('.token-chip').allTextContents();
    assert.ok(tokens.length >= 8, `the prompt is tokenized: ${tokens}`);
    const T = tokens.length;
    const grid = page.getByTestId('lens-grid');
    assert.equal(await grid.locator('g.lens-cell').count(), L * T, 'one lens cell per layer and position');
    assert.deepEqual(await grid.getByTestId('input-token').allTextContents(), tokens, 'the grid is headed by the prompt tokens');
    const ftTop = await grid.getByTestId('lens-ft').allTextContents();
    assert.ok(ftTop.every((t) => t.length > 0), 'every cell names a token');
    const kls = await grid.locator('g.lens-cell').evaluateAll((cells) => cells.map((c) => Number(c.getAttribute('data-kl'))));
    assert.ok(kls.every((k) => k >= -1e-6) && kls.some((k) => k > 1e-3), 'KL(P_ft || P_base) is non-negative and somewhere positive');
    assert.equal(await page.getByTestId('delta-strip').locator('rect.delta-cell').count(), L * T);
    await screenshot('lens-view');

    // Exports: the δ strip with its legend as one SVG; the lens as CSV, unrounded.
    const stripMenu = page.getByTestId('export-activation-delta-resid_post-norm');
    await stripMenu.locator('summary').click();
    const stripSvg = (await download(page, () => stripMenu.getByRole('button', { name: 'SVG' }).click())).toString('utf8');
    assert.equal((stripSvg.match(/<svg /g) ?? []).length, 3, 'one document holding the strip and its legend');
    assert.equal((stripSvg.match(/<rect [^>]*data-layer=/g) ?? []).length, L * T, 'every δ cell is in the SVG');
    assert.match(stripSvg, /‖δ‖ = ‖x_ft − x_base‖/, 'the legend title is in it');
    const lensMenu = page.getByTestId('export-logit-lens');
    await lensMenu.locator('summary').click();
    const csv = (await download(page, () => lensMenu.getByRole('button', { name: 'CSV' }).click())).toString('utf8').split('\r\n');
    assert.equal(csv[0], 'layer,position,input_token,rank,base_token,base_prob,ft_token,ft_prob,kl_ft_base');
    assert.equal(csv.length - 2, L * T * 5, 'five ranks per layer and position');
    const last = csv.find((l) => l.startsWith(`${L - 1},${T - 1},`));
    const shownKl = Number(await grid.locator(`g.lens-cell[data-layer="${L - 1}"][data-position="${T - 1}"]`).getAttribute('data-kl'));
    const csvKl = Number(last.split(',').at(-1));
    assert.ok(Math.abs(csvKl - shownKl) <= 1e-12 + 1e-9 * Math.abs(shownKl), `the CSV keeps the KL (${csvKl} vs ${shownKl})`);

    const cell = grid.locator(`g.lens-cell[data-layer="${L - 1}"][data-position="${T - 1}"]`);
    await cell.hover();
    const tip = page.getByRole('tooltip');
    assert.match(await tip.textContent(), new RegExp(`layer ${L - 1} · position ${T - 1}`));
    assert.equal(await tip.locator('tr').count(), 6, 'the tooltip lists the top 5 of each model');
    await cell.click();
    await page.getByTestId('lens-detail').waitFor();
    assert.equal(await page.getByTestId('detail-ft').locator('tr').count(), 5);
    await page.getByTestId('hook-kind').selectOption('mlp_out');
    await page.getByTestId('delta-scale-relative').check();
    await waitForTask(page, 'deltas');
    const state = linkState(page);
    assert.deepEqual([state.layer, state.position, state.hookKind, state.deltaScale, state.prompt], [L - 1, T - 1, 'mlp_out', 'relative', prompt]);
    await screenshot('lens-view-selected');

    await page.goto('about:blank');
    await page.goto(url(link(state)));
    await waitForTask(page, 'lens');
    assert.equal(await page.getByTestId('prompt').inputValue(), prompt, 'the reloaded link keeps the prompt');
    assert.match(await page.getByTestId('lens-detail').locator('h2').textContent(), new RegExp(`^Layer ${L - 1}, position ${T - 1}:`));
    assert.equal(await page.getByTestId('hook-kind').inputValue(), 'mlp_out');
    assert.ok(await page.getByTestId('delta-scale-relative').isChecked());
  },

  async 'the ADL view lists tokens per position, the Patchscope and steered generations'({ page, url, screenshot }) {
    await page.goto(url(link({ view: 'adl', ...SMALL_ADL })));
    await waitForTask(page, 'adl');
    assert.match(await page.getByTestId('corpus-used').textContent(), /16 samples × 24 tokens used/);
    assert.equal(await page.getByTestId('adl-layer').inputValue(), String(Math.floor(L / 2)), 'layer defaults to half the depth');
    const top = page.getByTestId('adl-top');
    assert.equal(await top.locator('tbody tr').count(), 20);
    // Every token, non-words too (hidden by default).
    await page.getByTestId('hide-non-words').first().uncheck();
    const cells = await top.locator('td.adl-token').allTextContents();
    assert.equal(cells.length, 20 * 5, 'twenty tokens for each of positions 0–4');
    assert.ok(cells.every((c) => /\S+ \d/.test(c)), `each cell has a token and its probability: ${cells.slice(0, 3)}`);
    assert.equal(await page.getByTestId('adl-top-negative').locator('td.adl-token').count(), 100);
    for (let p = 0; p < 5; p++) {
      const c = Number((await page.getByTestId(`consistency-${p}`).locator('.num').textContent()).trim());
      assert.ok(c > -1 && c <= 1, `consistency at ${p} is a mean cosine: ${c}`);
    }
    const scales = page.getByTestId('patchscope-table').locator('tbody tr');
    assert.equal(await scales.count(), 30, 'the Patchscope sweep has 30 scales');
    await page.getByTestId('adl-position-2').click();
    assert.equal(linkState(page).adlPosition, 2);
    assert.match(await page.getByTestId('patchscope').locator('h2').textContent(), /Patchscope of δ_2/);
    await screenshot('adl-view');

    await page.getByTestId('steer-run').click();
    await waitForTask(page, 'steer');
    const rows = page.getByTestId('steer-table').locator('tbody tr');
    assert.equal(await rows.count(), 4, 'four strengths');
    const ft = await page.getByTestId('steer-ft').allTextContents();
    assert.ok(ft.every((t) => t.trim().length > 0), 'each strength generates text');
    await page.getByTestId('steering').screenshot({ path: join(root, 'e2e', 'screenshots', 'adl-steering.png') });
    await page.getByTestId('patchscope').screenshot({ path: join(root, 'e2e', 'screenshots', 'adl-patchscope.png') });

    const stories = readFileSync(join(root, 'public', 'models', 'demo', 'generic_stories.txt'), 'utf8').split('\n');
    await page.getByTestId('corpus-input').setInputFiles({ name: 'my-corpus.txt', mimeType: 'text/plain', buffer: Buffer.from(stories.slice(100, 140).join('\n')) });
    await page.getByTestId('corpus-name').and(page.getByText('my-corpus.txt')).waitFor();
    await waitForTask(page, 'adl');
    assert.match(await page.getByTestId('corpus').textContent(), /my-corpus\.txt \(your file, 40 lines\) · 16 samples × 24 tokens used/);
    await page.getByTestId('corpus-input').setInputFiles({ name: 'empty.txt', mimeType: 'text/plain', buffer: Buffer.from('\n\n') });
    assert.equal(await page.getByTestId('corpus-error').textContent(), 'empty.txt has no non-empty lines: a corpus is a text file with one sample per line');
  },

  async 'the patching view draws the recovery heatmaps and the stitching curves; positions go into the link'({ page, url, screenshot }) {
    await page.goto(url(link({ view: 'patching' })));
    await waitForTask(page, 'patching');
    for (const id of ['recovery-ft-into-base', 'recovery-base-into-ft']) {
      const map = page.getByTestId(id);
      assert.equal(await map.locator('rect.cell').count(), L * 4, `${id}: layers × 4 hook kinds`);
      assert.equal(await map.locator('rect.critical').count(), 4, `${id}: one critical layer per hook kind`);
      const recovery = await map.locator('rect.cell').evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('data-recovery'))));
      assert.ok(recovery.every(Number.isFinite), `${id}: finite recoveries`);
    }
    assert.ok(Number(await page.getByTestId('kl-ft-base').textContent()) > 0, 'the models differ on the prompt');
    assert.equal(await page.getByTestId('stitch-kl').locator('path.series').count(), 4);
    assert.equal(await page.getByTestId('stitch-kl').locator('.points.s1 circle').count(), L + 1, 'one point per stitch layer 0..L');
    await screenshot('patching-view');
    await page.getByTestId('stitching').screenshot({ path: join(root, 'e2e', 'screenshots', 'patching-stitching.png') });
    await page.getByTestId('patch-positions-last').check();
    await waitForTask(page, 'patching');
    assert.equal(linkState(page).patchPositions, 'last');
    assert.equal(await page.getByTestId('stitch-loss').count(), 0, 'no loss curve for the last position alone');
  },
};
