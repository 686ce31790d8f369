// Activation analyses of a base / fine-tuned model pair (ALGORITHMS.md, Activations).
export * from './run.ts';
export * from './corpus.ts';
export * from './lens.ts';
export * from './differences.ts';
export * from './adl.ts';
export * from './patching.ts';
export * from './passes.ts';
