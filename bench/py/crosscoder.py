"""BatchTopK crosscoder training step in PyTorch, as science-of-finetuning's dictionary_learning
does it: dense encoder for both models, scores f·Σ_m‖d_j^m‖, torch.topk over the flattened batch
scores (k·B kept, unscaled f values scattered back), dense decoder, loss = mean over tokens and models
of ‖x − x̂‖₂, autograd, clip_grad_norm_(1.0), Adam. No dead latents occur in a few steps, so the
auxiliary loss is zero on both sides. Same initial parameters and batches as ours.
Options (JSON argv[1]): inputs, threads, d, D, k, steps, lr."""

import json
import sys
import time

import numpy as np
import torch

from common import SafeFile, emit, log, setup


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    d, D, k = o['d'], o['D'], o['k']
    f = SafeFile(o['inputs'])
    # ours: encW [2, D, d] with encW[m, j, i] = W_enc^m[i, j]; decW [2, D, d] = d_j^m.
    w_enc = torch.nn.Parameter(torch.from_numpy(f.read('encW')).reshape(2, D, d).transpose(1, 2).contiguous())
    b_enc = torch.nn.Parameter(torch.from_numpy(f.read('encB')))
    w_dec = torch.nn.Parameter(torch.from_numpy(f.read('decW')).reshape(2, D, d).contiguous())
    b_dec = torch.nn.Parameter(torch.from_numpy(f.read('decB')).reshape(2, d))
    params = [w_enc, b_enc, w_dec, b_dec]
    opt = torch.optim.Adam(params, lr=o['lr'], betas=(0.9, 0.999), eps=1e-8)
    batches = [torch.from_numpy(np.stack([f.read(f'base.{i}'), f.read(f'ft.{i}')], axis=1)) for i in range(o['batches'])]
    steps = []
    for s in range(o['steps']):
        x = batches[s % len(batches)]  # [B, 2, d]
        B = x.shape[0]
        t0 = time.perf_counter()
        acts = torch.relu(torch.einsum('bmi,mij->bj', x, w_enc) + b_enc)
        t1 = time.perf_counter()
        with torch.no_grad():
            scores = acts * w_dec.norm(dim=2).sum(dim=0)
        top = scores.flatten().topk(k * B, sorted=False)
        code = torch.zeros(B * D).scatter(0, top.indices, acts.flatten()[top.indices]).view(B, D)
        t2 = time.perf_counter()
        recon = torch.einsum('bj,mji->bmi', code, w_dec) + b_dec
        loss = (x - recon).norm(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t3 = time.perf_counter()
        steps.append({'stepMs': (t3 - t0) * 1e3, 'selectMs': (t2 - t1) * 1e3, 'loss': loss.item()})
        log(f"torch step {s}: {(t3 - t0) * 1e3:.0f} ms, select {(t2 - t1) * 1e3:.0f} ms, loss {loss.item():.5f}")
    emit({'env': env, 'steps': steps})


main()
