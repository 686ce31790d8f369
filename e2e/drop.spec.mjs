import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');

/** Opens the app and leaves the built-in demo for empty drop zones. */
async function ownModels(page, url) {
  await page.goto(url());
  await page.getByTestId('use-own-models').click();
}

/** The listing of a drop zone as [path, size text] rows. */
async function listing(page, role) {
  return page.getByTestId(`files-${role}`).locator('tr').evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
}

export const tests = {
  async 'drop zone lists files chosen in the file input and dropped as a DataTransfer'({ page, url, screenshot }) {
    await ownModels(page, url);
    await page.getByTestId('input-files-base').setInputFiles([
      { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from('{"model_type":"llama"}') },
      { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.alloc(3000) },
    ]);
    await page.getByTestId('files-base').waitFor();
    assert.deepEqual(await listing(page, 'base'), [
      ['config.json', '22 B'],
      ['model.safetensors', '2.93 KiB'],
    ]);
    assert.equal((await page.getByTestId('files-total-base').textContent())?.trim(), '2 files, 2.95 KiB');

    await page.getByTestId('drop-ft').evaluate((zone) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['{"r": 4}'], 'adapter_config.json', { type: 'application/json' }));
      dt.items.add(new File([new Uint8Array(2048)], 'adapter_model.safetensors'));
      dt.items.add(new File(['x'], '.DS_Store'));
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.getByTestId('files-ft').waitFor();
    assert.deepEqual(await listing(page, 'ft'), [
      ['adapter_config.json', '8 B'],
      ['adapter_model.safetensors', '2.00 KiB'],
    ], 'the dropped files are listed, the dotfile skipped');
    assert.equal((await page.getByTestId('files-total-ft').textContent())?.trim(), '2 files, 2.01 KiB');
    assert.deepEqual(await listing(page, 'base'), [['config.json', '22 B'], ['model.safetensors', '2.93 KiB']], 'the base listing is untouched');
    await screenshot('drop-files');
  },

  async 'folder input keys files relative to the chosen folder'({ page, url, screenshot }) {
    await ownModels(page, url);
    await page.getByTestId('input-folder-base').setInputFiles(join(fixtures, 'arch', 'llama', 'base'));
    await page.getByTestId('files-base').waitFor();
    const rows = await listing(page, 'base');
    assert.deepEqual(rows.map((r) => r[0]), ['config.json', 'generation_config.json', 'model.safetensors'], 'paths lose the folder name');
    await page.getByTestId('drop-base').getByRole('button', { name: 'clear' }).click();
    assert.equal(await page.getByTestId('files-base').count(), 0, 'clear removes the listing');
    await screenshot('drop-folder-cleared');
  },
};
