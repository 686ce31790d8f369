"""Prefill peer: the eager PyTorch forward (all positions' logits, as a model forward returns them)
on the same weights and token ids as bench/prefill. Options (JSON argv[1]): model, inputs, out,
threads, lengths, budget_s."""

import json
import sys
import time

import torch

from common import SafeFile, emit, log, measure, setup, write_safetensors
from torch_models import Model


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    t = time.perf_counter()
    model = Model(o['model'])
    load_ms = (time.perf_counter() - t) * 1e3
    inputs = SafeFile(o['inputs'])
    cases, out = [], {}
    for T in o['lengths']:
        ids = torch.from_numpy(inputs.read(f'ids.{T}').astype('int64'))
        timing, first = measure(lambda: model.forward(ids)[0], budget_s=o['budget_s'])
        logits = first[0]
        out[f'logits.{T}'] = torch.stack([logits[0], logits[-1]]).numpy()
        B = ids.shape[0]
        cases.append({'tokens': T, 'batch': B, 'timing': timing, 'tokensPerS': B * T / timing['medianMs'] * 1e3})
        log(f"torch {model.arch} T={T}: {timing['medianMs']:.0f} ms ({B * T / timing['medianMs'] * 1e3:.0f} tokens/s)")
    write_safetensors(o['out'], out)
    emit({'env': env, 'loadMs': load_ms, 'cases': cases})


main()
