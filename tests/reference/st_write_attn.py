"""st_write_attn.py: writes a safetensors file by hand, as docs/DESIGN.md section 2 fixes it:
an 8-byte little-endian header length, a JSON header (dtype, shape, data_offsets per tensor,
string-to-string __metadata__) padded with spaces so the data starts on a 64-byte boundary,
then raw little-endian row-major data. Used by make_attention_fixtures.py (float32 only)."""
import json
import os
import struct

import torch


def write(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (stored as F32, in insertion order)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 64)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)
