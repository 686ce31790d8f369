// Reverse-mode differentiation over Float32Array activations: each op computes its output and records
// a closure that, given the gradient of its output, adds the gradients of its inputs. Gradients of
// activations live in a map keyed by the activation array and are dropped once consumed; parameters
// carry their own gradient buffer (absent for frozen ones), which backward closures add into.
//
// With a BufferPool, the arrays of a step are recycled instead of allocated: a fresh multi-megabyte
// Float32Array costs page faults and garbage collection (about 2 ms per 4 MB here, eight times a fill),
// and a training step of the same shapes as the last one can reuse every array of it. Ownership is
// simple: an array an op allocates with `alloc` before it records belongs to that op, and goes back to
// the pool once the op's backward has run (every later op that read it has run its backward by then);
// an array allocated inside a backward closure, and the gradient the closure took, go back when the
// closure returns, unless the closure handed it on to an input with `seed`.

import { halfBitsIntoF32 } from '../../io/chunks.ts';

/** A weight: trainable when it has a gradient buffer. */
export interface Param {
  readonly data: Float32Array;
  readonly grad: Float32Array | undefined;
}

/**
 * A base weight as the ops read it: a Param, or a frozen matrix (LoRA's base weights) left in its
 * 16-bit storage, float16 bits (a Uint16Array) or bfloat16 bits (a Bf16Bits), which the GEMM and the
 * embedding read as they are.
 */
export interface Weight {
  readonly data: Float32Array | Uint16Array;
  readonly grad: Float32Array | undefined;
}

/** float32 values of weight data (16-bit storage widened into a new array). */
export function widened(data: Float32Array | Uint16Array): Float32Array {
  if (data instanceof Float32Array) return data;
  const out = new Float32Array(data.length);
  halfBitsIntoF32(data, out);
  return out;
}

/** Float32Arrays kept for reuse, by length. */
export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly idle = new Set<Float32Array>();

  /** An array of n floats: a recycled one (its old contents unless `zero`) or a new one. */
  take(n: number, zero: boolean): Float32Array {
    const a = this.free.get(n)?.pop();
    if (!a) return new Float32Array(n);
    this.idle.delete(a);
    if (zero) a.fill(0);
    return a;
  }

  /** Returns an array for reuse (a second return of the same array is ignored). */
  give(a: Float32Array): void {
    if (a.length === 0 || this.idle.has(a) || a.byteOffset !== 0 || a.length !== a.buffer.byteLength / 4) return;
    this.idle.add(a);
    let list = this.free.get(a.length);
    if (!list) this.free.set(a.length, (list = []));
    list.push(a);
  }
}

export class Tape {
  private readonly steps: (() => void)[] = [];
  /** The arrays each recorded op owns (freed after its backward), parallel to `steps`. */
  private readonly owned: Float32Array[][] = [];
  private readonly grads = new Map<Float32Array, Float32Array>();
  /** Arrays allocated since the last record (forward) or within the running backward step. */
  private pending: Float32Array[] = [];
  /** Within a backward step: arrays to free when it returns (taken gradients, added-in seeds). */
  private spent: Float32Array[] = [];
  /** Within a backward step: arrays handed on as an input's gradient (not to be freed). */
  private readonly handed = new Set<Float32Array>();

  constructor(private readonly pool?: BufferPool) {}

  /** An array of n floats for an op's output or scratch, zeroed unless `zero` is false (the op writes all of it). */
  alloc(n: number, zero = true): Float32Array {
    if (!this.pool) return new Float32Array(n);
    const a = this.pool.take(n, zero);
    this.pending.push(a);
    return a;
  }

  /** Returns an array this op allocated to the pool now, before its backward (a temporary of the forward). */
  free(a: Float32Array): void {
    if (!this.pool) return;
    const i = this.pending.lastIndexOf(a);
    if (i < 0) return;
    this.pending.splice(i, 1);
    this.pool.give(a);
  }

  /** A copy of x from the pool. */
  copy(x: Float32Array): Float32Array {
    const a = this.alloc(x.length, false);
    a.set(x);
    return a;
  }

  /** Records the backward step of the op that produced the latest output; the op owns what it allocated since the last record. */
  record(step: () => void): void {
    this.steps.push(step);
    this.owned.push(this.pending);
    this.pending = [];
  }

  /** The gradient buffer of an activation (zeros on first use): backward closures add into it. */
  grad(x: Float32Array): Float32Array {
    let g = this.grads.get(x);
    if (!g) {
      g = this.pool ? this.pool.take(x.length, true) : new Float32Array(x.length);
      this.grads.set(x, g);
    }
    return g;
  }

  /** Adds g to the gradient of x, handing g itself over when x has none yet. */
  seed(x: Float32Array, g: Float32Array): void {
    const have = this.grads.get(x);
    if (!have) {
      this.grads.set(x, g);
      this.handed.add(g);
    } else {
      for (let i = 0; i < g.length; i++) have[i]! += g[i]!;
      this.spent.push(g);
    }
  }

  /** The gradient of an op's output, removed from the tape (undefined when nothing flowed into it). */
  take(x: Float32Array): Float32Array | undefined {
    const g = this.grads.get(x);
    this.grads.delete(x);
    if (g) this.spent.push(g);
    return g;
  }

  /** Runs the recorded steps backwards; the loss op has seeded the first gradient. */
  backward(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) {
      this.pending = [];
      this.spent = [];
      this.handed.clear();
      this.steps[i]!();
      if (this.pool) {
        for (const list of [this.owned[i]!, this.pending, this.spent]) for (const a of list) if (!this.handed.has(a)) this.pool.give(a);
      }
      this.steps.length = i;
      this.owned.length = i;
    }
    this.pending = [];
    this.spent = [];
    this.handed.clear();
    if (this.pool) for (const g of this.grads.values()) this.pool.give(g);
    this.grads.clear();
  }
}
