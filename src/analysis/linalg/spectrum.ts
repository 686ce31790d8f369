// Summaries of a singular spectrum σ1 ≥ σ2 ≥ … (ALGORITHMS.md, Weight space).

export const ENERGY_LEVELS = [0.5, 0.9, 0.99] as const;

export interface SpectrumSummary {
  nuclear: number;
  /** Roy & Vetterli 2007: exp of the Shannon entropy of p_i = σ_i / Σσ_j; 0 for a zero spectrum. */
  effectiveRank: number;
  /** Smallest r with Σ_{i≤r} σ_i² ≥ q·Σσ_i², for q in ENERGY_LEVELS; 0 for a zero spectrum. */
  energyRanks: [number, number, number];
  /** σ1² / Σσ_i²; 0 for a zero spectrum. */
  topEnergyFraction: number;
}

export function summariseSpectrum(sigma: ArrayLike<number>): SpectrumSummary {
  let nuclear = 0;
  let energy = 0;
  for (let i = 0; i < sigma.length; i++) {
    nuclear += sigma[i]!;
    energy += sigma[i]! ** 2;
  }
  if (nuclear === 0) return { nuclear: 0, effectiveRank: 0, energyRanks: [0, 0, 0], topEnergyFraction: 0 };
  let entropy = 0;
  for (let i = 0; i < sigma.length; i++) {
    const p = sigma[i]! / nuclear;
    if (p > 0) entropy -= p * Math.log(p);
  }
  const energyRanks = ENERGY_LEVELS.map((q) => {
    let cumulative = 0;
    for (let i = 0; i < sigma.length; i++) {
      cumulative += sigma[i]! ** 2;
      if (cumulative >= q * energy) return i + 1;
    }
    return sigma.length;
  }) as [number, number, number];
  return { nuclear, effectiveRank: Math.exp(entropy), energyRanks, topEnergyFraction: sigma[0]! ** 2 / energy };
}

/** Count of σ_i above `tolerance`. */
export function rankAbove(sigma: ArrayLike<number>, tolerance: number): number {
  let r = 0;
  for (let i = 0; i < sigma.length; i++) if (sigma[i]! > tolerance) r++;
  return r;
}
