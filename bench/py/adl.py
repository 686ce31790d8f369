"""ADL peer: δ_p = mean over samples of h_ft − h_base at blocks.ℓ resid_post for positions p, the
fine-tune's mean ‖h_ft‖ over positions ≥ 5, and the logit lens of ±δ_p through the fine-tune's final
norm and unembedding (top-k). Computed as ours does it: batches of 16 samples, the base model run on
the first max(p)+1 tokens only (causality makes the rest irrelevant). Options (JSON argv[1]): base,
ft, inputs, out, threads, layer, positions, top, batch."""

import json
import sys
import time

import torch

from common import SafeFile, emit, log, peak_rss_mb, setup, write_safetensors
from torch_models import Model


def adl(base, ft, samples, layer, positions, top, batch):
    P = max(positions) + 1
    deltas, norm_sum, norm_count = [], 0.0, 0
    for s in range(0, samples.shape[0], batch):
        rows = samples[s:s + batch]
        _, hf = ft.forward(rows, capture=True, stop_after=layer, logits=False)
        _, hb = base.forward(rows[:, :P], capture=True, stop_after=layer, logits=False)
        hf, hb = hf[-1], hb[-1]
        deltas.append((hf[:, :P] - hb)[:, positions])
        norms = hf[:, 5:].norm(dim=-1)
        norm_sum += norms.sum().item()
        norm_count += norms.numel()
    per_sample = torch.cat(deltas)  # [S, positions, d]
    delta = per_sample.double().mean(0).float()
    with torch.inference_mode():
        both = torch.cat([delta, -delta])
        probs = torch.softmax(torch.nn.functional.linear(ft.final_norm(both), ft.unembed), dim=-1)
        t = torch.topk(probs, top, dim=-1)
    return delta, t, norm_sum / max(norm_count, 1)


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    base, ft = Model(o['base']), Model(o['ft'])
    samples = torch.from_numpy(SafeFile(o['inputs']).read('samples').astype('int64'))
    rss_loaded = peak_rss_mb()
    times = []
    for _ in range(2):  # warm-up, then the timed run
        t = time.perf_counter()
        delta, top, ft_norm = adl(base, ft, samples, o['layer'], o['positions'], o['top'], o['batch'])
        times.append((time.perf_counter() - t) * 1e3)
    log(f'torch ADL: {times[1]:.0f} ms (warm-up {times[0]:.0f} ms)')
    write_safetensors(o['out'], {'delta': delta.numpy(), 'top_ids': top.indices.int().numpy(), 'top_probs': top.values.numpy()})
    emit({'env': env, 'timing': {'medianMs': times[1], 'samplesMs': [times[1]], 'itersPerSample': 1, 'warmupMs': times[0]},
          'ftNorm': ft_norm, 'rssAfterLoadMb': rss_loaded})


main()
