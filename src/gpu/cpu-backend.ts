// The CPU reference backend: every op of the Backend interface in plain TypeScript over typed arrays.
// It is both the reference the WebGPU kernels are tested against and the command line's default
// backend. f16 and bf16 tensors (weights in their stored precision) are held as float16 bits in a
// Uint16Array or bfloat16 bits in a Bf16Bits, so that a model stays at its stored size: matrix
// products widen them per block inside the GEMM, an embedding widens the rows it gathers, and any
// other op widens the whole tensor (vectors).
// Compute ops return f32. Reductions accumulate in float64 (JavaScript numbers).
import { Bf16Bits, bf16FromF32, halfBitsIntoF32 } from '../io/chunks.ts';
import { f32ToF16 } from '../io/dtype.ts';
import {
  lensShape,
  numel,
  ShapeError,
  type Activation,
  type AttentionParams,
  type Backend,
  type DType,
  type RopeParams,
  type Tensor,
} from '../model/backend.ts';
import { ropeAngle, ropeInvFreq } from '../model/rope.ts';
import { cpuLogitLens, type MatmulTransB } from './cpu-lens.ts';
import { dot, matmulInto } from './cpu-matmul.ts';
import { wasmActivate, wasmAttention } from './cpu-wasm/ops.ts';

class CpuTensor implements Tensor {
  readonly backend = 'cpu' as const;
  disposed = false;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** f16: float16 bits; bf16: bfloat16 bits (Bf16Bits); f32: values; i32: integers. Emptied by dispose. */
    public data: Float32Array | Int32Array | Uint16Array,
  ) {}
}

const RELEASED = new Float32Array(0);

function cpu(t: Tensor, op: string): CpuTensor {
  if (!(t instanceof CpuTensor)) throw new ShapeError(op, `tensor belongs to the ${t.backend} backend, not cpu`);
  if (t.disposed) throw new ShapeError(op, `tensor [${t.shape.join(', ')}] was used after dispose`);
  return t;
}

/** The tensor's values as float32 (an f16 or bf16 tensor is widened into a new array). */
function floats(t: Tensor, op: string): Float32Array {
  const c = cpu(t, op);
  if (c.data instanceof Uint16Array) return widen(c.data);
  if (!(c.data instanceof Float32Array)) throw new ShapeError(op, `expects a float tensor, got ${c.dtype}`);
  return c.data;
}

/** A float tensor's storage as it is: float32 values, or float16 / bfloat16 bits (matrix products take all three). */
function stored(t: Tensor, op: string): Float32Array | Uint16Array {
  const c = cpu(t, op);
  if (c.data instanceof Int32Array) throw new ShapeError(op, `expects a float tensor, got ${c.dtype}`);
  return c.data;
}

function widen(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  halfBitsIntoF32(bits, out);
  return out;
}

/** float32 values as the bits of a 16-bit dtype. */
function halfBits(src: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array {
  if (dtype === 'bf16') return bf16FromF32(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]!);
  return out;
}

function f32(data: Float32Array, shape: readonly number[]): CpuTensor {
  return new CpuTensor([...shape], 'f32', data);
}

