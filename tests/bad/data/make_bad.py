#!/usr/bin/env python3
"""make_bad.py: writes the hostile dataset files beside this script, one defect each.
Every file must be refused by cb_dataset_open with CB_E_INVALID; the C test
tests/unit/data/test_dataset.c checks that, and the reason it gives.
Run from anywhere: python3 tests/bad/data/make_bad.py (stdlib only)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def npy(header, data=b"", version=(1, 0), hlen=None, magic=b"\x93NUMPY"):
    """A .npy file: magic, version, header length, header text, data. The header is padded
    as numpy pads it (data on a 64-byte boundary) unless hlen overrides the length field."""
    h = header.encode("latin-1")
    prefix = 10 if version[0] == 1 else 12
    pad = 64 - (prefix + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    n = len(h) if hlen is None else hlen
    fmt = "<H" if version[0] == 1 else "<I"
    return magic + bytes(version) + struct.pack(fmt, n) + h + data


def d(descr="<u2", fortran="False", shape="(6,)"):
    return "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


U16x6 = struct.pack("<6H", 1, 2, 3, 4, 5, 6)

FILES = {
    "wrong_magic.npy": npy(d("'<u2'"), U16x6, magic=b"\x93NUMPX"),
    "short.npy": b"\x93NUMPY\x01\x00",
    "bad_version.npy": npy(d("'<u2'"), U16x6, version=(4, 0)),
    "header_past_end.npy": npy(d("'<u2'"), U16x6, hlen=60000),
    "truncated_data.npy": npy(d("'<u2'"), U16x6[:10]),
    "trailing_bytes.npy": npy(d("'<u2'"), U16x6 + b"\0\0"),
    "huge_shape.npy": npy(d("'<u2'", shape="(18446744073709551615,)"), U16x6),
    "fortran_order.npy": npy(d("'<u2'", fortran="True"), U16x6),
    "two_d.npy": npy(d("'<u2'", shape="(2, 3)"), U16x6),
    "scalar.npy": npy(d("'<u2'", shape="()"), U16x6[:2]),
    "not_tuple_shape.npy": npy(d("'<u2'", shape="(6)"), U16x6),
    "negative_dim.npy": npy(d("'<u2'", shape="(-6,)"), U16x6),
    "unknown_descr.npy": npy(d("'<f4'", shape="(3,)"), U16x6),
    "big_endian.npy": npy(d("'>u2'"), U16x6),
    "structured_descr.npy": npy(d("[('a', '<u2')]"), U16x6),
    "missing_key.npy": npy("{'descr': '<u2', 'shape': (6,), }", U16x6),
    "unknown_key.npy": npy("{'descr': '<u2', 'fortran_order': False, 'shape': (6,), 'x': 1, }", U16x6),
    "duplicate_key.npy": npy("{'descr': '<u2', 'descr': '<u2', 'fortran_order': False, 'shape': (6,), }", U16x6),
    "not_a_dict.npy": npy("['descr', '<u2']", U16x6),
    "negative_id.npy": npy(d("'<i4'", shape="(4,)"), struct.pack("<4i", 1, 2, 3, -5)),
    "negative_id_i64.npy": npy(d("'<i8'", shape="(2,)"), struct.pack("<2q", 7, -1)),
    "id_past_int32.npy": npy(d("'<u4'", shape="(2,)"), struct.pack("<2I", 9, 3000000000)),
    "negative_id.tokens": b"1 2\n3 -4\n",
    "not_a_number.tokens": b"1 2\n3 4\n5 six 7\n",
    "id_past_int32.tokens": b"0 1\n\n2147483648\n",
}


def main():
    for name, data in sorted(FILES.items()):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print("wrote", len(FILES), "files into", HERE)


if __name__ == "__main__":
    main()
