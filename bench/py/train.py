"""PyTorch peer of `neurodiff organism train` (bench `train`): LoRA (PEFT) fine-tuning of a Hugging Face
model on random windows of a corpus with the same settings (LoRA on the q/k/v/o and MLP projections,
AdamW, warm-up then cosine, clipping 1.0). Prints one JSON object: wall and CPU seconds over all
steps, per-step wall seconds, the first and last losses, and the environment.

bench/.venv/bin/python bench/py/train.py '{"model": "<dir>", "corpus": "<corpus.txt>", "steps": 300,
  "batch": 16, "seq": 128, "rank": 8, "alpha": 16, "lr": 2e-3, "threads": 2, "warmup": 10}'
"""
import json
import math
import sys
import time

from common import log, peak_rss_mb, setup

o = {'steps': 300, 'batch': 16, 'seq': 128, 'rank': 8, 'alpha': 16, 'lr': 2e-3, 'threads': 2, 'warmup': 10, **json.loads(sys.argv[1])}
env = setup(o['threads'])

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(o['model'])
ids = []
for line in open(o['corpus'], encoding='utf-8'):
    line = line.strip()
    if line:
        if tok.bos_token_id is not None:
            ids.append(tok.bos_token_id)
        ids.extend(tok.encode(line, add_special_tokens=False))
stream = torch.tensor(ids)
model = AutoModelForCausalLM.from_pretrained(o['model'], dtype=torch.float32, attn_implementation='eager')
model = get_peft_model(model, LoraConfig(r=o['rank'], lora_alpha=o['alpha'], target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], lora_dropout=0.0))
model.train()
params = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=o['lr'], weight_decay=0.0)
steps, warmup, seq, batch = o['steps'], o['warmup'], o['seq'], o['batch']


def factor(s):
    if s < warmup:
        return s / max(1, warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))


sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
gen = torch.Generator().manual_seed(0)
losses = []
step_seconds = []
t0 = time.perf_counter()
c0 = time.process_time()
for s in range(steps):
    ts = time.perf_counter()
    starts = torch.randint(0, len(stream) - seq + 1, (batch,), generator=gen)
    x = torch.stack([stream[i:i + seq] for i in starts.tolist()])
    out = model(input_ids=x, labels=x)
    opt.zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    losses.append(out.loss.item())
    step_seconds.append(time.perf_counter() - ts)
    if s % max(1, steps // 10) == 0:
        log(f'step {s + 1}/{steps} loss {losses[-1]:.4f}')
seconds = time.perf_counter() - t0
tenth = max(1, steps // 10)
print(json.dumps({
    'steps': steps, 'seconds': seconds, 'cpu_seconds': time.process_time() - c0, 'step_seconds': step_seconds,
    'first_loss': losses[0], 'loss_first_tenth': sum(losses[:tenth]) / tenth, 'loss_last_tenth': sum(losses[-tenth:]) / tenth,
    'env': env, 'peakRssMb': peak_rss_mb(),
}))
