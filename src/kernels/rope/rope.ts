import type { RopeParams } from '../../model/backend.ts';
import type { GpuProgram } from '../../gpu/pipelines.ts';
import { ropeWgsl } from './rope.wgsl.ts';

export const ropeProgram: GpuProgram = {
  name: 'rope',
  key: '',
  workgroupSize: [256, 1, 1],
  bindings: ['read', 'read', 'write', 'uniform'],
  wgsl: () => ropeWgsl,
};

/**
 * Inverse frequencies as Hugging Face computes them in float32, with llama3 or linear scaling
 * (transformers `modeling_rope_utils`).
 */
export function ropeInverseFrequencies(params: RopeParams): Float32Array {
  const half = params.rotaryDim / 2;
  const f = Math.fround;
  const inv = new Float32Array(half);
  for (let j = 0; j < half; j++) inv[j] = f(1 / f(params.theta ** f((2 * j) / params.rotaryDim)));
  const s = params.scaling;
  if (s?.type === 'linear') {
    for (let j = 0; j < half; j++) inv[j] = f(inv[j]! / s.factor);
  } else if (s?.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let j = 0; j < half; j++) {
      const freq = inv[j]!;
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen > lowWavelen) {
        inv[j] = f(freq / s.factor);
      } else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[j] = f((1 - smooth) * (freq / s.factor) + smooth * freq);
      }
    }
  }
  return inv;
}

/** cos then sin of position · inverse frequency (the product rounded to float32 as in HF), [2, T, rd/2]. */
export function ropeTable(params: RopeParams, startPos: number, length: number): Float32Array {
  const inv = ropeInverseFrequencies(params);
  const half = inv.length;
  const table = new Float32Array(2 * length * half);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround((startPos + t) * inv[j]!);
      table[t * half + j] = Math.cos(angle);
      table[(length + t) * half + j] = Math.sin(angle);
    }
  }
  return table;
}
