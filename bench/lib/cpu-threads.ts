// Threads of our CPU backend (its WebAssembly GEMM); kept apart from backends.ts so that a process
// measuring its own memory does not load Dawn.
import { startWasmGemmThreads, wasmGemmAvailable, wasmGemmOptions, wasmGemmRelaxed } from '../../src/gpu/cpu-wasm/gemm.ts';

/**
 * Gives the CPU backend's matrix products `threads` threads (the peers get as many), starts them, and
 * says what ours runs on.
 */
export async function cpuBackendThreads(threads: number): Promise<string> {
  wasmGemmOptions.threads = threads;
  if (!wasmGemmAvailable()) return 'ours CPU backend: JavaScript kernels on the main thread (no WebAssembly SIMD here)';
  const ready = await startWasmGemmThreads();
  return `ours CPU backend: WebAssembly ${wasmGemmRelaxed() ? 'relaxed-SIMD (FMA)' : 'SIMD'} GEMM, attention and activations (crosscoder: sparse decoder too) on ${ready} thread${ready === 1 ? '' : 's'} (${threads} asked); norms, adds and the rest on the JavaScript main thread`;
}
