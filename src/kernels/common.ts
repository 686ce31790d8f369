// Pieces shared by the kernels: dispatch grids, uniform packing, WGSL snippets.

/**
 * Workgroup grid for `groups` workgroups, folded into y when x would exceed the per-dimension limit.
 * Shaders recover the flat group index as `wid.y * nwg.x + wid.x` and return when it is past the end.
 */
export function grid(groups: number, maxPerDim: number): [number, number, number] {
  if (groups <= maxPerDim) return [groups, 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  if (y > maxPerDim) throw new RangeError(`${groups} workgroups exceed the device's dispatch limit`);
  return [maxPerDim, y, 1];
}

/** Uniform block of u32 fields followed by f32 fields, padded to 16 bytes; the WGSL struct lists them in the same order. */
export function packUniforms(u32: readonly number[], f32: readonly number[] = []): ArrayBuffer {
  const n = u32.length + f32.length;
  const buffer = new ArrayBuffer(Math.max(16, Math.ceil((n * 4) / 16) * 16));
  const u = new Uint32Array(buffer);
  const f = new Float32Array(buffer);
  u32.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform ${i} = ${v} is not a u32`);
    u[i] = v;
  });
  f32.forEach((v, i) => (f[u32.length + i] = v));
  return buffer;
}

/** Flat workgroup index over a folded grid (see grid()). */
export const FLAT_GROUP_WGSL = /* wgsl */ `
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.y * nwg.x + wid.x; }
`;

/** Tree reductions over a workgroup of WG threads (WG an override, a power of two). Call from uniform control flow. */
export const WORKGROUP_REDUCE_WGSL = /* wgsl */ `
var<workgroup> reduce_buf: array<f32, WG>;

fn workgroup_sum(v: f32, lid: u32) -> f32 {
  reduce_buf[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { reduce_buf[lid] = reduce_buf[lid] + reduce_buf[lid + s]; }
    workgroupBarrier();
  }
  let r = reduce_buf[0];
  workgroupBarrier();
  return r;
}

fn workgroup_max(v: f32, lid: u32) -> f32 {
  reduce_buf[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { reduce_buf[lid] = max(reduce_buf[lid], reduce_buf[lid + s]); }
    workgroupBarrier();
  }
  let r = reduce_buf[0];
  workgroupBarrier();
  return r;
}
`;

/**
 * Activations. erf: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). tanh is computed from exp
 * because some drivers return NaN from the builtin for large |x|; small |x| uses its series.
 */
export const ACTIVATIONS_WGSL = /* wgsl */ `
fn erf_approx(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
  return sign(x) * (1.0 - poly * exp(-a * a));
}

fn tanh_stable(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.125) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}

// ACT: 0 gelu (erf), 1 gelu_tanh, 2 silu, 3 relu.
fn activate(x: f32) -> f32 {
  switch (ACT) {
    case 0u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
    case 1u: { return 0.5 * x * (1.0 + tanh_stable(0.79788456080286536 * (x + 0.044715 * x * x * x))); }
    case 2u: { return x / (1.0 + exp(-x)); }
    default: { return max(x, 0.0); }
  }
}
`;

export const ACTIVATION_CODES = { gelu: 0, gelu_tanh: 1, silu: 2, relu: 3 } as const;
