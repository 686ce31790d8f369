// BatchTopK selection without sorting. Scores are non-negative float32, so their IEEE bit patterns,
// read as uint32, order exactly like the values. The k·B-th largest bit pattern is found by a
// radix select (three histogram passes over 11, 11 and 10 bits) over a candidate range that last
// step's threshold narrows down; ties at the threshold go to the lowest flat index, so exactly
// k·B entries are kept whenever k·B scores are positive.

/** A sparse code in CSR form over tokens: the kept latents of token t are index[rowPtr[t] .. rowPtr[t+1]). */
export interface SparseCode {
  readonly rows: number;
  readonly cols: number;
  readonly rowPtr: Int32Array;
  readonly index: Int32Array;
  /** The unscaled activations f (not the scores). */
  readonly value: Float32Array;
}

/** Where to cut: keep scores whose bits are > `key`, plus the first `quota` (by flat index) equal to it. */
export interface TopKCut {
  readonly key: number;
  readonly quota: number;
  /** Entries the cut keeps. */
  readonly kept: number;
}

const DIGITS: ReadonlyArray<readonly [number, number]> = [
  [21, 0x7ff],
  [10, 0x7ff],
  [0, 0x3ff],
];

export function floatBits(x: number): number {
  F32[0] = x;
  return U32[0]!;
}
export function bitsFloat(k: number): number {
  U32[0] = k;
  return F32[0]!;
}
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * The cut that keeps the `kTotal` largest positive scores (all positive ones if fewer).
 * `hint` (last step's threshold, or ≤ 0 for none) limits the radix passes to the keys between
 * hint/2 and 2·hint when the cut falls there, which is the usual case once training is under way.
 * `scratch` must hold scores.length entries; it is overwritten.
 */
export function findTopKCut(scores: Float32Array, kTotal: number, hint: number, scratch: Uint32Array): TopKCut {
  const keys = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  const n = keys.length;
  if (scratch.length < n) throw new Error(`findTopKCut: scratch holds ${scratch.length} entries, needs ${n}`);
  let lo = 1;
  let hi = 0xffffffff;
  let above = 0;
  let positive = 0;
  if (hint > 0 && Number.isFinite(hint)) {
    const hiKey = floatBits(hint * 2);
    const loKey = Math.max(1, floatBits(hint / 2));
    let cAbove = 0;
    let cWin = 0;
    for (let i = 0; i < n; i++) {
      const k = keys[i]!;
      if (k === 0) continue;
      positive++;
      if (k > hiKey) cAbove++;
      else if (k >= loKey) cWin++;
    }
    if (kTotal >= positive) return { key: 0, quota: 0, kept: positive };
    if (cAbove >= kTotal) lo = hiKey + 1;
    else if (cAbove + cWin >= kTotal) {
      lo = loKey;
      hi = hiKey;
      above = cAbove;
    } else {
      hi = loKey - 1;
      above = cAbove + cWin;
    }
  } else {
    for (let i = 0; i < n; i++) if (keys[i]! !== 0) positive++;
    if (kTotal >= positive) return { key: 0, quota: 0, kept: positive };
  }
  if (kTotal <= 0) return { key: 0xffffffff, quota: 0, kept: 0 };
  let size = 0;
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    if (k >= lo && k <= hi) scratch[size++] = k;
  }
  let rank = kTotal - above;
  const hist = new Int32Array(2048);
  for (const [shift, mask] of DIGITS) {
    hist.fill(0);
    for (let i = 0; i < size; i++) hist[(scratch[i]! >>> shift) & mask]!++;
    let bin = mask;
    let cum = 0;
    for (; bin > 0; bin--) {
      const c = hist[bin]!;
      if (cum + c >= rank) break;
      cum += c;
    }
    rank -= cum;
    above += cum;
    let kept = 0;
    for (let i = 0; i < size; i++) {
      const k = scratch[i]!;
      if (((k >>> shift) & mask) === bin) scratch[kept++] = k;
    }
    size = kept;
  }
  return { key: scratch[0]!, quota: rank, kept: kTotal };
}

/** The same cut from scores as a plain sort would give; only for tests and small inputs. */
export function topKCutBySort(scores: Float32Array, kTotal: number): TopKCut {
  const keys = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  const pos = Array.from(keys).filter((k) => k !== 0);
  if (kTotal >= pos.length) return { key: 0, quota: 0, kept: pos.length };
  pos.sort((a, b) => b - a);
  const key = pos[kTotal - 1]!;
  const above = pos.filter((k) => k > key).length;
  return { key, quota: kTotal - above, kept: kTotal };
}

/**
 * Keeps the entries of a [rows, cols] score array that the cut selects, in flat order, as a
 * sparse code whose values come from `values` (the unscaled activations). Marks `fired[col]`.
 * Returns the code and the smallest kept score (−1 when nothing is kept).
 */
export function emitSparse(
  cut: TopKCut,
  scores: Float32Array,
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  fired?: Uint8Array,
): { code: SparseCode; minScore: number } {
  const keys = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  const rowPtr = new Int32Array(rows + 1);
  const index = new Int32Array(cut.kept);
  const value = new Float32Array(cut.kept);
  const key = cut.key;
  let quota = cut.quota;
  let w = 0;
  let minKey = 0xffffffff;
  for (let r = 0; r < rows; r++) {
    rowPtr[r] = w;
    const o = r * cols;
    for (let c = 0; c < cols; c++) {
      const k = keys[o + c]!;
      if (k < key) continue;
      if (k === key) {
        if (quota === 0) continue;
        quota--;
      }
      index[w] = c;
      value[w] = values[o + c]!;
      w++;
      if (k < minKey) minKey = k;
      if (fired) fired[c] = 1;
    }
  }
  rowPtr[rows] = w;
  if (w !== cut.kept) throw new Error(`emitSparse: the cut promised ${cut.kept} entries, found ${w}`);
  return { code: { rows, cols, rowPtr, index, value }, minScore: w > 0 ? bitsFloat(minKey) : -1 };
}

/**
 * Keeps entries with score > theta (inference with the EMA threshold); theta < 0 keeps every
 * positive score. θ is compared as float32, as the reference stores it.
 */
export function cutAbove(scores: Float32Array, theta: number): TopKCut {
  const keys = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
  // For non-negative floats s > θ ⇔ bits(s) > bits(θ).
  const key = theta > 0 ? floatBits(theta) : 0;
  let kept = 0;
  for (let i = 0; i < keys.length; i++) if (keys[i]! > key) kept++;
  return { key, quota: 0, kept };
}
