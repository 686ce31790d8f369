import { QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { connectGpu } from '../state/connect-gpu.ts';
import { openModelLoader } from '../state/open-weights.ts';
import { connectPermalink } from '../state/permalink.ts';
import { connectLinkModels } from '../state/session.ts';
import { appStore } from '../state/store.ts';
import { queriedActivationsRunner, queriedWeightsRunner } from '../state/queries.ts';
import { storedResults } from '../state/stored-results.ts';
import { activationsRunner, analysisClient, browserSpawn, crosscoderRunner, organismRunner, weightsRunner } from '../state/analysis-client.ts';
import { onComputeChoice, workerOptions } from '../state/compute.ts';
import { App } from './App.tsx';
import './app.css';

// A file dropped outside a drop zone would otherwise replace the app with the file's contents.
for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());

appStore.getState().setModelLoader(openModelLoader);
const { queryClient } = appStore.getState();
try {
  // The result cache before the query layer kept its entries in another database: they are never read again.
  indexedDB.deleteDatabase('neurodiff-cache');
  appStore.getState().setStoredResults(storedResults(queryClient));
} catch (e) {
  // No IndexedDB (a locked-down browser): results are kept for the session only.
  console.warn(`results will not be kept in this browser: ${e instanceof Error ? e.message : String(e)}`);
}
// One analysis worker per session, holding the pair once for every view.
const client = analysisClient(browserSpawn, workerOptions);
onComputeChoice(() => client.release('the compute setting changed'));
appStore.getState().setWeightsRunner(queriedWeightsRunner(weightsRunner(client), appStore));
appStore.getState().setActivationsRunner(queriedActivationsRunner(activationsRunner(client), appStore));
appStore.getState().setCrosscoderRunner(crosscoderRunner(client));
appStore.getState().setOrganismRunner(organismRunner(client));
connectPermalink(appStore, window);
connectGpu(appStore);
// Opens the models the link names (by URL or the demo; local files are asked for), else the built-in demo pair.
connectLinkModels(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
