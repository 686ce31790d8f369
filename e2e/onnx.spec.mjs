import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arch = join(root, 'test', 'fixtures', 'arch', 'llama');
const onnx = join(root, 'test', 'fixtures', 'onnx', 'llama');

export const tests = {
  async 'an ONNX pair (a folder, and an .onnx dropped with its .onnx.data) gets the weights view under Hugging Face names'({ page, url, screenshot }) {
    const truth = JSON.parse(readFileSync(join(arch, 'ground_truth.json'), 'utf8'));
    await page.goto(url());
    await page.getByTestId('use-own-models').click();
    await page.getByTestId('input-folder-base').setInputFiles(join(onnx, 'base'));
    // The fine-tune as a user drops it: the .onnx, its external data and the config, side by side.
    const files = ['config.json', 'model.onnx', 'model.onnx.data'].map((name) => ({ name, base64: readFileSync(join(onnx, 'ft', name)).toString('base64') }));
    await page.getByTestId('drop-ft').evaluate((zone, list) => {
      const dt = new DataTransfer();
      for (const f of list) dt.items.add(new File([Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0))], f.name));
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, files);
    for (const role of ['base', 'ft']) {
      const status = page.getByTestId(`drop-${role}`).getByTestId('load-status').and(page.locator('.ok'));
      await status.waitFor();
      assert.match(await status.textContent(), /^Loaded model\.onnx \(ONNX\): llama, .* 3 layers, d_model 64, vocabulary 256/, `the ${role} ONNX model is read as a llama`);
    }
    await page.getByTestId('open-weights').click();
    await page.getByTestId('weights-done').waitFor({ timeout: 45_000 });
    const heatmap = page.getByTestId('heatmap');
    assert.equal(await heatmap.locator('g.grid rect.cell').count(), 3 * 9, 'one cell per layer and module, as for safetensors');
    for (const [name, t] of Object.entries(truth.changed_tensors)) {
      await heatmap.locator(`rect.cell[data-tensor="${name}"]`).click();
      assert.equal(await page.getByTestId('tensor-name').textContent(), name);
      const shown = Number((await page.getByTestId('stat-frobenius').textContent())?.trim());
      assert.ok(Math.abs(shown - t.frobenius) <= 1e-3 * t.frobenius, `‖ΔW‖_F of ${name} read from ONNX: ${shown} vs ${t.frobenius}`);
    }
    await screenshot('onnx-weights');
  },
};
