import { afterEach, describe, expect, it, vi } from 'vitest';
import { workerOptions } from './compute.ts';

function stubStorage(values: Record<string, string>) {
  vi.stubGlobal('localStorage', { getItem: (k: string) => values[k] ?? null, setItem: (k: string, v: string) => void (values[k] = v) });
}

describe('worker options', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('carry the compute choice, and the test-only binding size only when it is a positive integer', () => {
    stubStorage({ 'neurodiff.compute': 'webgpu' });
    expect(workerOptions()).toEqual({ backend: 'webgpu' });
    stubStorage({ 'neurodiff.compute': 'cpu', 'neurodiff.test.maxBindingBytes': '32768' });
    expect(workerOptions()).toEqual({ backend: 'cpu', testBindingBytes: 32768 });
    for (const bad of ['0', '-16', '1.5', 'many', '']) {
      stubStorage({ 'neurodiff.test.maxBindingBytes': bad });
      expect(workerOptions(), bad).toEqual({ backend: 'auto' });
    }
  });
});
