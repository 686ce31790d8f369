// The benchmark page: bench/lib/browser.ts opens it and calls window.neurodiffBench.run(name, options).
// Each benchmark's page side is loaded on demand; progress goes to the console (forwarded to Node) and the page.

export type PageBench = (options: unknown, log: (line: string) => void) => Promise<unknown>;

const PAGE_BENCHES: Record<string, () => Promise<PageBench>> = {
  matmul: async () => (await import('../matmul/browser.ts')).runBrowserEnv as PageBench,
  kernels: async () => (await import('../kernels/browser.ts')).runBrowserKernels as PageBench,
};

const logElement = document.getElementById('log');

function log(line: string): void {
  console.log(line);
  if (logElement) logElement.textContent += `${line}\n`;
}

declare global {
  interface Window {
    neurodiffBench: { run(name: string, options: unknown): Promise<unknown> };
  }
}

window.neurodiffBench = {
  run: async (name, options) => {
    const load = PAGE_BENCHES[name];
    if (!load) throw new Error(`no page benchmark named "${name}" (have: ${Object.keys(PAGE_BENCHES).join(', ')})`);
    return (await load())(options, log);
  },
};
