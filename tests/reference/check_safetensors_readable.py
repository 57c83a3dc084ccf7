#!/usr/bin/env python3
"""check_safetensors_readable.py: opens the file caramba writes in its golden test
(tests/reference/safetensors/caramba_golden.safetensors, kept byte-identical to the
writer's output by tests/unit/tensor/test_safetensors.c) with Hugging Face's safetensors
readers, and compares every tensor and metadata value with the numbers below, which
are those of add_golden() in the C test.

Needs torch, numpy and safetensors. From the repo root:
    python3 tests/reference/check_safetensors_readable.py [FILE]
Prints "ok - ..." / "not ok - ..." lines and "N passed, N failed"; exit 1 on a failure."""
import os
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "safetensors", "caramba_golden.safetensors")

# name -> (dtype as safetensors names it, shape, values); BF16/F16 are given as the
# f32 numbers caramba rounded, and are compared bit for bit with PyTorch's rounding.
EXPECTED = {
    "embed.tok": ("F32", [3, 4], [i * 0.25 - 1.0 for i in range(12)]),
    "norm.weight": ("BF16", [4], [1.0, -2.5, 0.1, 3.0e38]),
    "half": ("F16", [2, 2], [0.1, -65504.0, 6e-8, 1e-3]),
    "scalar": ("F64", [], 3.5),
    "ids": ("I64", [3], [0, -1, 2**40]),
    "mask": ("BOOL", [3], [True, False, True]),
    "bytes": ("U8", [5], [0, 1, 127, 128, 255]),
    "i8": ("I8", [2], [-128, 127]),
    "i16": ("I16", [2], [-32768, 32767]),
    "u16": ("U16", [2], [0, 65535]),
    "i32": ("I32", [2], [-(2**31), 2**31 - 1]),
    "u32": ("U32", [2], [0, 2**32 - 1]),
    "u64": ("U64", [1], [2**64 - 1]),
    "empty": ("F32", [0, 4], []),
}
METADATA = {"format": "pt", "cb.format_version": "0.1", "cb.note": "golden file, π ≈ 3.14159"}
NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_,
         "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "I32": np.int32,
         "U32": np.uint32, "U64": np.uint64}

passed = failed = 0


def check(name, cond, why=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}: {why}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    check("layout.data_aligned_64", (8 + n) % 64 == 0, f"8 + header length {n} is not a multiple of 64")
    check("layout.header_padded_with_spaces", raw[8:8 + n].rstrip(b" ").endswith(b"}"), "header end")

    # numpy view of everything numpy has a dtype for (BF16 has none)
    with safe_open(path, framework="np") as f:
        check("metadata", f.metadata() == METADATA, f"{f.metadata()!r}")
        check("names", sorted(f.keys()) == sorted(EXPECTED), f"{sorted(f.keys())}")
        for name, (dtype, shape, values) in EXPECTED.items():
            if dtype == "BF16":
                continue
            a = f.get_tensor(name)
            check(f"{name}.dtype", a.dtype == NUMPY[dtype], f"{a.dtype}")
            check(f"{name}.shape", list(a.shape) == shape, f"{list(a.shape)}")
            if dtype == "F16":
                want = np.array(values, dtype=np.float32).astype(np.float16)
                check(f"{name}.bits", a.view(np.uint16).tolist() == want.reshape(shape).view(np.uint16).tolist(),
                      f"{a.view(np.uint16).tolist()} vs numpy's rounding {want.view(np.uint16).tolist()}")
            else:
                want = np.array(values, dtype=NUMPY[dtype]).reshape(shape)
                check(f"{name}.values", np.array_equal(a, want), f"{a.tolist()} != {want.tolist()}")

    # torch view, for BF16 and the rounding cross-check against PyTorch
    with safe_open(path, framework="pt") as f:
        t = f.get_tensor("norm.weight")
        want = torch.tensor(EXPECTED["norm.weight"][2], dtype=torch.float32).to(torch.bfloat16)
        check("norm.weight.dtype", t.dtype == torch.bfloat16, f"{t.dtype}")
        check("norm.weight.bits", torch.equal(t.view(torch.int16), want.view(torch.int16)),
              f"{t.view(torch.int16).tolist()} vs PyTorch's rounding {want.view(torch.int16).tolist()}")
        h = f.get_tensor("half")
        want = torch.tensor(EXPECTED["half"][2], dtype=torch.float32).to(torch.float16).reshape(2, 2)
        check("half.torch_bits", torch.equal(h.view(torch.int16), want.view(torch.int16)),
              f"{h.view(torch.int16).tolist()} vs PyTorch's rounding {want.view(torch.int16).tolist()}")
        s = f.get_tensor("scalar")
        check("scalar.torch", s.dim() == 0 and s.item() == 3.5, f"{s}")

    # the whole-file loader checks that the offsets cover the data section exactly
    try:
        tensors = load_file(path)
        check("load_file", set(tensors) == set(EXPECTED), f"{sorted(tensors)}")
    except Exception as exc:  # the loader's own validation error is the finding
        check("load_file", False, repr(exc))

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
