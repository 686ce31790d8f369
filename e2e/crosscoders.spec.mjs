import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
// Tiny settings so the run takes seconds on the CPU engine: 24 stories of 32 tokens, 64 latents, 60 steps.
const TINY = { samples: 24, tokensPerSample: 32, dict: 64, k: 4, steps: 60, batch: 64, lr: 0.01 };

/** The state the address bar holds now. */
function linkState(page) {
  const hash = new URL(page.url()).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

export const tests = {
  async 'trains a tiny crosscoder on the demo pair, browses its latents, opens a latent page and steers; the file round-trips'({ page, url, screenshot }) {
    // The view scrolls inside the app's main panel: a tall window lets the screenshots show whole panels.
    await page.setViewportSize({ width: 1280, height: 2000 });
    await page.goto(url(link({ view: 'crosscoders', ccSettings: TINY })));
    await page.getByTestId('cc-corpus').getByText(/mixed_stories\.txt \(800 lines/).waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId('cc-layer').inputValue(), '3', 'the default layer is half the depth of the 6-layer demo');
    assert.equal(await page.getByTestId('cc-steps').inputValue(), '60', 'the link set the settings');
    await page.getByTestId('cc-train-button').click();

    // The loss curve draws while training runs; the analysis follows.
    await page.locator('[data-testid="curve-loss"][d^="M"]').waitFor({ timeout: 30_000 });
    const done = page.getByTestId('cc-done');
    await done.waitFor({ timeout: 40_000 });
    const ms = (name) => done.getAttribute(`data-${name}-ms`).then(Number);
    console.log(`     tiny crosscoder: collect ${await ms('collect')} ms, train ${await ms('train')} ms, analyse ${await ms('analyse')} ms`);
    const lossPath = await page.getByTestId('curve-loss').getAttribute('d');
    assert.ok((lossPath.match(/L/g) ?? []).length >= 50, 'the loss curve has a point per step');
    await screenshot('crosscoders-trained', page.getByTestId('cc-train'));

    // The browser: summary, histograms, scatter, table.
    const live = Number(await page.getByTestId('cc-live').textContent());
    assert.ok(live > 0 && live <= 64, `live latents ${live} within (0, 64]`);
    const fvu = Number(await page.getByTestId('cc-fvu').textContent());
    assert.ok(fvu > 0 && fvu < 1, `FVU ${fvu} within (0, 1)`);
    const bars = await page.getByTestId('ratio-histogram').locator('rect.cc-bar').evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('data-count'))));
    assert.equal(bars.reduce((a, b) => a + b, 0), live, 'the r histogram counts every live latent once');
    const table = page.getByTestId('cc-latent-table');
    const rows = table.locator('tr.cc-row');
    assert.equal(await rows.count(), Math.min(50, live), 'one row per live latent, 50 a page');
    const ratios = await table.getByTestId('cc-ratio').evaluateAll((cs) => cs.map((c) => Number(c.textContent)));
    assert.ok(ratios.every((r) => r >= 0 && r <= 1), 'ratios lie in [0, 1]');
    assert.ok(ratios.every((r, i) => i === 0 || r >= ratios[i - 1]), 'sorted by r, fine-tune only first');
    assert.ok((await table.locator('.cc-tok').count()) > 0, 'rows name their top tokens');
    assert.ok((await page.getByTestId('nu-scatter').locator('path.cc-point').count()) > 0, 'the Latent Scaling scatter has points');
    await screenshot('crosscoders-browser', page.getByTestId('cc-browser'));
    await screenshot('crosscoders-table', page.getByTestId('cc-latents'));

    // Filters go to the link; a class filter shrinks the table.
    await page.getByTestId('cc-filter-sort').selectOption('frequency');
    assert.equal(linkState(page).latentFilter.sort, 'frequency');
    const freqs = await rows.evaluateAll((rs) => rs.map((r) => Number(r.cells[5].textContent)));
    assert.ok(freqs.every((f, i) => i === 0 || f <= freqs[i - 1] * (1 + 1e-3)), 'sorted by frequency, most active first');

    // A latent page: contexts with shaded tokens, histogram, logit effects.
    const first = await rows.first().getAttribute('data-latent');
    await rows.first().click();
    assert.equal(linkState(page).latent, Number(first), 'the latent is in the link');
    const contexts = page.getByTestId('cc-context');
    await contexts.first().waitFor({ timeout: 20_000 });
    assert.ok((await contexts.count()) >= 1);
    const active = await contexts.first().locator('.ctx-active').evaluateAll((ts) => ts.map((t) => ({ text: t.textContent, act: Number(t.getAttribute('data-act')) })));
    assert.ok(active.length > 0 && active.every((t) => t.text.length > 0 && t.act > 0), 'the top context shades the tokens the latent fires on');
    const maxShown = Number(await contexts.first().getAttribute('data-max'));
    assert.ok(Math.abs(Math.max(...active.map((t) => t.act)) - maxShown) <= 1e-6 * maxShown, 'the context peaks at its stated maximum');
    assert.equal(await page.getByTestId('cc-logits-positive').locator('li').count(), 10);
    assert.equal(await page.getByTestId('cc-logits-negative').locator('li').count(), 10);
    const histogram = await page.getByTestId('latent-histogram').locator('rect.cc-bar').evaluateAll((rs) => rs.reduce((a, r) => a + Number(r.getAttribute('data-count')), 0));
    assert.ok(histogram > 0, 'the activation histogram counts tokens');

    await page.getByTestId('cc-steer-run').click();
    const steer = page.getByTestId('cc-steer-table');
    await steer.waitFor({ timeout: 20_000 });
    const gens = await steer.locator('tbody tr').evaluateAll((rs) => rs.map((r) => [r.cells[0].textContent, r.cells[1].textContent, r.cells[2].textContent]));
    assert.deepEqual(gens.map((g) => g[0]), ['0', '0.5', '1']);
    assert.ok(gens.every((g) => g[1].startsWith('Once upon a time') && g[1].length > 'Once upon a time'.length + 5), 'each strength generates text');
    await screenshot('crosscoders-latent', page.locator('main'));

    // A reload keeps the latent in the link; the trained crosscoder is gone, so the page says to train.
    // Instead of reloading, save the file and load it back: the analysis repeats from the file.
    const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId('cc-save').click()]);
    assert.match(file.suggestedFilename(), /^crosscoder-layer3-D64-k4\.safetensors$/);
    const bytes = readFileSync(await file.path());
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    assert.deepEqual(header['decoder.weight'].shape, [2, 64, 192]);
    assert.deepEqual(header['encoder.weight'].shape, [2, 192, 64], 'the reference layout [2, d, D]');

    await page.getByTestId('cc-back').click();
    await page.getByTestId('cc-load-input').setInputFiles({ name: 'saved.safetensors', mimeType: 'application/octet-stream', buffer: bytes });
    await page.getByTestId('cc-summary').getByText('saved.safetensors').waitFor({ timeout: 30_000 });
    assert.equal(Number(await page.getByTestId('cc-live').textContent()), live, 'the loaded file gives the same live latents');

    await page.getByTestId('cc-load-input').setInputFiles({ name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not a safetensors file') });
    await page.getByTestId('cc-error').waitFor();
    assert.match(await page.getByTestId('cc-error').textContent(), /broken\.safetensors/);
  },
};
