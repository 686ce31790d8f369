// A small WebAssembly binary emitter: just enough of the format (one imported memory, functions,
// exports) and of the instruction set (i32, f32, SIMD f32x4, structured control) to write the GEMM
// kernels in TypeScript, so the repository needs no WebAssembly toolchain. Instructions are
// expressions that return their bytes; operands are emitted before the opcode, as the stack
// machine wants. Reference: https://webassembly.github.io/spec/core/binary/

export type Code = number[];

export const i32 = 0x7f;
export const f32 = 0x7d;
export const f64 = 0x7c;
export const v128 = 0x7b;
export type ValType = typeof i32 | typeof f32 | typeof f64 | typeof v128;

export interface Local {
  readonly index: number;
  readonly type: ValType;
}

function uleb(n: number): Code {
  const out: Code = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): Code {
  const out: Code = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function name(s: string): Code {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

function vector(items: Code[]): Code {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: Code): Code {
  return [id, ...uleb(body.length), ...body];
}

const seq = (...parts: Code[]): Code => parts.flat();
const simd = (opcode: number): Code => [0xfd, ...uleb(opcode)];
/** align is log2 of the access size (a hint); offset is added to the address operand. */
const memarg = (align: number, offset: number): Code => [...uleb(align), ...uleb(offset)];

// Locals and constants.
export const get = (l: Local): Code => [0x20, ...uleb(l.index)];
export const set = (l: Local, value: Code): Code => [...value, 0x21, ...uleb(l.index)];
export const int = (n: number): Code => [0x41, ...sleb(n | 0)];

// i32 arithmetic and comparisons (signed where it matters: all our values are small and positive).
const binary = (opcode: number) => (a: Code, b: Code): Code => [...a, ...b, opcode];
export const add = binary(0x6a);
export const sub = binary(0x6b);
export const mul = binary(0x6c);
export const divS = binary(0x6d);
export const remS = binary(0x6f);
export const ltS = binary(0x48);
export const gtS = binary(0x4a);
export const geS = binary(0x4e);
/** The smaller of a and b (select); each operand is evaluated twice, so pass locals or constants. */
export const minS = (a: Code, b: Code): Code => seq(a, b, ltS(a, b), [0x1b]);
/** The larger of a and b, as minS. */
export const maxS = (a: Code, b: Code): Code => seq(a, b, gtS(a, b), [0x1b]);

// Bit operations (i32) and scalar f32.
export const and = binary(0x71);
export const or = binary(0x72);
export const shl = binary(0x74);
export const eq = binary(0x46);
/** cond ? a : b (both evaluated). */
export const select = (a: Code, b: Code, cond: Code): Code => seq(a, b, cond, [0x1b]);
export const f32Const = (x: number): Code => {
  const bytes = new Uint8Array(new Float32Array([x]).buffer);
  return [0x43, ...bytes];
};
export const f32Add = binary(0x92);
export const f32Sub = binary(0x93);
export const f32Mul = binary(0x94);
export const f32Div = binary(0x95);
export const f32Max = binary(0x97);
export const f32Sqrt = (a: Code): Code => seq(a, [0x91]);
export const f32FromBits = (bits: Code): Code => seq(bits, [0xbe]);
export const f32Bits = (x: Code): Code => seq(x, [0xbc]);

// Memory: 16-bit integers, scalar f32 and 128-bit vectors.
export const i32LoadAt = (addr: Code, offset = 0): Code => seq(addr, [0x28], memarg(2, offset));
export const i32Load16U = (addr: Code, offset = 0): Code => seq(addr, [0x2f], memarg(1, offset));
export const f32Load = (addr: Code, offset = 0): Code => seq(addr, [0x2a], memarg(2, offset));
export const f32Store = (addr: Code, value: Code, offset = 0): Code => seq(addr, value, [0x38], memarg(2, offset));
export const vLoad = (addr: Code, offset = 0): Code => seq(addr, simd(0x00), memarg(4, offset));
export const vStore = (addr: Code, value: Code, offset = 0): Code => seq(addr, value, simd(0x0b), memarg(4, offset));
/** One f32 from memory in all four lanes. */
export const vLoadSplat = (addr: Code, offset = 0): Code => seq(addr, simd(0x09), memarg(2, offset));
export const vZero = (): Code => seq(simd(0x0c), new Array<number>(16).fill(0));
export const f32x4Add = (a: Code, b: Code): Code => seq(a, b, simd(0xe4));
export const f32x4Mul = (a: Code, b: Code): Code => seq(a, b, simd(0xe6));
/** Relaxed SIMD: a·b + c, fused where the hardware has FMA (the engine chooses; results may differ between engines). */
export const f32x4Sub = (a: Code, b: Code): Code => seq(a, b, simd(0xe5));
export const f32x4Div = (a: Code, b: Code): Code => seq(a, b, simd(0xe7));
export const f32x4Max = (a: Code, b: Code): Code => seq(a, b, simd(0xeb));
export const f32x4Min = (a: Code, b: Code): Code => seq(a, b, simd(0xe8));
/** Lanes of a ≥ b as all-ones masks. */
export const f32x4Ge = (a: Code, b: Code): Code => seq(a, b, simd(0x46));
/** Round to the nearest integer, ties to even. */
export const f32x4Nearest = (a: Code): Code => seq(a, simd(0x6a));
export const f32x4Splat = (x: Code): Code => seq(x, simd(0x13));
export const f32x4ExtractLane = (v: Code, lane: number): Code => seq(v, simd(0x1f), [lane]);
export const i32x4TruncSatF32x4 = (a: Code): Code => seq(a, simd(0xf8));
export const i32x4Splat = (x: Code): Code => seq(x, simd(0x11));
export const i32x4Add = (a: Code, b: Code): Code => seq(a, b, simd(0xae));
export const i32x4Shl = (a: Code, count: Code): Code => seq(a, count, simd(0xab));
export const vAnd = (a: Code, b: Code): Code => seq(a, b, simd(0x4e));
export const f32x4RelaxedMadd = (a: Code, b: Code, c: Code): Code => seq(a, b, c, simd(0x105));

// Scalar f64 and SIMD f64x2 (the float64 kernels of src/analysis/linalg).
export const f64Load = (addr: Code, offset = 0): Code => seq(addr, [0x2b], memarg(3, offset));
export const f64Store = (addr: Code, value: Code, offset = 0): Code => seq(addr, value, [0x39], memarg(3, offset));
export const f64Add = binary(0xa0);
export const f64Sub = binary(0xa1);
export const f64Mul = binary(0xa2);
/** One f64 from memory in both lanes. */
export const vLoad64Splat = (addr: Code, offset = 0): Code => seq(addr, simd(0x0a), memarg(3, offset));
export const f64x2Splat = (x: Code): Code => seq(x, simd(0x14));
export const f64x2Lane = (v: Code, lane: 0 | 1): Code => seq(v, simd(0x21), [lane]);
export const f64x2Add = (a: Code, b: Code): Code => seq(a, b, simd(0xf0));
export const f64x2Sub = (a: Code, b: Code): Code => seq(a, b, simd(0xf1));
export const f64x2Mul = (a: Code, b: Code): Code => seq(a, b, simd(0xf2));
/** Relaxed SIMD: a·b + c in f64x2, fused where the hardware has FMA. */
export const f64x2RelaxedMadd = (a: Code, b: Code, c: Code): Code => seq(a, b, c, simd(0x107));
export const f32x4Lane = (v: Code, lane: 0 | 1 | 2 | 3): Code => seq(v, simd(0x1f), [lane]);

// Structured control. Branch depths count enclosing blocks from the innermost (0).
export const call = (fn: number, ...args: Code[]): Code => seq(...args, [0x10], uleb(fn));
export const ifThen = (cond: Code, then: Code, otherwise?: Code): Code =>
  otherwise ? seq(cond, [0x04, 0x40], then, [0x05], otherwise, [0x0b]) : seq(cond, [0x04, 0x40], then, [0x0b]);

/** for (i = start; i < end; i += step) body, with the test at the bottom of the loop. */
export function forRange(i: Local, start: Code, end: Code, step: Code, body: Code): Code {
  return seq(
    set(i, start),
    [0x02, 0x40], // block
    geS(get(i), end), [0x0d, 0], // br_if 0: skip an empty range
    [0x03, 0x40], // loop
    body,
    set(i, add(get(i), step)),
    ltS(get(i), end), [0x0d, 0], // br_if 0: back to the loop head
    [0x0b, 0x0b],
  );
}

export class FunctionBuilder {
  private readonly localTypes: ValType[] = [];

  constructor(
    readonly exportName: string,
    private readonly paramTypes: readonly ValType[],
  ) {}

  /** The parameters, in order. */
  params(): Local[] {
    return this.paramTypes.map((type, index) => ({ index, type }));
  }

  local(type: ValType): Local {
    this.localTypes.push(type);
    return { index: this.paramTypes.length + this.localTypes.length - 1, type };
  }

  type(): Code {
    return [0x60, ...vector(this.paramTypes.map((t) => [t])), 0];
  }

  encodeBody(body: Code): Code {
    const locals = vector(this.localTypes.map((t) => [1, t]));
    const code = [...locals, ...body, 0x0b];
    return [...uleb(code.length), ...code];
  }
}

export interface MemoryImport {
  initialPages: number;
  maximumPages: number;
  shared: boolean;
}

/** A module importing `env.memory` and exporting every function under its name. */
export function encodeModule(memory: MemoryImport, functions: readonly { fn: FunctionBuilder; body: Code }[]): Uint8Array<ArrayBuffer> {
  const limits = seq([memory.shared ? 0x03 : 0x01], uleb(memory.initialPages), uleb(memory.maximumPages));
  const bytes = seq(
    [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    section(1, vector(functions.map((f) => f.fn.type()))),
    section(2, vector([seq(name('env'), name('memory'), [0x02], limits)])),
    section(3, vector(functions.map((_, i) => uleb(i)))),
    section(7, vector(functions.map((f, i) => seq(name(f.fn.exportName), [0x00], uleb(i))))),
    section(10, vector(functions.map((f) => f.fn.encodeBody(f.body)))),
  );
  return Uint8Array.from(bytes);
}
