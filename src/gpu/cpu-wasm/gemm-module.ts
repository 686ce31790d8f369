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
  call,
  eq,
  f32Bits,
  f32Const,
  f32FromBits,
  f32Mul,
  i32Load16U,
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

/** Packed A and B to C for panels p0..p1: blocks of K outermost, then blocks of tiles, then panels. */
function gemmFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('gemm', [i32, i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [ap, K, bp, c, ldc, tiles, p0, p1, kcBlock, mcTiles] = fn.params() as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
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
    gtS(get(k0), int(0)),
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
 * bits), then multiply them: one thread's share.
 */
function workFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('work', [i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [ap, K, bsrc, ldb, transposed, bp, c, ldc, tiles, p0, p1, kcBlock, mcTiles, format] = fn.params() as Local[] as [
    Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local,
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
      ...call(GEMM, get(ap), get(K), get(bp), get(c), get(ldc), get(tiles), get(p0), get(p1), get(kcBlock), get(mcTiles)),
    ],
  };
}

export const GEMM_TILE_ROWS = TILE_ROWS;
export const GEMM_PANEL_COLS = PANEL_COLS;

/** The exports of the module (all addresses and strides in bytes). */
export interface GemmExports {
  work(ap: number, K: number, bsrc: number, ldb: number, transposed: number, bp: number, c: number, ldc: number, tiles: number, p0: number, p1: number, kcBlock: number, mcTiles: number, format: number): void;
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
  ]);
}
