// `neurodiff report <base> <ft> --corpus f --out dir`: the main analyses in one folder without a
// browser — report.json (weight diff, ADL at the default layer, activation patching and model
// stitching on a prompt) and figures written as SVG text and CSV.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { activationDifferenceLens, IDENTITY_PROMPTS, type TokenProb } from '../analysis/activations/adl.ts';
import { HOOK_KINDS } from '../analysis/activations/differences.ts';
import { patchAndStitch } from '../analysis/activations/patching.ts';
import { toCsv, type Cell } from '../analysis/report/csv.ts';
import { heatmapSvg, lineChartSvg } from '../analysis/report/svg.ts';
import { mostChangedMatrix, spectrumChart, weightsHeatmap, weightsSummary, type WeightsSummary } from '../analysis/report/weights.ts';
import type { WeightsDiff } from '../analysis/weights/types.ts';
import { fingerprintModel } from '../io/fingerprint.ts';
import { weightsJob } from '../jobs/weights.ts';
import { CORPUS_OPTIONS, corpusSamples, type AdlJson } from './adl.ts';
import type { Command } from './commands.ts';
import { plural } from './format.ts';
import { UsageError } from './errors.ts';
import { filesAt, pairRunner, intOption, needTokenizer, openPairAt, pickBackend, readCorpus, stderrProgress, str, tokenText, type Values } from './models.ts';

export const REPORT_FORMAT = 'neurodiff-report';
/** Small by default so a report takes seconds on small models; raise them for real ones. */
const DEFAULTS = { 'max-samples': '64', 'tokens-per-sample': '32', 'top-k': 16, top: 20, 'prompt-tokens': 32 };
/** Fewer Patchscope scales than `adl` (which sweeps 0.5…200): enough to see which tokens are stable. */
const PATCHSCOPE_SCALES = [0.5, 1, 1.5, 2, 4, 8, 16];

type Token = { id: number; token: string | null; prob: number };

interface ModelJson {
  path: string;
  fingerprint: string;
  files: { name: string; size: number }[];
}

interface RecoveryJson {
  kind: string;
  recovery: number[];
  kl: number[];
}

export interface ReportJson {
  format: typeof REPORT_FORMAT;
  version: 1;
  created: string;
  models: { base: ModelJson; ft: ModelJson & { kind: 'model' | 'peft-adapter' } };
  settings: { backend: string; top_k: number; top: number; layer: number; samples: number; tokens_per_sample: number; patchscope_scales: number[] };
  weights: { summary: WeightsSummary; diff: WeightsDiff };
  adl: AdlJson;
  patching: {
    prompt: { id: number; token: string | null }[];
    kl_ft_base: number;
    kl_base_ft: number;
    ft_into_base: RecoveryJson[];
    base_into_ft: RecoveryJson[];
    stitching: { loss_base: number; loss_ft: number; kl_from_ft_base_below: number[]; kl_from_ft_ft_below: number[] };
  };
  figures: Record<string, string>;
  seconds: number;
}

async function modelJson(path: string, what: string): Promise<ModelJson> {
  const fp = await fingerprintModel(await filesAt(path, what));
  return { path, fingerprint: fp.fingerprint, files: fp.files.map(({ name, size }) => ({ name, size })) };
}

