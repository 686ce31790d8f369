// What got in a new user's way (issue 13): views that moved each other's layer, unreadable
// tokens, a legend without numbers for an adapter pair, and view state left over from the old pair.
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const demo = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'models', 'demo');
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const RUN_TIMEOUT = 45_000;
// Small corpus settings keep the ADL to seconds on a shared CPU.
const SMALL_ADL = { adlSamples: 16, adlTokens: 24 };
const openView = (page, label) => page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: label, exact: true }).click();

async function waitForTask(page, task) {
  const done = page.getByTestId(`${task}-done`);
  await done.or(page.getByTestId(`${task}-error`)).first().waitFor({ timeout: RUN_TIMEOUT });
  if (await page.getByTestId(`${task}-error`).count()) assert.fail(await page.getByTestId(`${task}-error`).textContent());
}

/** The tokens of the ADL's ranked tables and the Patchscope, as shown. */
const shownTokens = (page) => page.locator('[data-testid="adl-top"] td.adl-token .mono, [data-testid="adl-top-negative"] td.adl-token .mono, [data-testid="patchscope-table"] td.adl-token .mono').allTextContents();
// U+FFFD and the C0/C1 controls, which draw as nothing or as boxes.
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const UNREADABLE = /[\uFFFD\u0000-\u001f\u007f-\u009f]/;

export const tests = {
  async 'each view keeps its own layer; "Use layer 4 in ADL" carries the lens layer over'({ page, url, screenshot }) {
    await page.goto(url(link({ view: 'lens', ...SMALL_ADL })));
    await waitForTask(page, 'lens');
    await page.getByTestId('lens-grid').locator('g.lens-cell[data-layer="4"][data-position="10"]').click();
    await page.getByTestId('lens-detail').waitFor();
    await page.getByTestId('lens-detail').scrollIntoViewIfNeeded();
    await screenshot('newuser-lens-use-layer');

    await openView(page, 'ADL');
    assert.equal(await page.getByTestId('adl-layer').inputValue(), '3', 'the lens click left the ADL at its default, half the depth');
    await openView(page, 'Crosscoders');
    assert.equal(await page.getByTestId('cc-layer').inputValue(), '3', 'and the crosscoders too');
    await screenshot('newuser-crosscoders');

    await openView(page, 'Activations / Lens');
    await page.getByTestId('use-layer-in-adl').click();
    assert.equal(await page.getByTestId('adl-layer').inputValue(), '4', 'the deliberate action opens the ADL at the lens layer');
    await page.getByTestId('adl-layer').selectOption('2');
    await openView(page, 'Activations / Lens');
    await page.getByTestId('lens-detail').waitFor();
    assert.match(await page.getByTestId('lens-detail').locator('h2').textContent(), /^Layer 4, position 10:/, 'the ADL layer did not move the lens cell');
    await openView(page, 'Crosscoders');
    assert.equal(await page.getByTestId('cc-layer').inputValue(), '3');
  },

  async 'ADL and Patchscope tokens are readable; non-word tokens are hidden, with a count'({ page, url, screenshot }) {
    // Fewer samples still: the Patchscope's 450 steps dominate, and a loaded machine needs the time.
    await page.goto(url(link({ view: 'adl', adlSamples: 8, adlTokens: 8 })));
    await waitForTask(page, 'adl');
    const hidden = page.getByTestId('hidden-count').first();
    assert.match(await hidden.textContent(), /^\s*\((\d+) hidden\)$/);
    assert.ok(Number(/\d+/.exec(await hidden.textContent())[0]) > 0, 'the demo ADL has non-word tokens to hide');
    const words = await shownTokens(page);
    assert.ok(words.length >= 100, `the tables are filled: ${words.length} tokens`);
    for (const t of words) assert.match(t, /[\p{L}\p{N}]/u, `only words while non-words are hidden: "${t}"`);
    const chips = await page.getByTestId('patchscope-stable').locator('.token-chip').allTextContents();
    assert.equal(chips.length, 12);
    for (const c of chips) assert.doesNotMatch(c, UNREADABLE, `a readable stable chip: ${JSON.stringify(c)}`);
    await screenshot('newuser-adl-words');
    await page.getByTestId('patchscope').scrollIntoViewIfNeeded();
    await screenshot('newuser-patchscope-words');

    await page.getByTestId('hide-non-words').first().uncheck();
    const all = await shownTokens(page);
    for (const t of all) assert.doesNotMatch(t, UNREADABLE, `every token readable: ${JSON.stringify(t)}`);
    assert.ok(all.some((t) => /^<0x[0-9A-F]{2}>/.test(t)), 'byte tokens show as <0xXX>');
    await screenshot('newuser-adl-all-tokens');
  },

  async 'loading another pair resets the old pair’s view state; the adapter pair’s legend has numbers'({ page, url, screenshot }) {
    // The demo pair with one of its tensors open (as a click on the heatmap leaves it).
    await page.goto(url(link({ view: 'weights', tensor: 'model.embed_tokens.weight' })));
    await page.getByTestId('weights-progress').or(page.getByTestId('weights-done')).first().waitFor({ timeout: RUN_TIMEOUT });

    await page.getByTestId('use-own-models').click();
    await page.getByTestId('input-folder-base').setInputFiles(join(demo, 'base'));
    await page.getByTestId('input-folder-ft').setInputFiles(join(demo, 'space'));
    await page.getByTestId('open-weights').click();
    await waitForTask(page, 'weights');
    assert.equal(await page.getByTestId('stale-tensor').count(), 0, 'no banner about the old pair’s tensor');
    assert.equal(await page.getByTestId('tensor-panel').count(), 0, 'the old pair’s tensor panel stays closed');
    const hash = new URL(page.url()).hash;
    assert.equal(hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))).tensor : undefined, undefined, 'the address names no tensor');

    for (const metric of ['relative', 'frobenius', 'cosine', 'effective_rank']) {
      await page.getByTestId('metric-select').selectOption(metric);
      const labels = await page.getByTestId('heatmap').locator('g.legend-axis .tick text').allTextContents();
      assert.ok(labels.length >= 2, `${metric}: at least two ticks, got ${JSON.stringify(labels)}`);
      for (const l of labels) assert.match(l, /^−?[\d.]+(e[−-]?\d+)?$/, `${metric}: every tick has a number: ${JSON.stringify(labels)}`);
    }
    await page.getByTestId('metric-select').selectOption('relative');
    await screenshot('newuser-weights-adapter');

    // The spectrum says how it was computed in words; the recipe is in its tooltip.
    await page.getByTestId('heatmap').locator('rect.cell[data-tensor="model.layers.3.mlp.up_proj.weight"]').click();
    const method = page.getByTestId('spectrum-method');
    assert.doesNotMatch(await method.textContent(), /cholqr|randomized\(|jacobi/, 'no recipe in the subtitle');
    assert.match(await method.getAttribute('title'), /^How the spectrum was computed: /);
    await page.getByTestId('tensor-panel').scrollIntoViewIfNeeded();
    await screenshot('newuser-tensor-panel');
  },
};
