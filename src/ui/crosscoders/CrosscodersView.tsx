import { useEffect } from 'react';
import { defaultLayer } from '../../analysis/crosscoder/collect.ts';
import { crosscoderPairIsCurrent, loadCrosscoderCorpus } from '../../state/crosscoder.ts';
import { appStore, useApp } from '../../state/store.ts';
import { FeatureBrowser } from './FeatureBrowser.tsx';
import { LatentPage } from './LatentPage.tsx';
import { TrainPanel } from './TrainPanel.tsx';
import './crosscoders.css';

export function CrosscodersView() {
  const layers = useApp((s) => (s.models.base.status.kind === 'loaded' ? s.models.base.status.summary.layers : null));
  const dModel = useApp((s) => (s.models.base.status.kind === 'loaded' ? s.models.base.status.summary.dModel : null));
  const chosen = useApp((s) => s.ccLayer);
  const current = useApp(crosscoderPairIsCurrent);
  const result = useApp((s) => s.ccResult);
  const latent = useApp((s) => s.latent);
  const corpus = useApp((s) => s.ccCorpus.status);

  useEffect(() => {
    if (corpus === 'none') void loadCrosscoderCorpus(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);
  }, [corpus]);

  if (layers === null || layers < 1) return <p className="muted">Reading the models' configuration…</p>;
  const layer = chosen !== null && chosen < layers ? chosen : defaultLayer(layers);
  const shown = current ? result : null;
  return (
    <>
      <TrainPanel layers={layers} layer={layer} dModel={dModel} />
      {!shown && latent !== null && (
        <p className="muted" data-testid="cc-latent-waiting">
          The link opens latent #{latent}: train a crosscoder with these settings, or load the one it was made with, to see it.
        </p>
      )}
      {shown && (latent !== null ? <LatentPage latent={latent} summary={shown.summary} /> : <FeatureBrowser summary={shown.summary} pair={shown.pair} />)}
    </>
  );
}