export const report: Command = {
  summary: 'a report folder: report.json (weight diff, ADL, patching and stitching) and figures (SVG, CSV)',
  usage:
    '<base> <ft> --corpus <file> --out <dir> [--backend cpu|webgpu] [--max-samples 64] [--tokens-per-sample 32] [--layer i] [--top-k 16] [--top 20] [--prompt <text>] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, out: { type: 'string' }, prompt: { type: 'string' }, 'top-k': { type: 'string' }, top: { type: 'string' } },
  async run(positionals, given): Promise<ReportJson> {
    const t0 = performance.now();
    const out = str(given, 'out');
    if (!out) throw new UsageError('--out <dir> is required: the folder the report and its figures are written to');
    const [basePath, ftPath, extra] = positionals;
    if (!basePath || !ftPath || extra !== undefined) throw new UsageError(`report takes two models, <base> and <ft> (got ${plural(positionals.length, 'argument')})`);
    const values: Values = { 'max-samples': DEFAULTS['max-samples'], 'tokens-per-sample': DEFAULTS['tokens-per-sample'], ...given };
    const topK = intOption(values, 'top-k', DEFAULTS['top-k'], 1);
    const top = intOption(values, 'top', DEFAULTS.top, 1);
    // Read once up front so a missing or empty corpus fails before the slow parts.
    await readCorpus(str(values, 'corpus'));
    const backend = await pickBackend(values);
    const onProgress = stderrProgress();

    const opened = await openPairAt(basePath, ftPath, values);
    const { runner } = pairRunner(opened, backend, values);
    process.stderr.write('report: weight diff\n');
    const diff = await weightsJob(opened, { topK }, { backend, onProgress: (p) => onProgress({ stage: `weights ${p.name}`, done: p.done, total: p.total }) });

    // One model at a time where the memory plan says so: the ADL and patching both can.
    const pair = runner;
    const tok = opened.tokenizer;
    const tokenizer = needTokenizer(tok, 'report');
    const { layer, corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    process.stderr.write(`report: ADL at layer ${layer} over ${corpus.samples.length} samples of ${corpus.tokensPerSample} tokens\n`);
    const tAdl = performance.now();
    const adl = await activationDifferenceLens(pair, corpus.samples, {
      layer,
      top,
      batchSize,
      onProgress,
      patchscope: { prompts: IDENTITY_PROMPTS.map((p) => tokenizer.encode(p)), scales: PATCHSCOPE_SCALES },
    });
    const tokens = (list: readonly TokenProb[]): Token[] => list.map((t) => ({ id: t.id, token: tokenText(tokenizer, t.id), prob: t.prob }));
    const adlJson: AdlJson = {
      layer: adl.layer,
      hook: `blocks.${adl.layer}.hook_resid_post`,
      samples: adl.samples,
      tokens_per_sample: corpus.tokensPerSample,
      skipped_short: corpus.tooShort,
      ft_norm: adl.ftNorm ?? null,
      positions: adl.positions.map((p) => ({ position: p.position, consistency: p.consistency, norm: p.norm, top: tokens(p.top), top_negative: tokens(p.topNegative) })),
      patchscope: adl.positions.flatMap((p) =>
        p.patchscope
          ? [
              {
                position: p.position,
                latent_norm: adl.ftNorm ?? p.norm,
                scales: p.patchscope.scales.map((s) => ({ scale: s.scale, top: tokens(s.top) })),
                stable: p.patchscope.stable.map((s) => ({ id: s.id, token: tokenText(tokenizer, s.id), scales: s.scales, prob: s.prob })),
              },
            ]
          : [],
      ),
      seconds: (performance.now() - tAdl) / 1000,
    };

    const promptText = str(values, 'prompt');
    const ids = promptText === undefined ? corpus.samples[0]!.slice(0, DEFAULTS['prompt-tokens']) : tokenizer.encode(promptText);
    if (ids.length === 0) throw new UsageError('--prompt gives no tokens');
    process.stderr.write(`report: patching and stitching on ${ids.length} tokens\n`);
    const { patching: patched, stitched } = await patchAndStitch(pair, ids, { kinds: [...HOOK_KINDS], positions: 'all', onProgress });
    const baseBelow = stitched.base!;
    const ftBelow = stitched.ft!;
    const recovery = (list: typeof patched.ftIntoBase): RecoveryJson[] => list.map((p) => ({ kind: p.kind, recovery: Array.from(p.recovery), kl: Array.from(p.kl) }));

    await mkdir(out, { recursive: true });
    const figures: Record<string, string> = {};
    const write = async (key: string, file: string, text: string) => {
      await writeFile(join(out, file), text);
      figures[key] = file;
    };
    await write('weights_heatmap', 'weights-heatmap.svg', heatmapSvg(weightsHeatmap(diff, 'relative')));
    const most = mostChangedMatrix(diff);
    if (most) await write('spectrum', 'spectrum.svg', lineChartSvg(spectrumChart(most)));
    const adlRows: Cell[][] = adlJson.positions.flatMap((p) =>
      (['top', 'top_negative'] as const).flatMap((direction) => p[direction].map((t, rank) => [p.position, direction, rank + 1, t.id, t.token, t.prob])),
    );
    await write('adl_tokens', 'adl-tokens.csv', toCsv(['position', 'direction', 'rank', 'id', 'token', 'prob'], adlRows));
    await write(
      'patching',
      'patching.svg',
      lineChartSvg({
        title: 'Recovery of the fine-tune when its activation is patched into the base, per layer',
        xLabel: 'layer',
        yLabel: 'recovery',
        x0: 0,
        series: patched.ftIntoBase.map((p) => ({ label: p.kind, values: Array.from(p.recovery) })),
      }),
    );
    await write(
      'stitching',
      'stitching.svg',
      lineChartSvg({
        title: 'Model stitching: KL(P_ft ‖ P_stitched) with layers below ℓ from one model',
        xLabel: 'boundary ℓ',
        yLabel: 'KL from the fine-tune',
        x0: 0,
        series: [
          { label: 'base below ℓ', values: Array.from(baseBelow.klFromFt) },
          { label: 'fine-tune below ℓ', values: Array.from(ftBelow.klFromFt) },
        ],
      }),
    );

    const result: ReportJson = {
      format: REPORT_FORMAT,
      version: 1,
      created: new Date().toISOString(),
      models: { base: await modelJson(basePath, 'base model'), ft: { ...(await modelJson(ftPath, 'fine-tuned model')), kind: opened.adapter ? 'peft-adapter' : 'model' } },
      settings: { backend: str(values, 'backend') ?? 'cpu', top_k: topK, top, layer, samples: adl.samples, tokens_per_sample: corpus.tokensPerSample, patchscope_scales: PATCHSCOPE_SCALES },
      weights: { summary: weightsSummary(diff), diff },
      adl: adlJson,
      patching: {
        prompt: ids.map((id) => ({ id, token: tokenText(tokenizer, id) })),
        kl_ft_base: patched.klFtBase,
        kl_base_ft: patched.klBaseFt,
        ft_into_base: recovery(patched.ftIntoBase),
        base_into_ft: recovery(patched.baseIntoFt),
        stitching: { loss_base: baseBelow.lossBase, loss_ft: baseBelow.lossFt, kl_from_ft_base_below: Array.from(baseBelow.klFromFt), kl_from_ft_ft_below: Array.from(ftBelow.klFromFt) },
      },
      figures: { report: 'report.json', ...figures },
      seconds: 0,
    };
    result.seconds = (performance.now() - t0) / 1000;
    await writeFile(join(out, 'report.json'), JSON.stringify(result, null, 2) + '\n');
    return result;
  },
  format(result) {
    const r = result as ReportJson;
    const s = r.weights.summary;
    const trace = r.adl.positions.map((p) => `  position ${p.position}: ${p.top.slice(0, 8).map((t) => JSON.stringify(t.token ?? `#${t.id}`)).join(' ')}`);
    return [
      `wrote ${Object.values(r.figures).join(', ')} (${r.seconds.toFixed(1)} s)`,
      `weights: ${s.tensors} tensors compared, ${s.changed} changed; largest relative change ${s.most_changed[0] ? `${s.most_changed[0].name} (${s.most_changed[0].relative?.toPrecision(3)})` : 'none'}`,
      `ADL at ${r.adl.hook} over ${r.adl.samples} samples, top tokens of δ_p:`,
      ...trace,
      `patching: KL(P_ft || P_base) = ${r.patching.kl_ft_base.toFixed(4)} on ${r.patching.prompt.length} tokens`,
      '',
    ].join('\n');
  },
};
