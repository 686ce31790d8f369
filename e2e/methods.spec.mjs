import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const RUN_TIMEOUT = 45_000;
// A small corpus (8 samples × 16 tokens) keeps each method to seconds on a shared CPU.
const SMALL = { samples: 8, tokensPerSample: 16 };

async function runMethod(page, name) {
  await page.getByTestId(`${name}-run`).click();
  const done = page.getByTestId(`${name}-done`);
  await done.or(page.getByTestId(`${name}-error`)).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await page.getByTestId(`${name}-error`).count()) assert.fail(await page.getByTestId(`${name}-error`).textContent());
  console.log(`     ${name}: ${await done.textContent()} (${await done.getAttribute('data-ms')} ms)`);
}

async function download(page, click) {
  const [file] = await Promise.all([page.waitForEvent('download'), click()]);
  return readFileSync(await file.path());
}

export const tests = {
  async 'methods: corpus KL and diff mining on the demo pair give real numbers, exported unrounded'({ page, url, screenshot }) {
    await page.goto(url(link({ view: 'methods', methods: { tab: 'kl', klTop: 10, ...SMALL } })));
    await runMethod(page, 'kl');
    const summary = page.getByTestId('kl-summary');
    const mean = Number(await summary.getAttribute('data-mean'));
    const max = Number(await summary.getAttribute('data-max'));
    assert.ok(mean > 1e-4 && mean < 20, `the fine-tune changes the next-token distribution: mean KL ${mean}`);
    assert.ok(max >= mean, `max ${max} ≥ mean ${mean}`);
    const kls = await page.getByTestId('kl-contexts').locator('td[data-value]').evaluateAll((tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.equal(kls.length, 10, 'ten contexts listed');
    assert.ok(Math.abs(kls[0] - max) <= 1e-9 * max, `the first context holds the largest KL (${kls[0]} vs ${max})`);
    assert.ok(kls.every((k, i) => i === 0 || k <= kls[i - 1]), 'contexts by KL, largest first');
    assert.ok((await page.getByTestId('kl-histogram').locator('rect.m-bar').count()) > 0, 'the histogram is drawn');
    const menu = page.getByTestId('export-corpus-kl-contexts');
    await menu.locator('summary').click();
    const csv = (await download(page, () => menu.getByRole('button', { name: 'CSV' }).click())).toString('utf8').split('\r\n');
    assert.equal(csv[0], 'rank,kl,sample,position,context,base_top,ft_top');
    assert.ok(Math.abs(Number(csv[1].split(',')[1]) - kls[0]) <= 1e-12, 'the CSV keeps the KL');
    await screenshot('methods-kl');

    await page.getByTestId('method-tab-mine').click();
    await page.getByTestId('mine-top').fill('20');
    await runMethod(page, 'mine');
    const rows = page.getByTestId('mine-tokens').locator('tbody tr');
    assert.equal(await rows.count(), 20);
    const counts = await page.getByTestId('mine-tokens').locator('tbody tr td:nth-child(3)').evaluateAll((tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.ok(counts[0] > 0 && counts.every((c, i) => i === 0 || c <= counts[i - 1]), `tokens by count: ${counts}`);
    assert.ok(counts[0] <= SMALL.samples * SMALL.tokensPerSample, 'a token is counted at most once a position');
    const state = JSON.parse(decodeURIComponent(new URL(page.url()).hash.slice('#state='.length)));
    assert.equal(state.methods.tab, 'mine');
    assert.equal(state.methods.mineTop, 20);
    await screenshot('methods-mine');
  },

  async 'methods: PCA, attention and amplification on the demo pair; a clicked head shows both patterns'({ page, url, screenshot }) {
    await page.goto(url(link({ view: 'methods', methods: { tab: 'pca', pcaComponents: 3, ...SMALL } })));
    await runMethod(page, 'pca');
    const ratios = await page.getByTestId('pca-variance').locator('rect.m-bar').evaluateAll((r) => r.map((x) => Number(x.getAttribute('data-ratio'))));
    assert.equal(ratios.length, 3);
    const sum = ratios.reduce((a, b) => a + b, 0);
    assert.ok(ratios.every((r, i) => r > 0 && (i === 0 || r <= ratios[i - 1] + 1e-12)) && sum <= 1 + 1e-9, `variance shares, largest first, sum ≤ 1: ${ratios}`);

    await page.getByTestId('method-tab-attention').click();
    await runMethod(page, 'attention');
    const cells = page.getByTestId('attention-js').locator('rect.m-cell');
    const js = await cells.evaluateAll((r) => r.map((x) => Number(x.getAttribute('data-value'))));
    assert.ok(js.length >= 2 && js.every((v) => v >= -1e-12) && js.some((v) => v > 1e-6), `JS per head is non-negative and somewhere positive: ${js}`);
    await cells.nth(1).click();
    await page.getByTestId('attention-pattern-base').waitFor();
    await page.getByTestId('attention-pattern-ft').waitFor();
    const state = JSON.parse(decodeURIComponent(new URL(page.url()).hash.slice('#state='.length)));
    assert.ok(state.methods.attnHead, 'the clicked head is in the link');
    await screenshot('methods-attention');

    await page.getByTestId('method-tab-amplify').click();
    await page.getByTestId('amplify-generate').fill('8');
    await page.getByTestId('amplify-alphas').fill('0, 2');
    await runMethod(page, 'amplify');
    const groups = page.getByTestId('amplify-samples-list').locator('.m-alpha');
    assert.deepEqual(await groups.evaluateAll((g) => g.map((x) => Number(x.getAttribute('data-alpha')))), [0, 2]);
    assert.ok((await groups.first().locator('.m-sample').textContent()).length > 0, 'a sample per α');
  },

  async 'methods: the diff-SAE trains in the worker (cancel mid-run, then a short run), and its latents are browsed and exported'({ page, url, screenshot }) {
    await page.setViewportSize({ width: 1280, height: 1800 });
    const SAE = { tab: 'diff-sae', ...SMALL, saeDict: 32, saeK: 4, saeBatch: 32, saeSteps: 1_000_000 };
    await page.goto(url(link({ view: 'methods', methods: SAE })));
    // A run far too long to finish: the live curve draws, and Cancel stops it between steps.
    await page.getByTestId('diff-sae-run').click();
    await page.locator('[data-testid="curve-loss"][d^="M"]').waitFor({ timeout: RUN_TIMEOUT });
    await page.getByTestId('diff-sae-cancel').click();
    await page.getByText('diff-SAE was cancelled.').waitFor({ timeout: 10_000 });

    await page.getByTestId('sae-steps').fill('80');
    await runMethod(page, 'diff-sae');
    const summary = page.getByTestId('sae-summary');
    const fvu = Number(await summary.getAttribute('data-fvu'));
    const live = Number(await summary.getAttribute('data-live'));
    assert.ok(fvu > 0 && fvu < 1, `the SAE explains part of δ's variance: FVU ${fvu}`);
    assert.ok(live > 0 && live <= 32, `live latents ${live}`);
    const rows = page.getByTestId('sae-latents').locator('tbody tr');
    const freqs = await page.getByTestId('sae-latents').locator('tbody tr td:nth-child(2)').evaluateAll((tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.equal(freqs.length, live, 'every live latent is listed');
    assert.ok(freqs.every((f, i) => f > 0 && f <= 1 && (i === 0 || f <= freqs[i - 1])), `latents by frequency: ${freqs}`);
    const second = Number(await rows.nth(1).getAttribute('data-latent'));
    await rows.nth(1).click();
    assert.equal(Number(await page.getByTestId('sae-latent-detail').getAttribute('data-latent')), second, 'the clicked latent is shown');
    assert.equal(await page.getByTestId('sae-lens-positive').locator('.m-token').count(), 10, "ten tokens of the fine-tune's lens");
    assert.ok((await page.getByTestId('sae-contexts').locator('tr').count()) > 0, 'where it is most active');
    assert.equal(linkStateOf(page).methods.saeLatent, second, 'the latent is in the link');

    const menu = page.getByTestId('export-diff-sae-latents');
    await menu.locator('summary').click();
    const csv = (await download(page, () => menu.getByRole('button', { name: 'CSV' }).click())).toString('utf8').split('\r\n');
    assert.equal(csv[0], 'latent,frequency,max_activation,positive_tokens,negative_tokens,top_context,top_activation');
    assert.equal(Number(csv[1].split(',')[1]), freqs[0], 'the CSV keeps the frequency unrounded');
    await screenshot('methods-diff-sae');
  },

  async 'methods: amplification is cancelled between generated tokens'({ page, url }) {
    await page.goto(url(link({ view: 'methods', methods: { tab: 'amplify', alphas: [0, 1, 2], generate: 400, ampSamples: 8 } })));
    await page.getByTestId('amplify-run').click();
    await page.getByTestId('amplify-progress').getByText(/amplify \d+ of 9600/).waitFor({ timeout: RUN_TIMEOUT });
    await page.getByTestId('amplify-cancel').click();
    await page.getByText('Amplification was cancelled.').waitFor({ timeout: 10_000 });
  },
};

function linkStateOf(page) {
  return JSON.parse(decodeURIComponent(new URL(page.url()).hash.slice('#state='.length)));
}
