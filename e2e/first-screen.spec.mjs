import assert from 'node:assert/strict';

const text = async (page, testId) => (await page.getByTestId(testId).textContent())?.trim();

export const tests = {
  async 'first screen opens the demo; the models screen reports the SwiftShader adapter; own models show empty drop zones'({ page, url, screenshot }) {
    await page.goto(url());
    await page.getByTestId('demo-banner').waitFor();
    const rail = page.getByRole('navigation', { name: 'Views' });
    await page.getByTestId('heatmap').or(page.getByTestId('weights-progress')).first().waitFor({ timeout: 30_000 });
    await rail.getByRole('button', { name: 'Models', exact: true }).click();
    const report = page.getByTestId('gpu-report');
    await report.and(page.locator('[data-available]')).waitFor({ timeout: 30_000 });
    const available = await report.getAttribute('data-available');
    if (available !== 'true') {
      assert.fail(`expected WebGPU on SwiftShader, the app says: ${await report.textContent()}`);
    }
    assert.equal(await text(page, 'gpu-vendor'), 'google', 'adapter vendor');
    assert.equal(await text(page, 'gpu-architecture'), 'swiftshader', 'adapter architecture');
    assert.match(await text(page, 'gpu-f16'), /^no\b/, 'SwiftShader has no shader-f16');
    assert.match(await text(page, 'gpu-fallback'), /^yes\b/, 'SwiftShader is a fallback adapter');
    assert.match(await text(page, 'gpu-max-binding'), /^[\d,.]+ MiB$/, 'max storage binding is shown in MiB');
    assert.match(await text(page, 'gpu-max-buffer'), /^[\d,.]+ MiB$/, 'max buffer size is shown in MiB');
    assert.match(await text(page, 'backend-badge'), /WebGPU · swiftshader/, 'header badge names the backend');

    for (const role of ['base', 'ft']) {
      assert.match(await page.getByTestId(`drop-${role}`).getByTestId('load-status').textContent(), /^Loaded model\.safetensors \(Hugging Face safetensors\): llama, 3\.15M parameters, 6 layers/, `the demo ${role} model is listed`);
    }
    await page.getByTestId('use-own-models').click();
    assert.equal(await page.getByTestId('demo-banner').count(), 0, 'the demo is gone');
    for (const role of ['base', 'ft']) {
      assert.ok(await page.getByTestId(`drop-${role}`).isVisible(), `drop zone for ${role} is visible`);
      assert.equal(await page.getByTestId(`files-${role}`).count(), 0, `drop zone for ${role} is empty`);
    }
    for (const name of ['Weights', 'Activations / Lens', 'ADL', 'Patching', 'Crosscoders']) {
      assert.ok(await rail.getByRole('button', { name, exact: true }).isDisabled(), `${name} is disabled before models load`);
    }
    assert.ok(await rail.getByRole('button', { name: 'Models', exact: true }).isEnabled(), 'Models is enabled');
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the page is cross-origin isolated (COOP/COEP)');
    await screenshot('first-screen');
  },
};
