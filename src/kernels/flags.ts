// Tunables of the WebGPU kernels. Defaults suit discrete and integrated GPUs; tests switch them to
// exercise every variant. Changing a flag changes the pipeline key, so no stale pipeline is reused.

export interface KernelFlags {
  /** Matmul outputs per thread along M. */
  matmulTileM: number;
  /** Matmul outputs per thread along N (a multiple of 4: accumulators are vec4). */
  matmulTileN: number;
  /** Matmul threads per workgroup along M. */
  matmulWorkgroupM: number;
  /** Matmul threads per workgroup along N. */
  matmulWorkgroupN: number;
  /** Depth of the K slice held in workgroup memory per step. */
  matmulTileK: number;
  /** Load A and B as vec4 where the layout allows (K, or N for untransposed B, a multiple of 4). */
  matmulVec4: boolean;
  /** Read f16 weights as native f16 where the device has shader-f16 (else unpacked from u32). */
  matmulNativeF16: boolean;
  /** Rows up to which A·Bᵀ uses the matrix-vector kernel (one workgroup per output column block). */
  matvecMaxM: number;
  /** Threads per workgroup of row reductions (norms, softmax, sums, top-k); a power of two. */
  reduceWorkgroupSize: number;
  /** Dispatches recorded before the backend submits them. */
  dispatchesPerSubmit: number;
  /** Bytes above which createEmpty keeps a tensor as row blocks; 0: the device's storage binding limit. */
  maxBindingBytes: number;
  /** Logit lens: rows per thread of a logits tile. */
  lensTileM: number;
  /** Logit lens: threads per workgroup along rows. */
  lensWorkgroupM: number;
  /** Logit lens: tokens per thread of a logits tile. */
  lensTileN: number;
  /** Logit lens: threads per workgroup along tokens (a multiple of lensTileM: each tile row is folded by lensWorkgroupN / lensTileM threads). */
  lensWorkgroupN: number;
  /** Logit lens: depth of the K slice held in workgroup memory per step. */
  lensTileK: number;
  /** Logit lens: workgroups a pass aims for, reached by splitting the vocabulary into slices when there are few row tiles. */
  lensTargetWorkgroups: number;
  /**
   * Training GEMM (backward products, LoRA merge): 'tiled' stages 16×16 tiles in workgroup memory;
   * 'untiled' has each thread walk K from storage (several times faster on software adapters such as
   * SwiftShader, where barriers are costly); 'auto' is untiled on a fallback adapter, else tiled.
   */
  trainGemm: 'auto' | 'tiled' | 'untiled';
}

export const DEFAULT_FLAGS: Readonly<KernelFlags> = {
  matmulTileM: 4,
  matmulTileN: 4,
  matmulWorkgroupM: 8,
  matmulWorkgroupN: 8,
  matmulTileK: 32,
  matmulVec4: true,
  matmulNativeF16: true,
  matvecMaxM: 4,
  reduceWorkgroupSize: 256,
  dispatchesPerSubmit: 64,
  maxBindingBytes: 0,
  lensTileM: 2,
  lensWorkgroupM: 8,
  lensTileN: 4,
  lensWorkgroupN: 16,
  lensTileK: 16,
  lensTargetWorkgroups: 256,
  trainGemm: 'auto',
};

export const flags: KernelFlags = { ...DEFAULT_FLAGS };

export function setFlags(changes: Partial<KernelFlags>): void {
  Object.assign(flags, changes);
}

export function resetFlags(): void {
  Object.assign(flags, DEFAULT_FLAGS);
}
