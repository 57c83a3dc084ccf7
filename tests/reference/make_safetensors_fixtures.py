#!/usr/bin/env python3
"""make_safetensors_fixtures.py: writes safetensors files with PyTorch's `safetensors`
package, for tests/unit/tensor/test_safetensors.c to read (it skips them while absent).

Needs torch and safetensors (pip install torch safetensors). Run from the repo root:
    python3 tests/reference/make_safetensors_fixtures.py [OUT_DIR]
and commit tests/reference/safetensors/torch_*.safetensors and golden.safetensors.

golden.safetensors holds the tensors and metadata of add_golden() in the C test, written by
the library's own serializer (safetensors.serialize_file, raw little-endian bytes for every
dtype, the f16 and bf16 values rounded by PyTorch), so that caramba's writer is compared with
an independent writer, not with a file it made itself.

Values are exact in f32; the bf16 and f16 tensors are made by PyTorch's own f32 -> bf16/f16
rounding, which the C test compares bit for bit with caramba's. Keep the numbers in step
with reads_pytorch_fixture_* in the C test."""
import os
import struct
import sys

import torch
from safetensors.torch import save_file
import safetensors

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def raw(fmt, values):
    """little-endian bytes of values packed with struct format letter fmt"""
    return struct.pack("<%d%s" % (len(values), fmt), *values)


def u16_bits(tensor):
    """the 16-bit patterns of an f16 or bf16 tensor, as little-endian bytes"""
    return raw("H", [int(v) & 0xFFFF for v in tensor.view(torch.int16).tolist()])


def write_golden(path):
    # keep in step with add_golden() in tests/unit/tensor/test_safetensors.c
    tok = [i * 0.25 - 1.0 for i in range(12)]
    bf16 = f32([1.0, -2.5, 0.1, 3.0e38]).to(torch.bfloat16)
    f16 = f32([0.1, -65504.0, 6e-8, 1e-3]).to(torch.float16)
    tensors = {
        "embed.tok": ("float32", [3, 4], raw("f", tok)),
        "norm.weight": ("bfloat16", [4], u16_bits(bf16)),
        "half": ("float16", [2, 2], u16_bits(f16)),
        "scalar": ("float64", [], raw("d", [3.5])),
        "ids": ("int64", [3], raw("q", [0, -1, 2**40])),
        "mask": ("bool", [3], bytes([1, 0, 1])),
        "bytes": ("uint8", [5], bytes([0, 1, 127, 128, 255])),
        "i8": ("int8", [2], raw("b", [-128, 127])),
        "i16": ("int16", [2], raw("h", [-32768, 32767])),
        "u16": ("uint16", [2], raw("H", [0, 65535])),
        "i32": ("int32", [2], raw("i", [-(2**31), 2**31 - 1])),
        "u32": ("uint32", [2], raw("I", [0, 2**32 - 1])),
        "u64": ("uint64", [1], raw("Q", [2**64 - 1])),
        "empty": ("float32", [0, 4], b""),
    }
    metadata = {"format": "pt", "cb.format_version": "0.1", "cb.note": "golden file, π ≈ 3.14159"}
    flat = {k: {"dtype": d, "shape": shape, "data": data} for k, (d, shape, data) in tensors.items()}
    try:
        safetensors.serialize_file(flat, path, metadata=metadata)
    except Exception as err:  # a serializer that names dtypes as the format does
        print(f"serialize_file with numpy dtype names: {err}; retrying with the format's names", file=sys.stderr)
        names = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int64": "I64",
                 "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "int32": "I32",
                 "uint32": "U32", "uint64": "U64"}
        for v in flat.values():
            v["dtype"] = names[v["dtype"]]
        safetensors.serialize_file(flat, path, metadata=metadata)
    # read back with the library's reader: every tensor as written
    with safetensors.safe_open(path, framework="pt") as f:
        assert sorted(f.keys()) == sorted(tensors), f.keys()
        assert f.metadata() == metadata, f.metadata()
        assert f.get_tensor("embed.tok").flatten().tolist() == tok
        assert f.get_tensor("u64").dtype == torch.uint64


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

    write_golden(os.path.join(OUT, "golden.safetensors"))

    print(f"wrote {OUT}/torch_mixed.safetensors, torch_nometa.safetensors and golden.safetensors "
          f"(torch {torch.__version__}, safetensors {safetensors.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
