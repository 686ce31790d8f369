import assert from 'node:assert/strict';
import { launchChromium } from './browser.mjs';

export const tests = {
  async 'without WebGPU the app says it runs on the CPU backend'({ page, url, screenshot }) {
    await page.addInitScript(() => Object.defineProperty(navigator, 'gpu', { value: undefined }));
    await page.goto(url());
    await page.getByTestId('use-own-models').click();
    const message = page.getByTestId('gpu-unavailable');
    await message.waitFor();
    assert.match(await message.textContent(), /^WebGPU unavailable: .+ — running on the CPU backend\.$/);
    assert.equal((await page.getByTestId('backend-badge').textContent())?.trim(), 'CPU backend');
    assert.ok(await page.getByTestId('drop-base').isVisible(), 'the drop zones still show');
    await screenshot('cpu-backend');
  },

  async 'losing the GPU device shows a banner with the reason'({ url, screenshot }) {
    // A browser of its own: crashing the GPU process must not touch the browser the other tests share.
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(url());
      await page.getByTestId('use-own-models').click();
      await page.locator('[data-testid="gpu-report"][data-available="true"]').waitFor({ timeout: 30_000 });
      const cdp = await browser.newBrowserCDPSession();
      await cdp.send('Browser.crashGpuProcess');
      const banner = page.getByTestId('device-lost');
      await banner.waitFor({ timeout: 20_000 });
      assert.match(await banner.textContent(), /WebGPU device lost/);
      await screenshot('device-lost', page);
    } finally {
      await browser.close();
    }
  },
};
