// `neurodiff report` end to end on the demo pair: the files it writes exist, parse, agree with each
// other and with quantities computed here directly.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, ROOT } from './cli-testing.ts';
import { findAll, parseXml } from '../analysis/report/testing.ts';
import { fingerprintModel } from '../io/fingerprint.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openModel } from '../io/open-model.ts';
import type { ReportJson } from './report.ts';

const DEMO = join(ROOT, 'test/fixtures/demo');
const dirs: string[] = [];

async function outDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'neurodiff-report-'));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** CSV lines split on commas outside quotes (the ADL table's tokens may hold commas and quotes). */
function csvRows(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.split('\r\n').slice(0, -1)) {
    const fields: string[] = [];
    const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(line)) && m[0] !== '') {
      fields.push(m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!);
      if (m[2] === '') break;
    }
    rows.push(fields);
  }
  return rows;
}

const close = (got: number, want: number, abs: number, rel: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(abs + rel * Math.abs(want));

describe('neurodiff report', () => {
  it('writes report.json and its figures for the demo pair', { timeout: 120_000 }, async () => {
    const out = await outDir();
    const base = join(DEMO, 'base');
    const ft = join(DEMO, 'ocean/model');
    const r = await cli(['report', base, ft, '--corpus', join(DEMO, 'generic_stories.txt'), '--out', out, '--max-samples', '6', '--tokens-per-sample', '12', '--top-k', '8', '--top', '10', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout) as ReportJson;
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ReportJson;
    // stdout adds the run's memory plan (every pair command's --json has it); the file holds the report.
    const { memory, ...printedReport } = printed as ReportJson & { memory?: { mode: string; pair_bytes: number } };
    expect(printedReport).toEqual(report);
    expect(memory?.mode).toBe('resident');
    close(memory?.pair_bytes ?? 0, 25_197_792, 0, 0.01);
    expect((await readdir(out)).sort()).toEqual(['adl-tokens.csv', 'patching.svg', 'report.json', 'spectrum.svg', 'stitching.svg', 'weights-heatmap.svg']);
    expect(report.figures).toEqual({
      report: 'report.json',
      weights_heatmap: 'weights-heatmap.svg',
      spectrum: 'spectrum.svg',
      adl_tokens: 'adl-tokens.csv',
      patching: 'patching.svg',
      stitching: 'stitching.svg',
    });

    expect(report.models.base.fingerprint).toBe((await fingerprintModel(await pathFileSet(base))).fingerprint);
    expect(report.models.ft.fingerprint).toBe((await fingerprintModel(await pathFileSet(ft))).fingerprint);
    expect(report.models.ft.kind).toBe('model');
    expect(report.settings).toMatchObject({ backend: 'cpu', top_k: 8, top: 10, layer: 3, samples: 6, tokens_per_sample: 12 });

    // Weights: 6 layers × 9 tensors + embeddings + final norm, each compared; one checked directly.
    const diff = report.weights.diff;
    expect(diff.tensors).toHaveLength(56);
    expect(report.weights.summary.tensors).toBe(56);
    const name = 'model.layers.3.self_attn.q_proj.weight';
    const [b, f] = await Promise.all([base, ft].map(async (p) => (await openModel(await pathFileSet(p))).store.readF32(name)));
    let dd = 0;
    let bb = 0;
    for (let i = 0; i < b!.length; i++) {
      dd += (f![i]! - b![i]!) ** 2;
      bb += b![i]! ** 2;
    }
    const q3 = diff.tensors.find((t) => t.name === name)!;
    close(q3.frobenius, Math.sqrt(dd), 1e-6, 1e-5);
    close(q3.relative!, Math.sqrt(dd / bb), 1e-7, 1e-5);

    const heatmap = parseXml(await readFile(join(out, 'weights-heatmap.svg'), 'utf8'));
    const cells = findAll(heatmap, 'rect').filter((e) => e.attrs.class === 'cell');
    expect(cells).toHaveLength(6 * 9);
    const q3cell = cells.find((c) => findAll(c, 'title')[0]?.text.startsWith(`${name} `));
    expect(Number(q3cell!.attrs['data-value'])).toBe(q3.relative);

    const most = diff.tensors.filter((t) => t.top_singular_values.length > 0).reduce((a, t) => ((t.relative ?? 0) > (a.relative ?? 0) ? t : a));
    const spectrum = parseXml(await readFile(join(out, 'spectrum.svg'), 'utf8'));
    expect(findAll(spectrum, 'title')[0]!.text).toContain(most.name);
    expect(findAll(spectrum, 'circle')).toHaveLength(8);

    // ADL: the CSV lists the lens tokens of ±δ_p for positions 0–4, as report.json does.
    // Direction is named as in report.json; a token a spreadsheet would read as a formula carries a leading apostrophe.
    const rows = csvRows(await readFile(join(out, 'adl-tokens.csv'), 'utf8')).map((row) => row.map((f) => f.replace(/^'(?=[=+\-@\t\r])/, '')));
    expect(rows[0]).toEqual(['position', 'direction', 'rank', 'id', 'token', 'prob']);
    expect(rows).toHaveLength(1 + 5 * 2 * 10);
    for (const p of report.adl.positions) {
      const mine = rows.filter((row) => row[0] === String(p.position) && row[1] === 'top');
      expect(mine.map((row) => Number(row[3]))).toEqual(p.top.map((t) => t.id));
      expect(mine.map((row) => row[4])).toEqual(p.top.map((t) => t.token));
      const probs = mine.map((row) => Number(row[5]));
      expect(probs.every((x, i) => x >= 0 && x <= 1 && (i === 0 || x <= probs[i - 1]!))).toBe(true);
    }
    expect(report.adl.layer).toBe(3);
    expect(report.adl.patchscope.map((p) => p.scales.length)).toEqual([7, 7, 7, 7, 7]);

    // Patching and stitching: a recovery per layer and hook kind; stitching at every boundary.
    expect(report.patching.prompt).toHaveLength(12);
    expect(report.patching.ft_into_base.map((k) => [k.kind, k.recovery.length])).toEqual(['resid_pre', 'attn_out', 'mlp_out', 'resid_post'].map((k) => [k, 6]));
    expect(report.patching.kl_ft_base).toBeGreaterThan(0);
    const s = report.patching.stitching;
    expect(s.kl_from_ft_base_below).toHaveLength(7);
    expect(s.kl_from_ft_ft_below).toHaveLength(7);
    for (const kl of [...s.kl_from_ft_base_below, ...s.kl_from_ft_ft_below]) expect(Number.isFinite(kl) && kl >= -1e-6).toBe(true);
    // More fine-tuned blocks below the boundary bring the stitched model closer to the fine-tune.
    expect(s.kl_from_ft_ft_below.at(-1)!).toBeLessThan(s.kl_from_ft_base_below.at(-1)!);
    for (const file of ['patching.svg', 'stitching.svg']) {
      const doc = parseXml(await readFile(join(out, file), 'utf8'));
      expect(findAll(doc, 'g').length).toBeGreaterThanOrEqual(2);
    }
    expect(findAll(parseXml(await readFile(join(out, 'patching.svg'), 'utf8')), 'circle')).toHaveLength(4 * 6);
  });

  it('says what is missing or wrong, in one line', async () => {
    const noOut = await cli(['report', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(DEMO, 'generic_stories.txt')]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toMatch(/^neurodiff: --out <dir> is required/);
    const out = await outDir();
    const noCorpus = await cli(['report', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(out, 'missing.txt'), '--out', out]);
    expect(noCorpus.code).toBe(1);
    expect(noCorpus.stderr.trim().split('\n').at(-1)).toBe(`neurodiff: ${join(out, 'missing.txt')}: no such corpus file`);
    const one = await cli(['report', join(DEMO, 'base'), '--corpus', 'x', '--out', out]);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/report takes two models, <base> and <ft> \(got 1 argument\)/);
  });
});
