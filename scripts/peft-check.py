"""Checks that PEFT loads an adapter folder written by `neurodiff organism train` and that the merged
model gives NeuroDiff's next-token probabilities: runs `neurodiff forward <base> --adapter <dir> --ids …
--top 20 --json` and compares its top-20 probabilities per position with PEFT's merge_and_unload model.

bench/.venv/bin/python scripts/peft-check.py <base dir> <adapter dir>
"""
import json
import os
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

base_dir, adapter_dir = sys.argv[1], sys.argv[2]
ids = [0, 46, 1038, 257, 640, 11, 612, 373, 257, 1310, 2576, 3706, 406, 813, 13, 1375]
root = os.path.join(os.path.dirname(__file__), '..')
out = subprocess.run(['npx', 'tsx', 'src/cli/main.ts', 'forward', base_dir, '--adapter', adapter_dir, '--ids', ','.join(map(str, ids)), '--top', '20', '--json'],
                     cwd=root, check=True, capture_output=True, text=True).stdout
ours = json.loads(out)['top']

base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation='eager')
with torch.no_grad():
    base_probs = torch.softmax(base(input_ids=torch.tensor([ids])).logits[0], -1)
model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
with torch.no_grad():
    probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
worst = 0.0
for pos, top in enumerate(ours):
    for t in top:
        worst = max(worst, abs(t['prob'] - probs[pos, t['id']].item()))
moved = (probs - base_probs).abs().max().item()
print(json.dumps({'positions': len(ours), 'max_abs_prob_difference_vs_peft': worst, 'adapter_moves_probs_by': moved}))
