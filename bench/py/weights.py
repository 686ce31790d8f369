"""Weight-diff peer: per tensor of two checkpoints, the statistics bench/weights-500m compares
(Frobenius norm of ΔW, relative change, cosine, sparsity, max |ΔW|; for matrices with ΔW ≠ 0 the
singular values by LAPACK, torch.linalg.svdvals in float32, giving σ1..σk, the nuclear norm and the
effective rank). One tensor pair is read at a time, as ours does. Options (JSON argv[1]): base, ft,
out, threads, top_k."""

import json
import sys
import time

import numpy as np
import torch

from common import Folder, emit, log, peak_rss_mb, setup


def stats(name, b, f, top_k):
    """Float32 reductions through torch.sum, whose cascade summation keeps about 1e-7 relative error on
    tensors of 3e7 entries (torch 1.13's vector_norm accumulates naively: 2e-3 there)."""
    d = f - b
    nb = torch.sum(b * b).item() ** 0.5
    nf = torch.sum(f * f).item() ** 0.5
    frob = torch.sum(d * d).item() ** 0.5
    bf = torch.sum(b * f).item()
    ad = d.abs()
    max_base = b.abs().max().item() if b.numel() else 0.0
    n = max(d.numel(), 1)
    above = lambda eps: torch.count_nonzero(ad > eps).item()
    r = {
        'name': name,
        'frobenius': frob,
        'relative': frob / nb if nb > 0 else None,
        'cosine': bf / (nb * nf) if nb > 0 and nf > 0 else None,
        'max_abs_delta': ad.max().item() if d.numel() else 0.0,
        'sparsity': [1 - torch.count_nonzero(d).item() / n, 1 - above(1e-6) / n, 1 - above(1e-4 * max_base) / n],
        'top_singular_values': [],
        'nuclear': None,
        'effective_rank': None,
    }
    if d.dim() >= 2 and frob > 0:
        s = torch.linalg.svdvals(d.reshape(d.shape[0], -1)).double()
        p = s / s.sum()
        p = p[p > 0]
        r['top_singular_values'] = s[:top_k].tolist()
        r['nuclear'] = s.sum().item()
        r['effective_rank'] = torch.exp(-(p * p.log()).sum()).item()
    return r


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    baseline_rss = peak_rss_mb()
    t0 = time.perf_counter()
    base, ft = Folder(o['base']), Folder(o['ft'])
    tensors, per_tensor_ms = [], {}
    names = [n for n in base.order if n in ft.where]
    for i, name in enumerate(names):
        t = time.perf_counter()
        b = torch.from_numpy(base.read(name))
        f = torch.from_numpy(ft.read(name))
        tensors.append(stats(name, b, f, o['top_k']))
        del b, f
        per_tensor_ms[name] = (time.perf_counter() - t) * 1e3
        if (i + 1) % 25 == 0 or i + 1 == len(names):
            log(f'{i + 1}/{len(names)} tensors, {time.perf_counter() - t0:.0f} s')
    total_ms = (time.perf_counter() - t0) * 1e3
    with open(o['out'], 'w') as f:
        json.dump({'tensors': tensors}, f)
    emit({'env': env, 'baselineRssMb': baseline_rss, 'totalMs': total_ms, 'perTensorMs': per_tensor_ms, 'tensors': len(tensors)})


main()
