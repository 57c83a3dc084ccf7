#!/usr/bin/env python3
"""cuda_step_torch.py: the PyTorch twin of bench/cuda_step.c on the GPU: whole training
steps (zero_grad, forward, backward, clip 1.0, fused AdamW) of the same Llama-style model
(bench/llama110m.yml: vocab 32000, d_model 768, 12 layers, 12 heads with RoPE, SwiGLU d_ff
2048, RMSNorm, untied head) on random tokens, with scaled_dot_product_attention. Modes:
  bf16     bf16 autocast, eager (the issue's T1 baseline)
  compile  bf16 autocast, torch.compile
  fp32     float32 throughout, TF32 off (what caramba's CUDA backend computes by default)
  tf32     float32 with TF32 products (caramba: cuda_step -x)
Prints one "tokens/s:" line per mode, as cuda_step prints its own."""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hd, device, theta=10000.0):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
    angles = torch.outer(torch.arange(T, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, d, n_heads, n_kv):
        super().__init__()
        self.h, self.kv, self.hd = n_heads, n_kv, d // n_heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, n_kv * self.hd, bias=False)
        self.v = nn.Linear(d, n_kv * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv != self.h)
        return self.o(y.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, d, n_heads, n_kv, d_ff):
        super().__init__()
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.attn = Attention(d, n_heads, n_kv)
        self.gate = nn.Linear(d, d_ff, bias=False)
        self.up = nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.n1(x), cos, sin)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, vocab=32000, d=768, layers=12, n_heads=12, n_kv=12, d_ff=2048):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d, n_heads, n_kv, d_ff) for _ in range(layers)])
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.hd = d // n_heads

    def forward(self, idx, targets):
        cos, sin = rope_tables(idx.shape[1], self.hd, idx.device)
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def run(mode, B, T, steps, warmup, n_kv):
    torch.manual_seed(0)
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    model = Llama(n_kv=n_kv).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    x = torch.randint(0, 32000, (B, T), device=dev)
    y = torch.randint(0, 32000, (B, T), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        if mode in ("fp32", "tf32"):
            loss = fwd(x, y)
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    t_first = time.perf_counter()
    for _ in range(warmup):
        step()
    warm_s = time.perf_counter() - t_first
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    nonemb = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("emb."))
    flops_tok = 6 * nonemb + 12 * len(model.blocks) * T * 768
    tflops = flops_tok * B * T / med / 1e12
    print(f"== torch {mode}: median {med * 1e3:.1f} ms over {steps} steps ({warmup} warm-up: {warm_s:.1f} s), "
          f"loss {loss:.4f}, {tflops:.1f} TFLOP/s = MFU {tflops / 989:.3f} (bf16 dense 989)")
    print(f"tokens/s: {B * T / med:.0f} ({mode})", flush=True)
    del model, opt, fwd
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", type=int, default=16)
    ap.add_argument("-t", type=int, default=1024)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("-w", type=int, default=3)
    ap.add_argument("--kv", type=int, default=12)
    ap.add_argument("--modes", default="fp32,bf16,compile")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for mode in a.modes.split(","):
        run(mode, a.b, a.t, a.n, a.w, a.kv)


if __name__ == "__main__":
    main()
