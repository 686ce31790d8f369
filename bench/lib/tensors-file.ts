// Tensors that cross between the Node side of a benchmark and its Python peer, as a safetensors file.
import { readFile, writeFile } from 'node:fs/promises';
import { pathSource } from '../../src/io/node-source.ts';
import { readSafetensorsHeader, writeSafetensors } from '../../src/io/safetensors.ts';

export interface HostTensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

export async function writeTensors(path: string, tensors: Record<string, HostTensor>): Promise<void> {
  const list = Object.entries(tensors).map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
  await writeFile(path, writeSafetensors(list));
}

/** Every F32 and I32 tensor of a file written by bench/py/common.py's write_safetensors. */
export async function readTensors(path: string): Promise<Map<string, HostTensor>> {
  const file = await readSafetensorsHeader(await pathSource(path));
  const bytes = await readFile(path);
  const out = new Map<string, HostTensor>();
  for (const [name, e] of file.entries) {
    const raw = bytes.buffer.slice(bytes.byteOffset + e.offset, bytes.byteOffset + e.offset + e.byteLength);
    if (e.dtype === 'F32') out.set(name, { shape: [...e.shape], data: new Float32Array(raw) });
    else if (e.dtype === 'I32') out.set(name, { shape: [...e.shape], data: new Int32Array(raw) });
    else throw new Error(`${path}: tensor "${name}" is ${e.dtype}; bench files hold F32 and I32 only`);
  }
  return out;
}

export function tensor(map: Map<string, HostTensor>, name: string): HostTensor {
  const t = map.get(name);
  if (!t) throw new Error(`the Python peer wrote no tensor "${name}"`);
  return t;
}
