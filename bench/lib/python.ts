// Runs a peer script of bench/py, passing options as one JSON argument and reading one JSON object
// from its last stdout line. The peer is the PyTorch a user installs (`npm run bench:setup`:
// pip's torch 2 with MKL in bench/.venv); without that virtual environment, Debian's python3 and
// its torch 1.13 on the reference BLAS, which the tables then flag.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const VENV_PYTHON = join(BENCH_DIR, '.venv', 'bin', 'python');
const VENV_READY = existsSync(VENV_PYTHON);
export const PYTHON = VENV_READY ? VENV_PYTHON : '/usr/bin/python3';
export const PY_DIR = join(BENCH_DIR, 'py');

/** The fields bench/py/common.py's setup() reports. */
export interface PythonEnv {
  python: string;
  torch: string;
  numpy: string;
  torch_threads: number;
  torch_interop_threads: number;
  blas: { numpy_blas_opt_libraries: string[]; loaded: string[] };
  /** The BLAS torch was built with, from torch.__config__.show() (e.g. "MKL", "OpenBLAS"). */
  torch_blas: string;
  /** torch.backends.cpu.get_cpu_capability(): the SIMD its CPU kernels use (e.g. "AVX512", "AVX2"). */
  torch_cpu_capability?: string;
  omp_wait_policy: string | null;
}

export interface PythonResult {
  env: PythonEnv;
  peakRssMb: number;
}

/**
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set for this machine's other tools and slow numpy
 * down; the child runs without them (the parent's environment is left alone). OpenMP threads wait
 * passively: on a shared machine with more runnable threads than cores, libgomp's spinning barriers
 * made torch's 2-thread forwards 3-4x slower than 1 thread (measured here at load average 12).
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { OMP_WAIT_POLICY: 'PASSIVE', ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

export function runPython<T extends PythonResult>(script: string, options: object, log: (line: string) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [join(PY_DIR, script), JSON.stringify(options)], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderrTail = (stderrTail + s).slice(-4000);
      for (const line of s.split('\n')) if (line.trim()) log(`  py: ${line}`);
    });
    child.on('error', (e) => reject(new Error(`${PYTHON} ${script}: ${e.message}`)));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${PYTHON} ${script} exited with ${code}: ${stderrTail.trim().split('\n').slice(-3).join(' | ')}`));
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${PYTHON} ${script} printed no JSON result (last line: ${last.slice(0, 200)})`));
      }
    });
  });
}

/** One line naming the peer's threads and BLAS, for the tables' headers. */
export function pythonEnvText(env: PythonEnv): string {
  const blas = env.blas.loaded.map((p) => p.split('/').pop()).join(', ') || 'none found';
  const warning = VENV_READY ? '' : ' WARNING: Debian\'s torch, not the pip PyTorch 2 a user installs (run `npm run bench:setup`)';
  return `PyTorch ${env.torch} (BLAS ${env.torch_blas}, CPU kernels ${env.torch_cpu_capability ?? 'unknown'}; ${env.torch_threads} threads, interop ${env.torch_interop_threads}, OMP_WAIT_POLICY=${env.omp_wait_policy ?? 'unset'}), numpy ${env.numpy}, BLAS/LAPACK loaded: ${blas} [${PYTHON}]${warning}`;
}
