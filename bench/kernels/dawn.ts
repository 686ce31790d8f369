// The kernel suite in Node on Dawn, as a child process per Vulkan driver (Dawn takes its driver
// from VK_ICD_FILENAMES when it starts, so each driver needs a process of its own): prints the
// suite's result as JSON on stdout, progress on stderr. Run by bench/kernels/index.ts.
import { useDawn as startDawn } from '../../src/gpu/dawn-node.ts';
import { getGpu } from '../../src/gpu/device.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import { runKernelSuite, softwareAdapter, type KernelScale } from './suite.ts';

async function main(): Promise<void> {
  const { full, calls } = JSON.parse(process.argv[2] ?? '{}') as { full?: boolean; calls?: number };
  if (!startDawn()) throw new Error('Dawn could not be created');
  const ctx = await getGpu();
  const { vendor, architecture, description, isFallbackAdapter } = ctx.info;
  const adapter = `Dawn: ${[vendor, architecture, description].filter(Boolean).join(' / ')}`;
  const software = softwareAdapter(adapter, isFallbackAdapter);
  const scale: KernelScale = software && !full ? 'software' : 'gpu';
  const result = await runKernelSuite(await createWebGpuBackend(), ctx, adapter, { scale, calls: calls ?? (software ? 3 : 20) }, (line) => console.error(line));
  process.stdout.write(JSON.stringify({ ...result, software, scale }));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  },
);
