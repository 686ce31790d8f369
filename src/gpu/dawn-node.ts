// Node only: WebGPU through Dawn (the `webgpu` npm package). Without a GPU, Dawn needs a Vulkan
// driver; Chromium's SwiftShader is used when none is chosen with VK_ICD_FILENAMES or VK_DRIVER_FILES
// (e.g. VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json for Mesa's lavapipe, "llvmpipe").

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { setGpuProvider } from './device.ts';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let gpu: GPU | undefined;

/** Installs Dawn as the GPU provider for getGpu(). Returns false if Dawn could not be created. */
export function useDawn(): boolean {
  if (!gpu) {
    if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    // Dawn warns on every start when this is unset.
    process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'neurodiff-xdg-'));
    Object.assign(globalThis, globals);
    try {
      gpu = create([]);
    } catch {
      return false;
    }
  }
  const instance = gpu;
  setGpuProvider(() => instance);
  return true;
}
