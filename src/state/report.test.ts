import { describe, expect, it } from 'vitest';
import type { WeightsDiff } from '../analysis/weights/types.ts';
import { fingerprintModel } from '../io/fingerprint.ts';
import type { PatchResult, SteerResult } from '../jobs/activations.ts';
import type { CrosscoderSummary } from '../jobs/crosscoder.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openModelLoader } from './open-weights.ts';
import { buildSessionReport, reportJson } from './report.ts';
import { openModelFiles } from './session.ts';
import { createAppStore } from './store.ts';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;

describe('session report', () => {
  it('names both models, carries the link settings and the results present', async () => {
    const store = createAppStore();
    store.getState().setModelLoader(openModelLoader);
    const base = await pathFileSet(`${FIXTURES}demo/base`);
    const ft = await pathFileSet(`${FIXTURES}demo/ocean/model`);
    await openModelFiles(store, 'base', base, 'files');
    await openModelFiles(store, 'ft', ft, { url: ['https://example.org/ocean/model.safetensors'] });
    for (let i = 0; i < 400 && (store.getState().models.base.status.kind !== 'loaded' || store.getState().models.ft.status.kind !== 'loaded'); i++) await new Promise((r) => setTimeout(r, 5));
    const diff: WeightsDiff = { tensors: [], missing: [], mismatched: [], unsupported: [{ name: 'x', reason: 'int' }] };
    store.setState({ weightsRun: { status: 'done', ms: 12, result: diff, backend: 'CPU', cachedAt: Date.UTC(2026, 0, 2) }, view: 'weights', metric: 'spectral' });
    const patch = { task: 'patching', ids: [1, 2] } as unknown as PatchResult;
    const steer: SteerResult = { task: 'steer', layer: 3, position: 0, vectorNorm: 2, prompt: 'Once', generations: [{ strength: 1, base: ' a', ft: ' b' }] };
    store.setState({
      activationRuns: {
        patching: { status: 'done', key: 'p', result: patch, ms: 7, backend: 'CPU', cached: true, cachedAt: Date.UTC(2026, 0, 1) },
        steer: { status: 'done', key: 's', result: steer, ms: 9, backend: 'CPU', cached: false, cachedAt: null },
        lens: { status: 'running', key: 'l', progress: null, startedAt: 0, elapsedMs: 0 },
      },
    });

    const report = await buildSessionReport(store.getState(), new Date(Date.UTC(2026, 0, 3)));
    expect(report.created).toBe('2026-01-03T00:00:00.000Z');
    expect(report.models.base.fingerprint).toBe((await fingerprintModel(base)).fingerprint);
    expect(report.models.ft.fingerprint).toBe((await fingerprintModel(ft)).fingerprint);
    expect(report.models.ft.ref).toEqual({ url: ['https://example.org/ocean/model.safetensors'] });
    expect(report.models.base.summary?.layers).toBe(6);
    expect(report.models.base.summary).not.toHaveProperty('shapes');
    expect(report.models.base.files.map((f) => f.name)).toEqual([...base.keys()]);
    expect(report.settings).toMatchObject({ view: 'weights', metric: 'spectral' });
    expect(report.settings).not.toHaveProperty('modelRefs');
    expect(report.results.weights).toEqual({ backend: 'CPU', ms: 12, cached_at: '2026-01-02T00:00:00.000Z', result: diff });
    expect(report.results.activations).toEqual({
      patching: { backend: 'CPU', ms: 7, cached: true, cached_at: '2026-01-01T00:00:00.000Z', result: patch },
      steer: { backend: 'CPU', ms: 9, cached: false, cached_at: null, result: steer },
    });

    expect(report.results.crosscoder).toBeNull();
    const curve = [{ step: 0, loss: 1.5, fvu: 0.9, dead: 0 }];
    const summary = { D: 64, fvu: 0.5 } as unknown as CrosscoderSummary;
    store.setState({ ccResult: { summary, pair: { layers: 6, dModel: 192, vocab: 4096, backend: 'CPU in a worker' } }, ccCurve: curve });
    expect((await buildSessionReport(store.getState())).results.crosscoder).toEqual({ backend: 'CPU in a worker', summary, curve });

    const parsed = JSON.parse(reportJson(report)) as typeof report;
    expect(parsed.results.weights?.result).toEqual(diff);
  });

  it('writes typed arrays as arrays and non-finite numbers as null', () => {
    expect(JSON.parse(reportJson({ a: new Float32Array([0.5, 2]), b: Number.NaN, c: new Map([['k', 1]]) }))).toEqual({ a: [0.5, 2], b: null, c: { k: 1 } });
  });
});
