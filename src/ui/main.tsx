import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { workerActivationsRunner } from '../state/activations-client.ts';
import { connectGpu } from '../state/connect-gpu.ts';
import { workerCrosscoderRunner } from '../state/crosscoder-client.ts';
import { indexedDbCache } from '../state/cache.ts';
import { openModelLoader } from '../state/open-weights.ts';
import { connectPermalink } from '../state/permalink.ts';
import { connectLinkModels } from '../state/session.ts';
import { appStore } from '../state/store.ts';
import { cachedActivationsRunner, cachedWeightsRunner } from '../state/session-cache.ts';
import { workerWeightsRunner } from '../state/weights-client.ts';
import { App } from './App.tsx';
import './app.css';

// A file dropped outside a drop zone would otherwise replace the app with the file's contents.
for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());

appStore.getState().setModelLoader(openModelLoader);
appStore.getState().setResultCache(indexedDbCache());
appStore.getState().setWeightsRunner(cachedWeightsRunner(workerWeightsRunner, appStore));
appStore.getState().setActivationsRunner(cachedActivationsRunner(workerActivationsRunner(), appStore));
appStore.getState().setCrosscoderRunner(workerCrosscoderRunner());
connectPermalink(appStore, window);
connectGpu(appStore);
// Opens the models the link names (by URL or the demo; local files are asked for), else the built-in demo pair.
connectLinkModels(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
