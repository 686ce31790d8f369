/** Peak resident set size of this process so far, in MiB (getrusage's ru_maxrss). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function mb(bytes: number): number {
  return bytes / 2 ** 20;
}
