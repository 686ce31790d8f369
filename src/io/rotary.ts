// llama2.c and GGUF store the Q and K projections with each head's rows interleaved in pairs
// (2i, 2i+1 rotate together); Hugging Face Llama rotates half against half (i, i + head_dim/2).

/**
 * Reorders the rows of a [rows, cols] matrix from the interleaved rotary layout to rotate-half.
 * Row h·hd + 2i + j of the input becomes row h·hd + j·hd/2 + i of the output.
 */
export function interleavedToRotateHalf<T extends Float32Array | Uint16Array>(data: T, rows: number, cols: number, nHeads: number): T {
  const headDim = rows / nHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0 || data.length !== rows * cols) {
    throw new Error(`cannot reorder rotary rows: ${rows}×${cols} matrix (${data.length} values) does not split into ${nHeads} heads of even size`);
  }
  const half = headDim / 2;
  const out = data.slice() as T;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * headDim + 2 * i + j) * cols;
        const dst = (h * headDim + j * half + i) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}
