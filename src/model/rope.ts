// Rotary embedding frequencies, shared by every backend so that all of them rotate by the same angles.
// Computed in float32 steps as Hugging Face does (inv_freq in float32, angle = inv_freq · position in float32).
import type { RopeParams } from './backend.ts';

/** inv_freq for each rotating pair of a head (rotaryDim / 2 values), scaling included. */
export function ropeInvFreq(p: RopeParams): Float32Array {
  const half = p.rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(Math.pow(p.theta, Math.fround((2 * i) / p.rotaryDim)));
  const s = p.scaling;
  if (!s) return inv;
  if (s.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
    return inv;
  }
  // Llama 3: long wavelengths are divided by factor, short ones kept, the band between interpolated.
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowWavelen) inv[i] = f / s.factor;
    else if (wavelen >= highWavelen) {
      const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
    }
  }
  return inv;
}

/** The rotation angle of pair i at a position, rounded to float32 like the reference. */
export function ropeAngle(invFreq: Float32Array, i: number, position: number): number {
  return Math.fround(invFreq[i]! * position);
}