function lastDim(t: Tensor, op: string): number {
  const n = t.shape[t.shape.length - 1];
  if (n === undefined) throw new ShapeError(op, 'expects at least one dimension');
  return n;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Elementwise op with b either of a's shape or a vector over a's last dimension. */
function broadcast(op: 'add' | 'sub' | 'mul', a: Tensor, b: Tensor): Tensor {
  const x = floats(a, op);
  const y = floats(b, op);
  const out = new Float32Array(x.length);
  const n = sameShape(a.shape, b.shape) ? x.length : b.shape.length === 1 && b.shape[0] === lastDim(a, op) ? y.length : -1;
  if (n < 0) throw new ShapeError(op, `cannot broadcast [${b.shape.join(', ')}] onto [${a.shape.join(', ')}]`);
  // One loop per op (no call per element): these run over every activation of a forward.
  for (let i = 0; i < x.length; i += n) {
    if (op === 'add') for (let j = 0; j < n; j++) out[i + j] = x[i + j]! + y[j]!;
    else if (op === 'sub') for (let j = 0; j < n; j++) out[i + j] = x[i + j]! - y[j]!;
    else for (let j = 0; j < n; j++) out[i + j] = x[i + j]! * y[j]!;
  }
  return f32(out, a.shape);
}

function map(op: string, a: Tensor, f: (x: number) => number): Tensor {
  const x = floats(a, op);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
  return f32(out, a.shape);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** erf to about 1e-12: its Taylor series below 3, Numerical Recipes' erfc (relative error 1.2e-7) above. */
function erf(x: number): number {
  const z = Math.abs(x);
  let y: number;
  if (z < 3) {
    const z2 = z * z;
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= -z2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    y = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    const t = 1 / (1 + 0.5 * z);
    const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    y = 1 - erfc;
  }
  return x < 0 ? -y : y;
}

function activate(act: Activation): (x: number) => number {
  switch (act) {
    case 'silu':
      return (x) => x / (1 + Math.exp(-x));
    case 'relu':
      return (x) => (x > 0 ? x : 0);
    case 'gelu':
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh':
      return (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
  }
}

export function createCpuBackend(): Backend {
  const backend: Backend = {
    name: 'cpu',
    bf16: true,

    fromArray(data, shape, dtype) {
      const n = numel(shape);
      if (data.length !== n) throw new ShapeError('fromArray', `${data.length} values for shape [${shape.join(', ')}] (${n} elements)`);
      const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
      if (dt === 'i32') {
        if (!(data instanceof Int32Array)) throw new ShapeError('fromArray', 'i32 tensors need Int32Array data');
        return new CpuTensor([...shape], 'i32', data.slice());
      }
      const fl = data instanceof Float32Array ? data : Float32Array.from(data);
      return new CpuTensor([...shape], dt, dt === 'f16' || dt === 'bf16' ? halfBits(fl, dt) : fl.slice());
    },

    async read(t) {
      const data = cpu(t, 'read').data;
      return data instanceof Uint16Array ? widen(data) : data.slice();
    },

    readStored(t) {
      const data = cpu(t, 'readStored').data;
      if (data instanceof Int32Array) throw new ShapeError('readStored', 'an i32 tensor has no float storage');
      return data;
    },

    dispose(t) {
      // The storage goes now, even while something still holds the tensor (a released model's weights map).
      if (t instanceof CpuTensor) {
        t.disposed = true;
        t.data = RELEASED;
      }
    },

    matmul(a, b, opts) {
      const x = floats(a, 'matmul');
      const w = stored(b, 'matmul');
      const K = lastDim(a, 'matmul');
      if (b.shape.length !== 2) throw new ShapeError('matmul', `b must be 2-D, got [${b.shape.join(', ')}]`);
      const transposeB = opts?.transposeB ?? false;
      const [b0, b1] = b.shape as [number, number];
      const bK = transposeB ? b1 : b0;
      const N = transposeB ? b0 : b1;
      if (bK !== K) throw new ShapeError('matmul', `inner dimensions differ: a [${a.shape.join(', ')}], b [${b.shape.join(', ')}]${transposeB ? ' (transposed)' : ''}`);
      const M = K === 0 ? numel(a.shape.slice(0, -1)) : x.length / K;
      const out = new Float32Array(M * N);
      matmulInto(x, w, out, M, N, K, transposeB);
      return f32(out, [...a.shape.slice(0, -1), N]);
    },

    linear(x, w, bias) {
      const y = backend.matmul(x, w, { transposeB: true });
      if (!bias) return y;
      if (bias.shape.length !== 1 || bias.shape[0] !== w.shape[0]) {
        throw new ShapeError('linear', `bias [${bias.shape.join(', ')}] does not match weight [${w.shape.join(', ')}]`);
      }
      const out = floats(y, 'linear');
      const bv = floats(bias, 'linear');
      const n = bv.length;
      for (let i = 0; i < out.length; i += n) for (let j = 0; j < n; j++) out[i + j]! += bv[j]!;
      return y;
    },

    add: (a, b) => broadcast('add', a, b),
    sub: (a, b) => broadcast('sub', a, b),
    mul: (a, b) => broadcast('mul', a, b),
    scale: (a, s) => map('scale', a, (x) => x * s),
    activation(x, act) {
      const out = new Float32Array(numel(x.shape));
      if (wasmActivate(floats(x, 'activation'), undefined, out, act)) return f32(out, x.shape);
      return map('activation', x, activate(act));
    },
    softcap: (x, cap) => map('softcap', x, (v) => cap * Math.tanh(v / cap)),

    gated(gate, up, act) {
      if (!sameShape(gate.shape, up.shape)) throw new ShapeError('gated', `gate [${gate.shape.join(', ')}] and up [${up.shape.join(', ')}] differ`);
      const g = floats(gate, 'gated');
      const u = floats(up, 'gated');
      const out = new Float32Array(g.length);
      if (!wasmActivate(g, u, out, act)) {
        const f = activate(act);
        for (let i = 0; i < g.length; i++) out[i] = f(g[i]!) * u[i]!;
      }
      return f32(out, gate.shape);
    },

    rmsNorm(x, w, eps, addOne = false) {
      const v = floats(x, 'rmsNorm');
      const wv = floats(w, 'rmsNorm');
      const n = lastDim(x, 'rmsNorm');
      if (wv.length !== n) throw new ShapeError('rmsNorm', `weight [${w.shape.join(', ')}] for rows of ${n}`);
      const out = new Float32Array(v.length);
      for (let r = 0; r < v.length; r += n) {
        let ss = 0;
        for (let j = 0; j < n; j++) ss += v[r + j]! * v[r + j]!;
        const inv = 1 / Math.sqrt(ss / n + eps);
        for (let j = 0; j < n; j++) out[r + j] = v[r + j]! * inv * (addOne ? 1 + wv[j]! : wv[j]!);
      }
      return f32(out, x.shape);
    },

    layerNorm(x, w, b, eps) {
      const v = floats(x, 'layerNorm');
      const wv = floats(w, 'layerNorm');
      const bv = floats(b, 'layerNorm');
      const n = lastDim(x, 'layerNorm');
      if (wv.length !== n || bv.length !== n) throw new ShapeError('layerNorm', `weight [${w.shape.join(', ')}] and bias [${b.shape.join(', ')}] for rows of ${n}`);
      const out = new Float32Array(v.length);
      for (let r = 0; r < v.length; r += n) {
        let mean = 0;
        for (let j = 0; j < n; j++) mean += v[r + j]!;
        mean /= n;
        let varSum = 0;
        for (let j = 0; j < n; j++) varSum += (v[r + j]! - mean) ** 2;
        const inv = 1 / Math.sqrt(varSum / n + eps);
        for (let j = 0; j < n; j++) out[r + j] = (v[r + j]! - mean) * inv * wv[j]! + bv[j]!;
      }
      return f32(out, x.shape);
    },

    softmax(x) {
      const v = floats(x, 'softmax');
      const n = lastDim(x, 'softmax');
      const out = new Float32Array(v.length);
      for (let r = 0; r < v.length; r += n) softmaxRow(v, out, r, n);
      return f32(out, x.shape);
    },

    logSoftmax(x) {
      const v = floats(x, 'logSoftmax');
      const n = lastDim(x, 'logSoftmax');
      const out = new Float32Array(v.length);
      for (let r = 0; r < v.length; r += n) {
        let max = -Infinity;
        for (let j = 0; j < n; j++) if (v[r + j]! > max) max = v[r + j]!;
        let sum = 0;
        for (let j = 0; j < n; j++) sum += Math.exp(v[r + j]! - max);
        const lse = max + Math.log(sum);
        for (let j = 0; j < n; j++) out[r + j] = v[r + j]! - lse;
      }
      return f32(out, x.shape);
    },

    embedding(table, ids, idsShape) {
      const tv = stored(table, 'embedding');
      if (table.shape.length !== 2) throw new ShapeError('embedding', `table must be 2-D, got [${table.shape.join(', ')}]`);
      const [V, D] = table.shape as [number, number];
      if (ids.length !== numel(idsShape)) throw new ShapeError('embedding', `${ids.length} ids for shape [${idsShape.join(', ')}]`);
      const out = new Float32Array(ids.length * D);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        if (id < 0 || id >= V) throw new ShapeError('embedding', `token id ${id} is outside the vocabulary of ${V}`);
        if (tv instanceof Uint16Array) halfBitsIntoF32(tv.subarray(id * D, id * D + D), out, i * D);
        else out.set(tv.subarray(id * D, id * D + D), i * D);
      }
      return f32(out, [...idsShape, D]);
    },

    rope(x, nHeads, headDim, startPos, params) {
      const v = floats(x, 'rope');
      const [B, T, D] = seqShape(x, 'rope');
      if (D !== nHeads * headDim) throw new ShapeError('rope', `last dimension ${D} is not ${nHeads} heads × ${headDim}`);
      if (params.rotaryDim > headDim || params.rotaryDim % 2 !== 0) throw new ShapeError('rope', `rotaryDim ${params.rotaryDim} for headDim ${headDim}`);
      const out = v.slice();
      const half = params.rotaryDim / 2;
      const inv = invFreqCached(params);
      const cos = new Float32Array(half);
      const sin = new Float32Array(half);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < half; i++) {
          const angle = ropeAngle(inv, i, startPos + t);
          cos[i] = Math.cos(angle);
          sin[i] = Math.sin(angle);
        }
        for (let b = 0; b < B; b++) {
          const row = (b * T + t) * D;
          for (let h = 0; h < nHeads; h++) {
            const o = row + h * headDim;
            for (let i = 0; i < half; i++) {
              const x1 = v[o + i]!;
              const x2 = v[o + i + half]!;
              out[o + i] = x1 * cos[i]! - x2 * sin[i]!;
              out[o + i + half] = x2 * cos[i]! + x1 * sin[i]!;
            }
          }
        }
      }
      return f32(out, x.shape);
    },

    headRmsNorm(x, w, headDim, eps, addOne = false) {
      const n = lastDim(x, 'headRmsNorm');
      if (n % headDim !== 0) throw new ShapeError('headRmsNorm', `last dimension ${n} is not a multiple of headDim ${headDim}`);
      const rows = backend.reshape(x, [numel(x.shape) / headDim, headDim]);
      const normed = backend.rmsNorm(rows, w, eps, addOne);
      return backend.reshape(normed, x.shape);
    },

    attention(q, k, v, p) {
      return attention(q, k, v, p);
    },

    sliceSeq(x, start, end) {
      const c = cpu(x, 'sliceSeq');
      const [B, T, D] = seqShape(x, 'sliceSeq');
      if (!(0 <= start && start <= end && end <= T)) throw new ShapeError('sliceSeq', `rows [${start}, ${end}) of ${T}`);
      const L = end - start;
      const n = B * L * D;
      const out = c.data instanceof Int32Array ? new Int32Array(n) : c.data instanceof Bf16Bits ? new Bf16Bits(n) : c.data instanceof Uint16Array ? new Uint16Array(n) : new Float32Array(n);
      for (let b = 0; b < B; b++) out.set(c.data.subarray((b * T + start) * D, (b * T + end) * D), b * L * D);
      return new CpuTensor([B, L, D], c.dtype, out);
    },

    concatSeq(a, b) {
      const x = floats(a, 'concatSeq');
      const y = floats(b, 'concatSeq');
      const [B, S1, D] = seqShape(a, 'concatSeq');
      const [B2, S2, D2] = seqShape(b, 'concatSeq');
      if (B !== B2 || D !== D2) throw new ShapeError('concatSeq', `[${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
      const S = S1 + S2;
      const out = new Float32Array(B * S * D);
      for (let i = 0; i < B; i++) {
        out.set(x.subarray(i * S1 * D, (i + 1) * S1 * D), i * S * D);
        out.set(y.subarray(i * S2 * D, (i + 1) * S2 * D), (i * S + S1) * D);
      }
      return f32(out, [B, S, D]);
    },

    reshape(x, shape) {
      const c = cpu(x, 'reshape');
      if (numel(shape) !== c.data.length) throw new ShapeError('reshape', `[${x.shape.join(', ')}] to [${shape.join(', ')}]`);
      // Tensors are never modified in place, so the new tensor may share the storage.
      return new CpuTensor([...shape], c.dtype, c.data);
    },

    transpose(x) {
      const v = floats(x, 'transpose');
      if (x.shape.length !== 2) throw new ShapeError('transpose', `expects a 2-D tensor, got [${x.shape.join(', ')}]`);
      const [m, n] = x.shape as [number, number];
      const out = new Float32Array(m * n);
      const tile = 32;
      for (let i0 = 0; i0 < m; i0 += tile) {
        for (let j0 = 0; j0 < n; j0 += tile) {
          const i1 = Math.min(m, i0 + tile);
          const j1 = Math.min(n, j0 + tile);
          for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * m + i] = v[i * n + j]!;
        }
      }
      return f32(out, [n, m]);
    },

    sum(x) {
      const v = floats(x, 'sum');
      const n = lastDim(x, 'sum');
      const out = new Float32Array(n === 0 ? numel(x.shape.slice(0, -1)) : v.length / n);
      for (let r = 0; r < out.length; r++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += v[r * n + j]!;
        out[r] = s;
      }
      return f32(out, x.shape.slice(0, -1));
    },

    sumSquares(x) {
      const v = floats(x, 'sumSquares');
      const n = lastDim(x, 'sumSquares');
      const out = new Float32Array(n === 0 ? numel(x.shape.slice(0, -1)) : v.length / n);
      for (let r = 0; r < out.length; r++) out[r] = dot(v, r * n, v, r * n, n);
      return f32(out, x.shape.slice(0, -1));
    },

    topk(x, k) {
      const v = floats(x, 'topk');
      const n = lastDim(x, 'topk');
      if (!Number.isInteger(k) || k < 1 || k > n) throw new ShapeError('topk', `k = ${k} for rows of ${n}`);
      const rows = v.length / n;
      const values = new Float32Array(rows * k);
      const indices = new Int32Array(rows * k);
      for (let r = 0; r < rows; r++) topkRow(v, r * n, n, k, values, indices, r * k);
      const shape = [...x.shape.slice(0, -1), k];
      return { values: f32(values, shape), indices: new CpuTensor(shape, 'i32', indices) };
    },

    async sync() {},

    createEmpty(shape, dtype) {
      if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError('createEmpty', `shape [${shape.join(', ')}] must hold non-negative integers`);
      if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new ShapeError('createEmpty', `dtype must be f32, f16 or bf16, got ${String(dtype)}`);
      const n = numel(shape);
      return new CpuTensor([...shape], dtype, dtype === 'f16' ? new Uint16Array(n) : dtype === 'bf16' ? new Bf16Bits(n) : new Float32Array(n));
    },

    writeRows(t, rowStart, data) {
      const dst = stored(t, 'writeRows');
      const rowLength = numel(t.shape.slice(1));
      const start = checkRowWrite(t, rowStart, data, rowLength);
      if (t.dtype === 'f16' || t.dtype === 'bf16') dst.set(data instanceof Uint16Array ? data : halfBits(data, t.dtype), start);
      else dst.set(data as Float32Array, start);
    },

    logitLens(heads, k) {
      const { rows, d, vocab, lead } = lensShape(heads, k);
      const matmul: MatmulTransB = (a, b, m, n, kk) => {
        const out = new Float32Array(m * n);
        matmulInto(a, b, out, m, n, kk, true);
        return out;
      };
      const r = cpuLogitLens(
        heads.map((h) => ({ h: floats(h.normed, 'logitLens'), w: stored(h.unembed, 'logitLens'), softcap: h.softcap ?? 0 })),
        rows,
        d,
        vocab,
        k,
        matmul,
      );
      const out = { heads: r.heads.map((h) => ({ lse: f32(h.lse, lead), logProbs: f32(h.logProbs, [...lead, k]), ids: new CpuTensor([...lead, k], 'i32', h.ids) })) };
      return r.kl ? { ...out, kl: f32(r.kl, lead) } : out;
    },
  };
  return backend;
}

function seqShape(x: Tensor, op: string): [number, number, number] {
  if (x.shape.length !== 3) throw new ShapeError(op, `expects [B, T, D], got [${x.shape.join(', ')}]`);
  return x.shape as [number, number, number];
}

const invFreqCache = new Map<string, Float32Array>();
/** The element offset of row `rowStart`, after checking that `data` holds whole rows that fit. */
function checkRowWrite(t: Tensor, rowStart: number, data: Float32Array | Uint16Array, rowLength: number): number {
  const rows = t.shape[0] ?? 1;
  const count = rowLength === 0 ? 0 : data.length / rowLength;
  if (t.dtype === 'i32') throw new ShapeError('writeRows', 'expects an f32, f16 or bf16 tensor, got i32');
  if (data instanceof Bf16Bits ? t.dtype !== 'bf16' : data instanceof Uint16Array && t.dtype !== 'f16') {
    throw new ShapeError('writeRows', `${data instanceof Bf16Bits ? 'bfloat16 bits (Bf16Bits) need a bf16' : 'float16 bits (Uint16Array) need an f16'} tensor, got ${t.dtype}`);
  }
  if (!Number.isInteger(count) || !Number.isInteger(rowStart) || rowStart < 0 || rowStart + count > rows) {
    throw new ShapeError('writeRows', `${data.length} values from row ${rowStart} are not whole rows of ${rowLength} within [${t.shape.join(', ')}]`);
  }
  return rowStart * rowLength;
}

function invFreqCached(p: RopeParams): Float32Array {
  const key = JSON.stringify(p);
  let inv = invFreqCache.get(key);
  if (!inv) {
    inv = ropeInvFreq(p);
    invFreqCache.set(key, inv);
  }
  return inv;
}

function softmaxRow(v: Float32Array, out: Float32Array, r: number, n: number): void {
  let max = -Infinity;
  for (let j = 0; j < n; j++) if (v[r + j]! > max) max = v[r + j]!;
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(v[r + j]! - max);
    out[r + j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = 0; j < n; j++) out[r + j]! *= inv;
}

/** Descending top-k of one row, ties to the lower index: insertion into a sorted buffer for small k, a sort otherwise. */
function topkRow(v: Float32Array, off: number, n: number, k: number, values: Float32Array, indices: Int32Array, outOff: number): void {
  if (k > 64) {
    const idx = new Int32Array(n);
    for (let j = 0; j < n; j++) idx[j] = j;
    const sorted = Array.from(idx).sort((a, b) => v[off + b]! - v[off + a]! || a - b);
    for (let i = 0; i < k; i++) {
      indices[outOff + i] = sorted[i]!;
      values[outOff + i] = v[off + sorted[i]!]!;
    }
    return;
  }
  const vals = new Float64Array(k).fill(-Infinity);
  const idx = new Int32Array(k).fill(-1);
  let filled = 0;
  for (let j = 0; j < n; j++) {
    const x = v[off + j]!;
    let p: number;
    if (filled === k) {
      if (!(x > vals[k - 1]!)) continue;
      p = k - 1;
    } else {
      p = filled++;
    }
    // Strictly greater: an equal value found later stays behind the earlier index.
    while (p > 0 && x > vals[p - 1]!) {
      vals[p] = vals[p - 1]!;
      idx[p] = idx[p - 1]!;
      p--;
    }
    vals[p] = x;
    idx[p] = j;
  }
  for (let i = 0; i < k; i++) {
    values[outOff + i] = vals[i]!;
    indices[outOff + i] = idx[i]!;
  }
}

/** Query rows per block of attention: the block's scores (rows × keys) are one GEMM. */
const ATTENTION_ROWS = 64;

/**
 * Causal grouped-query attention as blocked GEMMs: per (batch, head) and block of query rows,
 * scores = Q·Kᵀ over the keys the block can see (one GEMM), a row softmax in place (max and sum in
 * float64), then P·V (a second GEMM). Only one block of scores exists at a time.
 */
function attention(q: Tensor, k: Tensor, v: Tensor, p: AttentionParams): Tensor {
  const qv = floats(q, 'attention');
  const kv = floats(k, 'attention');
  const vv = floats(v, 'attention');
  const [B, T, Dq] = seqShape(q, 'attention');
  const [Bk, S, Dk] = seqShape(k, 'attention');
  const { nHeads, nKvHeads, headDim: hd, scale, queryOffset } = p;
  if (Dq !== nHeads * hd || Dk !== nKvHeads * hd || Bk !== B || !sameShape(k.shape, v.shape) || nHeads % nKvHeads !== 0) {
    throw new ShapeError('attention', `q [${q.shape.join(', ')}], k [${k.shape.join(', ')}], v [${v.shape.join(', ')}] for ${nHeads} heads, ${nKvHeads} KV heads of ${hd}`);
  }
  if (queryOffset + T > S) throw new ShapeError('attention', `queries reach position ${queryOffset + T - 1} but keys stop at ${S - 1}`);
  const group = nHeads / nKvHeads;
  const window = p.window ?? 0;
  const cap = p.softcap ?? 0;
  const out = new Float32Array(B * T * Dq);
  if (T === 0 || hd === 0) return f32(out, q.shape);
  // The WebAssembly kernel (on the GEMM's threads) where it applies: no soft-cap, head size a multiple of 8.
  if (cap === 0 && wasmAttention(qv, kv, vv, out, { batch: B, T, S, nHeads, nKvHeads, headDim: hd, scale, queryOffset, window })) return f32(out, q.shape);
  const R = Math.min(ATTENTION_ROWS, T);
  const qh = new Float32Array(T * hd);
  const kh = new Float32Array(S * hd);
  const vh = new Float32Array(S * hd);
  const scores = new Float32Array(R * S);
  const oh = new Float32Array(R * hd);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < nKvHeads; g++) {
      gatherHead(kv, kh, b * S, S, Dk, g * hd, hd);
      gatherHead(vv, vh, b * S, S, Dk, g * hd, hd);
      for (let h = g * group; h < (g + 1) * group; h++) {
        gatherHead(qv, qh, b * T, T, Dq, h * hd, hd);
        for (let t0 = 0; t0 < T; t0 += R) {
          const rows = Math.min(R, T - t0);
          // Keys [s0, s1) cover every row of the block; each row masks the ones it may not see.
          const s1 = queryOffset + t0 + rows;
          const s0 = window > 0 ? Math.max(0, queryOffset + t0 - window + 1) : 0;
          const width = s1 - s0;
          const sc = scores.subarray(0, rows * width);
          matmulInto(qh.subarray(t0 * hd, (t0 + rows) * hd), kh.subarray(s0 * hd, s1 * hd), sc, rows, width, hd, true);
          for (let r = 0; r < rows; r++) {
            const pos = queryOffset + t0 + r;
            const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
            softmaxMasked(sc, r * width, width, first - s0, pos + 1 - s0, scale, cap);
          }
          matmulInto(sc, vh.subarray(s0 * hd, s1 * hd), oh, rows, hd, width, false);
          for (let r = 0; r < rows; r++) out.set(oh.subarray(r * hd, (r + 1) * hd), (b * T + t0 + r) * Dq + h * hd);
        }
      }
    }
  }
  return f32(out, q.shape);
}

/** Columns [c0, c0 + width) of rows [row0, row0 + rows) of a [?, stride] matrix, into dst [rows, width]. */
function gatherHead(src: Float32Array, dst: Float32Array, row0: number, rows: number, stride: number, c0: number, width: number): void {
  for (let r = 0; r < rows; r++) {
    const o = (row0 + r) * stride + c0;
    dst.set(src.subarray(o, o + width), r * width);
  }
}

/** Row [o, o + n) of scores in place: scale, soft-cap, softmax over [lo, hi), zeros outside. */
function softmaxMasked(sc: Float32Array, o: number, n: number, lo: number, hi: number, scale: number, cap: number): void {
  let max = -Infinity;
  for (let j = o + lo; j < o + hi; j++) {
    let x = sc[j]! * scale;
    if (cap > 0) x = cap * Math.tanh(x / cap);
    sc[j] = x;
    if (x > max) max = x;
  }
  let sum = 0;
  for (let j = o + lo; j < o + hi; j++) {
    const e = Math.exp(sc[j]! - max);
    sc[j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = o + lo; j < o + hi; j++) sc[j]! *= inv;
  sc.fill(0, o, o + lo);
  sc.fill(0, o + hi, o + n);
}
