import assert from 'node:assert/strict';

const link = (state) => '/#state=' + encodeURIComponent(JSON.stringify(state));

export const tests = {
  async 'a permalink with markup in the prompt shows it as text only'({ page, url, screenshot }) {
    const prompt = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> the sea';
    await page.goto(url(link({ view: 'lens', layer: 2, prompt })));
    await page.getByTestId('use-own-models').click();
    const notice = page.getByTestId('link-notice');
    await notice.waitFor();
    assert.equal(await page.getByTestId('link-prompt').textContent(), prompt, 'the prompt is shown verbatim');
    assert.match(await notice.textContent(), /^Activations \/ Lens at layer 2 with the prompt .+ opens once the base and fine-tuned models are loaded\.$/);
    assert.equal(await notice.locator('img, script').count(), 0, 'no element was created from the prompt');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script from the link ran');
    await screenshot('link-notice');
  },

  async 'a malformed permalink gives a clear message and a working app'({ page, url, screenshot }) {
    await page.goto(url('/#state=' + encodeURIComponent('{"view": "lens"')));
    const banner = page.getByTestId('link-error');
    await banner.waitFor();
    assert.match(await banner.textContent(), /This link could not be opened: the state is not valid JSON/);

    await page.goto(url(link({ view: 'settings' })));
    await page.reload();
    assert.match(await banner.textContent(), /view: Invalid option/);
    assert.equal(await page.getByTestId('link-notice').count(), 0, 'no view was applied from the bad link');
    await page.getByTestId('use-own-models').click();
    await page.getByTestId('input-files-base').setInputFiles([{ name: 'a.gguf', mimeType: 'application/octet-stream', buffer: Buffer.alloc(10) }]);
    await page.getByTestId('files-base').waitFor();
    await screenshot('link-error');
    await banner.getByRole('button', { name: 'Dismiss' }).click();
    assert.equal(await banner.count(), 0, 'the message can be dismissed');
  },
};
