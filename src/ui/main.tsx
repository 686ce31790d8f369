import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { connectGpu } from '../state/connect-gpu.ts';
import { indexedDbCache } from '../state/cache.ts';
import { openModelLoader } from '../state/open-weights.ts';
import { connectPermalink } from '../state/permalink.ts';
import { connectLinkModels } from '../state/session.ts';
import { appStore } from '../state/store.ts';
import { cachedActivationsRunner, cachedWeightsRunner } from '../state/session-cache.ts';
import { activationsRunner, analysisClient, browserSpawn, crosscoderRunner, organismRunner, weightsRunner } from '../state/analysis-client.ts';
import { onComputeChoice, workerOptions } from '../state/compute.ts';
import { App } from './App.tsx';
import './app.css';

// A file dropped outside a drop zone would otherwise replace the app with the file's contents.
for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());

appStore.getState().setModelLoader(openModelLoader);
appStore.getState().setResultCache(indexedDbCache());
// One analysis worker per session, holding the pair once for every view.
const client = analysisClient(browserSpawn, workerOptions);
onComputeChoice(() => client.release('the compute setting changed'));
appStore.getState().setWeightsRunner(cachedWeightsRunner(weightsRunner(client), appStore));
appStore.getState().setActivationsRunner(cachedActivationsRunner(activationsRunner(client), appStore));
appStore.getState().setCrosscoderRunner(crosscoderRunner(client));
appStore.getState().setOrganismRunner(organismRunner(client));
connectPermalink(appStore, window);
connectGpu(appStore);
// Opens the models the link names (by URL or the demo; local files are asked for), else the built-in demo pair.
connectLinkModels(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
