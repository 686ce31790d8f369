// The logit-lens readout of the CPU backend: logits of a vocabulary chunk at a time (a view of the
// unembedding's rows, no copy), folded into an online log-sum-exp and a top-k per row in float64;
// a second pass recomputes both heads' chunks for KL(P_0 ‖ P_1).

/** Logit values computed at once: rows × vocabulary chunk. */
const CHUNK_VALUES = 1 << 18;

export interface CpuLensHead {
  /** Normalised rows [rows, d]. */
  h: Float32Array;
  /** Unembedding [V, d]. */
  w: Float32Array;
  softcap: number;
}

/** c [m, n] = a [m, k] · bᵀ, b [n, k]. */
export type MatmulTransB = (a: Float32Array, b: Float32Array, m: number, n: number, k: number) => Float32Array;

export interface CpuLensResult {
  heads: { lse: Float32Array; logProbs: Float32Array; ids: Int32Array }[];
  kl?: Float32Array;
}

function chunkLogits(head: CpuLensHead, rows: number, d: number, v0: number, v1: number, matmul: MatmulTransB): Float32Array {
  const z = matmul(head.h, head.w.subarray(v0 * d, v1 * d), rows, v1 - v0, d);
  const cap = head.softcap;
  if (cap > 0) for (let i = 0; i < z.length; i++) z[i] = cap * Math.tanh(z[i]! / cap);
  return z;
}

export function cpuLogitLens(heads: readonly CpuLensHead[], rows: number, d: number, vocab: number, k: number, matmul: MatmulTransB): CpuLensResult {
  const chunk = Math.max(1, Math.floor(CHUNK_VALUES / Math.max(rows, 1)));
  const lses: Float64Array[] = [];
  const out: CpuLensResult = { heads: [] };
  for (const head of heads) {
    const max = new Float64Array(rows).fill(-Infinity);
    const sum = new Float64Array(rows);
    const topV = new Float64Array(rows * k).fill(-Infinity);
    const topI = new Int32Array(rows * k).fill(-1);
    for (let v0 = 0; v0 < vocab; v0 += chunk) {
      const v1 = Math.min(vocab, v0 + chunk);
      const c = v1 - v0;
      const z = chunkLogits(head, rows, d, v0, v1, matmul);
      for (let r = 0; r < rows; r++) {
        const o = r * c;
        let m = max[r]!;
        for (let j = 0; j < c; j++) if (z[o + j]! > m) m = z[o + j]!;
        let s = sum[r]! * Math.exp(max[r]! - m);
        for (let j = 0; j < c; j++) s += Math.exp(z[o + j]! - m);
        max[r] = m;
        sum[r] = s;
        insertTop(topV, topI, r * k, k, z, o, c, v0);
      }
    }
    const lse = Float64Array.from(max, (m, r) => m + Math.log(sum[r]!));
    lses.push(lse);
    const logProbs = Float32Array.from(topV, (v, i) => v - lse[Math.floor(i / k)]!);
    out.heads.push({ lse: Float32Array.from(lse), logProbs, ids: topI });
  }
  if (heads.length === 2) {
    const [p, q] = heads as [CpuLensHead, CpuLensHead];
    const [lseP, lseQ] = lses as [Float64Array, Float64Array];
    const kl = new Float64Array(rows);
    for (let v0 = 0; v0 < vocab; v0 += chunk) {
      const v1 = Math.min(vocab, v0 + chunk);
      const c = v1 - v0;
      const zp = chunkLogits(p, rows, d, v0, v1, matmul);
      const zq = chunkLogits(q, rows, d, v0, v1, matmul);
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let j = r * c; j < (r + 1) * c; j++) {
          const lp = zp[j]! - lseP[r]!;
          s += Math.exp(lp) * (lp - (zq[j]! - lseQ[r]!));
        }
        kl[r]! += s;
      }
    }
    out.kl = Float32Array.from(kl);
  }
  return out;
}

/** Folds z[o .. o+c) (ids idBase..) into one row's sorted top-k; strictly greater, so earlier ids win ties. */
function insertTop(topV: Float64Array, topI: Int32Array, at: number, k: number, z: Float32Array, o: number, c: number, idBase: number): void {
  const last = at + k - 1;
  for (let j = 0; j < c; j++) {
    const x = z[o + j]!;
    if (!(x > topV[last]!)) continue;
    let p = last;
    while (p > at && x > topV[p - 1]!) {
      topV[p] = topV[p - 1]!;
      topI[p] = topI[p - 1]!;
      p--;
    }
    topV[p] = x;
    topI[p] = idBase + j;
  }
}
