// The Backend interface on WebGPU. Tensors own pooled GPU buffers (shared by reshape views, counted);
// ops record dispatches that are submitted in batches; read() and sync() are the only awaits.
// f16 is a storage type for weights: matmul/linear read f16 B directly and embedding reads f16
// tables; any other op widens f16 inputs to f32 first. Results are f32 (indices i32).
// A weight larger than one storage binding (createEmpty) is kept as row blocks: embedding gathers
// from each block, x·Wᵀ runs per block with the outputs copied side by side, and the logit lens
// streams over the blocks of an unembedding.

import { f16ToF32 } from '../io/dtype.ts';
import {
  lensShape,
  numel,
  ShapeError,
  type Activation,
  type AttentionParams,
  type Backend,
  type DType,
  type LensHead,
  type LensReadout,
  type RopeParams,
  type StorageType,
  type Tensor,
} from '../model/backend.ts';
import { getGpu, type GpuContext } from '../gpu/device.ts';
import type { GpuProgram } from '../gpu/pipelines.ts';
import { CommandRecorder } from '../gpu/recorder.ts';
import { ATTENTION_MAX_HEAD_DIM, attentionProgram } from './attention/attention.ts';
import { grid, packUniforms } from './common.ts';
import { binaryProgram, castF16Program, ELEMENTWISE_WORKGROUP, gatedProgram, unaryProgram, type BinaryOp, type UnaryOp } from './elementwise/elementwise.ts';
import { embeddingProgram } from './embedding/embedding.ts';
import { toF16Bits } from './f16.ts';
import { flags } from './flags.ts';
import { planMatmul } from './matmul/matmul.ts';
import { lensKlProgram, lensKmax, lensMergeProgram, lensScanProgram, lensSlices, lensTiles, lensWType, partialWords } from './lens/lens.ts';
import type { LensTiles } from './lens/lens.wgsl.ts';
import { layerNormProgram, rmsNormProgram } from './norm/norm.ts';
import { reduceProgram } from './reduce/reduce.ts';
import { ropeProgram, ropeTable } from './rope/rope.ts';
import { softmaxProgram } from './softmax/softmax.ts';
import { topkProgram } from './topk/topk.ts';
import { TRANSPOSE_TILE, transposeProgram } from './transpose/transpose.ts';

/** Rotary cos/sin tables kept on the GPU (one per rope parameters, start position and length). */
const ROPE_TABLE_CACHE_SIZE = 8;

class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer) {}
}

class GpuTensor implements Tensor {
  readonly backend = 'webgpu' as const;
  disposed = false;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly storage: Storage,
  ) {}

  get buffer(): GPUBuffer {
    return this.storage.buffer;
  }

  get size(): number {
    return numel(this.shape);
  }
}

/** A tensor too large for one storage binding, as row blocks of `blockRows` rows (the last may be shorter). */
class RowBlockTensor implements Tensor {
  readonly backend = 'webgpu' as const;
  disposed = false;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: 'f32' | 'f16',
    readonly blocks: readonly GpuTensor[],
    readonly blockRows: number,
  ) {}
}

export async function createWebGpuBackend(): Promise<Backend> {
  return new WebGpuBackend(await getGpu());
}

