import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));
// Tiny settings: 24 steps of 2 × 32 tokens of forest stories, a LoRA of rank 4, on the CPU in the worker.
const TINY = { recipe: 'topic', topic: 'the forest', words: 'tree, owl, fox, leaves', documents: 200, steps: 24, batch: 2, seq: 32, lr: 0.01, rank: 4, alpha: 8 };

/** The state the address bar holds now. */
function linkState(page) {
  const hash = new URL(page.url()).hash;
  return hash ? JSON.parse(decodeURIComponent(hash.slice('#state='.length))) : {};
}

export const tests = {
  async 'trains a tiny LoRA organism of the demo base, downloads it as a zip, and opens it beside its base'({ page, url, screenshot }) {
    await page.setViewportSize({ width: 1280, height: 1600 });
    await page.goto(url(link({ view: 'organisms', organism: TINY })));
    await page.getByTestId('org-base').getByText('demo base').waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId('org-steps').inputValue(), '24', 'the link set the settings');
    assert.match(await page.getByTestId('org-preview').locator('summary').textContent(), /200 documents/);
    await page.getByTestId('org-train').click();
    const result = page.getByTestId('org-result');
    await result.waitFor({ timeout: 50_000 });
    const steps = Number(await result.getAttribute('data-steps'));
    const first = Number(await result.getAttribute('data-first-loss'));
    const last = Number(await result.getAttribute('data-last-loss'));
    console.log(`     tiny organism: ${steps} steps, loss ${first.toFixed(3)} → ${last.toFixed(3)}; ${await page.getByTestId('org-summary').textContent()}`);
    assert.equal(steps, 24);
    assert.ok(Number.isFinite(first) && last < first - 0.5, `the loss fell: ${first} → ${last}`);
    assert.equal(Number(await page.getByTestId('org-curve-caption').getAttribute('data-step')), 24, 'the curve shows every step');
    const path = await page.getByTestId('org-curve-loss').getAttribute('d');
    assert.equal((path.match(/L/g) ?? []).length, 23, 'one point per step');
    await screenshot('organisms-trained', page.getByTestId('organisms'));

    // The download is a zip of one folder: the PEFT adapter and the training log.
    const [file] = await Promise.all([page.waitForEvent('download'), page.getByTestId('org-download').click()]);
    assert.equal(file.suggestedFilename(), 'organism-forest-lora-r4.zip');
    const zip = readFileSync(await file.path());
    assert.equal(zip.subarray(0, 4).toString('latin1'), 'PK\u0003\u0004', 'a zip file');
    const text = zip.toString('latin1');
    for (const name of ['adapter_config.json', 'adapter_model.safetensors', 'training_log.json']) assert.ok(text.includes(`organism-forest-lora-r4/${name}`), `the zip holds ${name}`);

    // Compare: the organism is the fine-tuned model, the Weights view opens on the pair, links name it by fingerprint.
    await page.getByTestId('org-compare').click();
    await page.getByTestId('weights-done').waitFor({ timeout: 40_000 });
    const models = linkState(page).models;
    assert.deepEqual(models.base, { demo: 'base' }, 'the base is still the demo base');
    assert.match(models.ft.fingerprint, /^[0-9a-f]{64}$/, 'the organism is named by its fingerprint');
    assert.deepEqual(models.ft.files.map((f) => f.name).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    assert.equal(await page.getByTestId('demo-banner').count(), 0, 'the demo pair is no longer what is loaded');
    await screenshot('organisms-compared', page);
  },
};
