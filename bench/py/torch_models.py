"""Eager PyTorch forwards of the two architectures the benchmarks use, written as Hugging Face's
modeling_llama.py / modeling_gpt2.py compute them (eager attention, float32), over the checkpoint's
own tensor names (transformers is not installed for this Python)."""

import math

import torch
import torch.nn.functional as F

from common import Folder


def _get(cfg, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


class Model:
    def __init__(self, folder):
        f = Folder(folder)
        self.cfg = cfg = f.config
        self.w = {name: torch.from_numpy(f.read(name)) for name in f.order}
        self.arch = cfg['model_type']
        if self.arch not in ('llama', 'gpt2'):
            raise ValueError(f'{folder}: model_type {self.arch} is not implemented by bench/py/torch_models.py')
        self.layers = _get(cfg, 'num_hidden_layers', 'n_layer')
        self.d = _get(cfg, 'hidden_size', 'n_embd')
        self.heads = _get(cfg, 'num_attention_heads', 'n_head')
        self.kv_heads = _get(cfg, 'num_key_value_heads', default=self.heads)
        self.head_dim = _get(cfg, 'head_dim', default=self.d // self.heads)
        self.eps = _get(cfg, 'rms_norm_eps', 'layer_norm_epsilon', default=1e-5)
        rope = cfg.get('rope_parameters') or {}
        self.theta = _get(rope, 'rope_theta', default=_get(cfg, 'rope_theta', default=10000.0))
        if self.arch == 'llama':
            self.unembed = self.w.get('lm_head.weight', self.w['model.embed_tokens.weight'])
        else:
            self.unembed = self.w['transformer.wte.weight']

    # --- pieces -----------------------------------------------------------------------------
    def final_norm(self, h):
        if self.arch == 'llama':
            return self._rms(h, self.w['model.norm.weight'])
        return F.layer_norm(h, (self.d,), self.w['transformer.ln_f.weight'], self.w['transformer.ln_f.bias'], self.eps)

    def _rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def _attend(self, q, k, v, T):
        """q [B, H, T, hd], k, v [B, Hkv, T, hd]: causal softmax attention, as HF's eager_attention_forward."""
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        mask = torch.full((T, T), float('-inf')).triu(1)
        probs = torch.softmax(scores + mask, dim=-1)
        return torch.matmul(probs, v)

    def _rope(self, T):
        inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()

    @staticmethod
    def _rotate(x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def _llama_block(self, x, i, cos, sin):
        B, T, _ = x.shape
        p = f'model.layers.{i}.'
        w = self.w
        h = self._rms(x, w[p + 'input_layernorm.weight'])
        q = F.linear(h, w[p + 'self_attn.q_proj.weight']).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(h, w[p + 'self_attn.k_proj.weight']).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(h, w[p + 'self_attn.v_proj.weight']).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        a = self._attend(q, k, v, T).transpose(1, 2).reshape(B, T, self.heads * self.head_dim)
        x = x + F.linear(a, w[p + 'self_attn.o_proj.weight'])
        h = self._rms(x, w[p + 'post_attention_layernorm.weight'])
        m = F.silu(F.linear(h, w[p + 'mlp.gate_proj.weight'])) * F.linear(h, w[p + 'mlp.up_proj.weight'])
        return x + F.linear(m, w[p + 'mlp.down_proj.weight'])

    def _gpt2_block(self, x, i):
        B, T, d = x.shape
        p = f'transformer.h.{i}.'
        w = self.w
        conv = lambda t, name: torch.addmm(w[name + '.bias'], t.reshape(-1, t.shape[-1]), w[name + '.weight']).view(B, T, -1)
        h = F.layer_norm(x, (d,), w[p + 'ln_1.weight'], w[p + 'ln_1.bias'], self.eps)
        q, k, v = conv(h, p + 'attn.c_attn').split(d, dim=2)
        heads = lambda t: t.view(B, T, self.heads, self.head_dim).transpose(1, 2)
        a = self._attend(heads(q), heads(k), heads(v), T).transpose(1, 2).reshape(B, T, d)
        x = x + conv(a, p + 'attn.c_proj')
        h = F.layer_norm(x, (d,), w[p + 'ln_2.weight'], w[p + 'ln_2.bias'], self.eps)
        return x + conv(F.gelu(conv(h, p + 'mlp.c_fc'), approximate='tanh'), p + 'mlp.c_proj')

    # --- forward ----------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, ids, capture=False, stop_after=None, logits=True):
        """ids: LongTensor [B, T]. Returns (logits or None, [resid_post of each layer run] when capture)."""
        T = ids.shape[1]
        last = self.layers - 1 if stop_after is None else stop_after
        posts = []
        if self.arch == 'llama':
            x = self.w['model.embed_tokens.weight'][ids]
            cos, sin = self._rope(T)
            for i in range(last + 1):
                x = self._llama_block(x, i, cos, sin)
                if capture:
                    posts.append(x)
        else:
            x = self.w['transformer.wte.weight'][ids] + self.w['transformer.wpe.weight'][:T]
            for i in range(last + 1):
                x = self._gpt2_block(x, i)
                if capture:
                    posts.append(x)
        if not logits or last < self.layers - 1:
            return None, posts
        return F.linear(self.final_norm(x), self.unembed), posts
