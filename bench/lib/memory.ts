import { readdirSync, readFileSync } from 'node:fs';

/** Peak resident set size of this process so far, in MiB (getrusage's ru_maxrss). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function mb(bytes: number): number {
  return bytes / 2 ** 20;
}

/** Every live process: pid → parent pid (Linux /proc). */
function processParents(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // The process ended while we looked.
    }
  }
  return parents;
}

/** `root` and all its descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of processParents()) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Resident set size of one process in bytes (VmRSS), 0 once it has ended. */
function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples the summed RSS of a set of processes (found afresh at each sample, so processes that start
 * later count) every `intervalMs`, keeping the peak since the last `reset()`. Summed RSS counts pages
 * shared between processes once per process, as `ps` and the figures do.
 */
export class RssSampler {
  private peak = 0;
  private samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: () => readonly number[],
    intervalMs = 250,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.sample();
  }

  /** The current sum in bytes (also taken into the peak). */
  sample(): number {
    let sum = 0;
    for (const pid of this.pids()) sum += rssBytes(pid);
    this.peak = Math.max(this.peak, sum);
    this.samples++;
    return sum;
  }

  /** Peak bytes since the last reset, with one last sample taken now. */
  peakBytes(): number {
    this.sample();
    return this.peak;
  }

  /** Starts a new peak from the current sum. */
  reset(): void {
    this.peak = 0;
    this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Memory the kernel could give new work now (MemAvailable), in bytes. */
export function availableBytes(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
