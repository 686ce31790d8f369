"""Reference numbers for the training engine (src/analysis/training), written by PyTorch + transformers + PEFT.

For each test/fixtures/arch/<name>/base model, on a fixed batch of token ids:
  - full fine-tuning: the next-token cross-entropy and the gradient of every parameter;
  - LoRA (r 4, alpha 8, PEFT's default projections; rsLoRA on qwen3): the initial factors (B drawn
    non-zero so that every factor has a gradient), the loss and the gradient of every factor;
and for llama and gpt2, the losses of 50 LoRA AdamW steps (warm-up 5, cosine decay, clipping 1.0,
weight decay 0.01) from the saved initial A and B = 0, on 50 saved batches.

Run: bench/.venv/bin/python scripts/training-reference.py  (writes test/fixtures/training/<name>.safetensors)
"""
import json
import math
import os
import sys

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), '..')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'training')
ARCHS = sys.argv[1:] or ['llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gpt2', 'gemma2', 'gemma3']
CURVE_ARCHS = {'llama', 'gpt2'}
TARGETS = {
    'gpt2': ['c_attn', 'c_proj', 'c_fc'],
    'phi3': ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'],
}
DEFAULT_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
BATCH, SEQ = 2, 12
CURVE = dict(steps=50, batch=4, seq=16, lr=1e-2, warmup=5, weight_decay=0.01, max_grad_norm=1.0, micro_batch=2)

torch.set_num_threads(2)


def load(arch):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, 'test', 'fixtures', 'arch', arch, 'base'), torch_dtype=torch.float32, attn_implementation='eager')
    m.eval()  # no dropout
    return m


def loss_of(model, ids):
    logits = model(input_ids=ids).logits
    v = logits.shape[-1]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v).float(), ids[:, 1:].reshape(-1))


def lora_model(arch, model, gen, random_b):
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS.get(arch, DEFAULT_TARGETS), lora_dropout=0.0, use_rslora=(arch == 'qwen3'),
                     fan_in_fan_out=(arch == 'gpt2'), init_lora_weights=True)
    pm = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if 'lora_A' in name:
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / math.sqrt(p.shape[1]))
            elif 'lora_B' in name and random_b:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return pm, cfg


def main():
    os.makedirs(OUT, exist_ok=True)
    for arch in ARCHS:
        gen = torch.Generator().manual_seed(1234)
        out = {}
        model = load(arch)
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (BATCH, SEQ), generator=gen)
        out['input_ids'] = ids.to(torch.int32)

        model.zero_grad()
        loss = loss_of(model, ids)
        loss.backward()
        out['full.loss'] = loss.detach().reshape(1)
        for name, p in model.named_parameters():
            out[f'full.grad.{name}'] = p.grad.detach().clone()

        model = load(arch)
        pm, cfg = lora_model(arch, model, gen, random_b=True)
        state = get_peft_model_state_dict(pm)
        for name, t in state.items():
            out[f'lora.init.{name}'] = t.detach().clone()
        loss = loss_of(pm, ids)
        loss.backward()
        out['lora.loss'] = loss.detach().reshape(1)
        for name, p in pm.named_parameters():
            if p.requires_grad:
                key = name.replace('.default', '')
                out[f'lora.grad.{key}'] = p.grad.detach().clone()

        meta = {'arch': arch, 'r': '4', 'alpha': '8', 'rslora': str(arch == 'qwen3').lower(), 'target_modules': json.dumps(cfg.target_modules and sorted(cfg.target_modules))}
        if arch in CURVE_ARCHS:
            model = load(arch)
            pm, _ = lora_model(arch, model, gen, random_b=False)
            state = get_peft_model_state_dict(pm)
            for name, t in state.items():
                if 'lora_A' in name:
                    out[f'curve.init.{name}'] = t.detach().clone()
            c = CURVE
            params = [p for p in pm.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=c['lr'], betas=(0.9, 0.999), eps=1e-8, weight_decay=c['weight_decay'])

            def factor(s):
                if s < c['warmup']:
                    return s / max(1, c['warmup'])
                progress = (s - c['warmup']) / max(1, c['steps'] - c['warmup'])
                return max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            batches = torch.randint(0, vocab, (c['steps'], c['batch'], c['seq']), generator=gen)
            losses = []
            for s in range(c['steps']):
                opt.zero_grad()
                b = batches[s]
                loss = loss_of(pm, b)
                loss.backward()
                losses.append(loss.item())
                torch.nn.utils.clip_grad_norm_(params, c['max_grad_norm'])
                opt.step()
                sched.step()
            out['curve.ids'] = batches.to(torch.int32)
            out['curve.loss'] = torch.tensor(losses, dtype=torch.float32)
            meta['curve'] = json.dumps(c)
        path = os.path.join(OUT, f'{arch}.safetensors')
        save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=meta)
        print(f'{arch}: full loss {out["full.loss"].item():.6f}, lora loss {out["lora.loss"].item():.6f}' + (f', curve {out["curve.loss"][0]:.4f} → {out["curve.loss"][-1]:.4f}' if 'curve.loss' in out else '') + f' ({os.path.getsize(path) // 1024} KiB)')


if __name__ == '__main__':
    main()
