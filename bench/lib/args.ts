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
  /** Which models a benchmark with several runs (--models=a,b; default: all of them). */
  models?: readonly string[];
  /** Which of its steps (--steps=a,b; default: all). */
  steps?: readonly string[];
  /** Longest a benchmark may wait for one step, in seconds (--step-timeout=s), where it has such a limit. */
  stepTimeoutS?: number;
}

export interface Bench {
  description: string;
  run(args: BenchArgs): Promise<void>;
}
