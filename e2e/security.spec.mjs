import assert from 'node:assert/strict';

/** Adds an element made by `kind` to the page; returns the CSP directive and URI it violated (null if none in 2 s). */
function violation(page, kind) {
  return page.evaluate(
    (kind) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 2000);
        document.addEventListener(
          'securitypolicyviolation',
          (e) => {
            clearTimeout(timer);
            resolve(`${e.effectiveDirective} ${e.blockedURI}`);
          },
          { once: true },
        );
        if (kind === 'remote script') {
          const s = document.createElement('script');
          s.src = 'https://cdn.example.invalid/tracker.js';
          document.head.append(s);
        } else if (kind === 'inline script') {
          const s = document.createElement('script');
          s.textContent = 'window.__inline = 1';
          document.head.append(s);
        } else if (kind === 'frame') {
          const f = document.createElement('iframe');
          f.src = 'https://example.invalid/';
          document.body.append(f);
        }
      }),
    kind,
  );
}

export const tests = {
  async 'the page forbids remote and inline scripts, and no request leaves its origin'({ page, url }) {
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const response = await page.goto(url());
    assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'self' 'wasm-unsafe-eval'.*frame-ancestors 'none'/);
    const meta = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
    assert.match(meta, /^default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; connect-src 'self' https: http:\/\/localhost:\* http:\/\/127\.0\.0\.1:\*/);

    assert.equal(await violation(page, 'remote script'), 'script-src-elem https://cdn.example.invalid/tracker.js');
    assert.equal(await violation(page, 'inline script'), 'script-src-elem inline');
    assert.equal(await page.evaluate(() => window.__inline), undefined, 'the inline script did not run');
    assert.equal(await violation(page, 'frame'), 'frame-src https://example.invalid');

    await page.getByTestId('weights-done').waitFor({ timeout: 45_000 });
    const origin = new URL(url()).origin;
    // The blocked probes above still show as attempted requests; nothing else may leave the origin.
    const probes = ['https://cdn.example.invalid/tracker.js', 'https://example.invalid/'];
    const outside = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('blob:') && !u.startsWith('data:') && !probes.includes(u));
    assert.deepEqual(outside, [], 'loading the demo and diffing its weights asks nothing of any other server');
    assert.ok(requests.some((u) => u.includes('/models/demo/ocean/model.safetensors')), 'the demo weights were read from the app');
  },
};
