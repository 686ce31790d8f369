// Elementwise kernels, one thread per output element over a folded grid of 256-thread workgroups.

import { ACTIVATIONS_WGSL, FLAT_GROUP_WGSL } from '../common.ts';

/** a op b, with b indexed modulo its length (last-dimension broadcast). OP: 0 add, 1 sub, 2 mul. */
export const binaryWgsl = /* wgsl */ `
override OP: u32 = 0u;
struct Params { n: u32, bn: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  let x = a[i];
  let y = b[i % p.bn];
  switch (OP) {
    case 0u: { out[i] = x + y; }
    case 1u: { out[i] = x - y; }
    default: { out[i] = x * y; }
  }
}
`;

/** OP: 0 scale (x · s), 1 softcap (s · tanh(x / s)), 2 activation ACT. */
export const unaryWgsl = /* wgsl */ `
override OP: u32 = 0u;
override ACT: u32 = 0u;
struct Params { n: u32, s: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${ACTIVATIONS_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  let v = x[i];
  switch (OP) {
    case 0u: { out[i] = v * p.s; }
    case 1u: { out[i] = p.s * tanh_stable(v / p.s); }
    default: { out[i] = activate(v); }
  }
}
`;

/** act(gate) · up. */
export const gatedWgsl = /* wgsl */ `
override ACT: u32 = 0u;
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
${ACTIVATIONS_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  out[i] = activate(gate[i]) * up[i];
}
`;

/** f16 values stored two to a u32 (the bytes of an f16 tensor), widened to f32; needs no shader-f16. */
export const castF16Wgsl = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
${FLAT_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wid, nwg) * 256u + lid;
  if (i >= p.n) { return; }
  let pair = unpack2x16float(x[i >> 1u]);
  out[i] = select(pair.x, pair.y, (i & 1u) == 1u);
}
`;
