import { DEMO, switchToOwnModels } from '../state/demo.ts';
import { pairProblem, pairReady } from '../state/models.ts';
import { appStore, useApp } from '../state/store.ts';
import { storedLayerOf } from '../state/view.ts';
import { VIEWS, viewNeedsModels, type View } from '../state/views.ts';
import { Banner, LinkErrorBanner, LinkNotice } from './Banners.tsx';
import { CachePanel } from './CachePanel.tsx';
import { ComputeSelect } from './ComputeSelect.tsx';
import { DropZone } from './DropZone.tsx';
import { CopyLinkButton } from './export/CopyLink.tsx';
import { SessionExportButton } from './export/SessionExport.tsx';
import { AdlView } from './activations/AdlView.tsx';
import { LensView } from './activations/LensView.tsx';
import { PatchingView } from './activations/PatchingView.tsx';
import { CrosscodersView } from './crosscoders/CrosscodersView.tsx';
import { BackendBadge, GpuReport } from './GpuReport.tsx';
import { MethodsView } from './methods/MethodsView.tsx';
import { OrganismsView } from './organisms/OrganismsView.tsx';
import { VIEW_LABELS } from './labels.ts';
import { WeightsView } from './weights/WeightsView.tsx';

export function App() {
  const gpu = useApp((s) => s.gpu);
  const deviceLost = useApp((s) => s.deviceLost);
  const setDeviceLost = useApp((s) => s.setDeviceLost);
  const linkError = useApp((s) => s.linkError);
  const setLinkError = useApp((s) => s.setLinkError);
  const view = useApp((s) => s.view);
  const loaded = useApp((s) => pairReady(s.models));
  const demo = useApp((s) => s.demo);
  const demoError = useApp((s) => s.demoError);
  const setDemoError = useApp((s) => s.setDemoError);

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">NeuroDiff</span>
        <span className="tagline">base vs fine-tune, in the browser</span>
        <span className="spacer" />
        <SessionExportButton />
        <BackendBadge gpu={gpu} />
      </header>
      <Rail current={view} loaded={loaded} />
      <main className="main">
        {deviceLost && (
          <Banner kind="error" testId="device-lost" onDismiss={() => setDeviceLost(null)}>
            {deviceLost}
          </Banner>
        )}
        {linkError && <LinkErrorBanner message={linkError} onDismiss={() => setLinkError(null)} />}
        {demoError && (
          <Banner kind="warn" testId="demo-error" onDismiss={() => setDemoError(null)}>
            {demoError}. Drop your own models below.
          </Banner>
        )}
        {demo && (
          <Banner kind="info" testId="demo-banner">
            <span>
              Built-in demo: {DEMO.description}.{' '}
            </span>
            <button type="button" className="demo-own" onClick={() => switchToOwnModels(appStore)} data-testid="use-own-models">
              Use your own models
            </button>
          </Banner>
        )}
        {view === 'organisms' ? <OrganismsView /> : !loaded ? <ModelsScreen /> : view === 'weights' ? <WeightsView /> : view === 'lens' ? <LensView /> : view === 'adl' ? <AdlView /> : view === 'patching' ? <PatchingView /> : view === 'crosscoders' ? <CrosscodersView /> : view === 'methods' ? <MethodsView /> : <ModelsScreen />}
      </main>
    </div>
  );
}

function Rail({ current, loaded }: { current: View; loaded: boolean }) {
  const setView = useApp((s) => s.setView);
  return (
    <nav className="rail" aria-label="Views">
      {VIEWS.map((v) => {
        const disabled = viewNeedsModels(v) && !loaded;
        return (
          <button
            key={v}
            type="button"
            className={`rail-item${v === current ? ' rail-current' : ''}`}
            aria-current={v === current ? 'page' : undefined}
            disabled={disabled}
            title={disabled ? 'Load both models first' : undefined}
            onClick={() => setView(v)}
          >
            {VIEW_LABELS[v]}
          </button>
        );
      })}
      {!loaded && <p className="rail-note">Analyses open once both models are loaded and fit together.</p>}
    </nav>
  );
}

function ModelsScreen() {
  const gpu = useApp((s) => s.gpu);
  const view = useApp((s) => s.view);
  const prompt = useApp((s) => s.prompt);
  const layer = useApp((s) => storedLayerOf(s, s.view));
  const problem = useApp((s) => pairProblem(s.models));
  const ready = useApp((s) => pairReady(s.models));
  const setView = useApp((s) => s.setView);
  return (
    <>
      <div className="view-actions">
        <CopyLinkButton />
      </div>
      <LinkNotice view={view} prompt={prompt} layer={layer} />
      {problem && (
        <Banner kind="error" testId="pair-problem">
          These models cannot be compared: {problem}.
        </Banner>
      )}
      {ready && (
        <div>
          <button type="button" className="primary" onClick={() => setView('weights')} data-testid="open-weights">
            Compare the weights →
          </button>
        </div>
      )}
      <div className="drops">
        <DropZone role="base" />
        <DropZone role="ft" />
      </div>
      <ComputeSelect gpu={gpu} />
      <GpuReport gpu={gpu} />
      <CachePanel />
    </>
  );
}

