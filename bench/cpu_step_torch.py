#!/usr/bin/python3
"""cpu_step_torch.py: the PyTorch twin of bench/cpu_step.c: one training step (forward +
backward, no optimizer) of the same Llama-style model (bench/llama110m.yml: vocab 32000,
d_model 768, 12 layers, 12 heads with RoPE, SwiGLU d_ff 2048, RMSNorm, untied head) for a
(B, T) batch of random tokens, with torch.set_num_threads(2); prints tokens/s in the format
cpu_step prints it, so bench/cpu_step.sh can take their ratio."""
import argparse
import math
import os
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


def rope_tables(T, hd, theta=10000.0):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    angles = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)  # (T, hd/2)
    emb = torch.cat([angles, angles], dim=-1)  # (T, hd), HF rotate_half layout
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.h, self.hd = n_heads, d // n_heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, d = x.shape
        # (B, H, T, hd)
        q = self.q(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(x).view(B, T, self.h, self.hd).transpose(1, 2)
        v = self.v(x).view(B, T, self.h, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        return self.o(y)


class SwiGLU(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.gate = nn.Linear(d, d_ff, bias=False)
        self.up = nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff):
        super().__init__()
        self.norm1, self.attn = RMSNorm(d), Attention(d, n_heads)
        self.norm2, self.mlp = RMSNorm(d), SwiGLU(d, d_ff)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp(self.norm2(x))


class Llama(nn.Module):
    def __init__(self, vocab, d, n_layers, n_heads, d_ff, T):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, n_heads, d_ff) for _ in range(n_layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        cos, sin = rope_tables(T, d // n_heads)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--batch", type=int, default=4)
    ap.add_argument("-t", "--seq", type=int, default=256)
    ap.add_argument("-n", "--steps", type=int, default=5)
    ap.add_argument("-w", "--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T = args.batch, args.seq
    model = Llama(32000, 768, 12, 12, 2048, T)
    n_params = sum(p.numel() for p in model.parameters())
    n_nonemb = n_params - model.embed.weight.numel()
    seq = torch.randint(0, 32000, (B, T + 1))
    tokens, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    print(f"cpu_step_torch: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}: "
          f"{n_params} params ({n_nonemb} non-embedding), B {B}, T {T}")
    times = []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        dt = time.perf_counter() - t0
        warm = " (warm-up)" if s < args.warmup else ""
        print(f"  step {s}{warm}: {dt * 1e3:.1f} ms, loss {loss.item():.4f}", flush=True)
        if s >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(f"step (forward + backward): median {med * 1e3:.1f} ms over {args.steps} steps "
          f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}), {args.warmup} warm-up excluded")
    print(f"tokens/s: {B * T / med:.1f}")


if __name__ == "__main__":
    main()
