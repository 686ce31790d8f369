"""Differential logit lens peer: both models' resid_post at every layer and position, each read through
its own final norm and unembedding (logits materialised [L, T, V], as plain PyTorch code does), top-k
of each distribution and KL(P_ft || P_base). Options (JSON argv[1]): base, ft, inputs, out, threads,
lengths, k, budget_s."""

import json
import sys

import torch

from common import SafeFile, emit, log, measure, setup, write_safetensors
from torch_models import Model


def lens(base, ft, ids, k):
    _, hb = base.forward(ids, capture=True, logits=False)
    _, hf = ft.forward(ids, capture=True, logits=False)
    with torch.inference_mode():
        lb = torch.log_softmax(torch.nn.functional.linear(base.final_norm(torch.cat(hb)), base.unembed), dim=-1)
        lf = torch.log_softmax(torch.nn.functional.linear(ft.final_norm(torch.cat(hf)), ft.unembed), dim=-1)
        kl = (lf.exp() * (lf - lb)).sum(-1)
        tb = torch.topk(lb, k, dim=-1)
        tf = torch.topk(lf, k, dim=-1)
    return tb, tf, kl


def main():
    o = json.loads(sys.argv[1])
    env = setup(o['threads'])
    base, ft = Model(o['base']), Model(o['ft'])
    inputs = SafeFile(o['inputs'])
    out, cases = {}, []
    for T in o['lengths']:
        ids = torch.from_numpy(inputs.read(f'ids.{T}').astype('int64'))
        timing, (tb, tf, kl) = measure(lambda: lens(base, ft, ids, o['k']), budget_s=o['budget_s'])
        L = base.layers
        # Rows layer-major (row = layer * T + position), as ours.
        out[f'base_ids.{T}'] = tb.indices.reshape(L * T, -1).int().numpy()
        out[f'base_probs.{T}'] = tb.values.exp().reshape(L * T, -1).numpy()
        out[f'ft_ids.{T}'] = tf.indices.reshape(L * T, -1).int().numpy()
        out[f'ft_probs.{T}'] = tf.values.exp().reshape(L * T, -1).numpy()
        out[f'kl.{T}'] = kl.reshape(L * T).float().numpy()
        cases.append({'tokens': T, 'timing': timing})
        log(f"torch lens T={T}: {timing['medianMs']:.0f} ms")
    write_safetensors(o['out'], out)
    emit({'env': env, 'cases': cases})


main()
