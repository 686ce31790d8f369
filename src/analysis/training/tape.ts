// Reverse-mode differentiation over Float32Array activations: each op computes its output and records
// a closure that, given the gradient of its output, adds the gradients of its inputs. Gradients of
// activations live in a map keyed by the activation array and are dropped once consumed; parameters
// carry their own gradient buffer (absent for frozen ones), which backward closures add into.

/** A weight: trainable when it has a gradient buffer. */
export interface Param {
  readonly data: Float32Array;
  readonly grad: Float32Array | undefined;
}

export function frozen(data: Float32Array): Param {
  return { data, grad: undefined };
}

export class Tape {
  private readonly steps: (() => void)[] = [];
  private readonly grads = new Map<Float32Array, Float32Array>();

  /** Records the backward step of the op that produced the latest output. */
  record(step: () => void): void {
    this.steps.push(step);
  }

  /** The gradient buffer of an activation (zeros on first use): backward closures add into it. */
  grad(x: Float32Array): Float32Array {
    let g = this.grads.get(x);
    if (!g) {
      g = new Float32Array(x.length);
      this.grads.set(x, g);
    }
    return g;
  }

  /** Adds g to the gradient of x, handing g itself over when x has none yet. */
  seed(x: Float32Array, g: Float32Array): void {
    const have = this.grads.get(x);
    if (!have) this.grads.set(x, g);
    else for (let i = 0; i < g.length; i++) have[i]! += g[i]!;
  }

  /** The gradient of an op's output, removed from the tape (undefined when nothing flowed into it). */
  take(x: Float32Array): Float32Array | undefined {
    const g = this.grads.get(x);
    this.grads.delete(x);
    return g;
  }

  /** Runs the recorded steps backwards; the loss op has seeded the first gradient. */
  backward(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) {
      this.steps[i]!();
      this.steps.length = i;
    }
    this.grads.clear();
  }
}
