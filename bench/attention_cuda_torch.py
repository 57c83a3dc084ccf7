#!/usr/bin/env python3
"""attention_cuda_torch.py: PyTorch's scaled_dot_product_attention (bf16, is_causal) timed
forward, backward, and forward + backward at the shapes of bench/attention_cuda.c (the
standard and GQA cases; DBA has no SDPA twin), printing lines in the same form:
    case NAME fwd_ms F bwd_ms B total_ms S tflops X   (backend)
once with PyTorch's default choice of kernel and once each for the flash and cuDNN
backends where they run. Inputs are (B, H, T, d) bf16 tensors; GQA with enable_gqa.
    python3 bench/attention_cuda_torch.py [-n iterations] [-w warmup]"""
import argparse
import contextlib
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

CASES = [  # name, B, T, H, Hkv, d
    ("std_d64_T1024", 16, 1024, 12, 12, 64),
    ("gqa4_d64_T1024", 16, 1024, 12, 4, 64),
    ("std_d128_T1024", 16, 1024, 12, 12, 128),
    ("std_d64_T4096", 4, 4096, 12, 12, 64),
    ("std_d128_T4096", 4, 4096, 12, 12, 128),
]


def timed(fn, iters, warmup):
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(iters):
        fn()
    ev[1].record()
    torch.cuda.synchronize()
    return ev[0].elapsed_time(ev[1]) / iters


def run(name, B, T, H, Hkv, d, iters, warmup, backend):
    g = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda h: (torch.rand(B, h, T, d, device="cuda", generator=g) * 2 - 1).bfloat16().requires_grad_()
    q, k, v = mk(H), mk(Hkv), mk(Hkv)
    dout = torch.rand(B, H, T, d, device="cuda", generator=g).bfloat16()
    gqa = {"enable_gqa": True} if Hkv != H else {}

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)

    def step():
        o = fwd()
        o.backward(dout)

    ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
    with ctx:
        try:
            with torch.no_grad():
                f = timed(fwd, iters, warmup)
            t = timed(step, iters, warmup)
        except RuntimeError as e:
            print(f"# {name}: {backend}: not run ({str(e).splitlines()[0][:100]})")
            return
    b = t - f
    flops = 2.0 * B * H * T * T * 2 * d / 2
    label = "default" if backend is None else str(backend).split(".")[-1].lower()
    print(f"case {name} fwd_ms {f:.3f} bwd_ms {b:.3f} total_ms {t:.3f} tflops {3.5 * flops / t / 1e9:.1f} ({label})",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("-w", type=int, default=3)
    a = ap.parse_args()
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for backend in (None, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        for c in CASES:
            run(*c, a.n, a.w, backend)


if __name__ == "__main__":
    main()
