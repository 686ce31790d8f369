// The GEMM kernels as a WebAssembly SIMD module, written with the emitter in emit.ts.
//
// C [M, N] += A [M, K] · B [K, N] over packed operands (all addresses and strides in bytes):
// - A is packed by tiles of 4 rows: for each k, the 4 values a[r, k] side by side ([tiles][K][4]);
// - B is packed by panels of 8 columns: for each k, the 8 values b[k, j] side by side ([panels][K][8]);
//   B may be float16 or bfloat16 bits (weights kept in 16 bits), widened to float32 as the panels are packed.
// The 4×8 micro-kernel keeps 8 f32x4 accumulators in registers; each k step loads two vectors of B,
// splats four values of A and does 8 multiplies and 8 adds (64 flops for 6 loads), or, in the
// relaxed-SIMD variant, 8 f32x4.relaxed_madd (fused multiply-adds where the CPU has FMA). K is cut into
// blocks of kcBlock so that a panel of B (kcBlock × 8 floats) stays in L1 while the tiles of up to
// mcTiles × 4 rows of A (from L2) pass over it. Rows and columns are padded to whole tiles and
// panels with zeros by the caller, so the kernels have no edge cases.
import {
  add,
  and,
  divS,
  f32Add,
  f32Div,
  f32Max,
  f32x4Div,
  f32x4ExtractLane,
  f32x4Ge,
  f32x4Max,
  f32x4Min,
  f32x4Nearest,
  f32x4Splat,
  f32x4Sub,
  f32Sqrt,
  f32Sub,
  geS,
  i32x4Add,
  i32x4Shl,
  i32x4Splat,
  i32x4TruncSatF32x4,
  maxS,
  vAnd,
  call,
  eq,
  f32Bits,
  f32,
  f32Const,
  f32FromBits,
  f32Mul,
  i32Load16U,
  i32LoadAt,
  or,
  select,
  shl,
  encodeModule,
  f32Load,
  f32Store,
  f32x4Add,
  f32x4Mul,
  f32x4RelaxedMadd,
  forRange,
  FunctionBuilder,
  get,
  gtS,
  i32,
  ifThen,
  int,
  minS,
  mul,
  set,
  sub,
  v128,
  vLoad,
  vLoadSplat,
  vStore,
  vZero,
  type Code,
  type Local,
} from './emit.ts';

const TILE_ROWS = 4;
const PANEL_COLS = 8;
/** Bytes of one k step of a packed A tile and of a packed B panel. */
const A_STEP = TILE_ROWS * 4;
const B_STEP = PANEL_COLS * 4;
const PACK_ROWS_K = 16;

/** Function indices, in the order of `functions` below. */
const TILES = 0;
const PACK_ROWS = 1;
const PACK_COLUMNS = 2;
const PACK_ROWS_HALF = 3;
const PACK_COLUMNS_HALF = 4;
const PACK_ROWS_BF16 = 5;
const PACK_COLUMNS_BF16 = 6;
const GEMM = 7;

/** B's element type: float32 values, float16 bits or bfloat16 bits (the `format` argument of work: 0, 1, 2). */
export type GemmFormat = 'f32' | 'f16' | 'bf16';
export const GEMM_FORMATS: readonly GemmFormat[] = ['f32', 'f16', 'bf16'];

/** The threaded exports (first parameters: thread, from, to), by the index the thread pool takes. */
export const THREADED_EXPORTS = ['work', 'packKv', 'attend', 'activate', 'sparseDecode', 'sparseGrad', 'attendBackward', 'activateSlope', 'crossEntropy', 'rmsNorm', 'rmsNormBackward'] as const;
export const THREADED = { work: 0, packKv: 1, attend: 2, activate: 3, sparseDecode: 4, sparseGrad: 5, attendBackward: 6, activateSlope: 7, crossEntropy: 8, rmsNorm: 9, rmsNormBackward: 10 } as const;

/** One panel of B against `tiles` tiles of A: C[4t.., 8 cols] (+)= A_tile[kc] · B_panel[kc]. */
function tilesFunction(relaxed: boolean): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('tiles', [i32, i32, i32, i32, i32, i32, i32, i32]);
  const [ap, bp, cp, ldc, kc, tiles, aStride, accumulate] = fn.params() as [Local, Local, Local, Local, Local, Local, Local, Local];
  const t = fn.local(i32);
  const a = fn.local(i32);
  const aEnd = fn.local(i32);
  const b = fn.local(i32);
  const rows = Array.from({ length: TILE_ROWS }, () => fn.local(i32));
  const acc = rows.map(() => [fn.local(v128), fn.local(v128)]);
  const b0 = fn.local(v128);
  const b1 = fn.local(v128);
  const x = fn.local(v128);
  const accAt = (r: number, h: number): Local => acc[r]![h]!;
  const rowAt = (r: number): Local => rows[r]!;

  const body: Code[] = [];
  for (let r = 0; r < TILE_ROWS; r++) {
    body.push(set(rowAt(r), r === 0 ? add(get(cp), mul(mul(get(t), int(TILE_ROWS)), get(ldc))) : add(get(rowAt(r - 1)), get(ldc))));
  }
  const load: Code[] = [];
  const zero: Code[] = [];
  const store: Code[] = [];
  for (let r = 0; r < TILE_ROWS; r++) {
    for (let h = 0; h < 2; h++) {
      load.push(set(accAt(r, h), vLoad(get(rowAt(r)), 16 * h)));
      zero.push(set(accAt(r, h), vZero()));
      store.push(vStore(get(rowAt(r)), get(accAt(r, h)), 16 * h));
    }
  }
  const step: Code[] = [set(b0, vLoad(get(b))), set(b1, vLoad(get(b), 16))];
  for (let r = 0; r < TILE_ROWS; r++) {
    const madd = (acc: Local, b: Local): Code =>
      relaxed ? f32x4RelaxedMadd(get(x), get(b), get(acc)) : f32x4Add(get(acc), f32x4Mul(get(x), get(b)));
    step.push(set(x, vLoadSplat(get(a), 4 * r)), set(accAt(r, 0), madd(accAt(r, 0), b0)), set(accAt(r, 1), madd(accAt(r, 1), b1)));
  }
  step.push(set(a, add(get(a), int(A_STEP))), set(b, add(get(b), int(B_STEP))));
  const kLoop: Code = [0x03, 0x40, ...step.flat(), ...gtS(get(aEnd), get(a)), 0x0d, 0, 0x0b];

  const perTile: Code = [
    ...body.flat(),
    ...ifThen(get(accumulate), load.flat(), zero.flat()),
    ...set(a, add(get(ap), mul(get(t), get(aStride)))),
    ...set(aEnd, add(get(a), mul(get(kc), int(A_STEP)))),
    ...set(b, get(bp)),
    ...kLoop,
    ...store.flat(),
  ];
  return { fn, body: forRange(t, int(0), get(tiles), int(1), perTile) };
}

/**
 * float16 bits (an i32 in [0, 65536)) to the float32 of the same value: exponent and mantissa moved
 * into place and rescaled by 2¹¹² (exact for normal and subnormal values), infinities and NaNs kept.
 */
function widenHalf(h: Local): Code {
  const magnitude = shl(and(get(h), int(0x7fff)), int(13));
  const finite = f32Bits(f32Mul(f32FromBits(magnitude), f32Const(2 ** 112)));
  const special = or(magnitude, int(0x7f800000));
  const bits = select(special, finite, eq(and(get(h), int(0x7c00)), int(0x7c00)));
  return f32FromBits(or(bits, shl(and(get(h), int(0x8000)), int(16))));
}

