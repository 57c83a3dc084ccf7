#!/usr/bin/python3
"""make_optimizer_fixtures.py: PyTorch references for lib/train/optimizer.c.

AdamW (torch.optim.AdamW) and SGD with momentum (torch.optim.SGD) on two small float32
tensors: a matrix "w" [3, 4] with weight decay and a vector "b" [4] without (two parameter
groups, as caramba decides decay per tensor), over STEPS steps with given gradients and a
different learning rate at each step. Writes the start, the gradients, the rates and the
tensors after every step, and the final optimizer state, to tests/reference/optimizer/.
tests/unit/train/test_optimizer.c replays the same steps and compares.
Run with Debian's PyTorch 1.13: /usr/bin/python3 tests/reference/make_optimizer_fixtures.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizer")
META = {"cb.source": "tests/reference/make_optimizer_fixtures.py", "cb.torch": torch.__version__}
STEPS = 4
LRS = [1e-2, 3e-2, 2e-2, 5e-3]


def run(name, make_opt, state_keys):
    torch.manual_seed(1234)
    w = torch.randn(3, 4).requires_grad_(True)
    b = torch.randn(4).requires_grad_(True)
    out = {"w0": w.detach().clone(), "b0": b.detach().clone(),
           "lrs": torch.tensor(LRS, dtype=torch.float64)}
    opt = make_opt(w, b)
    for k in range(STEPS):
        gw = torch.randn(3, 4) * (0.5 + k)
        gb = torch.randn(4) * 0.1
        if k == 2:
            gb[1] = 0.0  # a zero gradient: Lion's sign(0) and Adam's tiny moments
        for group in opt.param_groups:
            group["lr"] = LRS[k]
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        out[f"gw{k}"] = gw
        out[f"gb{k}"] = gb
        out[f"w{k + 1}"] = w.detach().clone()
        out[f"b{k + 1}"] = b.detach().clone()
    for key in state_keys:
        out[f"w.{key}"] = opt.state[w][key].clone()
        out[f"b.{key}"] = opt.state[b][key].clone()
    os.makedirs(OUT_DIR, exist_ok=True)
    st_write.write(os.path.join(OUT_DIR, f"{name}.safetensors"), out, META)


def adamw(w, b):
    return torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                             lr=LRS[0], betas=(0.9, 0.95), eps=1e-8, foreach=False)


def sgd(w, b):
    # torch's SGD decay is L2 (added to the gradient), not decoupled: compare without it
    return torch.optim.SGD([w, b], lr=LRS[0], momentum=0.9, foreach=False)


if __name__ == "__main__":
    run("adamw", adamw, ["exp_avg", "exp_avg_sq"])
    run("sgd", sgd, ["momentum_buffer"])
