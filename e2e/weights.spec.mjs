import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const demo = join(root, 'public', 'models', 'demo');
const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
const DIFF_TIMEOUT = 45_000;
const Q3 = 'model.layers.3.self_attn.q_proj.weight';

/** The state the address bar holds now. */
function linkState(page) {
  const hash = new URL(page.url()).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

async function waitForDiff(page) {
  const done = page.getByTestId('weights-done');
  await done.waitFor({ timeout: DIFF_TIMEOUT });
  const ms = Number(await done.getAttribute('data-ms'));
  console.log(`     weight diff: ${await done.textContent()} (${ms} ms)`);
  return ms;
}

const number = async (page, id) => {
  const text = (await page.getByTestId(id).textContent())?.trim() ?? '';
  const value = Number(text);
  assert.ok(Number.isFinite(value), `${id} shows a number, got "${text}"`);
  return value;
};

export const tests = {
  async 'the demo pair opens in the weights view; a cell draws its spectrum; a reload keeps the tensor'({ page, url, screenshot }) {
    await page.goto(url());
    await page.getByTestId('demo-banner').waitFor();
    // The diff starts by itself; cancel it, then run it again.
    const progress = page.getByTestId('weights-progress');
    await progress.getByText(/^tensor \d+ of 56 · [\d.]+ [KM]iB of [\d.]+ MiB read · about .+ left$/).waitFor({ timeout: DIFF_TIMEOUT });
    await screenshot('weights-progress');
    await page.getByTestId('weights-cancel').click();
    await page.getByTestId('weights-cancelled').waitFor();
    await page.getByRole('button', { name: 'Run again' }).click();
    await waitForDiff(page);
    assert.equal(linkState(page).view, 'weights', 'the demo opened the weights view');

    const heatmap = page.getByTestId('heatmap');
    const config = JSON.parse(readFileSync(join(demo, 'base', 'config.json'), 'utf8'));
    assert.equal(await heatmap.locator('g.grid rect.cell').count(), config.num_hidden_layers * 9, 'one cell per layer and module (q k v o gate up down, two norms)');
    assert.deepEqual(await heatmap.locator('g.strip rect.cell').evaluateAll((cells) => cells.map((c) => c.getAttribute('data-tensor'))), ['model.embed_tokens.weight', 'model.norm.weight']);
    assert.equal(await heatmap.locator('g.legend-axis .tick').count() > 1, true, 'the legend has an axis');
    await screenshot('weights-demo-heatmap');

    const cell = heatmap.locator(`rect.cell[data-tensor="${Q3}"]`);
    const cellValue = Number(await cell.getAttribute('data-value'));
    await cell.hover();
    assert.match(await page.getByRole('tooltip').textContent(), new RegExp(Q3.replace(/\./g, '\\.')));
    await cell.click();
    const panel = page.getByTestId('tensor-panel');
    await panel.waitFor();
    assert.equal(await page.getByTestId('tensor-name').textContent(), Q3);
    const d = await page.getByTestId('spectrum-line').getAttribute('d');
    assert.match(d ?? '', /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$/, 'the spectrum is a drawn polyline');
    const points = await page.getByTestId('spectrum-points').locator('circle').count();
    assert.equal(points, 64, 'top 64 singular values of a 192×192 ΔW');
    assert.equal(await page.getByTestId('energy-points').locator('circle').count(), points);
    const ys = await page.getByTestId('spectrum-points').locator('circle').evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('cy'))));
    assert.ok(ys.every((y, i) => i === 0 || y >= ys[i - 1] - 1e-6), 'singular values descend (svg y grows downward)');

    const frob = await number(page, 'stat-frobenius');
    const rel = await number(page, 'stat-relative');
    const spectral = await number(page, 'stat-spectral');
    const effRank = await number(page, 'stat-effective-rank');
    assert.ok(frob > 0 && spectral > 0 && spectral <= frob * (1 + 1e-3), `0 < σ1 ${spectral} ≤ ‖ΔW‖_F ${frob}`);
    assert.ok(effRank >= 1 && effRank <= 192, `effective rank ${effRank} within [1, 192]`);
    assert.ok(Math.abs(rel - cellValue) <= 1e-3 * Math.abs(cellValue), `the panel's relative change ${rel} is the cell's ${cellValue}`);
    await screenshot('weights-demo-tensor');

    const copied = page.url();
    assert.equal(linkState(page).tensor, Q3, 'the tensor is in the link');
    await page.getByTestId('metric-select').selectOption('effective_rank');
    assert.equal(linkState(page).metric, 'effective_rank', 'the metric is in the link');
    await page.goto('about:blank');
    await page.goto(copied);
    await waitForDiff(page);
    assert.equal(await page.getByTestId('tensor-name').textContent(), Q3, 'the reloaded link selects the same tensor');
    assert.equal(await page.locator(`rect.cell-selected[data-tensor="${Q3}"]`).count(), 1, 'its cell is outlined');
    assert.equal(await page.getByTestId('metric-select').inputValue(), 'relative', 'the copied link had the metric of its time');
  },

  async 'a link to a tensor these models lack says so, and the table sorts and filters'({ page, url, screenshot }) {
    const stale = 'model.layers.99.self_attn.q_proj.weight';
    await page.goto(url(link({ view: 'weights', metric: 'spectral', tensor: stale })));
    await waitForDiff(page);
    const banner = page.getByTestId('stale-tensor');
    assert.match(await banner.textContent(), /The link selects the tensor model\.layers\.99\.self_attn\.q_proj\.weight, which is not a tensor of these models \(56 tensors were compared\)/);
    assert.equal(await page.getByTestId('metric-select').inputValue(), 'spectral');

    const table = page.getByTestId('tensor-table');
    await page.getByTestId('tensor-filter').fill('down');
    assert.equal(await table.locator('tbody tr').count(), 6, 'one down projection per layer');
    await table.getByRole('button', { name: /^σ₁/ }).click();
    const sigmas = await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.cells[6].textContent)));
    assert.ok(sigmas.every((s, i) => i === 0 || s <= sigmas[i - 1]), `sorted by σ1, largest first: ${sigmas}`);
    await table.locator('tbody tr').first().click();
    await page.getByTestId('tensor-panel').waitFor();
    assert.equal(await page.getByTestId('stale-tensor').count(), 0, 'choosing a tensor replaces the stale one');
    for (const id of ['only-base', 'only-ft', 'mismatched', 'unsupported']) {
      assert.match(await page.getByTestId(`list-${id}`).textContent(), /\(0\)none$/, `${id} is listed, empty`);
    }
    await screenshot('weights-table');
  },

  async 'your own models: an adapter on its base, and clear errors for bad files'({ page, url, screenshot }) {
    await page.goto(url());
    await page.getByTestId('use-own-models').click();
    const rail = page.getByRole('navigation', { name: 'Views' });
    assert.ok(await rail.getByRole('button', { name: 'Weights', exact: true }).isDisabled(), 'no models, no weights view');
    assert.equal(await page.getByTestId('files-base').count(), 0, 'the demo files are gone');

    await page.getByTestId('input-folder-base').setInputFiles(join(demo, 'base'));
    await page.getByTestId('input-folder-ft').setInputFiles(join(demo, 'space'));
    const ftStatus = page.getByTestId('drop-ft').getByTestId('load-status');
    await ftStatus.and(page.locator('.ok')).waitFor();
    assert.match(await ftStatus.textContent(), /Loaded adapter_model\.safetensors \(PEFT adapter\).*LoRA rank 8, alpha 16, 42 adapted matrices/);
    assert.match(await page.getByTestId('drop-base').getByTestId('load-memory').textContent(), /Stored as F16, 6\.00 MiB; 12\.0 MiB as float32/);
    await screenshot('own-models-adapter');
    await page.getByTestId('open-weights').click();
    await waitForDiff(page);
    assert.equal(await page.locator('g.grid rect.cell').count(), 42, 'the adapter changes 7 matrices in each of 6 layers');
    await page.locator(`rect.cell[data-tensor="${Q3}"]`).click();
    assert.match(await page.getByTestId('tensor-panel').textContent(), /lora-factors\(r=8\)/);
    assert.ok((await page.getByTestId('spectrum-points').locator('circle').count()) <= 8, 'rank ≤ r = 8');
    await screenshot('weights-adapter');

    await rail.getByRole('button', { name: 'Models', exact: true }).click();
    const weights = readFileSync(join(demo, 'ocean', 'model.safetensors'));
    await page.getByTestId('input-files-ft').setInputFiles([
      { name: 'config.json', mimeType: 'application/json', buffer: readFileSync(join(demo, 'ocean', 'config.json')) },
      { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: weights.subarray(0, weights.length - 5000) },
    ]);
    await ftStatus.and(page.locator('.error')).waitFor();
    assert.match(await ftStatus.textContent(), /^Could not load: model\.safetensors: .*truncated/);
    assert.ok(await rail.getByRole('button', { name: 'Weights', exact: true }).isDisabled(), 'no weights view without a fine-tune');

    await page.getByTestId('urls-toggle-ft').click();
    await page.getByTestId('urls-ft').fill(`${url('/models/demo/ocean/config.json')}\n${url('/models/demo/ocean/missing.safetensors')}`);
    await page.getByTestId('urls-open-ft').click();
    assert.match(await page.getByTestId('read-error-ft').textContent(), /^missing\.safetensors: HTTP 404 Not Found for http:\/\/localhost:\d+\/models\/demo\/ocean\/missing\.safetensors$/);
    await page.getByTestId('urls-ft').fill(['config.json', 'model.safetensors'].map((f) => url(`/models/demo/ocean/${f}`)).join('\n'));
    await page.getByTestId('urls-open-ft').click();
    await ftStatus.and(page.locator('.ok')).waitFor();
    assert.deepEqual(await page.getByTestId('files-ft').locator('td.files-path').allTextContents(), ['config.json', 'model.safetensors'], 'the pasted URLs are listed by file name');
    assert.ok(await rail.getByRole('button', { name: 'Weights', exact: true }).isEnabled(), 'a pair opened from URLs can be compared');

    await page.getByTestId('input-folder-ft').setInputFiles(join(root, 'test', 'fixtures', 'arch', 'gpt2', 'ft'));
    const problem = page.getByTestId('pair-problem');
    await problem.waitFor();
    assert.match(await problem.textContent(), /the base model \(model\.safetensors\) is llama with 6 layers, d_model 192, vocabulary 4096, the fine-tuned model \(model\.safetensors\) is gpt2 with 3 layers, d_model 64, vocabulary 256/);
    assert.ok(await rail.getByRole('button', { name: 'Weights', exact: true }).isDisabled(), 'no weights view for a mismatched pair');
    await screenshot('own-models-errors');
  },
};

