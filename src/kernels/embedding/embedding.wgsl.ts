// Row gather from an embedding table. The table binds as u32 words so one source serves f32 tables
// (bitcast) and f16 tables (two values per word), with or without shader-f16.

import { FLAT_GROUP_WGSL } from '../common.ts';

export const embeddingWgsl = /* wgsl */ `
override F16: bool = false;
struct Params { n: u32, d: u32, vocab: u32 }
@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  let id = u32(ids[i / p.d]);
  if (id >= p.vocab) { out[i] = 0.0; return; }
  let e = id * p.d + i % p.d;
  if (F16) {
    let pair = unpack2x16float(table[e >> 1u]);
    out[i] = select(pair.x, pair.y, (e & 1u) == 1u);
  } else {
    out[i] = bitcast<f32>(table[e]);
  }
}
`;
