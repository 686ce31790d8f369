import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { connectGpu } from '../state/connect-gpu.ts';
import { connectPermalink } from '../state/permalink.ts';
import { appStore } from '../state/store.ts';
import { App } from './App.tsx';
import './app.css';

// A file dropped outside a drop zone would otherwise replace the app with the file's contents.
for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());

connectPermalink(appStore, window);
connectGpu(appStore);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