/** A copy of a one-file safetensors checkpoint split into two shards with model.safetensors.index.json. */
function shardedCopy(folder) {
  const bytes = readFileSync(join(folder, 'model.safetensors'));
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const data = bytes.subarray(8 + headerLen);
  const names = Object.keys(header).filter((n) => n !== '__metadata__').sort();
  const out = mkdtempSync(join(tmpdir(), 'nd-sharded-'));
  const half = Math.ceil(names.length / 2);
  const weightMap = {};
  [names.slice(0, half), names.slice(half)].forEach((group, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const h = {};
    const parts = [];
    let offset = 0;
    for (const name of group) {
      const [begin, end] = header[name].data_offsets;
      h[name] = { ...header[name], data_offsets: [offset, offset + end - begin] };
      parts.push(data.subarray(begin, end));
      offset += end - begin;
      weightMap[name] = file;
    }
    let json = JSON.stringify(h);
    while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeFileSync(join(out, file), Buffer.concat([len, Buffer.from(json), ...parts]));
  });
  writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  copyFileSync(join(folder, 'config.json'), join(out, 'config.json'));
  return out;
}

tests['a dropped folder with a sharded checkpoint is compared tensor by tensor'] = async ({ page, url, screenshot }) => {
  const arch = join(root, 'test', 'fixtures', 'arch', 'llama');
  const truth = JSON.parse(readFileSync(join(arch, 'ground_truth.json'), 'utf8'));
  await page.goto(url());
  await page.getByTestId('use-own-models').click();
  await page.getByTestId('input-folder-base').setInputFiles(shardedCopy(join(arch, 'base')));
  await page.getByTestId('input-folder-ft').setInputFiles(join(arch, 'ft'));
  assert.deepEqual(
    await page.getByTestId('files-base').locator('td.files-path').allTextContents(),
    ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'],
    'both shards and the index are listed',
  );
  await page.getByTestId('drop-base').getByTestId('load-status').and(page.locator('.ok')).waitFor();
  await page.getByTestId('drop-ft').getByTestId('load-status').and(page.locator('.ok')).waitFor();
  await page.getByTestId('open-weights').click();
  await waitForDiff(page);
  for (const name of Object.keys(truth.changed_tensors)) {
    await page.locator(`rect.cell[data-tensor="${name}"]`).click();
    const panel = await page.getByTestId('tensor-panel').textContent();
    assert.ok(panel.includes(name), `the panel opens ${name}`);
  }
  const frob = truth.changed_tensors['model.layers.2.self_attn.o_proj.weight'].frobenius;
  const shown = Number((await page.getByTestId('stat-frobenius').textContent())?.trim());
  assert.ok(Math.abs(shown - frob) <= 1e-3 * frob, `‖ΔW‖_F of o_proj across shards: ${shown} vs ${frob}`);
  await screenshot('weights-sharded');
};
