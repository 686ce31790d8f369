/** Options every benchmark receives from bench/run.ts. */
export interface BenchArgs {
  /** Also the large sizes (minutes on a software adapter). */
  full: boolean;
  /** Which environments to run; both unless one is named. */
  envs: readonly ('node' | 'browser')[];
  /** Overrides a benchmark's default sizes. */
  sizes?: readonly number[];
  /** onnxruntime-web wasm threads (default: the number of cores). */
  threads?: number;
}

export interface Bench {
  description: string;
  run(args: BenchArgs): Promise<void>;
}
