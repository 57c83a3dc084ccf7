#!/usr/bin/env python3
"""make_safetensors_fixtures.py: writes safetensors files with PyTorch's `safetensors`
package, for tests/unit/tensor/test_safetensors.c to read (it skips them while absent).

Needs torch and safetensors (pip install torch safetensors). Run from the repo root:
    python3 tests/reference/make_safetensors_fixtures.py
and commit tests/reference/safetensors/torch_*.safetensors.

Values are exact in f32; the bf16 and f16 tensors are made by PyTorch's own f32 -> bf16/f16
rounding, which the C test compares bit for bit with caramba's. Keep the numbers in step
with reads_pytorch_fixture_* in the C test."""
import os
import sys

import torch
from safetensors.torch import save_file
import safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    mixed = {
        "a.f32": (torch.arange(6, dtype=torch.float32) * 0.5 - 1.0).reshape(2, 3),
        # ties and near-ties: 1 + ulp/2 and 1 + 3ulp/2 of bf16 round to even; 3e38 stays finite
        "b.bf16": f32([1.0, -2.5, 0.1, 1.00390625, 1.01171875, 3.0e38]).to(torch.bfloat16),
        # 6e-8 is an f16 subnormal, 65520 rounds to inf, 1e-8 to zero
        "c.f16": f32([0.1, -65504.0, 6e-8, 1e-3, 65520.0, 1e-8]).to(torch.float16).reshape(2, 3),
        "d.i64": torch.tensor([0, -1, 2**40, -(2**62)], dtype=torch.int64),
        "e.scalar": torch.tensor(3.5, dtype=torch.float32),
        "f.empty": torch.zeros(0, 4, dtype=torch.float32),
    }
    # one metadata key: the library writes its metadata map in hash order, so only
    # a single key gives a header whose bytes do not depend on the run
    save_file(mixed, os.path.join(OUT, "torch_mixed.safetensors"), metadata={"format": "pt"})

    nometa = {"w": (torch.arange(6, dtype=torch.float32) / 3.0).to(torch.bfloat16).reshape(3, 2)}
    save_file(nometa, os.path.join(OUT, "torch_nometa.safetensors"))

    print(f"wrote {OUT}/torch_mixed.safetensors and torch_nometa.safetensors "
          f"(torch {torch.__version__}, safetensors {safetensors.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
