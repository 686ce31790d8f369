import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { decodeLink } from '../state/permalink.ts';
import { LinkErrorBanner, LinkNotice } from './Banners.tsx';
import { GpuReport } from './GpuReport.tsx';
import { formatBytes, formatMiB } from './format.ts';

const hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>';

describe('rendering link content', () => {
  it('renders a prompt from a link as text, never as markup', () => {
    const decoded = decodeLink('#state=' + encodeURIComponent(JSON.stringify({ view: 'adl', prompt: hostile, layer: 4 })));
    if (!decoded.ok) throw new Error(decoded.message);
    const { view = 'models', prompt = '', layer = null } = decoded.state;
    const html = renderToStaticMarkup(createElement(LinkNotice, { view, prompt, layer }));
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<script');
    expect(html).toContain('&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(html).toContain('at layer 4');
  });

  it('renders a link error quoting a hostile key as text', () => {
    const decoded = decodeLink('#state=' + encodeURIComponent(JSON.stringify({ [hostile]: 1 })));
    if (decoded.message === undefined) throw new Error('expected the key to be refused');
    const html = renderToStaticMarkup(createElement(LinkErrorBanner, { message: decoded.message, onDismiss: () => {} }));
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img');
  });

  it('shows nothing for a link to the models screen', () => {
    expect(renderToStaticMarkup(createElement(LinkNotice, { view: 'models', prompt: 'x', layer: null }))).toBe('');
  });
});

describe('GpuReport', () => {
  it('names the adapter, its features and limits in MiB', () => {
    const html = renderToStaticMarkup(
      createElement(GpuReport, {
        gpu: {
          available: true,
          vendor: 'google',
          architecture: 'swiftshader',
          description: '',
          isFallbackAdapter: true,
          features: { shaderF16: false, subgroups: true, timestampQuery: true },
          limits: { maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 256 * 2 ** 20, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256 },
        },
      }),
    );
    expect(html).toContain('WebGPU on <span data-testid="gpu-adapter">google swiftshader</span>');
    expect(html).toContain('<dd data-testid="gpu-f16">no (f32 kernels)</dd>');
    expect(html).toContain('<dd data-testid="gpu-max-binding">1,024 MiB</dd>');
    expect(html).toContain('<dd data-testid="gpu-max-buffer">256 MiB</dd>');
  });

  it('says the app runs on the CPU backend when WebGPU is unavailable', () => {
    const html = renderToStaticMarkup(createElement(GpuReport, { gpu: { available: false, reason: 'WebGPU is not available: requestAdapter() found no adapter' } }));
    expect(html).toContain('WebGPU unavailable: requestAdapter() found no adapter — running on the CPU backend.');
  });
});

describe('format', () => {
  it('formats sizes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(2.5 * 2 ** 30)).toBe('2.50 GiB');
    expect(formatBytes(300 * 2 ** 20)).toBe('300 MiB');
    expect(formatMiB(1.5 * 2 ** 20)).toBe('1.5 MiB');
  });
});