/** bfloat16 bits (an i32 in [0, 65536)) to the float32 of the same value: the upper half of its bits. */
function widenBf16(h: Local): Code {
  return f32FromBits(shl(get(h), int(16)));
}

const widenFor = (format: 'f16' | 'bf16') => (format === 'f16' ? widenHalf : widenBf16);

/**
 * B [K, N] row-major (row stride ldb bytes): copy panels p0..p1 to [panel][K][8], PACK_ROWS_K rows of
 * B at a time across all panels, so that both halves of each source cache line are used while it is
 * in L1. B holds float32 values, or float16 or bfloat16 bits widened to float32 here.
 */
function packRowsFunction(format: GemmFormat): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder(`packRows_${format}`, [i32, i32, i32, i32, i32, i32]);
  const [src, ldb, dst, K, p0, p1] = fn.params() as [Local, Local, Local, Local, Local, Local];
  const k0 = fn.local(i32);
  const kEnd = fn.local(i32);
  const p = fn.local(i32);
  const k = fn.local(i32);
  const s = fn.local(i32);
  const d = fn.local(i32);
  const h = fn.local(i32);
  const widen: Code[] = [];
  if (format !== 'f32') for (let col = 0; col < PANEL_COLS; col++) widen.push(set(h, i32Load16U(get(s), 2 * col)), f32Store(get(d), widenFor(format)(h), 4 * col));
  const copy = [
    ...(format !== 'f32' ? widen.flat() : [...vStore(get(d), vLoad(get(s))), ...vStore(get(d), vLoad(get(s), 16), 16)]),
    ...set(s, add(get(s), get(ldb))),
    ...set(d, add(get(d), int(B_STEP))),
  ];
  const elementBytes = format === 'f32' ? 4 : 2;
  const panel = [
    ...set(s, add(add(get(src), mul(get(p), int(PANEL_COLS * elementBytes))), mul(get(k0), get(ldb)))),
    ...set(d, add(get(dst), mul(add(mul(get(p), get(K)), get(k0)), int(B_STEP)))),
    ...forRange(k, get(k0), get(kEnd), int(1), copy),
  ];
  const rows = [
    ...set(kEnd, sub(get(K), get(k0))),
    ...set(kEnd, add(get(k0), minS(get(kEnd), int(PACK_ROWS_K)))),
    ...forRange(p, get(p0), get(p1), int(1), panel),
  ];
  return { fn, body: forRange(k0, int(0), get(K), int(PACK_ROWS_K), rows) };
}

/** B [N, K] row-major (weights [out, in], row stride ldb bytes): gather panels p0..p1 to [panel][K][8]; 16-bit formats widened. */
function packColumnsFunction(format: GemmFormat): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder(`packColumns_${format}`, [i32, i32, i32, i32, i32, i32]);
  const [src, ldb, dst, K, p0, p1] = fn.params() as [Local, Local, Local, Local, Local, Local];
  const p = fn.local(i32);
  const col = fn.local(i32);
  const k = fn.local(i32);
  const s = fn.local(i32);
  const d = fn.local(i32);
  const h = fn.local(i32);
  const copy = format !== 'f32'
    ? [...set(h, i32Load16U(get(s))), ...f32Store(get(d), widenFor(format)(h)), ...set(s, add(get(s), int(2))), ...set(d, add(get(d), int(B_STEP)))]
    : [...f32Store(get(d), f32Load(get(s))), ...set(s, add(get(s), int(4))), ...set(d, add(get(d), int(B_STEP)))];
  const column = [
    ...set(s, add(get(src), mul(add(mul(get(p), int(PANEL_COLS)), get(col)), get(ldb)))),
    ...set(d, add(add(get(dst), mul(mul(get(p), get(K)), int(B_STEP))), mul(get(col), int(4)))),
    ...forRange(k, int(0), get(K), int(1), copy),
  ];
  return { fn, body: forRange(p, get(p0), get(p1), int(1), forRange(col, int(0), int(PANEL_COLS), int(1), column)) };
}

/**
 * A [tiles·4, K] row-major at src (rows past the caller's padded with zeros) to tiles: for each k, the
 * 4 values a[r, k] side by side ([tiles][K][4]). Called by the caller's thread before `work`.
 */
function packTilesFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('packTiles', [i32, i32, i32, i32]);
  const [src, K, dst, tiles] = fn.params() as [Local, Local, Local, Local];
  const t = fn.local(i32);
  const k = fn.local(i32);
  const s = fn.local(i32);
  const d = fn.local(i32);
  const row = fn.local(i32);
  const copy: Code[] = [];
  for (let r = 0; r < TILE_ROWS; r++) copy.push(f32Store(get(d), f32Load(r === 0 ? get(s) : add(get(s), mul(get(row), int(r)))), 4 * r));
  const tile = [
    ...set(s, add(get(src), mul(get(t), mul(get(row), int(TILE_ROWS))))),
    ...set(d, add(get(dst), mul(mul(get(t), get(K)), int(A_STEP)))),
    ...forRange(k, int(0), get(K), int(1), [...copy.flat(), ...set(s, add(get(s), int(4))), ...set(d, add(get(d), int(A_STEP)))]),
  ];
  return { fn, body: [...set(row, mul(get(K), int(4))), ...forRange(t, int(0), get(tiles), int(1), tile)] };
}

/**
 * Packed A and B to C for panels p0..p1: blocks of K outermost, then blocks of tiles, then panels.
 * With `accumulate`, C += A·B (a later chunk of a K split by the caller); else C = A·B.
 */
function gemmFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('gemm', [i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [ap, K, bp, c, ldc, tiles, p0, p1, kcBlock, mcTiles, accumulate] = fn.params() as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const k0 = fn.local(i32);
  const kc = fn.local(i32);
  const t0 = fn.local(i32);
  const nt = fn.local(i32);
  const p = fn.local(i32);
  const aStride = fn.local(i32);
  const perPanel = call(
    TILES,
    add(add(get(ap), mul(get(t0), get(aStride))), mul(get(k0), int(A_STEP))),
    add(mul(mul(get(p), get(K)), int(B_STEP)), add(get(bp), mul(get(k0), int(B_STEP)))),
    add(add(get(c), mul(mul(get(t0), int(TILE_ROWS)), get(ldc))), mul(get(p), int(B_STEP))),
    get(ldc),
    get(kc),
    get(nt),
    get(aStride),
    or(gtS(get(k0), int(0)), get(accumulate)),
  );
  const perTileBlock = [
    ...set(nt, sub(get(tiles), get(t0))),
    ...set(nt, minS(get(nt), get(mcTiles))),
    ...forRange(p, get(p0), get(p1), int(1), perPanel),
  ];
  const perKBlock = [
    ...set(kc, sub(get(K), get(k0))),
    ...set(kc, minS(get(kc), get(kcBlock))),
    ...forRange(t0, int(0), get(tiles), get(mcTiles), perTileBlock),
  ];
  return { fn, body: [...set(aStride, mul(get(K), int(A_STEP))), ...forRange(k0, int(0), get(K), get(kcBlock), perKBlock)] };
}

/**
 * Pack panels p0..p1 of B (transposed: B is [N, K]; format 0 float32, 1 float16 bits, 2 bfloat16
 * bits), then multiply them into C (C += with `accumulate`): one thread's share (a threaded export:
 * its first parameter is the thread's index, unused here).
 */
function workFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('work', [i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [, p0, p1, ap, K, bsrc, ldb, transposed, bp, c, ldc, tiles, kcBlock, mcTiles, format, accumulate] = fn.params() as Local[] as [
    Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local,
  ];
  const packArgs = [get(bsrc), get(ldb), get(bp), get(K), get(p0), get(p1)];
  return {
    fn,
    body: [
      ...ifThen(
        eq(get(format), int(2)),
        ifThen(get(transposed), call(PACK_COLUMNS_BF16, ...packArgs), call(PACK_ROWS_BF16, ...packArgs)),
        ifThen(
          get(format),
          ifThen(get(transposed), call(PACK_COLUMNS_HALF, ...packArgs), call(PACK_ROWS_HALF, ...packArgs)),
          ifThen(get(transposed), call(PACK_COLUMNS, ...packArgs), call(PACK_ROWS, ...packArgs)),
        ),
      ),
      ...call(GEMM, get(ap), get(K), get(bp), get(c), get(ldc), get(tiles), get(p0), get(p1), get(kcBlock), get(mcTiles), get(accumulate)),
    ],
  };
}

/** f32x4 constants held in locals, set once at the top of a function. */
function vConstants(fn: FunctionBuilder): { init: Code[]; k(x: number): Code } {
  const locals = new Map<number, Local>();
  const init: Code[] = [];
  return {
    init,
    k(x) {
      let l = locals.get(x);
      if (!l) {
        l = fn.local(v128);
        locals.set(x, l);
        init.push(set(l, f32x4Splat(f32Const(x))));
      }
      return get(l);
    },
  };
}

const LOG2E = Math.LOG2E;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440e-4;
/** ln(2⁻¹²⁶): below it e^x is taken as exactly 0 (so e^−∞ = 0). */
const EXP_MIN = -87.33654;
/** e^x is evaluated at most at 88 (about 1.65e38): x beyond it gives e^88. */
const EXP_MAX = 88;
const EXP_POLY = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];

/**
 * out = e^x per lane, as Cephes' expf: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7
 * polynomial (a few ulp), times 2ⁿ built in the exponent bits. Exactly 0 below EXP_MIN (−∞ included).
 */
function vExp(k: (x: number) => Code, out: Local, x: Local, n: Local, r: Local): Code {
  let poly = k(EXP_POLY[0]!);
  for (const c of EXP_POLY.slice(1)) poly = f32x4Add(f32x4Mul(poly, get(r)), k(c));
  const twoToN = i32x4Shl(i32x4Add(i32x4TruncSatF32x4(get(n)), i32x4Splat(int(127))), int(23));
  return [
    ...set(r, f32x4Min(f32x4Max(get(x), k(EXP_MIN)), k(EXP_MAX))),
    ...set(n, f32x4Nearest(f32x4Mul(get(r), k(LOG2E)))),
    ...set(r, f32x4Sub(f32x4Sub(get(r), f32x4Mul(get(n), k(LN2_HI))), f32x4Mul(get(n), k(LN2_LO)))),
    ...set(out, f32x4Add(f32x4Add(f32x4Mul(f32x4Mul(poly, get(r)), get(r)), get(r)), k(1))),
    ...set(out, vAnd(f32x4Mul(get(out), twoToN), f32x4Ge(get(x), k(EXP_MIN)))),
  ];
}

/**
 * Keys and values of KV heads g0..g1 into GEMM panels: keys as the B of Q·Kᵀ ([S/8][hd][8] per head),
 * values as the B of P·V ([hd/8][S][8] per head). Both raw arrays are [S, nKv·hd] (row stride ldkv
 * bytes) with S a multiple of 8.
 */
function packKvFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('packKv', [i32, i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [, g0, g1, kraw, vraw, ldkv, kpack, vpack, hd, S] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const g = fn.local(i32);
  const head = fn.local(i32);
  const packed = fn.local(i32);
  const perHead = [
    ...set(head, mul(mul(get(g), get(hd)), int(4))),
    ...set(packed, mul(mul(mul(get(g), get(S)), get(hd)), int(4))),
    ...call(PACK_COLUMNS, add(get(kraw), get(head)), get(ldkv), add(get(kpack), get(packed)), get(hd), int(0), divS(get(S), int(PANEL_COLS))),
    ...call(PACK_ROWS, add(get(vraw), get(head)), get(ldkv), add(get(vpack), get(packed)), get(S), int(0), divS(get(hd), int(PANEL_COLS))),
  ];
  return { fn, body: forRange(g, get(g0), get(g1), int(1), perHead) };
}

/**
 * Causal attention for items i0..i1, item = head · blocks + block, a block being blockTiles × 4
 * query rows: scores = Q·Kᵀ over the keys the block can see (the GEMM micro-kernel over the packed
 * keys), a row softmax of scale · scores (masked keys −∞, max subtracted, e^x in SIMD), the
 * probabilities normalised and packed as the A of P·V, and P·V (the micro-kernel over the packed
 * values) written into the block's rows of out. Each thread uses its own scratch (Q tiles, scores,
 * packed P). q has whole tiles of rows (ceil4(T)), out as many; keys and values are packed by packKv.
 * Where probs ≠ 0 the probabilities also go there, [nHeads][T][S] (the keys a row cannot see are
 * left as they are: the caller zeroes them).
 */
function attendFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('attend', new Array<number>(21).fill(i32) as (typeof i32)[]);
  const [thread, i0, i1, q, ldq, kpack, vpack, out, ldo, scratch, scratchBytes, T, S, hd, nHeads, group, blockTiles, queryOffset, window, scaleBits, probs] =
    fn.params() as Local[] as Local[] & { length: 21 } as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  void nHeads;
  const { init, k } = vConstants(fn);
  const L = () => fn.local(i32);
  const [R, blocks, qt, sc, pp, headBytes, item, h, blk, t0, rows, nt, s0, s1, W, r, j, src, dst, pos, lo, hi, row, kb, p] =
    Array.from({ length: 25 }, L) as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const m = fn.local(f32);
  const inv = fn.local(f32);
  const vscale = fn.local(v128);
  const vm = fn.local(v128);
  const vs = fn.local(v128);
  const x = fn.local(v128);
  const e = fn.local(v128);
  const n = fn.local(v128);
  const rr = fn.local(v128);
  const lanes = (v: Local, op: (a: Code, b: Code) => Code): Code =>
    op(op(f32x4ExtractLane(get(v), 0), f32x4ExtractLane(get(v), 1)), op(f32x4ExtractLane(get(v), 2), f32x4ExtractLane(get(v), 3)));
  const negInf = f32FromBits(int(0xff800000 | 0));
  const store = (addr: Code, value: Code): Code => f32Store(addr, value);

  const packQ = forRange(r, int(0), mul(get(nt), int(TILE_ROWS)), int(1), [
    ...set(src, add(add(get(q), mul(add(get(t0), get(r)), get(ldq))), mul(mul(get(h), get(hd)), int(4)))),
    ...set(dst, add(get(qt), mul(add(mul(mul(divS(get(r), int(TILE_ROWS)), get(hd)), int(TILE_ROWS)), and(get(r), int(TILE_ROWS - 1))), int(4)))),
    ...forRange(j, int(0), get(hd), int(1), [...store(get(dst), f32Load(get(src))), ...set(src, add(get(src), int(4))), ...set(dst, add(get(dst), int(A_STEP)))]),
  ]);
  const scores = forRange(p, int(0), divS(get(W), int(PANEL_COLS)), int(1),
    call(TILES, get(qt), add(get(kb), mul(mul(get(p), get(hd)), int(B_STEP))), add(get(sc), mul(get(p), int(B_STEP))), mul(get(W), int(4)), get(hd), get(nt), mul(get(hd), int(A_STEP)), int(0)),
  );
  const softmaxRow = [
    ...set(pos, add(add(get(queryOffset), get(t0)), get(r))),
    ...set(lo, int(0)),
    ...ifThen(gtS(get(window), int(0)), set(lo, maxS(int(0), add(sub(get(pos), get(window)), int(1))))),
    ...set(lo, sub(get(lo), get(s0))),
    ...set(hi, sub(add(get(pos), int(1)), get(s0))),
    ...set(hi, minS(get(hi), get(W))),
    ...set(row, add(get(sc), mul(mul(get(r), get(W)), int(4)))),
    ...forRange(j, int(0), get(lo), int(1), store(add(get(row), mul(get(j), int(4))), negInf)),
    ...forRange(j, get(hi), get(W), int(1), store(add(get(row), mul(get(j), int(4))), negInf)),
    ...set(vm, f32x4Splat(negInf)),
    ...forRange(j, int(0), get(W), int(4), set(vm, f32x4Max(get(vm), vLoad(add(get(row), mul(get(j), int(4))))))),
    ...set(m, lanes(vm, f32Max)),
    ...set(vm, f32x4Splat(get(m))),
    ...set(vs, vZero()),
    ...forRange(j, int(0), get(W), int(4), [
      ...set(x, f32x4Mul(f32x4Sub(vLoad(add(get(row), mul(get(j), int(4)))), get(vm)), get(vscale))),
      ...vExp(k, e, x, n, rr),
      ...vStore(add(get(row), mul(get(j), int(4))), get(e)),
      ...set(vs, f32x4Add(get(vs), get(e))),
    ]),
    ...set(inv, f32Div(f32Const(1), lanes(vs, f32Add))),
    ...set(dst, add(get(pp), mul(add(mul(mul(divS(get(r), int(TILE_ROWS)), get(W)), int(TILE_ROWS)), and(get(r), int(TILE_ROWS - 1))), int(4)))),
    ...forRange(j, int(0), get(W), int(1), [
      ...store(get(dst), f32Mul(f32Load(add(get(row), mul(get(j), int(4)))), get(inv))),
      ...set(dst, add(get(dst), int(A_STEP))),
    ]),
    ...ifThen(
      and(gtS(get(probs), int(0)), gtS(get(T), add(get(t0), get(r)))),
      [
        ...set(dst, add(get(probs), mul(add(mul(add(mul(get(h), get(T)), add(get(t0), get(r))), get(S)), get(s0)), int(4)))),
        ...forRange(j, int(0), get(W), int(4), vStore(add(get(dst), mul(get(j), int(4))), f32x4Mul(vLoad(add(get(row), mul(get(j), int(4)))), f32x4Splat(get(inv))))),
      ],
    ),
  ];
  const values = forRange(p, int(0), divS(get(hd), int(PANEL_COLS)), int(1),
    call(TILES, get(pp), add(get(kb), mul(mul(get(p), get(S)), int(B_STEP))), add(add(get(out), mul(get(t0), get(ldo))), add(mul(mul(get(h), get(hd)), int(4)), mul(get(p), int(B_STEP)))), get(ldo), get(W), get(nt), mul(get(W), int(A_STEP)), int(0)),
  );
  const perItem = [
    ...set(h, divS(get(item), get(blocks))),
    ...set(blk, sub(get(item), mul(get(h), get(blocks)))),
    ...set(t0, mul(get(blk), get(R))),
    ...set(rows, sub(get(T), get(t0))),
    ...set(rows, minS(get(rows), get(R))),
    ...set(nt, divS(add(get(rows), int(TILE_ROWS - 1)), int(TILE_ROWS))),
    ...set(s1, add(add(get(queryOffset), get(t0)), get(rows))),
    ...set(s0, int(0)),
    ...ifThen(gtS(get(window), int(0)), set(s0, maxS(int(0), add(sub(add(get(queryOffset), get(t0)), get(window)), int(1))))),
    ...set(s0, and(get(s0), int(~(PANEL_COLS - 1)))),
    ...set(W, sub(and(add(get(s1), int(PANEL_COLS - 1)), int(~(PANEL_COLS - 1))), get(s0))),
    ...packQ,
    ...set(kb, add(add(get(kpack), mul(divS(get(h), get(group)), get(headBytes))), mul(mul(get(s0), get(hd)), int(4)))),
    ...scores,
    ...forRange(r, int(0), mul(get(nt), int(TILE_ROWS)), int(1), softmaxRow),
    ...set(kb, add(add(get(vpack), mul(divS(get(h), get(group)), get(headBytes))), mul(get(s0), int(B_STEP)))),
    ...values,
  ];
  const body = [
    ...set(vscale, f32x4Splat(f32FromBits(get(scaleBits)))),
    ...set(R, mul(get(blockTiles), int(TILE_ROWS))),
    ...set(blocks, divS(sub(add(get(T), get(R)), int(1)), get(R))),
    ...set(qt, add(get(scratch), mul(get(thread), get(scratchBytes)))),
    ...set(sc, add(get(qt), mul(mul(get(R), get(hd)), int(4)))),
    ...set(pp, add(get(sc), mul(mul(get(R), get(S)), int(4)))),
    ...set(headBytes, mul(mul(get(S), get(hd)), int(4))),
    ...forRange(item, get(i0), get(i1), int(1), perItem),
  ];
  return { fn, body: [...init.flat(), ...body] };
}

/**
 * The backward of causal attention (training) for items i0..i1, item = b · nKv + g (a sequence and a
 * KV head), T (a multiple of 8) queries and as many keys, head size hd (a multiple of 8). Inputs are
 * row-major: q and dO [B, T, nHeads·hd], k and v [B, T, nKv·hd], probs [B, nHeads, T, T] (the
 * forward's softmax, 0 where a query does not see a key). For each head h of the group, with the
 * micro-kernel: dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)) · scale, gq[h] = dS·K (written),
 * gk[g] (+)= dSᵀ·Q, gv[g] (+)= Pᵀ·dO (written by the group's first head, then added: one thread owns
 * a KV head). Per-thread scratch: dO tiles [T·hd], dS [T·T], dS as tiles, dSᵀ and Pᵀ as tiles (T·T
 * each) and one packed B [T·hd].
 */
function attendBackwardFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('attendBackward', new Array<number>(18).fill(i32) as (typeof i32)[]);
  const [thread, i0, i1, q, k, v, dO, probs, gq, gk, gv, scratch, scratchBytes, T, hd, nHeads, nKv, scaleBits] =
    fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const L = () => fn.local(i32);
  const [item, b, g, h, hEnd, group, ldq, ldk, qb, kb, pb, dOt, dS, dSa, dSt, Pt, bp, r, j, p, src, dst, row, prow, first] =
    Array.from({ length: 25 }, L) as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const vscale = fn.local(v128);
  const acc = fn.local(v128);
  const vd = fn.local(v128);
  const pv = fn.local(v128);
  const ds = fn.local(v128);
  const sum = (x: Local): Code => f32Add(f32Add(f32x4ExtractLane(get(x), 0), f32x4ExtractLane(get(x), 1)), f32Add(f32x4ExtractLane(get(x), 2), f32x4ExtractLane(get(x), 3)));
  const bytes = (x: Code): Code => mul(x, int(4));
  /** Head h's columns of row-major [T, ld] at base (q, dO) as A tiles [T/4][hd][4] at dOt. */
  const packHeadTiles = (base: Code): Code =>
    forRange(r, int(0), get(T), int(1), [
      ...set(src, add(add(base, mul(get(r), get(ldq))), bytes(mul(get(h), get(hd))))),
      ...set(dst, add(get(dOt), bytes(add(mul(mul(divS(get(r), int(TILE_ROWS)), get(hd)), int(TILE_ROWS)), and(get(r), int(TILE_ROWS - 1)))))),
      ...forRange(j, int(0), get(hd), int(1), [...f32Store(get(dst), f32Load(get(src))), ...set(src, add(get(src), int(4))), ...set(dst, add(get(dst), int(A_STEP)))]),
    ]);
  /** C [tiles·4, cols] at c (row stride ldc) (+)= A tiles at a (depth kc) · packed B at bp (panels of depth kc). */
  const product = (a: Code, tiles: Code, kc: Code, c: Code, ldc: Code, cols: Code, accumulate: Code): Code =>
    forRange(p, int(0), divS(cols, int(PANEL_COLS)), int(1),
      call(TILES, a, add(get(bp), mul(mul(get(p), kc), int(B_STEP))), add(c, mul(get(p), int(B_STEP))), ldc, kc, tiles, mul(kc, int(A_STEP)), accumulate),
    );
  const lane = (x: Local, i: 0 | 1 | 2 | 3): Code => f32x4ExtractLane(get(x), i);
  // Row t of dS: dS = P ∘ (dP − Σ dP ∘ P) · scale, into dS tiles (lane by lane) and, 4 keys at a time, dSᵀ and Pᵀ tiles.
  const dsRow = [
    ...set(row, add(get(dS), bytes(mul(get(r), get(T))))),
    ...set(prow, add(get(pb), bytes(mul(add(mul(get(h), get(T)), get(r)), get(T))))),
    ...set(acc, vZero()),
    ...forRange(j, int(0), get(T), int(4), set(acc, f32x4Add(get(acc), f32x4Mul(vLoad(add(get(row), bytes(get(j)))), vLoad(add(get(prow), bytes(get(j)))))))),
    ...set(vd, f32x4Splat(sum(acc))),
    ...set(dst, add(get(dSa), bytes(add(mul(mul(divS(get(r), int(TILE_ROWS)), get(T)), int(TILE_ROWS)), and(get(r), int(TILE_ROWS - 1)))))),
    ...forRange(j, int(0), get(T), int(4), [
      ...set(pv, vLoad(add(get(prow), bytes(get(j))))),
      ...set(ds, f32x4Mul(f32x4Mul(get(pv), f32x4Sub(vLoad(add(get(row), bytes(get(j)))), get(vd))), get(vscale))),
      ...f32Store(get(dst), lane(ds, 0)),
      ...f32Store(get(dst), lane(ds, 1), A_STEP),
      ...f32Store(get(dst), lane(ds, 2), 2 * A_STEP),
      ...f32Store(get(dst), lane(ds, 3), 3 * A_STEP),
      ...set(dst, add(get(dst), int(4 * A_STEP))),
      // Keys j..j+3 are rows of the tile j/4 of dSᵀ and Pᵀ; the query r is its k.
      ...set(src, bytes(add(mul(divS(get(j), int(TILE_ROWS)), mul(get(T), int(TILE_ROWS))), mul(get(r), int(TILE_ROWS))))),
      ...vStore(add(get(dSt), get(src)), get(ds)),
      ...vStore(add(get(Pt), get(src)), get(pv)),
    ]),
  ];
  const perHead = [
    ...set(first, eq(get(h), mul(get(g), get(group)))),
    // dP = dO_h · V_gᵀ: dO's head as tiles, V's head packed as the columns of B.
    ...packHeadTiles(add(get(dO), get(qb))),
    ...call(PACK_COLUMNS, add(add(get(v), get(kb)), bytes(mul(get(g), get(hd)))), get(ldk), get(bp), get(hd), int(0), divS(get(T), int(PANEL_COLS))),
    ...product(get(dOt), divS(get(T), int(TILE_ROWS)), get(hd), get(dS), bytes(get(T)), get(T), int(0)),
    ...forRange(r, int(0), get(T), int(1), dsRow),
    // gq_h = dS · K_g.
    ...call(PACK_ROWS, add(add(get(k), get(kb)), bytes(mul(get(g), get(hd)))), get(ldk), get(bp), get(T), int(0), divS(get(hd), int(PANEL_COLS))),
    ...product(get(dSa), divS(get(T), int(TILE_ROWS)), get(T), add(add(get(gq), get(qb)), bytes(mul(get(h), get(hd)))), get(ldq), get(hd), int(0)),
    // gk_g (+)= dSᵀ · Q_h.
    ...call(PACK_ROWS, add(add(get(q), get(qb)), bytes(mul(get(h), get(hd)))), get(ldq), get(bp), get(T), int(0), divS(get(hd), int(PANEL_COLS))),
    ...product(get(dSt), divS(get(T), int(TILE_ROWS)), get(T), add(add(get(gk), get(kb)), bytes(mul(get(g), get(hd)))), get(ldk), get(hd), eq(get(first), int(0))),
    // gv_g (+)= Pᵀ · dO_h.
    ...call(PACK_ROWS, add(add(get(dO), get(qb)), bytes(mul(get(h), get(hd)))), get(ldq), get(bp), get(T), int(0), divS(get(hd), int(PANEL_COLS))),
    ...product(get(Pt), divS(get(T), int(TILE_ROWS)), get(T), add(add(get(gv), get(kb)), bytes(mul(get(g), get(hd)))), get(ldk), get(hd), eq(get(first), int(0))),
  ];
  const perItem = [
    ...set(b, divS(get(item), get(nKv))),
    ...set(g, sub(get(item), mul(get(b), get(nKv)))),
    ...set(qb, mul(mul(get(b), get(T)), get(ldq))),
    ...set(kb, mul(mul(get(b), get(T)), get(ldk))),
    ...set(pb, add(get(probs), bytes(mul(mul(mul(get(b), get(nHeads)), get(T)), get(T))))),
    ...set(hEnd, mul(add(get(g), int(1)), get(group))),
    ...forRange(h, mul(get(g), get(group)), get(hEnd), int(1), perHead),
  ];
  const body = [
    ...set(vscale, f32x4Splat(f32FromBits(get(scaleBits)))),
    ...set(group, divS(get(nHeads), get(nKv))),
    ...set(ldq, bytes(mul(get(nHeads), get(hd)))),
    ...set(ldk, bytes(mul(get(nKv), get(hd)))),
    ...set(dOt, add(get(scratch), mul(get(thread), get(scratchBytes)))),
    ...set(dS, add(get(dOt), bytes(mul(get(T), get(hd))))),
    ...set(dSa, add(get(dS), bytes(mul(get(T), get(T))))),
    ...set(dSt, add(get(dSa), bytes(mul(get(T), get(T))))),
    ...set(Pt, add(get(dSt), bytes(mul(get(T), get(T))))),
    ...set(bp, add(get(Pt), bytes(mul(get(T), get(T))))),
    ...forRange(item, get(i0), get(i1), int(1), perItem),
  ];
  return { fn, body };
}

