// Runs a peer script of bench/py with Debian's Python (the one with torch and numpy), passing
// options as one JSON argument and reading one JSON object from its last stdout line.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';
export const PY_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'py');

/** The fields bench/py/common.py's setup() reports. */
export interface PythonEnv {
  python: string;
  torch: string;
  numpy: string;
  torch_threads: number;
  torch_interop_threads: number;
  blas: { numpy_blas_opt_libraries: string[]; loaded: string[] };
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
  return `PyTorch ${env.torch} (${env.torch_threads} threads, interop ${env.torch_interop_threads}, OMP_WAIT_POLICY=${env.omp_wait_policy ?? 'unset'}), numpy ${env.numpy}, BLAS/LAPACK loaded: ${blas}`;
}
