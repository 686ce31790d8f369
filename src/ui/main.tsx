import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { workerActivationsRunner } from '../state/activations-client.ts';
import { connectGpu } from '../state/connect-gpu.ts';
import { loadDemo } from '../state/demo.ts';
import { openModelLoader } from '../state/open-weights.ts';
import { connectPermalink } from '../state/permalink.ts';
import { appStore } from '../state/store.ts';
import { workerWeightsRunner } from '../state/weights-client.ts';
import { App } from './App.tsx';
import './app.css';

// A file dropped outside a drop zone would otherwise replace the app with the file's contents.
for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());

appStore.getState().setModelLoader(openModelLoader);
appStore.getState().setWeightsRunner(workerWeightsRunner);
appStore.getState().setActivationsRunner(workerActivationsRunner());
connectPermalink(appStore, window);
connectGpu(appStore);
// Links never carry models, so every first open starts with the built-in demo pair.
void loadDemo(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
