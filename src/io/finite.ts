// Weights must be finite numbers: a NaN or an infinity in one tensor turns every result downstream
// into NaN ("prob": null) without a word. Each tensor is checked as it is read, in the same pass over
// the values that decodes them: by default a non-finite value is refused with the tensor's name; a
// store opened with `allowNonfinite` goes on and records what it found, so every result computed
// from it can say so (nonFiniteSummary).
import { FormatError } from './source.ts';
import type { StoredDType, WeightStore } from './store.ts';

export interface FiniteOptions {
  /** Go on when a tensor holds NaN or ±infinity, recording it (nonFiniteSummary) instead of refusing. */
  allowNonfinite?: boolean;
}

/** Non-finite values found in one tensor (counted over the reads so far; a row read counts its rows). */
export interface NonFiniteCount {
  nan: number;
  inf: number;
}

/** A store whose reads are checked; `nonFinite` lists what was found (empty unless allowNonfinite). */
export interface CheckedStore extends WeightStore {
  readonly nonFinite: ReadonlyMap<string, NonFiniteCount>;
}

/** NaN and infinity counts of float32 values. */
export function countNonFinite(values: ArrayLike<number>): NonFiniteCount {
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    // x − x is 0 for every finite x, NaN for NaN and ±infinity.
    if (x - x !== 0) {
      if (x !== x) nan++;
      else inf++;
    }
  }
  return { nan, inf };
}

/** NaN and infinity counts of float16 or bfloat16 bit patterns (all exponent bits set). */
export function countNonFiniteHalf(bits: Uint16Array, dtype: StoredDType): NonFiniteCount {
  const [expMask, mantMask] = dtype === 'BF16' ? [0x7f80, 0x007f] : [0x7c00, 0x03ff];
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    if ((b & expMask) === expMask) {
      if (b & mantMask) nan++;
      else inf++;
    }
  }
  return { nan, inf };
}

function describe(c: NonFiniteCount): string {
  return [c.nan ? `${c.nan} NaN` : '', c.inf ? `${c.inf} infinite` : ''].filter(Boolean).join(' and ');
}

/**
 * The store with every read checked for NaN and infinity. Refuses (FormatError naming the tensor)
 * unless `allowNonfinite`, in which case the counts collect in `nonFinite`.
 */
export function checkFinite(store: WeightStore, opts: FiniteOptions = {}): CheckedStore {
  if ('nonFinite' in store) return store as CheckedStore;
  const found = new Map<string, NonFiniteCount>();
  const note = (name: string, c: NonFiniteCount): void => {
    if (c.nan === 0 && c.inf === 0) return;
    if (!opts.allowNonfinite) {
      throw new FormatError(store.label, `tensor "${name}" holds ${describe(c)} values: the weights are corrupt or overflowed (allow non-finite weights to go on with flagged results)`);
    }
    const prev = found.get(name) ?? { nan: 0, inf: 0 };
    found.set(name, { nan: prev.nan + c.nan, inf: prev.inf + c.inf });
  };
  const checked: CheckedStore = {
    label: store.label,
    tensors: store.tensors,
    nonFinite: found,
    async readF32(name, signal) {
      const v = await store.readF32(name, signal);
      note(name, countNonFinite(v));
      return v;
    },
  };
  const { readRows, readRowsHalf } = store;
  if (readRows) {
    Object.assign(checked, {
      async readRows(name: string, a: number, b: number, signal?: AbortSignal) {
        const v = await readRows.call(store, name, a, b, signal);
        note(name, countNonFinite(v));
        return v;
      },
    });
  }
  if (readRowsHalf) {
    Object.assign(checked, {
      async readRowsHalf(name: string, a: number, b: number, signal?: AbortSignal) {
        const v = await readRowsHalf.call(store, name, a, b, signal);
        note(name, countNonFiniteHalf(v, store.tensors.get(name)?.dtype ?? 'F16'));
        return v;
      },
    });
  }
  return checked;
}

/**
 * What a result computed from these stores must carry: "2 tensors hold NaN or infinite values:
 * model.layers.0.mlp.up_proj.weight (3 NaN), …", or null when every tensor read so far was finite.
 */
export function nonFiniteSummary(...stores: readonly (WeightStore | undefined)[]): string | null {
  const parts: string[] = [];
  for (const s of stores) {
    if (!s || !('nonFinite' in s)) continue;
    for (const [name, c] of (s as CheckedStore).nonFinite) parts.push(`${s.label}: ${name} (${describe(c)})`);
  }
  if (parts.length === 0) return null;
  const shown = parts.slice(0, 5).join(', ') + (parts.length > 5 ? `, and ${parts.length - 5} more` : '');
  return `${parts.length} ${parts.length === 1 ? 'tensor holds' : 'tensors hold'} NaN or infinite values, so results computed from them are not meaningful: ${shown}`;
}
