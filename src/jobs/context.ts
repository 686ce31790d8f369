// What every job gets besides its pair and settings: the backend to compute on, a signal to cancel,
// and one kind of progress event that travels unchanged from the analysis to the page or stderr.
import type { Backend } from '../model/backend.ts';

export interface JobProgress {
  /** What is running ("loading the base model", "tensors", "patchscope", "training", …). */
  stage: string;
  done: number;
  total: number;
  /** Which model a stage is about ("base", "ft"), where it is about one. */
  label?: string;
}

export interface JobContext<P extends JobProgress = JobProgress> {
  backend: Backend;
  /** The backend in words, for results that name where they ran. */
  backendName?: string;
  signal?: AbortSignal;
  onProgress?: (p: P) => void;
}
