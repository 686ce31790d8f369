// The logit-lens readout of the CPU backend: logits of a vocabulary chunk at a time (a view of the
// unembedding's rows, no copy), folded into an online log-sum-exp and a top-k per row in float64.
// KL(P_0 ‖ P_1) = Σ p_0 (z_0 − z_1) − lse_0 + lse_1 is accumulated in the same pass, with Σ p_0 (…)
// kept relative to head 0's running max: in float64 the cancellation of the last two terms costs
// nothing, so unlike the GPU (float32, a second pass with known LSEs) one pass of logits suffices.

/** Logit values computed at once: rows × vocabulary chunk. */
const CHUNK_VALUES = 1 << 18;

export interface CpuLensHead {
  /** Normalised rows [rows, d]. */
  h: Float32Array;
  /** Unembedding [V, d]: float32 values or float16 bits. */
  w: Float32Array | Uint16Array;
  softcap: number;
}

/** c [m, n] = a [m, k] · bᵀ, b [n, k]. */
export type MatmulTransB = (a: Float32Array, b: Float32Array | Uint16Array, m: number, n: number, k: number) => Float32Array;

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
  const state = heads.map(() => ({
    max: new Float64Array(rows).fill(-Infinity),
    sum: new Float64Array(rows),
    topV: new Float64Array(rows * k).fill(-Infinity),
    topI: new Int32Array(rows * k).fill(-1),
  }));
  // Σ_v exp(z0_v − max0) (z0_v − z1_v), rescaled with head 0's sum: KL = a / sum0 − lse0 + lse1.
  const klAcc = new Float64Array(rows);
  for (let v0 = 0; v0 < vocab; v0 += chunk) {
    const v1 = Math.min(vocab, v0 + chunk);
    const c = v1 - v0;
    const z = heads.map((head) => chunkLogits(head, rows, d, v0, v1, matmul));
    for (let r = 0; r < rows; r++) {
      const o = r * c;
      for (let h = 0; h < heads.length; h++) {
        const st = state[h]!;
        const zh = z[h]!;
        const old = st.max[r]!;
        let m = old;
        for (let j = 0; j < c; j++) if (zh[o + j]! > m) m = zh[o + j]!;
        const rescale = Math.exp(old - m);
        let s = st.sum[r]! * rescale;
        if (h === 0 && heads.length === 2) {
          const zq = z[1]!;
          let acc = klAcc[r]! * rescale;
          for (let j = o; j < o + c; j++) {
            const e = Math.exp(zh[j]! - m);
            s += e;
            acc += e * (zh[j]! - zq[j]!);
          }
          klAcc[r] = acc;
        } else {
          for (let j = o; j < o + c; j++) s += Math.exp(zh[j]! - m);
        }
        st.max[r] = m;
        st.sum[r] = s;
        insertTop(st.topV, st.topI, r * k, k, zh, o, c, v0);
      }
    }
  }
  const lses = state.map((st) => Float64Array.from(st.max, (m, r) => m + Math.log(st.sum[r]!)));
  const out: CpuLensResult = {
    heads: state.map((st, h) => ({
      lse: Float32Array.from(lses[h]!),
      logProbs: Float32Array.from(st.topV, (v, i) => v - lses[h]![Math.floor(i / k)]!),
      ids: st.topI,
    })),
  };
  if (heads.length === 2) out.kl = Float32Array.from(klAcc, (a, r) => a / state[0]!.sum[r]! - lses[0]![r]! + lses[1]![r]!);
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
