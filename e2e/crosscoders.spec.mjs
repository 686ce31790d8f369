import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
// Tiny settings so a step takes milliseconds on the CPU engine: 24 stories of 32 tokens, 64 latents.
// The run is paused, resumed and finished early, long before its 5000 steps.
const TINY = { samples: 24, tokensPerSample: 32, dict: 64, k: 4, steps: 5000, batch: 64, lr: 0.01 };

/** The step the training figure's caption shows. */
const shownStep = (page) => page.locator('[data-testid="cc-train"] figcaption').textContent().then((t) => Number(/step (\d+)/.exec(t)?.[1] ?? 0));

async function waitForStep(page, n) {
  const end = Date.now() + 30_000;
  while ((await shownStep(page)) < n) {
    if (Date.now() > end) throw new Error(`training did not reach step ${n}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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
    assert.equal(await page.getByTestId('cc-steps').inputValue(), '5000', 'the link set the settings');
    await page.getByTestId('cc-train-button').click();
    // The loss curve draws while training runs; pause, resume, then finish early.
    await page.locator('[data-testid="curve-loss"][d^="M"]').waitFor({ timeout: 30_000 });
    await waitForStep(page, 20);
    await page.getByTestId('cc-pause').click();
    const paused = page.getByTestId('cc-paused');
    await paused.waitFor();
    const pausedAt = Number(/Paused after (\d+) of 5000 steps/.exec(await paused.textContent())?.[1]);
    assert.ok(pausedAt >= 20 && pausedAt < 5000, `paused after ${pausedAt} steps`);
    assert.equal(await shownStep(page), pausedAt, 'the curve shows every step up to the pause');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await shownStep(page), pausedAt, 'nothing trains while paused');
    await page.getByTestId('cc-resume').click();
    await waitForStep(page, pausedAt + 60);
    await page.getByTestId('cc-finish').click();
    const done = page.getByTestId('cc-done');
    await done.waitFor({ timeout: 30_000 });
    const ms = (name) => done.getAttribute(`data-${name}-ms`).then(Number);
    const steps = await shownStep(page);
    console.log(`     tiny crosscoder: collect ${await ms('collect')} ms, train ${await ms('train')} ms for ${steps} steps, analyse ${await ms('analyse')} ms`);
    assert.ok(steps > pausedAt + 60 && steps < 5000, `finished early after ${steps} steps`);
    await page.getByTestId('cc-summary').getByText(`trained here (${steps} steps)`).waitFor();
    const lossPath = await page.getByTestId('curve-loss').getAttribute('d');
    // charts.tsx draws one point in every ⌈steps / 600⌉ (plus the last), so the path keeps a few hundred segments.
    const stride = Math.max(1, Math.ceil(steps / 600));
    const segments = (lossPath.match(/L/g) ?? []).length;
    assert.ok(segments >= Math.ceil(steps / stride) - 2 && segments <= 601, `the loss curve has a point per step (one in ${stride} for ${steps} steps): ${segments} segments`);
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

    // Save the crosscoder; after a reload the link still names the latent, and dropping the file shows it again.
    const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId('cc-save').click()]);
    assert.match(file.suggestedFilename(), /^crosscoder-layer3-D64-k4\.safetensors$/);
    const bytes = readFileSync(await file.path());
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    assert.deepEqual(header['decoder.weight'].shape, [2, 64, 192]);
    assert.deepEqual(header['encoder.weight'].shape, [2, 192, 64], 'the reference layout [2, d, D]');

    await page.reload();
    await page.getByTestId('cc-latent-waiting').getByText(`latent #${first}`).waitFor({ timeout: 30_000 });
    await page.getByTestId('cc-corpus').getByText(/800 lines/).waitFor({ timeout: 30_000 });
    await page.getByTestId('cc-train').evaluate((panel, base64) => {
      const data = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([data], 'saved.safetensors'));
      panel.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      panel.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, bytes.toString('base64'));
    await page.getByTestId('cc-latent-page').and(page.locator(`[data-latent="${first}"]`)).waitFor({ timeout: 30_000 });
    await page.getByTestId('cc-context').first().waitFor({ timeout: 20_000 });
    // The file keeps the normalisation scale in float32, so activations agree to float32 rounding.
    const reloadedMax = Number(await page.getByTestId('cc-context').first().getAttribute('data-max'));
    assert.ok(Math.abs(reloadedMax - maxShown) <= 1e-6 + 1e-5 * maxShown, `the loaded file gives the same top context (${reloadedMax} vs ${maxShown})`);
    await page.getByTestId('cc-back').click();
    assert.equal(Number(await page.getByTestId('cc-live').textContent()), live, 'the loaded file gives the same live latents');
    assert.match(await page.getByTestId('cc-summary').textContent(), /saved\.safetensors/);

    await page.getByTestId('cc-load-input').setInputFiles({ name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not a safetensors file') });
    await page.getByTestId('cc-error').waitFor();
    assert.match(await page.getByTestId('cc-error').textContent(), /broken\.safetensors/);
  },
};