/** Floats of attendBackward's scratch per thread. */
export function attendBackwardScratch(T: number, hd: number): number {
  return 2 * T * hd + 4 * T * T;
}

/** Activation kinds of `activate`. */
export const ACTIVATION_KINDS = { silu: 0, gelu_tanh: 1 } as const;

/**
 * e = e^−x (silu, kind 0) or e^−2u with u = √(2/π)(x + 0.044715x³) (gelu_tanh, kind 1), so that the
 * activation is x / (1 + e); t, n and r are scratch.
 */
function activationExp(k: (v: number) => Code, kind: Local, x: Local, t: Local, e: Local, n: Local, r: Local): Code {
  const c = Math.sqrt(2 / Math.PI);
  return [
    ...ifThen(
      get(kind),
      set(t, f32x4Mul(k(-2 * c), f32x4Add(get(x), f32x4Mul(k(0.044715), f32x4Mul(get(x), f32x4Mul(get(x), get(x))))))),
      set(t, f32x4Sub(vZero(), get(x))),
    ),
    ...vExp(k, e, t, n, r),
  ];
}

/**
 * dst = act(src) (· up where up ≠ 0) over vectors i0..i1 of 4 floats: silu(x) = x / (1 + e^−x),
 * gelu_tanh(x) = x / (1 + e^−2u) with u = √(2/π)(x + 0.044715x³) (= 0.5x(1 + tanh u)).
 */
function activateFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('activate', [i32, i32, i32, i32, i32, i32, i32]);
  const [, i0, i1, src, up, dst, kind] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local];
  const { init, k } = vConstants(fn);
  const i = fn.local(i32);
  const o = fn.local(i32);
  const x = fn.local(v128);
  const t = fn.local(v128);
  const e = fn.local(v128);
  const n = fn.local(v128);
  const r = fn.local(v128);
  const body = forRange(i, get(i0), get(i1), int(1), [
    ...set(o, mul(get(i), int(16))),
    ...set(x, vLoad(add(get(src), get(o)))),
    ...activationExp(k, kind, x, t, e, n, r),
    ...set(x, f32x4Div(get(x), f32x4Add(k(1), get(e)))),
    ...ifThen(get(up), set(x, f32x4Mul(get(x), vLoad(add(get(up), get(o)))))),
    ...vStore(add(get(dst), get(o)), get(x)),
  ]);
  return { fn, body: [...init.flat(), ...body] };
}

/**
 * The activation and its derivative (training) over vectors i0..i1 of 4 floats: act = act(src),
 * slope = act'(src). silu: σ = 1 / (1 + e^−x), act = x·σ, slope = σ·(1 + x·(1 − σ)); gelu_tanh:
 * σ = 1 / (1 + e^−2u) with u = √(2/π)(x + 0.044715x³), act = x·σ (= 0.5x(1 + tanh u)),
 * slope = σ + 2x·σ(1 − σ)·√(2/π)(1 + 3·0.044715x²).
 */
function activateSlopeFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('activateSlope', [i32, i32, i32, i32, i32, i32, i32]);
  const [, i0, i1, src, act, slope, kind] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local];
  const { init, k } = vConstants(fn);
  const i = fn.local(i32);
  const o = fn.local(i32);
  const x = fn.local(v128);
  const t = fn.local(v128);
  const e = fn.local(v128);
  const n = fn.local(v128);
  const r = fn.local(v128);
  const sg = fn.local(v128);
  const c = Math.sqrt(2 / Math.PI);
  const body = forRange(i, get(i0), get(i1), int(1), [
    ...set(o, mul(get(i), int(16))),
    ...set(x, vLoad(add(get(src), get(o)))),
    ...activationExp(k, kind, x, t, e, n, r),
    ...set(sg, f32x4Div(k(1), f32x4Add(k(1), get(e)))),
    ...vStore(add(get(act), get(o)), f32x4Mul(get(x), get(sg))),
    ...ifThen(
      get(kind),
      set(t, f32x4Add(get(sg), f32x4Mul(f32x4Mul(f32x4Mul(k(2 * c), get(x)), f32x4Mul(get(sg), f32x4Sub(k(1), get(sg)))), f32x4Add(k(1), f32x4Mul(k(3 * 0.044715), f32x4Mul(get(x), get(x))))))),
      set(t, f32x4Mul(get(sg), f32x4Add(k(1), f32x4Mul(get(x), f32x4Sub(k(1), get(sg)))))),
    ),
    ...vStore(add(get(slope), get(o)), get(t)),
  ]);
  return { fn, body: [...init.flat(), ...body] };
}

/**
 * Next-token cross-entropy over rows r0..r1 of logits [rows, vocab] (vocab a multiple of 4): where
 * targets[r] ≥ 0, g's row = weight · (softmax(row) − one-hot(target)) and stats[2r], stats[2r + 1] =
 * the row's max and Σ e^(x − max) (the caller takes the log); rows without a target are left alone.
 */
function crossEntropyFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('crossEntropy', [i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [, r0, r1, logits, vocab, targets, g, weightBits, stats] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const { init, k } = vConstants(fn);
  const [rr, tg, row, grow, j, rowBytes] = Array.from({ length: 6 }, () => fn.local(i32)) as [Local, Local, Local, Local, Local, Local];
  const m = fn.local(f32);
  const total = fn.local(f32);
  const w = fn.local(f32);
  const vm = fn.local(v128);
  const vs = fn.local(v128);
  const x = fn.local(v128);
  const e = fn.local(v128);
  const n = fn.local(v128);
  const r = fn.local(v128);
  const lanes = (v: Local, op: (a: Code, b: Code) => Code): Code =>
    op(op(f32x4ExtractLane(get(v), 0), f32x4ExtractLane(get(v), 1)), op(f32x4ExtractLane(get(v), 2), f32x4ExtractLane(get(v), 3)));
  const perRow = [
    ...set(tg, i32LoadAt(add(get(targets), mul(get(rr), int(4))))),
    ...ifThen(geS(get(tg), int(0)), [
      ...set(row, add(get(logits), mul(get(rr), get(rowBytes)))),
      ...set(grow, add(get(g), mul(get(rr), get(rowBytes)))),
      ...set(vm, vLoad(get(row))),
      ...forRange(j, int(16), get(rowBytes), int(16), set(vm, f32x4Max(get(vm), vLoad(add(get(row), get(j)))))),
      ...set(m, lanes(vm, f32Max)),
      ...set(vm, f32x4Splat(get(m))),
      ...set(vs, vZero()),
      ...forRange(j, int(0), get(rowBytes), int(16), [
        ...set(x, f32x4Sub(vLoad(add(get(row), get(j))), get(vm))),
        ...vExp(k, e, x, n, r),
        ...vStore(add(get(grow), get(j)), get(e)),
        ...set(vs, f32x4Add(get(vs), get(e))),
      ]),
      ...set(total, lanes(vs, f32Add)),
      ...set(vs, f32x4Splat(f32Div(get(w), get(total)))),
      ...forRange(j, int(0), get(rowBytes), int(16), vStore(add(get(grow), get(j)), f32x4Mul(vLoad(add(get(grow), get(j))), get(vs)))),
      ...set(j, add(get(grow), mul(get(tg), int(4)))),
      ...f32Store(get(j), f32Sub(f32Load(get(j)), get(w))),
      ...f32Store(add(get(stats), mul(get(rr), int(8))), get(m)),
      ...f32Store(add(get(stats), mul(get(rr), int(8))), get(total), 4),
    ]),
  ];
  return {
    fn,
    body: [...init.flat(), ...set(w, f32FromBits(get(weightBits))), ...set(rowBytes, mul(get(vocab), int(4))), ...forRange(rr, get(r0), get(r1), int(1), perRow)],
  };
}

/** The sum of v's four lanes. */
function laneSum(v: Local): Code {
  return f32Add(f32Add(f32x4ExtractLane(get(v), 0), f32x4ExtractLane(get(v), 1)), f32Add(f32x4ExtractLane(get(v), 2), f32x4ExtractLane(get(v), 3)));
}

/**
 * RMS norm over rows r0..r1 of x [rows, n] (n a multiple of 4): inv[r] = 1 / √(Σ x² · invN + eps),
 * out = x · inv[r] · gain (gain [n]: w, or 1 + w, formed by the caller).
 */
function rmsNormFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('rmsNorm', new Array<number>(10).fill(i32) as (typeof i32)[]);
  const [, r0, r1, x, gain, out, inv, n, epsBits, invNBits] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [r, j, row, rowBytes] = Array.from({ length: 4 }, () => fn.local(i32)) as [Local, Local, Local, Local];
  const iv = fn.local(f32);
  const acc = fn.local(v128);
  const v = fn.local(v128);
  const perRow = [
    ...set(row, mul(get(r), get(rowBytes))),
    ...set(acc, vZero()),
    ...forRange(j, int(0), get(rowBytes), int(16), [...set(v, vLoad(add(get(x), add(get(row), get(j))))), ...set(acc, f32x4Add(get(acc), f32x4Mul(get(v), get(v))))]),
    ...set(iv, f32Div(f32Const(1), f32Sqrt(f32Add(f32Mul(laneSum(acc), f32FromBits(get(invNBits))), f32FromBits(get(epsBits)))))),
    ...f32Store(add(get(inv), mul(get(r), int(4))), get(iv)),
    ...set(v, f32x4Splat(get(iv))),
    ...forRange(j, int(0), get(rowBytes), int(16), vStore(add(get(out), add(get(row), get(j))), f32x4Mul(f32x4Mul(vLoad(add(get(x), add(get(row), get(j)))), get(v)), vLoad(add(get(gain), get(j)))))),
  ];
  return { fn, body: [...set(rowBytes, mul(get(n), int(4))), ...forRange(r, get(r0), get(r1), int(1), perRow)] };
}

