#!/usr/bin/env python3
"""make_npy_fixtures.py: token arrays written by numpy itself (np.save and format.write_array,
versions 1.0, 2.0 and 3.0) into tests/reference/npy/, for tests/unit/data/test_dataset.c:
caramba must read each, and its writer must produce the uint16 and uint32 files byte for byte.
Run with Debian's numpy: /usr/bin/python3 tests/reference/make_npy_fixtures.py"""
import os

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npy")
# the same ids in every file; test_dataset.c holds them too
IDS = [0, 1, 50256, 65535, 7, 42]
IDS_U32 = [0, 70000, 2147483647, 5, 65536, 3]


def save(name, arr, version=None):
    with open(os.path.join(HERE, name), "wb") as f:
        if version is None:
            np.save(f, arr)
        else:
            np.lib.format.write_array(f, arr, version=version)


def main():
    os.makedirs(HERE, exist_ok=True)
    save("u16.npy", np.array(IDS, dtype="<u2"))
    save("u32.npy", np.array(IDS_U32, dtype="<u4"))
    save("i32.npy", np.array(IDS, dtype="<i4"))
    save("i64.npy", np.array(IDS, dtype="<i8"))
    save("u16_v2.npy", np.array(IDS, dtype="<u2"), version=(2, 0))
    save("u16_v3.npy", np.array(IDS, dtype="<u2"), version=(3, 0))
    save("empty_u16.npy", np.array([], dtype="<u2"))
    print("numpy", np.__version__, "wrote", sorted(os.listdir(HERE)))


if __name__ == "__main__":
    main()
