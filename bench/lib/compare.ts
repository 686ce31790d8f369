// Agreement between our outputs and a peer's, reported next to the timings.

/** max |a − b| and that maximum divided by max |b| (the peer's scale). */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; rel: number } {
  if (a.length !== b.length) throw new Error(`comparing ${a.length} values with ${b.length}`);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    abs = Math.max(abs, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return { abs, rel: scale > 0 ? abs / scale : abs };
}

/** Largest |a_i − b_i| / |b_i| over entries with |b_i| above `floor`. */
export function maxRelative(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  let worst = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Math.abs(b[i]!) > floor) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.abs(b[i]!));
  }
  return worst;
}

/** Fraction of rows whose first (top-1) id agrees. */
export function top1Agreement(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, k: number): number {
  let same = 0;
  for (let r = 0; r < rows; r++) if (a[r * k] === b[r * k]) same++;
  return rows > 0 ? same / rows : 1;
}

/** Mean over rows of |top-k(a) ∩ top-k(b)| / k. */
export function topkOverlap(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, k: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const set = new Set<number>();
    for (let j = 0; j < k; j++) set.add(a[r * k + j]!);
    let hit = 0;
    for (let j = 0; j < k; j++) if (set.has(b[r * k + j]!)) hit++;
    sum += hit / k;
  }
  return rows > 0 ? sum / rows : 1;
}

export function sci(x: number): string {
  return Number.isFinite(x) ? x.toExponential(1) : String(x);
}
