// Writes the bytes of a one-node ONNX model, Y = MatMul(A, B), without an ONNX library: only the
// few protobuf fields this graph needs (field numbers from onnx/onnx.proto3).
// B is an initializer, like a weight that stays resident; A is fed on every run.

const FLOAT = 1;
const WIRE_VARINT = 0;
const WIRE_BYTES = 2;

class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];

  private varint(value: number): void {
    const out: number[] = [];
    let v = value;
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
    this.chunks.push(Uint8Array.from(out));
  }

  int(field: number, value: number): this {
    this.varint(field * 8 + WIRE_VARINT);
    this.varint(value);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.varint(field * 8 + WIRE_BYTES);
    this.varint(value.byteLength);
    this.chunks.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const total = this.chunks.reduce((n, c) => n + c.byteLength, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.byteLength;
    }
    return out;
  }
}

function valueInfo(w: ProtoWriter, name: string, shape: readonly number[]): void {
  w.string(1, name).message(2, (type) =>
    type.message(1, (tensor) =>
      tensor.int(1, FLOAT).message(2, (dims) => {
        for (const d of shape) dims.message(1, (dim) => dim.int(1, d));
      }),
    ),
  );
}

/** ONNX model computing Y[M, N] = A[M, K] · B[K, N], with B baked in as an initializer. */
export function matmulModel(m: number, k: number, n: number, b: Float32Array): Uint8Array {
  if (b.length !== k * n) throw new Error(`matmulModel: B has ${b.length} values, expected ${k}×${n}`);
  const raw = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return new ProtoWriter()
    .int(1, 8) // ir_version
    .string(2, 'neurodiff-bench')
    .message(7, (graph) => {
      graph.message(1, (node) => node.string(1, 'A').string(1, 'B').string(2, 'Y').string(3, 'matmul').string(4, 'MatMul'));
      graph.string(2, 'matmul');
      graph.message(5, (init) => {
        init.int(1, k).int(1, n).int(2, FLOAT).string(8, 'B').bytes(9, raw);
      });
      graph.message(11, (w) => valueInfo(w, 'A', [m, k]));
      graph.message(12, (w) => valueInfo(w, 'Y', [m, n]));
    })
    .message(8, (opset) => opset.string(1, '').int(2, 17))
    .finish();
}
