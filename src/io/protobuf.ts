// The protobuf wire format, as much as ONNX needs: fields are (number, wire type) tags followed by a
// varint, a fixed 4 or 8 bytes, or a length-delimited payload (strings, bytes, nested messages and
// packed repeated numbers). Readers work on bytes in memory or walk a ByteSource by byte range.
import { FormatError, type ByteSource } from './source.ts';

export const VARINT = 0;
export const I64 = 1;
export const LEN = 2;
export const I32 = 5;

export interface Field {
  readonly no: number;
  readonly wire: number;
  /** The value of a varint field. */
  readonly value: bigint;
  /** Byte range of the payload (LEN, I32, I64), absolute in the buffer or source. */
  readonly start: number;
  readonly end: number;
  /** Where the field's tag starts: [tag, end) is the whole field. */
  readonly tag: number;
}

export class ProtoError extends Error {}

export function readVarint(buf: Uint8Array, pos: number, end = buf.length): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= end) throw new ProtoError('varint runs past the end of its message');
    const b = buf[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [result, pos];
    shift += 7n;
    if (shift > 63n) throw new ProtoError('varint longer than 10 bytes');
  }
}

function payloadLength(wire: number, tagNo: number): number | undefined {
  if (wire === I32) return 4;
  if (wire === I64) return 8;
  if (wire === VARINT || wire === LEN) return undefined;
  throw new ProtoError(`field ${tagNo} has wire type ${wire}, which protobuf does not define (or groups, which ONNX does not use)`);
}

/** The fields of a message held in memory, in order. */
export function* fields(buf: Uint8Array, start = 0, end = buf.length): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const at = pos;
    const [tag, p] = readVarint(buf, pos, end);
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    pos = p;
    if (wire === VARINT) {
      const [value, q] = readVarint(buf, pos, end);
      pos = q;
      yield { no, wire, value, start: pos, end: pos, tag: at };
      continue;
    }
    let len = payloadLength(wire, no);
    if (len === undefined) {
      const [l, q] = readVarint(buf, pos, end);
      len = Number(l);
      pos = q;
    }
    if (pos + len > end) throw new ProtoError(`field ${no} of ${len} bytes runs past the end of its message`);
    yield { no, wire, value: 0n, start: pos, end: pos + len, tag: at };
    pos += len;
  }
}

const utf8 = new TextDecoder();
export const str = (buf: Uint8Array, f: Field): string => utf8.decode(buf.subarray(f.start, f.end));

/** Numbers of a repeated varint field, packed (LEN) or one per field (VARINT). */
export function varints(buf: Uint8Array, f: Field): bigint[] {
  return f.wire === VARINT ? [f.value] : packedVarints(buf.subarray(f.start, f.end));
}

export function packedVarints(bytes: Uint8Array): bigint[] {
  const out: bigint[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const [v, p] = readVarint(bytes, pos);
    out.push(v);
    pos = p;
  }
  return out;
}

/** Reads a message from a ByteSource field by field, fetching a window at a time. */
export class SourceCursor {
  private window: Uint8Array = new Uint8Array(0);
  private windowStart = 0;

  constructor(
    private readonly src: ByteSource,
    private pos: number,
    private readonly end: number,
    private readonly chunk = 1 << 16,
  ) {}

  private async bytesAt(pos: number, n: number): Promise<Uint8Array> {
    if (pos < this.windowStart || pos + n > this.windowStart + this.window.length) {
      const len = Math.min(Math.max(n, this.chunk), this.end - pos);
      this.window = await this.src.read(pos, len);
      this.windowStart = pos;
    }
    return this.window.subarray(pos - this.windowStart, pos - this.windowStart + n);
  }

  /** The next field, or undefined at the end. Payloads are not read: use `read` for the ones wanted. */
  async next(): Promise<Field | undefined> {
    if (this.pos >= this.end) return undefined;
    const head = await this.bytesAt(this.pos, Math.min(20, this.end - this.pos));
    const [tag, p] = readVarint(head, 0);
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    let at = p;
    let value = 0n;
    let len = 0;
    if (wire === VARINT) [value, at] = readVarint(head, at);
    else {
      const fixed = payloadLength(wire, no);
      if (fixed === undefined) {
        const [l, q] = readVarint(head, at);
        len = Number(l);
        at = q;
      } else len = fixed;
    }
    const tagAt = this.pos;
    const start = this.pos + at;
    if (start + len > this.end) throw new ProtoError(`field ${no} of ${len} bytes at byte ${start} runs past the end of its message (byte ${this.end})`);
    this.pos = start + len;
    return { no, wire, value, start, end: start + len, tag: tagAt };
  }

  async read(f: Field): Promise<Uint8Array> {
    return f.end - f.start <= this.chunk ? this.bytesAt(f.start, f.end - f.start) : this.src.read(f.start, f.end - f.start);
  }
}

/** Runs `fn`, turning protobuf decoding errors into a FormatError naming the file. */
export async function withProtoErrors<T>(file: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ProtoError) throw new FormatError(file, `${what}: ${e.message} (the file is truncated or not protobuf)`);
    throw e;
  }
}

export function encodeVarint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const varintField = (no: number, v: number | bigint): Uint8Array => new Uint8Array([...encodeVarint(no << 3), ...encodeVarint(v)]);

export function lenField(no: number, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return concatBytes([new Uint8Array([...encodeVarint((no << 3) | LEN), ...encodeVarint(bytes.length)]), bytes]);
}

/** A message from its encoded fields. */
export const message = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);
