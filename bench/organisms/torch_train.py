"""PyTorch peer for `neurodiff organism train`: LoRA (PEFT) fine-tuning of a Hugging Face model on
random windows of a corpus, with the same settings (AdamW, warm-up then cosine, clipping 1.0).
Prints one JSON line: steps, seconds (wall), cpu_seconds, first and last losses.

bench/.venv/bin/python bench/organisms/torch_train.py <model dir> <corpus.txt> [--steps 300] [--batch 16]
  [--seq 128] [--rank 8] [--alpha 16] [--lr 2e-3] [--threads 2] [--warmup 10]
"""
import argparse
import json
import math
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument('model')
p.add_argument('corpus')
p.add_argument('--steps', type=int, default=300)
p.add_argument('--batch', type=int, default=16)
p.add_argument('--seq', type=int, default=128)
p.add_argument('--rank', type=int, default=8)
p.add_argument('--alpha', type=float, default=16)
p.add_argument('--lr', type=float, default=2e-3)
p.add_argument('--threads', type=int, default=2)
p.add_argument('--warmup', type=int, default=10)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

tok = AutoTokenizer.from_pretrained(a.model)
ids = []
for line in open(a.corpus, encoding='utf-8'):
    line = line.strip()
    if line:
        if tok.bos_token_id is not None:
            ids.append(tok.bos_token_id)
        ids.extend(tok.encode(line, add_special_tokens=False))
stream = torch.tensor(ids)
model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation='eager')
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=a.alpha, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], lora_dropout=0.0))
model.train()
params = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)


def factor(s):
    if s < a.warmup:
        return s / max(1, a.warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * (s - a.warmup) / max(1, a.steps - a.warmup))))


sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
gen = torch.Generator().manual_seed(0)
losses = []
t0 = time.perf_counter()
c0 = time.process_time()
for s in range(a.steps):
    starts = torch.randint(0, len(stream) - a.seq + 1, (a.batch,), generator=gen)
    batch = torch.stack([stream[i:i + a.seq] for i in starts.tolist()])
    out = model(input_ids=batch, labels=batch)
    opt.zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    losses.append(out.loss.item())
print(json.dumps({'steps': a.steps, 'seconds': time.perf_counter() - t0, 'cpu_seconds': time.process_time() - c0, 'first_loss': losses[0], 'last_loss': sum(losses[-10:]) / len(losses[-10:])}))
