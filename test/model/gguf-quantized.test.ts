// A quantized GGUF checkpoint through the loader and the forward pass (the io tests check its blocks).
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { openGguf } from '../../src/io/gguf.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openSafetensorsFolder } from '../../src/io/safetensors.ts';
import { bytesSource } from '../../src/io/source.ts';
import { hfToGguf, llamaKv, writeGguf } from '../../src/io/test-helpers.ts';
import { loadModelFromStore } from '../../src/model/load.ts';

const HF_DIR = 'test/fixtures/stories260K/base';

describe('GGUF end to end', () => {
  it('runs a quantized file end to end: Q8_0/Q4_0 blocks held as float16, logits those of the float32 load within f16 rounding', async () => {
    const hf = await openSafetensorsFolder(await pathFileSet(HF_DIR));
    const typeOf = (n: string) => (/attn_[qkvo]/.test(n) ? 8 : /ffn_(gate|up)/.test(n) ? 2 : n.includes('ffn_down') ? 1 : n.startsWith('token_embd') ? 30 : 0);
    const { tensors } = await hfToGguf(hf, typeOf);
    const { store, config } = await openGguf(bytesSource(writeGguf(llamaKv(), tensors), 'quantized.gguf'));
    const be = createCpuBackend();
    const stored = await loadModelFromStore(store, config, be);
    const wide = await loadModelFromStore(store, config, be, { dtype: 'f32' });
    const dtypes = new Map([...stored.weights].filter(([, t]) => t.shape.length >= 2).map(([n, t]) => [n, t.dtype]));
    // Quantized blocks and F16 become float16; BF16 stays bfloat16; nothing of the file is widened to float32.
    expect(dtypes.get('blocks.0.attn.W_Q')).toBe('f16');
    expect(dtypes.get('blocks.0.mlp.W_in')).toBe('f16');
    expect(dtypes.get('blocks.0.mlp.W_out')).toBe('f16');
    expect(dtypes.get('embed.W_E')).toBe('bf16');
    expect([...dtypes.values()].filter((d) => d === 'f32')).toEqual([]);
    const ids = Int32Array.from({ length: 32 }, (_, i) => (i * 37 + 5) % stored.config.vocab);
    const a = await be.read(stored.forward({ ids, batch: 1, seq: 32 }).logits!);
    const b = await be.read(wide.forward({ ids, batch: 1, seq: 32 }).logits!);
    // The two loads differ only where a block's scale × q needs more bits than float16 keeps (2^-11
    // relative per weight): within 1e-3 of the logits' largest magnitude plus 1e-3 of each logit.
    let scale = 0;
    for (const x of b) scale = Math.max(scale, Math.abs(x));
    expect(scale).toBeGreaterThan(1);
    let worst = 0;
    let argmaxSame = 0;
    const V = stored.config.vocab;
    for (let t = 0; t < 32; t++) {
      let ia = 0;
      let ib = 0;
      for (let v = 0; v < V; v++) {
        const i = t * V + v;
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!) - 1e-3 * Math.abs(b[i]!));
        if (a[i]! > a[t * V + ia]!) ia = v;
        if (b[i]! > b[t * V + ib]!) ib = v;
      }
      if (ia === ib) argmaxSame++;
    }
    expect(worst).toBeLessThanOrEqual(1e-3 * scale);
    expect(argmaxSame).toBe(32);
  });
});
