#!/usr/bin/python3
"""make_layer_fixtures.py: PyTorch references for the CPU layers in lib/layers.

For each layer it builds the same op in torch (float32, fixed seed), takes the scalar loss
L = sum(out * dout) with dout random, and writes inputs, weights, dout, outputs, saved
activations and every gradient to tests/reference/layers/NAME.safetensors.
tests/unit/layers/test_NAME.c reads them back and compares the C float results.
Run from anywhere with Debian's PyTorch 1.13: /usr/bin/python3 tests/reference/make_layer_fixtures.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers")
META = {"cb.source": "tests/reference/make_layer_fixtures.py", "cb.torch": torch.__version__}

B, T, C, F_DIM, V = 2, 3, 8, 12, 11
N = B * T


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def save(name, tensors):
    st_write.write(os.path.join(OUT_DIR, name + ".safetensors"), tensors, META)


def backprop(out):
    """L = sum(out * dout) with dout random; returns dout."""
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    return dout


def embedding():
    torch.manual_seed(1)
    max_t, pos0 = 6, 2
    tokens = torch.tensor([[3, 7, 3], [0, 10, 7]], dtype=torch.int32)
    wte, wpe = leaf(V, C), leaf(max_t, C)
    out = wte[tokens.long()] + wpe[pos0:pos0 + T].unsqueeze(0)
    dout = backprop(out)
    save("embedding", {"tokens": tokens, "pos0": torch.tensor([pos0], dtype=torch.int32),
                       "wte": wte, "wpe": wpe, "out": out, "dout": dout,
                       "dwte": wte.grad, "dwpe": wpe.grad})


def linear():
    torch.manual_seed(2)
    oc = 5
    x, w, b = leaf(N, C), leaf(oc, C, scale=0.3), leaf(oc)
    out = F.linear(x, w, b)
    dout = backprop(out)
    save("linear", {"in": x, "weight": w, "bias": b, "out": out, "dout": dout,
                    "din": x.grad, "dweight": w.grad, "dbias": b.grad})


def rmsnorm():
    torch.manual_seed(3)
    eps = 1e-5
    x, w = leaf(N, C), leaf(C)
    rstd = torch.rsqrt(x.pow(2).mean(-1) + eps)
    out = x * rstd.unsqueeze(-1) * w
    dout = backprop(out)
    save("rmsnorm", {"in": x, "weight": w, "eps": torch.tensor([eps]), "out": out, "rstd": rstd,
                     "dout": dout, "din": x.grad, "dweight": w.grad})


def layernorm():
    torch.manual_seed(4)
    eps = 1e-5
    x, w, b = leaf(N, C, scale=2.0), leaf(C), leaf(C)
    x_detached = x.detach()
    out = F.layer_norm(x, (C,), w, b, eps)
    dout = backprop(out)
    mean = x_detached.mean(-1)
    rstd = torch.rsqrt(x_detached.var(-1, unbiased=False) + eps)
    save("layernorm", {"in": x, "weight": w, "bias": b, "eps": torch.tensor([eps]), "out": out,
                       "mean": mean, "rstd": rstd, "dout": dout,
                       "din": x.grad, "dweight": w.grad, "dbias": b.grad})


def swiglu():
    torch.manual_seed(5)
    x = leaf(N, C)
    wg, wu, wd = leaf(F_DIM, C, scale=0.4), leaf(F_DIM, C, scale=0.4), leaf(C, F_DIM, scale=0.3)
    gate, up = F.linear(x, wg), F.linear(x, wu)
    h = F.silu(gate) * up
    out = F.linear(h, wd)
    dout = backprop(out)
    save("swiglu", {"in": x, "wg": wg, "wu": wu, "wd": wd, "out": out, "gate": gate, "up": up,
                    "h": h, "dout": dout, "din": x.grad, "dwg": wg.grad, "dwu": wu.grad,
                    "dwd": wd.grad})


def mlp():
    torch.manual_seed(6)
    x = leaf(N, C)
    wfc, bfc = leaf(F_DIM, C, scale=0.4), leaf(F_DIM, scale=0.5)
    wproj, bproj = leaf(C, F_DIM, scale=0.3), leaf(C, scale=0.5)
    pre = F.linear(x, wfc, bfc)
    h = F.gelu(pre, approximate="tanh")
    out = F.linear(h, wproj, bproj)
    dout = backprop(out)
    save("mlp", {"in": x, "wfc": wfc, "bfc": bfc, "wproj": wproj, "bproj": bproj, "out": out,
                 "pre": pre, "h": h, "dout": dout, "din": x.grad, "dwfc": wfc.grad,
                 "dbfc": bfc.grad, "dwproj": wproj.grad, "dbproj": bproj.grad})


def _splitmix64_mix(z):
    mask = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def dropout_mask(seed, offset, n, p):
    """The mask lib/layers/dropout.c draws: keep element i when the 53 high bits of
    splitmix64_mix(mix(seed) + (offset + i + 1) * golden) are >= p * 2^53."""
    mask = (1 << 64) - 1
    key = _splitmix64_mix(seed)
    threshold = int(p * 2.0 ** 53)
    return torch.tensor([(_splitmix64_mix((key + (offset + i + 1) * 0x9E3779B97F4A7C15) & mask) >> 11)
                         >= threshold for i in range(n)], dtype=torch.float32)


def dropout():
    torch.manual_seed(7)
    p, seed, offset = 0.25, 1234567, 1000
    x = leaf(N, C)
    keep = dropout_mask(seed, offset, N * C, p).reshape(N, C)
    out = x * keep / (1 - p)
    dout = backprop(out)
    save("dropout", {"in": x, "p": torch.tensor([p]), "seed": torch.tensor([seed], dtype=torch.int64),
                     "offset": torch.tensor([offset], dtype=torch.int64), "out": out, "dout": dout,
                     "din": x.grad})


def crossentropy():
    torch.manual_seed(8)
    logits = leaf(N, V, scale=3.0)
    targets = torch.tensor([4, 0, -1, 10, 4, 7], dtype=torch.int32)
    losses = F.cross_entropy(logits, targets.long(), ignore_index=-1, reduction="none")
    loss = F.cross_entropy(logits, targets.long(), ignore_index=-1, reduction="mean")
    dloss = 0.7
    (loss * dloss).backward()
    save("crossentropy", {"logits": logits, "targets": targets, "losses": losses,
                          "lse": torch.logsumexp(logits.detach(), -1), "loss": loss.reshape(1),
                          "dloss": torch.tensor([dloss]), "dlogits": logits.grad})


def elementwise():
    torch.manual_seed(9)
    tensors = {}
    for name, fn in (("gelu", lambda t: F.gelu(t, approximate="tanh")), ("silu", F.silu)):
        x = leaf(N, C, scale=2.0)
        out = fn(x)
        dout = backprop(out)
        tensors.update({f"{name}.in": x, f"{name}.out": out, f"{name}.dout": dout,
                        f"{name}.din": x.grad})
    a, b = leaf(N, 3), leaf(N, 5)
    out = torch.cat([a, b], dim=-1)
    dout = backprop(out)
    tensors.update({"concat.a": a, "concat.b": b, "concat.out": out, "concat.dout": dout,
                    "concat.da": a.grad, "concat.db": b.grad})
    xs = [leaf(N, C) for _ in range(3)]
    out = torch.stack(xs).mean(0)
    dout = backprop(out)
    tensors.update({"mean.out": out, "mean.dout": dout})
    for k, x in enumerate(xs):
        tensors.update({f"mean.in{k}": x, f"mean.din{k}": x.grad})
    save("elementwise", tensors)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for make in (embedding, linear, rmsnorm, layernorm, swiglu, mlp, dropout, crossentropy, elementwise):
        make()


if __name__ == "__main__":
    main()