class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  readonly bf16 = false;
  private readonly recorder: CommandRecorder;
  private readonly ropeTables = new Map<string, GpuTensor>();

  constructor(private readonly ctx: GpuContext) {
    this.recorder = new CommandRecorder(ctx, flags.dispatchesPerSubmit);
  }

  get limits(): { maxBufferSize: number; maxStorageBufferBindingSize: number } {
    const { maxBufferSize, maxStorageBufferBindingSize } = this.ctx.device.limits;
    return { maxBufferSize, maxStorageBufferBindingSize: flags.maxBindingBytes > 0 ? Math.min(flags.maxBindingBytes, maxStorageBufferBindingSize) : maxStorageBufferBindingSize };
  }

  fromArray(data: Float32Array | Int32Array, shape: readonly number[], dtype?: DType): Tensor {
    checkShape('fromArray', shape);
    const type = dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
    if (numel(shape) !== data.length) throw new ShapeError('fromArray', `${data.length} values do not fill shape [${shape.join(', ')}]`);
    if ((type === 'i32') !== data instanceof Int32Array) {
      throw new ShapeError('fromArray', `dtype ${type} needs ${type === 'i32' ? 'an Int32Array' : 'a Float32Array'}, got ${data.constructor.name}`);
    }
    this.ctx.assertAlive();
    const t = this.alloc(shape, type);
    if (data.length === 0) return t;
    if (type === 'f16') {
      this.ctx.device.queue.writeBuffer(t.buffer, 0, toF16Bits(data as Float32Array));
    } else {
      this.ctx.device.queue.writeBuffer(t.buffer, 0, data);
    }
    return t;
  }

  async read(tensor: Tensor): Promise<Float32Array | Int32Array> {
    if (tensor instanceof RowBlockTensor) {
      if (tensor.disposed) throw new ShapeError('read', `tensor [${tensor.shape.join(', ')}] was disposed`);
      const out = new Float32Array(numel(tensor.shape));
      let at = 0;
      for (const block of tensor.blocks) {
        const part = await this.read(block);
        out.set(part, at);
        at += part.length;
      }
      return out;
    }
    const t = this.own(tensor, 'read');
    const n = t.size;
    if (t.dtype === 'f16') {
      const halves = new Uint16Array(n === 0 ? new ArrayBuffer(0) : await this.recorder.read(t.buffer, Math.ceil(n / 2) * 4), 0, n);
      return Float32Array.from(halves, f16ToF32);
    }
    if (n === 0) return t.dtype === 'i32' ? new Int32Array(0) : new Float32Array(0);
    const bytes = await this.recorder.read(t.buffer, n * 4);
    return t.dtype === 'i32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  dispose(tensor: Tensor): void {
    if (tensor instanceof RowBlockTensor && !tensor.disposed) {
      tensor.disposed = true;
      for (const block of tensor.blocks) this.dispose(block);
    }
    if (!(tensor instanceof GpuTensor) || tensor.disposed) return;
    tensor.disposed = true;
    if (--tensor.storage.refs === 0) this.recorder.releaseAfterSubmit(tensor.buffer);
  }

  matmul(a: Tensor, b: Tensor, opts?: { transposeB?: boolean }): Tensor {
    return this.matmulOp('matmul', a, b, opts?.transposeB ?? false);
  }

  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    return this.matmulOp('linear', x, w, true, bias);
  }

  add(a: Tensor, b: Tensor): Tensor {
    return this.binary('add', a, b);
  }

  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary('sub', a, b);
  }

  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary('mul', a, b);
  }

  scale(a: Tensor, s: number): Tensor {
    return this.unary('scale', a, { kind: 'scale' }, s);
  }

  activation(x: Tensor, act: Activation): Tensor {
    return this.unary('activation', x, { kind: 'activation', act }, 0);
  }

  softcap(x: Tensor, cap: number): Tensor {
    if (!(cap > 0)) throw new ShapeError('softcap', `cap must be positive, got ${cap}`);
    return this.unary('softcap', x, { kind: 'softcap' }, cap);
  }

  gated(gate: Tensor, up: Tensor, act: Activation): Tensor {
    return this.withFloats('gated', [gate, up], ([g, u]) => {
      if (!sameShape(g.shape, u.shape)) throw new ShapeError('gated', `gate [${g.shape.join(', ')}] and up [${u.shape.join(', ')}] differ`);
      const out = this.alloc(g.shape, 'f32');
      this.elementwise(gatedProgram(act), [g, u], out, packUniforms([g.size]));
      return out;
    });
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number, addOne?: boolean): Tensor {
    return this.withFloats('rmsNorm', [x, w], ([xt, wt]) => {
      const n = lastDim(xt);
      if (wt.size !== n) throw new ShapeError('rmsNorm', `weight has ${wt.size} values for rows of ${n}`);
      return this.rmsRows(xt, wt, n, eps, addOne ?? false);
    });
  }

  headRmsNorm(x: Tensor, w: Tensor, headDim: number, eps: number, addOne?: boolean): Tensor {
    return this.withFloats('headRmsNorm', [x, w], ([xt, wt]) => {
      if (headDim <= 0 || lastDim(xt) % headDim !== 0) throw new ShapeError('headRmsNorm', `last dimension ${lastDim(xt)} is not a multiple of headDim ${headDim}`);
      if (wt.size !== headDim) throw new ShapeError('headRmsNorm', `weight has ${wt.size} values for headDim ${headDim}`);
      return this.rmsRows(xt, wt, headDim, eps, addOne ?? false);
    });
  }

  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    return this.withFloats('layerNorm', [x, w, b], ([xt, wt, bt]) => {
      const n = lastDim(xt);
      if (wt.size !== n || bt.size !== n) throw new ShapeError('layerNorm', `weight (${wt.size}) and bias (${bt.size}) must have ${n} values`);
      const out = this.alloc(xt.shape, 'f32');
      const rows = n === 0 ? 0 : xt.size / n;
      const wg = flags.reduceWorkgroupSize;
      this.dispatch(layerNormProgram(wg), [xt, wt, bt, out], this.grid(rows), packUniforms([rows, n], [eps]));
      return out;
    });
  }

  softmax(x: Tensor): Tensor {
    return this.softmaxOp('softmax', x, false);
  }

  logSoftmax(x: Tensor): Tensor {
    return this.softmaxOp('logSoftmax', x, true);
  }

  embedding(table: Tensor, ids: Int32Array, idsShape: readonly number[]): Tensor {
    if (table instanceof RowBlockTensor) return this.blockEmbedding(table, ids, idsShape);
    const t = this.own(table, 'embedding');
    checkShape('embedding', idsShape);
    if (t.shape.length !== 2) throw new ShapeError('embedding', `table must be [V, D], got [${t.shape.join(', ')}]`);
    if (t.dtype === 'i32') throw new ShapeError('embedding', 'table must be f32 or f16, got i32');
    if (numel(idsShape) !== ids.length) throw new ShapeError('embedding', `${ids.length} ids do not fill shape [${idsShape.join(', ')}]`);
    const [vocab, d] = t.shape as [number, number];
    ids.forEach((id, i) => {
      if (!(id >= 0 && id < vocab)) throw new RangeError(`embedding: id ${id} at position ${i} is outside the vocabulary of ${vocab}`);
    });
    const out = this.alloc([...idsShape, d], 'f32');
    if (out.size === 0) return out;
    const idsBuffer = this.ctx.pool.acquire(ids.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    this.ctx.device.queue.writeBuffer(idsBuffer, 0, ids);
    this.recorder.dispatch(
      embeddingProgram(t.dtype === 'f16'),
      [t.buffer, idsBuffer, out.buffer],
      this.grid(Math.ceil(out.size / ELEMENTWISE_WORKGROUP)),
      packUniforms([out.size, d, vocab]),
    );
    this.recorder.releaseAfterSubmit(idsBuffer);
    return out;
  }

  rope(x: Tensor, nHeads: number, headDim: number, startPos: number, params: RopeParams): Tensor {
    return this.withFloats('rope', [x], ([xt]) => {
      if (xt.shape.length !== 3 || xt.shape[2] !== nHeads * headDim) {
        throw new ShapeError('rope', `x must be [B, T, ${nHeads}·${headDim}], got [${xt.shape.join(', ')}]`);
      }
      const rd = params.rotaryDim;
      if (!(rd > 0 && rd % 2 === 0 && rd <= headDim)) throw new ShapeError('rope', `rotaryDim ${rd} must be even and at most headDim ${headDim}`);
      if (!Number.isInteger(startPos) || startPos < 0) throw new ShapeError('rope', `startPos must be a non-negative integer, got ${startPos}`);
      const t = xt.shape[1]!;
      const out = this.alloc(xt.shape, 'f32');
      if (out.size === 0) return out;
      const table = this.ropeTable(params, startPos, t);
      this.elementwise(ropeProgram, [xt, table], out, packUniforms([out.size, t, nHeads, headDim, rd]));
      return out;
    });
  }

  attention(q: Tensor, k: Tensor, v: Tensor, p: AttentionParams): Tensor {
    return this.withFloats('attention', [q, k, v], ([qt, kt, vt]) => {
      const { nHeads, nKvHeads, headDim } = p;
      if (qt.shape.length !== 3 || kt.shape.length !== 3 || !sameShape(kt.shape, vt.shape)) {
        throw new ShapeError('attention', `q [B, T, D] and equal k, v [B, S, D] expected, got q [${qt.shape.join(', ')}], k [${kt.shape.join(', ')}], v [${vt.shape.join(', ')}]`);
      }
      const [b, t, dq] = qt.shape as [number, number, number];
      const [bk, s, dk] = kt.shape as [number, number, number];
      if (bk !== b || dq !== nHeads * headDim || dk !== nKvHeads * headDim || nKvHeads <= 0 || nHeads % nKvHeads !== 0) {
        throw new ShapeError('attention', `q [${qt.shape.join(', ')}] and k [${kt.shape.join(', ')}] do not fit ${nHeads} heads, ${nKvHeads} KV heads of ${headDim}`);
      }
      if (headDim > ATTENTION_MAX_HEAD_DIM) throw new ShapeError('attention', `headDim ${headDim} exceeds the kernel's ${ATTENTION_MAX_HEAD_DIM}`);
      if (!Number.isInteger(p.queryOffset) || p.queryOffset < 0) throw new ShapeError('attention', `queryOffset must be a non-negative integer, got ${p.queryOffset}`);
      const out = this.alloc(qt.shape, 'f32');
      if (out.size === 0) return out;
      const softcap = p.softcap ?? 0;
      this.dispatch(
        attentionProgram,
        [qt, kt, vt, out],
        this.grid(b * t * nHeads),
        packUniforms([b, t, s, nHeads, nKvHeads, headDim, p.queryOffset, p.window ?? 0, softcap > 0 ? 1 : 0], [p.scale, softcap]),
      );
      return out;
    });
  }

  sliceSeq(x: Tensor, start: number, end: number): Tensor {
    return this.withWords('sliceSeq', [x], ([xt]) => {
      if (xt.shape.length !== 3) throw new ShapeError('sliceSeq', `x must be [B, T, D], got [${xt.shape.join(', ')}]`);
      const [b, t, d] = xt.shape as [number, number, number];
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= t)) {
        throw new ShapeError('sliceSeq', `range [${start}, ${end}) is not within 0..${t}`);
      }
      const out = this.alloc([b, end - start, d], xt.dtype);
      const rowBytes = (end - start) * d * 4;
      if (rowBytes > 0) for (let i = 0; i < b; i++) this.recorder.copy(xt.buffer, (i * t + start) * d * 4, out.buffer, i * rowBytes, rowBytes);
      return out;
    });
  }

  concatSeq(a: Tensor, b: Tensor): Tensor {
    return this.withWords('concatSeq', [a, b], ([at, bt]) => {
      if (at.shape.length !== 3 || bt.shape.length !== 3 || at.shape[0] !== bt.shape[0] || at.shape[2] !== bt.shape[2] || at.dtype !== bt.dtype) {
        throw new ShapeError('concatSeq', `[B, S1, D] and [B, S2, D] of one dtype expected, got [${at.shape.join(', ')}] ${at.dtype} and [${bt.shape.join(', ')}] ${bt.dtype}`);
      }
      const [batch, s1, d] = at.shape as [number, number, number];
      const s2 = bt.shape[1]!;
      const out = this.alloc([batch, s1 + s2, d], at.dtype);
      const aBytes = s1 * d * 4;
      const bBytes = s2 * d * 4;
      for (let i = 0; i < batch; i++) {
        if (aBytes > 0) this.recorder.copy(at.buffer, i * aBytes, out.buffer, i * (aBytes + bBytes), aBytes);
        if (bBytes > 0) this.recorder.copy(bt.buffer, i * bBytes, out.buffer, i * (aBytes + bBytes) + aBytes, bBytes);
      }
      return out;
    });
  }

  reshape(x: Tensor, shape: readonly number[]): Tensor {
    const t = this.own(x, 'reshape');
    checkShape('reshape', shape);
    if (numel(shape) !== t.size) throw new ShapeError('reshape', `[${t.shape.join(', ')}] has ${t.size} values, [${shape.join(', ')}] needs ${numel(shape)}`);
    t.storage.refs++;
    return new GpuTensor([...shape], t.dtype, t.storage);
  }

  transpose(x: Tensor): Tensor {
    return this.withWords('transpose', [x], ([xt]) => {
      if (xt.shape.length !== 2) throw new ShapeError('transpose', `x must be 2-D, got [${xt.shape.join(', ')}]`);
      const [m, n] = xt.shape as [number, number];
      const out = this.alloc([n, m], xt.dtype);
      if (out.size === 0) return out;
      const groups: [number, number, number] = [Math.ceil(n / TRANSPOSE_TILE), Math.ceil(m / TRANSPOSE_TILE), 1];
      this.dispatch(transposeProgram, [xt, out], groups, packUniforms([m, n]));
      return out;
    });
  }

  sum(x: Tensor): Tensor {
    return this.reduce('sum', x, false);
  }

  sumSquares(x: Tensor): Tensor {
    return this.reduce('sumSquares', x, true);
  }

  topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
    return this.withFloats('topk', [x], ([xt]) => {
      const n = lastDim(xt);
      if (!(Number.isInteger(k) && k >= 0 && k <= n)) throw new ShapeError('topk', `k = ${k} must be an integer in 0..${n}`);
      const lead = xt.shape.slice(0, -1);
      const values = this.alloc([...lead, k], 'f32');
      const indices = this.alloc([...lead, k], 'i32');
      if (values.size > 0) {
        const rows = xt.size / n;
        const wg = flags.reduceWorkgroupSize;
        this.dispatch(topkProgram(wg), [xt, values, indices], this.grid(rows), packUniforms([rows, n, k]));
      }
      return { values, indices };
    });
  }

  async sync(): Promise<void> {
    await this.recorder.sync();
  }

  createEmpty(shape: readonly number[], dtype: StorageType): Tensor {
    checkShape('createEmpty', shape);
    if (dtype !== 'f32' && dtype !== 'f16') throw new ShapeError('createEmpty', `dtype must be f32 or f16, got ${String(dtype)}`);
    this.ctx.assertAlive();
    const elementBytes = dtype === 'f16' ? 2 : 4;
    const limit = this.bindingLimit();
    if (numel(shape) * elementBytes <= limit || shape.length === 0) return this.alloc(shape, dtype);
    const rows = shape[0]!;
    const rowLength = numel(shape.slice(1));
    let blockRows = Math.floor(limit / (rowLength * elementBytes));
    // Blocks then start at even elements, where f16 writes stay aligned to 32-bit words.
    if (dtype === 'f16' && rowLength % 2 === 1) blockRows -= blockRows % 2;
    if (blockRows < 1) throw new ShapeError('createEmpty', `a row of ${rowLength * elementBytes} bytes exceeds the storage binding limit of ${limit} bytes`);
    const blocks: GpuTensor[] = [];
    try {
      for (let r = 0; r < rows; r += blockRows) blocks.push(this.alloc([Math.min(blockRows, rows - r), ...shape.slice(1)], dtype));
    } catch (e) {
      for (const b of blocks) this.dispose(b);
      throw e;
    }
    return new RowBlockTensor([...shape], dtype, blocks, blockRows);
  }

  writeRows(tensor: Tensor, rowStart: number, data: Float32Array | Uint16Array): void {
    const t = tensor instanceof RowBlockTensor ? tensor : this.own(tensor, 'writeRows');
    if (t.disposed) throw new ShapeError('writeRows', `tensor [${t.shape.join(', ')}] was disposed`);
    if (t.dtype === 'i32') throw new ShapeError('writeRows', 'expects an f32 or f16 tensor, got i32');
    if (data instanceof Uint16Array && t.dtype !== 'f16') throw new ShapeError('writeRows', `float16 bits (Uint16Array) need an f16 tensor, got ${t.dtype}`);
    const rowLength = numel(t.shape.slice(1));
    const count = rowLength === 0 ? 0 : data.length / rowLength;
    if (!Number.isInteger(count) || !Number.isInteger(rowStart) || rowStart < 0 || rowStart + count > (t.shape[0] ?? 1)) {
      throw new ShapeError('writeRows', `${data.length} values from row ${rowStart} are not whole rows of ${rowLength} within [${t.shape.join(', ')}]`);
    }
    this.ctx.assertAlive();
    if (!(t instanceof RowBlockTensor)) {
      this.writeElements(t, rowStart * rowLength, data);
      return;
    }
    t.blocks.forEach((block, b) => {
      const first = Math.max(rowStart, b * t.blockRows);
      const last = Math.min(rowStart + count, b * t.blockRows + block.shape[0]!);
      if (first < last) this.writeElements(block, (first - b * t.blockRows) * rowLength, data.subarray((first - rowStart) * rowLength, (last - rowStart) * rowLength));
    });
  }

  logitLens(heads: readonly LensHead[], k: number): { heads: LensReadout[]; kl?: Tensor } {
    const { rows, d, vocab, lead } = lensShape(heads, k);
    this.ctx.assertAlive();
    const tiles = lensTiles(flags);
    const blocks = heads.map((h) => this.rowBlocks(h.unembed, 'logitLens'));
    return this.withFloats(
      'logitLens',
      heads.map((h) => h.normed),
      (normed) => {
        const readouts = heads.map((h, i) => this.lensHead(normed[i]!, blocks[i]!, h.softcap ?? 0, { rows, d, k, lead }, tiles));
        if (heads.length === 1) return { heads: readouts };
        const end = (i: number): LensEnd => ({ h: normed[i]!, blocks: blocks[i]!, cap: heads[i]!.softcap ?? 0, lse: readouts[i]!.lse as GpuTensor });
        return { heads: readouts, kl: this.lensKl([end(0), end(1)], { rows, d, vocab, lead }, tiles) };
      },
    );
  }

  // ---- helpers ----

  /** The row blocks of a matrix (one block when it fits a binding), with the first row of each. */
  private rowBlocks(t: Tensor, op: string): { t: GpuTensor; first: number }[] {
    if (!(t instanceof RowBlockTensor)) return [{ t: this.own(t, op), first: 0 }];
    if (t.disposed) throw new ShapeError(op, `tensor [${t.shape.join(', ')}] was disposed`);
    return t.blocks.map((b, i) => ({ t: b, first: i * t.blockRows }));
  }

  private checkLensGrid(slices: number, rowTiles: number): void {
    const max = this.ctx.device.limits.maxComputeWorkgroupsPerDimension;
    if (slices > max || rowTiles > max) throw new ShapeError('logitLens', `${rowTiles} row tiles × ${slices} vocabulary slices exceed the dispatch limit of ${max} per dimension: pass fewer rows`);
  }

  /** One head's pass over every block of its unembedding into partial states, then the per-row merge. */
  private lensHead(h: GpuTensor, blocks: readonly { t: GpuTensor; first: number }[], cap: number, s: { rows: number; d: number; k: number; lead: number[] }, tiles: LensTiles): LensReadout {
    const { rows, d, k, lead } = s;
    const lse = this.alloc(lead, 'f32');
    const logProbs = this.alloc([...lead, k], 'f32');
    const ids = this.alloc([...lead, k], 'i32');
    if (rows === 0) return { lse, logProbs, ids };
    const plans = blocks.map((b) => ({ ...b, ...lensSlices(rows, b.t.shape[0]!, tiles, flags.lensTargetWorkgroups) }));
    const total = plans.reduce((n, p) => n + p.slices, 0);
    const part = this.alloc([rows * total * partialWords(k)], 'i32');
    const kmax = lensKmax(k);
    let base = 0;
    for (const p of plans) {
      this.checkLensGrid(p.slices, p.rowTiles);
      const program = lensScanProgram(lensWType(p.t.dtype as 'f32' | 'f16', this.ctx.info.features.shaderF16, flags), kmax, tiles);
      const uniforms = packUniforms([rows, d, 0, p.t.shape[0]!, p.sliceLen, total, base, p.first, k, cap > 0 ? 1 : 0], [cap]);
      this.dispatch(program, [h, p.t, part], [p.slices, p.rowTiles, 1], uniforms);
      base += p.slices;
    }
    this.dispatch(lensMergeProgram(flags.reduceWorkgroupSize), [part, lse, logProbs, ids], this.grid(rows), packUniforms([rows, total, k]));
    this.dispose(part);
    return { lse, logProbs, ids };
  }

  /** KL(P_0 ‖ P_1) per row over vocabulary segments that lie within one block of each unembedding. */
  private lensKl(ends: readonly [LensEnd, LensEnd], s: { rows: number; d: number; vocab: number; lead: number[] }, tiles: LensTiles): Tensor {
    const { rows, d, vocab, lead } = s;
    if (rows === 0) return this.alloc(lead, 'f32');
    const cuts = [...new Set([0, vocab, ...ends.flatMap((e) => e.blocks.map((b) => b.first))])].sort((a, b) => a - b);
    const blockAt = (e: LensEnd, v: number) => e.blocks.findLast((b) => b.first <= v)!;
    const segments = cuts.slice(0, -1).map((v0, i) => {
      const count = cuts[i + 1]! - v0;
      return { v0, count, b0: blockAt(ends[0], v0), b1: blockAt(ends[1], v0), ...lensSlices(rows, count, tiles, flags.lensTargetWorkgroups) };
    });
    const total = segments.reduce((n, g) => n + g.slices, 0);
    const part = this.alloc([rows, total], 'f32');
    const nativeF16 = this.ctx.info.features.shaderF16;
    let base = 0;
    for (const g of segments) {
      this.checkLensGrid(g.slices, g.rowTiles);
      const wTypes = [lensWType(g.b0.t.dtype as 'f32' | 'f16', nativeF16, flags), lensWType(g.b1.t.dtype as 'f32' | 'f16', nativeF16, flags)] as const;
      const [c0, c1] = [ends[0].cap, ends[1].cap];
      const uniforms = packUniforms([rows, d, g.v0 - g.b0.first, g.v0 - g.b1.first, g.count, g.sliceLen, total, base, c0 > 0 ? 1 : 0, c1 > 0 ? 1 : 0], [c0, c1]);
      this.dispatch(lensKlProgram(wTypes, tiles), [ends[0].h, g.b0.t, ends[0].lse, ends[1].h, g.b1.t, ends[1].lse, part], [g.slices, g.rowTiles, 1], uniforms);
      base += g.slices;
    }
    const kl = this.reduce('logitLens', part, false);
    this.dispose(part);
    const shaped = this.reshape(kl, lead);
    this.dispose(kl);
    return shaped;
  }

  private own(t: Tensor, op: string): GpuTensor {
    if (t instanceof RowBlockTensor) {
      throw new ShapeError(
        op,
        `tensor [${t.shape.join(', ')}] is kept as ${t.blocks.length} row blocks (larger than one storage binding): only embedding, matmul/linear as transposed b, logitLens, read and dispose take it`,
      );
    }
    if (!(t instanceof GpuTensor)) throw new ShapeError(op, `tensor belongs to the ${t.backend} backend, not webgpu`);
    if (t.disposed) throw new ShapeError(op, `tensor [${t.shape.join(', ')}] was disposed`);
    return t;
  }

  private alloc(shape: readonly number[], dtype: DType): GpuTensor {
    const bytes = numel(shape) * (dtype === 'f16' ? 2 : 4);
    const buffer = this.ctx.pool.acquire(bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    return new GpuTensor([...shape], dtype, new Storage(buffer));
  }

  /** Largest tensor in one buffer, as the pool can allocate it (a multiple of 16 bytes). */
  private bindingLimit(): number {
    const limits = this.limits;
    return Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 16) * 16;
  }

  /** Writes values (f16 bits or float32) at element `offset` of one buffer. */
  private writeElements(t: GpuTensor, offset: number, data: Float32Array | Uint16Array): void {
    if (data.length === 0) return;
    if (t.dtype === 'f32') {
      this.ctx.device.queue.writeBuffer(t.buffer, offset * 4, data);
      return;
    }
    // Writes are whole 32-bit words: an f16 write starts on one, and an odd count is padded, which is safe only at the end.
    if (offset % 2 !== 0) throw new ShapeError('writeRows', `an f16 write must start at an even element, got ${offset}`);
    if (data.length % 2 !== 0 && offset + data.length !== t.size) throw new ShapeError('writeRows', `an f16 write of an odd number of values (${data.length}) must end the tensor`);
    let bits: Uint16Array;
    if (data instanceof Float32Array) bits = toF16Bits(data);
    else if (data.length % 2 === 0) bits = data;
    else {
      bits = new Uint16Array(data.length + 1);
      bits.set(data);
    }
    this.ctx.device.queue.writeBuffer(t.buffer, offset * 2, bits);
  }

  /** Gathers each block's ids with the ordinary kernel, then copies the rows into place (consecutive positions as one copy). */
  private blockEmbedding(table: RowBlockTensor, ids: Int32Array, idsShape: readonly number[]): Tensor {
    if (table.disposed) throw new ShapeError('embedding', `tensor [${table.shape.join(', ')}] was disposed`);
    checkShape('embedding', idsShape);
    if (table.shape.length !== 2) throw new ShapeError('embedding', `table must be [V, D], got [${table.shape.join(', ')}]`);
    if (numel(idsShape) !== ids.length) throw new ShapeError('embedding', `${ids.length} ids do not fill shape [${idsShape.join(', ')}]`);
    const [vocab, d] = table.shape as [number, number];
    ids.forEach((id, i) => {
      if (!(id >= 0 && id < vocab)) throw new RangeError(`embedding: id ${id} at position ${i} is outside the vocabulary of ${vocab}`);
    });
    const out = this.alloc([...idsShape, d], 'f32');
    if (out.size === 0) return out;
    table.blocks.forEach((block, b) => {
      const first = b * table.blockRows;
      const positions: number[] = [];
      ids.forEach((id, i) => {
        if (id >= first && id < first + block.shape[0]!) positions.push(i);
      });
      if (positions.length === 0) return;
      const rows = this.embedding(block, Int32Array.from(positions, (i) => ids[i]! - first), [positions.length]) as GpuTensor;
      for (let k = 0; k < positions.length; ) {
        let n = 1;
        while (k + n < positions.length && positions[k + n] === positions[k]! + n) n++;
        this.recorder.copy(rows.buffer, k * d * 4, out.buffer, positions[k]! * d * 4, n * d * 4);
        k += n;
      }
      this.dispose(rows);
    });
    return out;
  }

  /** a · bᵀ with b in row blocks: each block gives a range of output columns, copied row by row into place. */
  private blockMatmul(op: string, a: Tensor, b: RowBlockTensor, transposeB: boolean, bias?: Tensor): Tensor {
    if (b.disposed) throw new ShapeError(op, `tensor [${b.shape.join(', ')}] was disposed`);
    if (!transposeB || b.shape.length !== 2) {
      throw new ShapeError(op, `b [${b.shape.join(', ')}] is kept as row blocks: only a transposed 2-D b (weights [out, in]) is supported`);
    }
    const n = b.shape[0]!;
    if (bias && numel(bias.shape) !== n) throw new ShapeError(op, `bias has ${numel(bias.shape)} values for ${n} outputs`);
    const out = this.withFloats(op, [a], ([at]) => {
      const m = numel(at.shape.slice(0, -1));
      const parts = b.blocks.map((block) => this.matmulF32A(op, at, block, true));
      const result = this.alloc([...at.shape.slice(0, -1), n], 'f32');
      let column = 0;
      for (const part of parts) {
        const width = part.shape[part.shape.length - 1]!;
        if (width > 0) for (let i = 0; i < m; i++) this.recorder.copy(part.buffer, i * width * 4, result.buffer, (i * n + column) * 4, width * 4);
        column += width;
        this.dispose(part);
      }
      return result;
    });
    if (!bias) return out;
    const withBias = this.add(out, bias);
    this.dispose(out);
    return withBias;
  }

  private grid(groups: number): [number, number, number] {
    return grid(groups, this.ctx.device.limits.maxComputeWorkgroupsPerDimension);
  }

  private dispatch(program: GpuProgram, tensors: readonly GpuTensor[], groups: [number, number, number], uniforms: ArrayBuffer): void {
    this.recorder.dispatch(
      program,
      tensors.map((t) => t.buffer),
      groups,
      uniforms,
    );
  }

  /** One thread per element of `out`. */
  private elementwise(program: GpuProgram, inputs: readonly GpuTensor[], out: GpuTensor, uniforms: ArrayBuffer): void {
    if (out.size === 0) return;
    this.dispatch(program, [...inputs, out], this.grid(Math.ceil(out.size / ELEMENTWISE_WORKGROUP)), uniforms);
  }

  private toF32(t: GpuTensor): GpuTensor {
    const out = this.alloc(t.shape, 'f32');
    this.elementwise(castF16Program, [t], out, packUniforms([t.size]));
    return out;
  }

  /** Runs `body` on the inputs as f32 (f16 widened into temporaries, disposed afterwards); i32 is refused. */
  private withFloats<const T extends readonly Tensor[], R>(op: string, inputs: T, body: (ts: GpuTensors<T>) => R): R {
    const owned = inputs.map((t) => this.own(t, op));
    for (const t of owned) if (t.dtype === 'i32') throw new ShapeError(op, `expects float tensors, got i32 [${t.shape.join(', ')}]`);
    return this.withWidened(owned, (ts) => body(ts as GpuTensors<T>));
  }

  /** Like withFloats, but i32 passes through: for ops that only move 32-bit words. */
  private withWords<const T extends readonly Tensor[], R>(op: string, inputs: T, body: (ts: GpuTensors<T>) => R): R {
    return this.withWidened(
      inputs.map((t) => this.own(t, op)),
      (ts) => body(ts as GpuTensors<T>),
    );
  }

  private withWidened<R>(owned: GpuTensor[], body: (ts: GpuTensor[]) => R): R {
    const temps: GpuTensor[] = [];
    const args = owned.map((t) => {
      if (t.dtype !== 'f16') return t;
      const w = this.toF32(t);
      temps.push(w);
      return w;
    });
    try {
      return body(args);
    } finally {
      for (const t of temps) this.dispose(t);
    }
  }

  private matmulOp(op: string, a: Tensor, b: Tensor, transposeB: boolean, bias?: Tensor): Tensor {
    if (b instanceof RowBlockTensor) return this.blockMatmul(op, a, b, transposeB, bias);
    const bt = this.own(b, op);
    if (bt.dtype === 'i32') throw new ShapeError(op, 'b must be f32 or f16, got i32');
    if (bias) return this.withFloats(op, [a, bias], ([at, biasT]) => this.matmulF32A(op, at, bt, transposeB, biasT));
    return this.withFloats(op, [a], ([at]) => this.matmulF32A(op, at, bt, transposeB));
  }

  private matmulF32A(op: string, at: GpuTensor, bt: GpuTensor, transposeB: boolean, biasT?: GpuTensor): GpuTensor {
    if (at.shape.length < 1 || bt.shape.length !== 2) throw new ShapeError(op, `a [..., M, K] and 2-D b expected, got [${at.shape.join(', ')}] and [${bt.shape.join(', ')}]`);
    const k = lastDim(at);
    const [bk, n] = (transposeB ? [bt.shape[1], bt.shape[0]] : bt.shape) as [number, number];
    if (bk !== k) {
      throw new ShapeError(op, `a [${at.shape.join(', ')}] does not fit b [${bt.shape.join(', ')}]${transposeB ? ' (transposed)' : ''}: inner dimensions ${k} and ${bk}`);
    }
    if (biasT && biasT.size !== n) throw new ShapeError(op, `bias has ${biasT.size} values for ${n} outputs`);
    const m = numel(at.shape.slice(0, -1));
    const out = this.alloc([...at.shape.slice(0, -1), n], 'f32');
    if (out.size === 0) return out;
    const plan = planMatmul(
      { m, n, k, transposeB, bias: biasT !== undefined, bF16: bt.dtype === 'f16' },
      flags,
      this.ctx.info.features.shaderF16,
      this.ctx.device.limits.maxComputeWorkgroupsPerDimension,
    );
    const tensors = biasT ? [at, bt, biasT, out] : [at, bt, out];
    this.dispatch(plan.program, tensors, plan.grid, packUniforms([m, n, k]));
    return out;
  }

  private binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
    return this.withFloats(op, [a, b], ([at, bt]) => {
      const broadcast = bt.size === lastDim(at) && bt.shape.length > 0 && bt.shape[bt.shape.length - 1] === lastDim(at);
      if (!sameShape(at.shape, bt.shape) && !broadcast) {
        throw new ShapeError(op, `b [${bt.shape.join(', ')}] must equal a [${at.shape.join(', ')}] or be a vector of its last dimension`);
      }
      const out = this.alloc(at.shape, 'f32');
      this.elementwise(binaryProgram(op), [at, bt], out, packUniforms([at.size, Math.max(1, bt.size)]));
      return out;
    });
  }

  private unary(name: string, x: Tensor, op: UnaryOp, s: number): Tensor {
    return this.withFloats(name, [x], ([xt]) => {
      const out = this.alloc(xt.shape, 'f32');
      this.elementwise(unaryProgram(op), [xt], out, packUniforms([xt.size], [s]));
      return out;
    });
  }

  private rmsRows(x: GpuTensor, w: GpuTensor, n: number, eps: number, addOne: boolean): GpuTensor {
    const out = this.alloc(x.shape, 'f32');
    const rows = n === 0 ? 0 : x.size / n;
    this.dispatch(rmsNormProgram(flags.reduceWorkgroupSize), [x, w, out], this.grid(rows), packUniforms([rows, n, addOne ? 1 : 0], [eps]));
    return out;
  }

  private softmaxOp(op: string, x: Tensor, log: boolean): Tensor {
    return this.withFloats(op, [x], ([xt]) => {
      const n = lastDim(xt);
      const out = this.alloc(xt.shape, 'f32');
      const rows = n === 0 ? 0 : xt.size / n;
      this.dispatch(softmaxProgram(flags.reduceWorkgroupSize), [xt, out], this.grid(rows), packUniforms([rows, n, log ? 1 : 0]));
      return out;
    });
  }

  private reduce(op: string, x: Tensor, squares: boolean): Tensor {
    return this.withFloats(op, [x], ([xt]) => {
      if (xt.shape.length === 0) throw new ShapeError(op, 'x must have at least one dimension');
      const n = lastDim(xt);
      const out = this.alloc(xt.shape.slice(0, -1), 'f32');
      this.dispatch(reduceProgram(squares, flags.reduceWorkgroupSize), [xt, out], this.grid(out.size), packUniforms([out.size, n]));
      return out;
    });
  }

  private ropeTable(params: RopeParams, startPos: number, length: number): GpuTensor {
    const key = JSON.stringify([params.theta, params.rotaryDim, params.scaling ?? null, startPos, length]);
    const cached = this.ropeTables.get(key);
    if (cached) {
      this.ropeTables.delete(key);
      this.ropeTables.set(key, cached);
      return cached;
    }
    const table = this.fromArray(ropeTable(params, startPos, length), [2, length, params.rotaryDim / 2]) as GpuTensor;
    this.ropeTables.set(key, table);
    if (this.ropeTables.size > ROPE_TABLE_CACHE_SIZE) {
      const [oldest, t] = this.ropeTables.entries().next().value as [string, GpuTensor];
      this.ropeTables.delete(oldest);
      this.dispose(t);
    }
    return table;
  }
}

type GpuTensors<T extends readonly Tensor[]> = { -readonly [K in keyof T]: GpuTensor };

/** One side of the lens KL pass: normalised rows, unembedding blocks, soft-cap and the head's LSE. */
interface LensEnd {
  h: GpuTensor;
  blocks: readonly { t: GpuTensor; first: number }[];
  cap: number;
  lse: GpuTensor;
}

function lastDim(t: Tensor): number {
  return t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function checkShape(op: string, shape: readonly number[]): void {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError(op, `shape [${shape.join(', ')}] must hold non-negative integers`);
}
