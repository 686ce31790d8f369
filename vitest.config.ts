import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Every test runs once with Dawn on SwiftShader (Chromium's Vulkan driver). The WebGPU tests run
// again on each other Vulkan driver that Dawn accepts here: Mesa's lavapipe ("llvmpipe", Mesa ≥ 25,
// from bookworm-backports on Debian 12; .ci/run installs it) has shader-f16, so the native f16 paths
// run there. Dawn takes the driver from VK_ICD_FILENAMES / VK_DRIVER_FILES (src/gpu/dawn-node.ts).
// `features`: what the driver must give Dawn; device.test.ts fails when the device lacks one.
const DRIVERS = [{ name: 'llvmpipe', icd: '/usr/share/vulkan/icd.d/lvp_icd.json', features: ['shader-f16', 'subgroups', 'timestamp-query'] }];

const WEBGPU_TESTS = [
  'src/gpu/device.test.ts',
  'src/gpu/pool.test.ts',
  'src/kernels/**/*.test.ts',
  'src/analysis/crosscoder/webgpu-engine.test.ts',
  'src/analysis/training/webgpu-engine.test.ts',
  'src/analysis/activations/webgpu.test.ts',
  'test/model/webgpu-golden.test.ts',
  'test/model/streaming.test.ts',
];

/** Whether Dawn finds an adapter on a driver (not on Mesa 22's lavapipe, for one). */
function dawnAccepts(icd: string): boolean {
  if (!existsSync(icd)) return false;
  const script = `import { create, globals } from 'webgpu'; Object.assign(globalThis, globals);
    console.log((await create([]).requestAdapter()) ? 'adapter' : 'none'); process.exit(0);`;
  const env = { ...process.env, VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8', timeout: 30_000 });
  return r.stdout.trim().split('\n').at(-1) === 'adapter';
}

export default defineConfig({
  test: {
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One test file per core (Vitest's default leaves one core free: on a 2-core machine, one file at a
    // time). Most files spend their time on one thread, so two at once on 2 cores take 433 s instead of 640.
    maxWorkers: availableParallelism(),
    projects: [
      { extends: true, test: { name: 'swiftshader', include: ['src/**/*.test.ts', 'test/**/*.test.ts'] } },
      ...DRIVERS.filter((d) => dawnAccepts(d.icd)).map(({ name, icd, features }) => ({
        extends: true as const,
        test: {
          name,
          include: WEBGPU_TESTS,
          env: { VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd, NEURODIFF_EXPECT_ADAPTER: name, NEURODIFF_EXPECT_FEATURES: features.join(',') },
        },
      })),
    ],
  },
});
