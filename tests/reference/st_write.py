"""st_write.py: write a safetensors file without the safetensors package (shared by fixture scripts).

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}
(plus an optional string-to-string "__metadata__"), padded with spaces so the data starts on a
64-byte boundary, then the tensors' raw little-endian row-major bytes, one after another.
"""
import json
import struct

import numpy as np

_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("uint8"): "U8",
}


def _as_array(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.ascontiguousarray(value)
    if array.dtype not in _DTYPES:
        raise TypeError(f"unsupported dtype {array.dtype}")
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def write(path, tensors, metadata=None):
    """Write tensors (name -> numpy array or torch tensor) to path, names in sorted order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        array = _as_array(tensors[name])
        raw = array.tobytes(order="C")
        header[name] = {
            "dtype": _DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 64)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
