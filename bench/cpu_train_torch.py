#!/usr/bin/python3
"""cpu_train_torch.py: the PyTorch twin of a cb-train run, for bench/cpu_train.sh: the same
Llama-style model (RMSNorm, RoPE attention with optional grouped kv heads, SwiGLU, tied or
untied head), AdamW (betas 0.9/0.95, weight decay 0.1, grad clip 1.0), random (B, T+1)
windows of a .npy token file, torch.set_num_threads(THREADS); prints the median tokens/s
over the timed steps as "tokens/s: X"."""
import argparse
import math
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cpu_step_torch import RMSNorm, SwiGLU, rope_tables, rotate_half


class Attention(nn.Module):
    def __init__(self, d, n_heads, n_kv):
        super().__init__()
        self.h, self.kv, self.hd = n_heads, n_kv, d // n_heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, n_kv * self.hd, bias=False)
        self.v = nn.Linear(d, n_kv * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, d, h, kv, d_ff):
        super().__init__()
        self.norm1, self.attn = RMSNorm(d), Attention(d, h, kv)
        self.norm2, self.mlp = RMSNorm(d), SwiGLU(d, d_ff)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp(self.norm2(x))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab, a.d)
        self.blocks = nn.ModuleList(Block(a.d, a.heads, a.kv or a.heads, a.d_ff) for _ in range(a.layers))
        self.norm = RMSNorm(a.d)
        self.head = nn.Linear(a.d, a.vocab, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        if a.tied:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(a.seq, a.d // a.heads)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.ones(a.seq, a.seq, dtype=torch.bool), diagonal=1))

    def forward(self, x, y):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(h))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    for name, default in (("vocab", 50257), ("d", 256), ("layers", 6), ("heads", 8), ("kv", 0),
                          ("d_ff", 768), ("batch", 8), ("seq", 128), ("steps", 12), ("warmup", 2), ("threads", 2)):
        ap.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=default)
    ap.add_argument("--tied", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = np.load(a.data, mmap_mode="r")
    model = Llama(a)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    times = []
    for step in range(a.warmup + a.steps):
        starts = rng.integers(0, len(data) - a.seq - 1, size=a.batch)
        win = torch.from_numpy(np.stack([np.asarray(data[s:s + a.seq + 1], dtype=np.int64) for s in starts]))
        t0 = time.perf_counter()
        loss = model(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    tok = a.batch * a.seq
    print(f"torch {torch.__version__}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"median step {statistics.median(times):.3f} s, last loss {loss.item():.4f}")
    print(f"tokens/s: {tok / statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
