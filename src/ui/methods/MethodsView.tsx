// The Methods view (issue #12): diff mining, corpus KL, PCA of δ, the diff-SAE, amplification and
// attention diffing, one tab each, run as activation jobs in the analysis worker (progress, Cancel, the session cache),
// with their settings in the permalink (state/methods.ts).
import { useEffect, useMemo } from 'react';
import type { ActivationRequest, ActivationTask } from '../../jobs/activations.ts';
import { loadBuiltinCorpus, type TaskRun } from '../../state/activations.ts';
import type { MethodSettings, MethodTab } from '../../state/methods.ts';
import { appStore, useApp } from '../../state/store.ts';
import { CorpusLine } from '../activations/AdlView.tsx';
import { PromptBox, usePairLayers, usePrompt, useTask } from '../activations/common.tsx';
import { AmplifyResults, AmplifySettings } from './AmplifyPanel.tsx';
import { AttentionResults, AttentionSettings } from './AttentionPanel.tsx';
import { IntField, METHOD_LABELS, MethodTabs, RunBar, type MethodRun } from './common.tsx';
import { DiffSaeLiveCurve, DiffSaeResults, DiffSaeSettings } from './DiffSaePanel.tsx';
import { KlResults, KlSettings } from './KlPanel.tsx';
import { MiningResults, MiningSettings } from './MiningPanel.tsx';
import { PcaResults, PcaSettings } from './PcaPanel.tsx';

function methodRun(run: TaskRun | undefined): MethodRun {
  if (!run) return { status: 'idle' };
  switch (run.status) {
    case 'running':
      return { status: 'running', progress: run.progress, elapsedMs: run.elapsedMs };
    case 'done':
      return { status: 'done', ms: run.ms, backend: run.cachedAt !== null ? `${run.backend} (from this browser's session cache)` : run.backend };
    case 'cancelled':
      return { status: 'cancelled' };
    case 'error':
      return { status: 'error', message: run.message };
  }
}

/** The request of a tab for the current settings, or null while the corpus or the models are not ready. */
function requestFor(tab: MethodTab, s: MethodSettings, corpus: ReturnType<typeof useCorpusSettings>, prompt: string, layers: number | null): ActivationRequest | null {
  switch (tab) {
    case 'mine':
      return corpus && { task: 'mine', k: s.mineK, top: s.mineTop, topics: s.mineTopics, ...corpus };
    case 'kl':
      return corpus && { task: 'kl', top: s.klTop, ...corpus };
    case 'pca':
      return corpus && layers !== null ? { task: 'pca', layer: Math.min(s.pcaLayer ?? Math.floor(layers / 2), layers - 1), hook: s.pcaHook, components: s.pcaComponents, ...corpus } : null;
    case 'amplify':
      return { task: 'amplify', prompt, alphas: s.alphas, mode: s.ampMode, maxNew: s.generate, samples: s.ampSamples, seed: s.seed, temperature: s.temperature };
    case 'attention':
      return corpus && { task: 'attention', prompt, overCorpus: s.attnCorpus, ...corpus };
    case 'diff-sae':
      return corpus && layers !== null
        ? { task: 'diff-sae', layer: Math.min(s.saeLayer ?? Math.floor(layers / 2), layers - 1), dict: s.saeDict, k: s.saeK, steps: s.saeSteps, batch: s.saeBatch, lr: s.saeLr, seed: 0, ...corpus }
        : null;
  }
}

function useCorpusSettings(s: MethodSettings) {
  const corpus = useApp((st) => st.corpus);
  const ref = corpus.status === 'ready' ? corpus.ref : null;
  return useMemo(() => (ref ? { corpus: ref, samples: s.samples, tokensPerSample: s.tokensPerSample } : null), [ref, s.samples, s.tokensPerSample]);
}

export function MethodsView() {
  const settings = useApp((s) => s.methods);
  const setMethods = useApp((s) => s.setMethods);
  const cancel = useApp((s) => s.cancelActivation);
  const layers = usePairLayers();
  const prompt = usePrompt();
  const corpus = useCorpusSettings(settings);
  const tab = settings.tab;

  useEffect(() => {
    void loadBuiltinCorpus(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);
  }, []);

  const request = useMemo(() => requestFor(tab, settings, corpus, prompt, layers), [tab, settings, corpus, prompt, layers]);
  // A corpus run takes seconds to minutes: it starts on Run, not on every change of a setting.
  const task = (request?.task ?? 'mine') as ActivationTask;
  const job = useTask(task, request, false);
  const run = methodRun(job.run);
  const onCorpus = tab !== 'amplify';
  const onPrompt = tab === 'amplify' || tab === 'attention';
  const result = job.result;

  return (
    <div className="methods-view" data-testid="methods-view">
      <h2>More ways to see what fine-tuning changed</h2>
      <MethodTabs tab={tab} onTab={(t) => setMethods({ tab: t })} />
      {onPrompt && <PromptBox />}
      {onCorpus && (
        <>
          <CorpusLine result={null} />
          <div className="m-settings">
            <IntField label="samples" value={settings.samples} min={1} max={100_000} onChange={(samples) => setMethods({ samples })} testId="methods-samples" />
            <IntField label="tokens per sample" value={settings.tokensPerSample} min={8} max={2048} onChange={(tokensPerSample) => setMethods({ tokensPerSample })} testId="methods-tokens" />
          </div>
        </>
      )}
      {tab === 'mine' && <MiningSettings settings={settings} onChange={setMethods} />}
      {tab === 'kl' && <KlSettings settings={settings} onChange={setMethods} />}
      {tab === 'pca' && layers !== null && <PcaSettings settings={settings} layers={layers} onChange={setMethods} />}
      {tab === 'amplify' && <AmplifySettings settings={settings} onChange={setMethods} />}
      {tab === 'attention' && <AttentionSettings settings={settings} onChange={setMethods} />}
      {tab === 'diff-sae' && layers !== null && <DiffSaeSettings settings={settings} layers={layers} onChange={setMethods} />}
      <RunBar name={tab} what={METHOD_LABELS[tab]} run={run} onRun={job.start} onCancel={() => cancel(task)} disabled={request ? null : 'waiting for the corpus'} />
      {tab === 'diff-sae' && run.status === 'running' && run.progress?.curve && <DiffSaeLiveCurve points={run.progress.curve} steps={settings.saeSteps} />}
      {result?.task === 'mine' && <MiningResults result={result.result} texts={result.tokens} samples={result.corpusSamples} />}
      {result?.task === 'kl' && <KlResults result={result.result} texts={result.tokens} samples={result.corpusSamples} />}
      {result?.task === 'pca' && <PcaResults result={result.result} texts={result.tokens} samples={result.corpusSamples} />}
      {result?.task === 'diff-sae' && <DiffSaeResults result={result.result} texts={result.tokens} samples={result.corpusSamples} settings={settings} onChange={setMethods} />}
      {result?.task === 'amplify' && <AmplifyResults samples={result.samples} prompt={result.prompt} />}
      {result?.task === 'attention' && <AttentionResults result={result} texts={result.tokens} selected={settings.attnHead} onSelect={(attnHead) => setMethods({ attnHead })} />}
    </div>
  );
}