/**
 * The backward of rmsNorm over rows r0..r1, from its inv: with x̂ = x · inv[r],
 * gx = inv[r] · (g · gain − x̂ · Σ(g · gain · x̂) / n) (written, not added), and this thread's partial
 * gradient of the gain, wg[thread] [n] += g · x̂ (the caller zeroes the partials and sums them).
 */
function rmsNormBackwardFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('rmsNormBackward', new Array<number>(11).fill(i32) as (typeof i32)[]);
  const [thread, r0, r1, x, gain, g, inv, gx, wg, n, invNBits] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [r, j, row, rowBytes, wp] = Array.from({ length: 5 }, () => fn.local(i32)) as [Local, Local, Local, Local, Local];
  const vi = fn.local(v128);
  const acc = fn.local(v128);
  const xh = fn.local(v128);
  const gg = fn.local(v128);
  const gv = fn.local(v128);
  const at = (base: Local): Code => add(get(base), add(get(row), get(j)));
  const perRow = [
    ...set(row, mul(get(r), get(rowBytes))),
    ...set(vi, vLoadSplat(add(get(inv), mul(get(r), int(4))))),
    ...set(acc, vZero()),
    ...forRange(j, int(0), get(rowBytes), int(16), [
      ...set(xh, f32x4Mul(vLoad(at(x)), get(vi))),
      ...set(gv, vLoad(at(g))),
      ...set(acc, f32x4Add(get(acc), f32x4Mul(f32x4Mul(get(gv), vLoad(add(get(gain), get(j)))), get(xh)))),
      ...vStore(add(get(wp), get(j)), f32x4Add(vLoad(add(get(wp), get(j))), f32x4Mul(get(gv), get(xh)))),
    ]),
    ...set(gg, f32x4Splat(f32Mul(laneSum(acc), f32FromBits(get(invNBits))))),
    ...forRange(j, int(0), get(rowBytes), int(16), [
      ...set(xh, f32x4Mul(vLoad(at(x)), get(vi))),
      ...vStore(at(gx), f32x4Mul(get(vi), f32x4Sub(f32x4Mul(vLoad(at(g)), vLoad(add(get(gain), get(j)))), f32x4Mul(get(xh), get(gg))))),
    ]),
  ];
  return {
    fn,
    body: [...set(rowBytes, mul(get(n), int(4))), ...set(wp, add(get(wg), mul(get(thread), get(rowBytes)))), ...forRange(r, get(r0), get(r1), int(1), perRow)],
  };
}

/**
 * A sparse code's reconstruction for tokens t0..t1 (d a multiple of 4; all sizes in floats):
 * hb[t] = decB[0..d) + Σ_q val[q] · decW[idx[q]], hf[t] = decB[d..2d) + Σ_q val[q] · decW[D + idx[q]]
 * over the token's kept pairs q in [rowPtr[t], rowPtr[t+1]); decW is [2·D, d] (base rows, then ft).
 */
function sparseDecodeFunction(relaxed: boolean): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('sparseDecode', new Array<number>(12).fill(i32) as (typeof i32)[]);
  const [, t0, t1, rowPtr, idx, val, decW, decB, hb, hf, d, D] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [t, q, i, o, ob, of, rowBytes, ftBytes] = Array.from({ length: 8 }, () => fn.local(i32)) as [Local, Local, Local, Local, Local, Local, Local, Local];
  const v = fn.local(v128);
  const madd = (acc: Code, x: Code, y: Code): Code => (relaxed ? f32x4RelaxedMadd(x, y, acc) : f32x4Add(acc, f32x4Mul(x, y)));
  const perPair = [
    ...set(v, vLoadSplat(add(get(val), mul(get(q), int(4))))),
    ...set(ob, add(get(decW), mul(i32LoadAt(add(get(idx), mul(get(q), int(4)))), get(rowBytes)))),
    ...set(of, add(get(ob), get(ftBytes))),
    ...forRange(i, int(0), get(rowBytes), int(16), [
      ...vStore(add(get(hb), add(get(o), get(i))), madd(vLoad(add(get(hb), add(get(o), get(i)))), get(v), vLoad(add(get(ob), get(i))))),
      ...vStore(add(get(hf), add(get(o), get(i))), madd(vLoad(add(get(hf), add(get(o), get(i)))), get(v), vLoad(add(get(of), get(i))))),
    ]),
  ];
  const perToken = [
    ...set(o, mul(get(t), get(rowBytes))),
    ...forRange(i, int(0), get(rowBytes), int(16), [
      ...vStore(add(get(hb), add(get(o), get(i))), vLoad(add(get(decB), get(i)))),
      ...vStore(add(get(hf), add(get(o), get(i))), vLoad(add(add(get(decB), get(rowBytes)), get(i)))),
    ]),
    ...forRange(q, i32LoadAt(add(get(rowPtr), mul(get(t), int(4)))), i32LoadAt(add(get(rowPtr), mul(add(get(t), int(1)), int(4)))), int(1), perPair),
  ];
  return {
    fn,
    body: [...set(rowBytes, mul(get(d), int(4))), ...set(ftBytes, mul(mul(get(D), get(d)), int(4))), ...forRange(t, get(t0), get(t1), int(1), perToken)],
  };
}

