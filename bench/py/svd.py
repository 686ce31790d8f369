"""SVD peers: LAPACK singular values through numpy (dgesdd: numpy upcasts float32) and torch
(sgesdd, float32), numpy's float64 SVD once more, untimed, as the accuracy reference, a numpy randomized subspace iteration with the same sketch as ours (k + 10
columns, 3 power iterations, QR each time), and torch.svd_lowrank at niter = power_iterations and,
as "torch.svd_lowrank matched", at the smallest niter of match_niter whose σ1..σk error reaches that
of `ours` (our top-k per matrix), or its most accurate one where none does. Options (JSON argv[1]):
inputs, out, threads, names, k, oversample, power_iterations, budget_s, ours, match_niter."""

import json
import sys

import numpy as np
import torch

from common import SafeFile, emit, log, measure, setup, write_safetensors


def randomized_svdvals(a, k, p, q, seed=0):
    """Halko, Martinsson & Tropp 2011, Alg. 4.4 (subspace iteration), in the input's precision."""
    n = a.shape[1]
    omega = np.random.default_rng(seed).standard_normal((n, k + p)).astype(a.dtype)
    basis, _ = np.linalg.qr(a @ omega)
    for _ in range(q):
        w, _ = np.linalg.qr(a.T @ basis)
        basis, _ = np.linalg.qr(a @ w)
    return np.linalg.svd(basis.T @ a, compute_uv=False)[:k]


def top_error(values, reference, k):
    return float(np.max(np.abs(values[:k] - reference[:k]) / reference[:k]))


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    k, p, q = o['k'], o['oversample'], o['power_iterations']
    inputs = SafeFile(o['inputs'])
    out, cases = {}, []
    for name in o['names']:
        a = inputs.read(name)
        at = torch.from_numpy(a)
        reference = np.linalg.svd(a.astype(np.float64), compute_uv=False)
        out[f'f64.{name}'] = reference.astype(np.float32)
        # numpy's linalg computes in float64 even for float32 input (dgesdd); torch keeps float32 (sgesdd).
        impls = [
            ('numpy svd', 'full', lambda: np.linalg.svd(a, compute_uv=False)),
            ('torch svdvals', 'full', lambda: torch.linalg.svdvals(at).numpy()),
            ('numpy randomized', 'top', lambda: randomized_svdvals(a, k, p, q)),
            ('torch.svd_lowrank', 'top', lambda: torch.svd_lowrank(at, q=k + p, niter=q)[1][:k].numpy()),
        ]
        for label, part, fn in impls:
            timing, values = measure(fn, budget_s=o['budget_s'])
            out[f'{label}.{name}'] = np.asarray(values, dtype=np.float32)
            cases.append({'matrix': name, 'impl': label, 'part': part, 'timing': timing})
            log(f"{name} {label}: {timing['medianMs']:.0f} ms")
        target = top_error(np.asarray(o['ours'][name]), reference, k)
        tried = []
        for niter in o['match_niter']:
            values = torch.svd_lowrank(at, q=k + p, niter=niter)[1][:k].numpy()
            tried.append((top_error(values, reference, k), niter))
            if tried[-1][0] <= target:
                break
        error, niter = tried[-1] if tried[-1][0] <= target else min(tried)
        timing, values = measure(lambda: torch.svd_lowrank(at, q=k + p, niter=niter)[1][:k].numpy(), budget_s=o['budget_s'])
        out[f'torch.svd_lowrank matched.{name}'] = np.asarray(values, dtype=np.float32)
        cases.append({'matrix': name, 'impl': 'torch.svd_lowrank matched', 'part': 'top', 'timing': timing, 'niter': niter, 'reached': bool(error <= target), 'oursError': target})
        log(f"{name} torch.svd_lowrank niter={niter} (error {error:.1e}, ours {target:.1e}): {timing['medianMs']:.0f} ms")
    write_safetensors(o['out'], out)
    emit({'env': env, 'cases': cases})


main()
