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
    // The link's layer named a layer of the demo pair it opened on; the user's own pair starts at its default layer.
    assert.match(await notice.textContent(), /^Activations \/ Lens with the prompt .+ opens once the base and fine-tuned models are loaded\.$/);
    assert.equal(await notice.locator('img, script').count(), 0, 'no element was created from the prompt');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script from the link ran');
    await screenshot('link-notice');
  },

  async 'a malformed permalink gives a clear message and a working app'({ page, url, screenshot }) {
    await page.goto(url('/#state=' + encodeURIComponent('{"view": "lens"')));
    const banner = page.getByTestId('link-error');
    await banner.waitFor();
    assert.match(await banner.textContent(), /This link could not be opened in full: the state is not valid JSON.*NeuroDiff started with its default settings/);

    await page.goto(url(link({ view: 'settings', layer: 1e300, prompt: 'kept' })));
    assert.match(await banner.textContent(), /2 settings were left out: view is "settings" but must be one of .*; layer is 1e\+300 but must be at most 1023\. The rest of the link was applied/);
    assert.equal(await page.getByTestId('link-notice').count(), 0, 'no view was applied from the bad link');
    assert.equal(JSON.parse(decodeURIComponent(new URL(page.url()).hash.slice('#state='.length))).prompt, 'kept', 'the valid prompt was kept');
    await page.getByTestId('use-own-models').click();
    await page.getByTestId('input-files-base').setInputFiles([{ name: 'a.gguf', mimeType: 'application/octet-stream', buffer: Buffer.alloc(10) }]);
    await page.getByTestId('files-base').waitFor();
    await screenshot('link-error');
    await banner.getByRole('button', { name: 'Dismiss' }).click();
    assert.equal(await banner.count(), 0, 'the message can be dismissed');
  },

  async 'a link naming models on other servers shows the hosts and requests nothing until accepted'({ page, url, screenshot }) {
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const other = (host, folder) => ['config.json', 'model.safetensors'].map((f) => `${host}/${folder}/${f}`);
    await page.goto(url(link({ view: 'weights', models: { base: { url: other('http://127.0.0.1:9', 'base') }, ft: { url: other('https://models.invalid', 'ft') } } })));
    const consent = page.getByTestId('link-model-consent-ft');
    await consent.waitFor();
    assert.deepEqual(await page.getByTestId('link-model-hosts-ft').locator('li').allTextContents(), ['models.invalid']);
    assert.deepEqual(await page.getByTestId('link-model-hosts-base').locator('li').allTextContents(), ['http://127.0.0.1:9']);
    await page.waitForTimeout(300);
    const origin = new URL(url()).origin;
    assert.deepEqual(requests.filter((r) => !r.startsWith(origin)), [], 'no request left the app before the user agreed');
    await screenshot('link-consent');
    await page.getByTestId('link-model-accept-base').click();
    const status = page.getByTestId('link-model-status-base');
    await status.getByText(/could not be opened: config\.json: the request to http:\/\/127\.0\.0\.1:9\/base\/config\.json failed/).waitFor();
    assert.ok(requests.some((r) => r.startsWith('http://127.0.0.1:9/')), 'the accepted host was asked');
    assert.ok(!requests.some((r) => r.includes('models.invalid')), 'the other host still was not');
    await page.getByTestId('link-model-forget-ft').click();
    assert.equal(await consent.count(), 0);
  },
};
