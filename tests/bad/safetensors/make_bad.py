#!/usr/bin/env python3
"""make_bad.py: writes the hostile safetensors files beside this script, one defect each.
Every file must be rejected by cb_safetensors_open with CB_E_INVALID; the C test
tests/unit/tensor/test_safetensors_bad.c checks that, and the reason it gives.
Run from anywhere: python3 tests/bad/safetensors/make_bad.py (stdlib only)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header, data=b"", header_len=None):
    """A safetensors file: u64 LE length, header text (str or bytes), data."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header + data


def hdr(obj):
    return json.dumps(obj, separators=(",", ":"))


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F32x4 = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)  # 16 bytes
VALID = st(hdr({"w": t("F32", [2, 2], 0, 16)}), F32x4)

CASES = {
    "empty": b"",
    "seven_bytes": b"\x10\x00\x00\x00\x00\x00\x00",
    "truncated_header": VALID[:20],
    "truncated_data": VALID[:-5],
    "header_len_past_end": st(hdr({"w": t("F32", [1], 0, 4)}), b"\0" * 4, header_len=1000),
    "header_len_over_100mb": st("{}", header_len=100_000_001),
    "header_len_2pow64": st("{}", header_len=2**64 - 1),
    "invalid_json": st('{"w": {"dtype": "F32", ', b""),
    "invalid_utf8": st(b'{"w\xff": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
    "not_object": st("[1,2,3]"),
    "tensor_not_object": st(hdr({"w": 5})),
    "unknown_dtype": st(hdr({"w": t("F8_E4M3", [4], 0, 4)}), b"\0" * 4),
    "dtype_not_string": st(hdr({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}), b"\0" * 4),
    "missing_dtype": st(hdr({"w": {"shape": [1], "data_offsets": [0, 4]}}), b"\0" * 4),
    "missing_shape": st(hdr({"w": {"dtype": "F32", "data_offsets": [0, 4]}}), b"\0" * 4),
    "missing_offsets": st(hdr({"w": {"dtype": "F32", "shape": [1]}}), b"\0" * 4),
    "shape_negative": st(hdr({"w": t("F32", [2, -3], 0, 24)}), b"\0" * 24),
    "shape_real": st(hdr({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}), b"\0" * 8),
    "shape_nine_dims": st(hdr({"w": t("U8", [1] * 9, 0, 1)}), b"\0"),
    "shape_2pow40_elements": st(hdr({"w": t("F32", [2**20, 2**20], 0, 16)}), F32x4),
    "shape_overflow_elements": st(hdr({"w": t("U8", [2**32, 2**32, 2], 0, 16)}), F32x4),
    "shape_overflow_zero_first": st(hdr({"w": t("U8", [0, 2**32, 2**32], 0, 0)})),
    "shape_overflow_bytes": st(hdr({"w": t("F32", [2**62], 0, 16)}), F32x4),
    "offsets_past_end": st(hdr({"w": t("F32", [2, 2], 1218, 1234)}), F32x4),
    "offsets_begin_after_end": st(hdr({"w": t("F32", [2], 16, 8)}), F32x4),
    "offsets_negative": st(hdr({"w": t("F32", [1], -4, 0)}), F32x4),
    "offsets_one_entry": st(hdr({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}), F32x4),
    "size_mismatch": st(hdr({"w": t("F32", [2, 2], 0, 12)}), F32x4),
    "overlap": st(hdr({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}), F32x4),
    "overlap_contained": st(hdr({"a": t("F32", [4], 0, 16), "b": t("F32", [1], 8, 12), "c": t("F32", [1], 12, 16)}), F32x4),
    "duplicate_names": st('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                          '"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
    "metadata_non_string": st(hdr({"__metadata__": {"format": "pt", "step": 5}})),
    "metadata_not_object": st(hdr({"__metadata__": "pt"})),
}


def main():
    for name in os.listdir(HERE):
        if name.endswith(".safetensors"):
            os.remove(os.path.join(HERE, name))
    for name, data in sorted(CASES.items()):
        with open(os.path.join(HERE, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(CASES)} files into {HERE}")


if __name__ == "__main__":
    main()