/**
 * The gradient of tokens t0..t1's kept pairs (one thread: pairs of different tokens add into the
 * same latent rows): with a = gb[t], b = gf[t] (dLoss/dx̂) and each pair (j, v),
 * df = Σ decW[j]·a + Σ decW[D + j]·b + extra · w[j]; gDecW[j] += v·a, gDecW[D + j] += v·b;
 * gEncW[j] += df·xb[t], gEncW[D + j] += df·xf[t]; gEncB[j] += df. d a multiple of 4.
 */
function sparseGradFunction(relaxed: boolean): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('sparseGrad', new Array<number>(18).fill(i32) as (typeof i32)[]);
  const [, t0, t1, rowPtr, idx, val, xb, xf, gb, gf, decW, gDecW, gEncW, gEncB, w, extraBits, d, D] = fn.params() as Local[] as [
    Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local,
  ];
  const [t, q, i, j, o, rb, rf, rowBytes, ftBytes, ga] = Array.from({ length: 10 }, () => fn.local(i32)) as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const df = fn.local(f32);
  const v = fn.local(v128);
  const acc = fn.local(v128);
  const a = fn.local(v128);
  const b = fn.local(v128);
  const madd = (c: Code, x: Code, y: Code): Code => (relaxed ? f32x4RelaxedMadd(x, y, c) : f32x4Add(c, f32x4Mul(x, y)));
  const at = (base: Local, off: Local): Code => add(get(base), get(off));
  const perPair = [
    ...set(j, i32LoadAt(add(get(idx), mul(get(q), int(4))))),
    ...set(v, vLoadSplat(add(get(val), mul(get(q), int(4))))),
    ...set(rb, mul(get(j), get(rowBytes))),
    ...set(rf, add(get(rb), get(ftBytes))),
    ...set(acc, vZero()),
    ...forRange(i, int(0), get(rowBytes), int(16), [
      ...set(ga, add(get(o), get(i))),
      ...set(a, vLoad(at(gb, ga))),
      ...set(b, vLoad(at(gf, ga))),
      ...set(acc, madd(madd(get(acc), vLoad(add(at(decW, rb), get(i))), get(a)), vLoad(add(at(decW, rf), get(i))), get(b))),
      ...vStore(add(at(gDecW, rb), get(i)), madd(vLoad(add(at(gDecW, rb), get(i))), get(v), get(a))),
      ...vStore(add(at(gDecW, rf), get(i)), madd(vLoad(add(at(gDecW, rf), get(i))), get(v), get(b))),
    ]),
    ...set(df, f32Add(
      f32Add(f32Add(f32x4ExtractLane(get(acc), 0), f32x4ExtractLane(get(acc), 1)), f32Add(f32x4ExtractLane(get(acc), 2), f32x4ExtractLane(get(acc), 3))),
      f32Mul(f32FromBits(get(extraBits)), f32Load(add(get(w), mul(get(j), int(4))))),
    )),
    ...set(v, f32x4Splat(get(df))),
    ...forRange(i, int(0), get(rowBytes), int(16), [
      ...set(ga, add(get(o), get(i))),
      ...vStore(add(at(gEncW, rb), get(i)), madd(vLoad(add(at(gEncW, rb), get(i))), get(v), vLoad(at(xb, ga)))),
      ...vStore(add(at(gEncW, rf), get(i)), madd(vLoad(add(at(gEncW, rf), get(i))), get(v), vLoad(at(xf, ga)))),
    ]),
    ...f32Store(add(get(gEncB), mul(get(j), int(4))), f32Add(f32Load(add(get(gEncB), mul(get(j), int(4)))), get(df))),
  ];
  const perToken = [
    ...set(o, mul(get(t), get(rowBytes))),
    ...forRange(q, i32LoadAt(add(get(rowPtr), mul(get(t), int(4)))), i32LoadAt(add(get(rowPtr), mul(add(get(t), int(1)), int(4)))), int(1), perPair),
  ];
  return {
    fn,
    body: [...set(rowBytes, mul(get(d), int(4))), ...set(ftBytes, mul(mul(get(D), get(d)), int(4))), ...forRange(t, get(t0), get(t1), int(1), perToken)],
  };
}

export const GEMM_TILE_ROWS = TILE_ROWS;
export const GEMM_PANEL_COLS = PANEL_COLS;

/** The exports of the module (all addresses and strides in bytes). */
export interface GemmExports {
  packKv(thread: number, g0: number, g1: number, kraw: number, vraw: number, ldkv: number, kpack: number, vpack: number, hd: number, S: number): void;
  attend(...args: number[]): void;
  activate(thread: number, i0: number, i1: number, src: number, up: number, dst: number, kind: number): void;
  sparseDecode(thread: number, t0: number, t1: number, rowPtr: number, idx: number, val: number, decW: number, decB: number, hb: number, hf: number, d: number, D: number): void;
  sparseGrad(...args: number[]): void;
  attendBackward(...args: number[]): void;
  activateSlope(thread: number, i0: number, i1: number, src: number, act: number, slope: number, kind: number): void;
  crossEntropy(thread: number, r0: number, r1: number, logits: number, vocab: number, targets: number, g: number, weightBits: number, stats: number): void;
  rmsNorm(thread: number, r0: number, r1: number, x: number, gain: number, out: number, inv: number, n: number, epsBits: number, invNBits: number): void;
  rmsNormBackward(thread: number, r0: number, r1: number, x: number, gain: number, g: number, inv: number, gx: number, wg: number, n: number, invNBits: number): void;
  work(thread: number, p0: number, p1: number, ap: number, K: number, bsrc: number, ldb: number, transposed: number, bp: number, c: number, ldc: number, tiles: number, kcBlock: number, mcTiles: number, format: number, accumulate: number): void;
  packTiles(src: number, K: number, dst: number, tiles: number): void;
}

/**
 * The float32 product's kernels for another module (the resident matrix of analysis/linalg/wasm.ts):
 * the tile kernel, the two packings of float32 B and the blocked product over packed operands, in
 * this order and first in that module, since the product calls the tile kernel as function 0.
 */
export function gemmKernelFunctions(relaxed: boolean): Array<{ fn: FunctionBuilder; body: Code }> {
  return [tilesFunction(relaxed), packRowsFunction('f32'), packColumnsFunction('f32'), gemmFunction()];
}

/**
 * The module's bytes; a shared memory import lets worker threads instantiate it over one memory.
 * `relaxed` uses relaxed SIMD's fused multiply-add (validate before use: not every engine has it).
 */
export function gemmModuleBytes(memory: { initialPages: number; maximumPages: number; shared: boolean }, relaxed = false): Uint8Array<ArrayBuffer> {
  return encodeModule(memory, [
    tilesFunction(relaxed),
    packRowsFunction('f32'),
    packColumnsFunction('f32'),
    packRowsFunction('f16'),
    packColumnsFunction('f16'),
    packRowsFunction('bf16'),
    packColumnsFunction('bf16'),
    gemmFunction(),
    workFunction(),
    packKvFunction(),
    attendFunction(),
    activateFunction(),
    sparseDecodeFunction(relaxed),
    sparseGradFunction(relaxed),
    packTilesFunction(),
    attendBackwardFunction(),
    activateSlopeFunction(),
    crossEntropyFunction(),
    rmsNormFunction(),
    rmsNormBackwardFunction(),
  ]);
}
