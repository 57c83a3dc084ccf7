#!/usr/bin/python3
"""make_attention_fixtures.py: PyTorch reference values for lib/layers/rope.c and
lib/layers/attention.c, written into tests/reference/attention/*.safetensors (float32).

Each attention mode is written in plain torch ops straight from docs/DESIGN.md section 5, with
Hugging Face Llama's rotate_half RoPE and transformers' Llama 3 frequency scaling, then
differentiated by autograd in float64. Run from anywhere with Debian's PyTorch:
    /usr/bin/python3 tests/reference/make_attention_fixtures.py
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write_attn  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attention")


# --- RoPE, as transformers' LlamaRotaryEmbedding computes it (float32 throughout) -------------
def inv_freq(D, theta, scaling=None):
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    if scaling is None:
        return inv
    # transformers.modeling_rope_utils._compute_llama3_parameters
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_llama / factor + smooth_factor * inv_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_llama)


def rope_tables(T_max, D, theta, scaling=None):
    """cos, sin (T_max, D/2) in float32: angle = position * inv_freq in float32."""
    inv = inv_freq(D, theta, scaling)
    pos = torch.arange(T_max, dtype=torch.int64).float()
    freqs = (inv[:, None] @ pos[None, :]).transpose(0, 1)
    return freqs.cos(), freqs.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin, pos0=0):
    """x (B,T,H,D); cos, sin (T_max, D/2): HF's q * cos + rotate_half(q) * sin."""
    T = x.shape[1]
    c = torch.cat((cos, cos), dim=-1)[pos0:pos0 + T].to(x.dtype)[None, :, None, :]
    s = torch.cat((sin, sin), dim=-1)[pos0:pos0 + T].to(x.dtype)[None, :, None, :]
    return x * c + rotate_half(x) * s


# --- attention, docs/DESIGN.md section 5 ----------------------------------------------------------
def attention(x, P, cfg, cos, sin):
    B, T, d = x.shape
    H, Hkv = cfg["n_heads"], cfg["n_kv_heads"]
    group = H // Hkv

    def lin(name, inp):
        y = inp @ P[name + ".weight"].transpose(0, 1)
        if cfg["bias"]:
            y = y + P[name + ".bias"]
        return y

    def kv_for_queries(t):  # (B,T,Hkv,e) -> (B,T,H,e): query head h reads kv head h // group
        return t.repeat_interleave(group, dim=2)

    if cfg["mode"] != "decoupled":
        hd = d // H
        q = lin("q", x).view(B, T, H, hd)
        k = lin("k", x).view(B, T, Hkv, hd)
        v = lin("v", x).view(B, T, Hkv, hd)
        if cfg["rope_enabled"]:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = torch.einsum("bthe,bshe->bhts", q, kv_for_queries(k)) / math.sqrt(hd)
        dv = hd
    else:
        ds, dg, dv = cfg["sem_dim"] // H, cfg["geo_dim"] // H, cfg["v_dim"] // H
        qs = lin("q_sem", x).view(B, T, H, ds)
        ks = lin("k_sem", x).view(B, T, Hkv, ds)
        qg = lin("q_geo", x).view(B, T, H, dg)
        kg = lin("k_geo", x).view(B, T, Hkv, dg)
        v = lin("v", x).view(B, T, Hkv, dv)
        if cfg["rope_enabled"]:  # RoPE on the geometric path only
            qg, kg = apply_rope(qg, cos, sin), apply_rope(kg, cos, sin)
        if cfg["decoupled_gate"] or cfg["decoupled_gate_dynamic"]:
            z = torch.zeros(B, T, H, dtype=x.dtype)
            if cfg["decoupled_gate"]:
                z = z + P["gate"]
            if cfg["decoupled_gate_dynamic"]:
                z = z + x @ P["gate_proj.weight"].transpose(0, 1)
            g = torch.sigmoid(z)[..., None]
            qs = qs * (2 * g)
            qg = qg * (2 - 2 * g)
        scores = (torch.einsum("bthe,bshe->bhts", qs, kv_for_queries(ks)) / math.sqrt(ds)
                  + torch.einsum("bthe,bshe->bhts", qg, kv_for_queries(kg)) / math.sqrt(dg))
    if cfg["is_causal"]:
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = torch.einsum("bhts,bshe->bthe", p, kv_for_queries(v)).reshape(B, T, H * dv)
    return lin("o", o)


def tensor_shapes(cfg):
    d, H, Hkv = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"]
    shapes = {}
    if cfg["mode"] != "decoupled":
        hd = d // H
        shapes["q.weight"] = (H * hd, d)
        shapes["k.weight"] = (Hkv * hd, d)
        shapes["v.weight"] = (Hkv * hd, d)
        shapes["o.weight"] = (d, H * hd)
    else:
        sem, geo, vd = cfg["sem_dim"], cfg["geo_dim"], cfg["v_dim"]
        shapes["q_sem.weight"] = (sem, d)
        shapes["k_sem.weight"] = (Hkv * sem // H, d)
        shapes["q_geo.weight"] = (geo, d)
        shapes["k_geo.weight"] = (Hkv * geo // H, d)
        shapes["v.weight"] = (Hkv * vd // H, d)
        shapes["o.weight"] = (d, vd)
    if cfg["bias"]:
        for name in list(shapes):
            shapes[name.replace(".weight", ".bias")] = (shapes[name][0],)
    if cfg["mode"] == "decoupled" and cfg["decoupled_gate"]:
        shapes["gate"] = (H,)
    if cfg["mode"] == "decoupled" and cfg["decoupled_gate_dynamic"]:
        shapes["gate_proj.weight"] = (H, d)
    return shapes


BASE = dict(B=2, T=6, d_model=16, n_heads=4, n_kv_heads=4, sem_dim=0, geo_dim=0, v_dim=0,
            rope_enabled=True, bias=False, decoupled_gate=False, decoupled_gate_dynamic=False,
            is_causal=True, theta=10000.0, scaling=None)
SMALL_LLAMA3 = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=16)
MODES = {
    "standard": dict(mode="standard", bias=True),
    "standard_norope_noncausal": dict(mode="standard", rope_enabled=False, is_causal=False),
    "gqa": dict(mode="gqa", n_kv_heads=2, scaling=SMALL_LLAMA3),
    "decoupled": dict(mode="decoupled", sem_dim=8, geo_dim=16, v_dim=16),
    "decoupled_gate": dict(mode="decoupled", n_kv_heads=2, sem_dim=8, geo_dim=16, v_dim=16,
                           bias=True, decoupled_gate=True),
    "decoupled_dynamic": dict(mode="decoupled", sem_dim=16, geo_dim=8, v_dim=8,
                              decoupled_gate_dynamic=True),
    # T past the C code's 64-row blocks, both gates, GQA
    "decoupled_long": dict(mode="decoupled", B=1, T=70, d_model=8, n_heads=2, n_kv_heads=1,
                           sem_dim=4, geo_dim=4, v_dim=8, decoupled_gate=True,
                           decoupled_gate_dynamic=True),
}


def make_attention(name, over, gen):
    cfg = dict(BASE)
    cfg.update(over)
    B, T, d, H = cfg["B"], cfg["T"], cfg["d_model"], cfg["n_heads"]
    rot = d // H if cfg["mode"] != "decoupled" else cfg["geo_dim"] // H
    cos, sin = rope_tables(T, rot, cfg["theta"], cfg["scaling"])
    x = torch.randn(B, T, d, generator=gen)
    dout = torch.randn(B, T, d, generator=gen)
    params = {}
    for pname, shape in tensor_shapes(cfg).items():
        std = 1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.5
        params[pname] = (torch.randn(*shape, generator=gen) * std).float()
    x64 = x.double().requires_grad_(True)
    p64 = {k: v.double().requires_grad_(True) for k, v in params.items()}
    out = attention(x64, p64, cfg, cos, sin)
    (out * dout.double()).sum().backward()
    tensors = {"x": x, "dout": dout, "out": out, "grad.x": x64.grad}
    tensors.update(params)
    tensors.update({"grad." + k: v.grad for k, v in p64.items()})
    meta = {k: (int(v) if isinstance(v, bool) else v) for k, v in cfg.items()
            if k not in ("scaling",)}
    meta["rope_dim"] = rot
    if cfg["scaling"]:
        meta.update({"llama3." + k: v for k, v in cfg["scaling"].items()})
    st_write_attn.write(os.path.join(OUT, name + ".safetensors"), tensors, meta)


def make_rope(gen):
    D, T_max, theta, B, T, H, pos0 = 8, 20, 100.0, 2, 5, 3, 4
    scaling = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32)
    cos, sin = rope_tables(T_max, D, theta)
    cos3, sin3 = rope_tables(T_max, D, theta, scaling)
    x = torch.randn(B, T, H, D, generator=gen)
    dy = torch.randn(B, T, H, D, generator=gen)
    x64 = x.double().requires_grad_(True)
    y = apply_rope(x64, cos3, sin3, pos0)
    (y * dy.double()).sum().backward()
    # Llama 3.2's own numbers: head dim 64, theta 500000, factor 32, context 8192
    l32 = dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
               original_max_position_embeddings=8192)
    rows = torch.tensor([0, 1, 7, 4095, 8191, 20000])
    cos32, sin32 = rope_tables(20001, 64, 500000.0, l32)
    tensors = {"inv_freq": inv_freq(D, theta), "inv_freq_llama3": inv_freq(D, theta, scaling),
               "cos": cos, "sin": sin, "cos_llama3": cos3, "sin_llama3": sin3,
               "x": x, "dy": dy, "y": y, "dx": x64.grad,
               "inv_freq_llama32": inv_freq(64, 500000.0, l32),
               "cos_llama32_rows": cos32[rows], "sin_llama32_rows": sin32[rows]}
    meta = dict(D=D, T_max=T_max, theta=theta, B=B, T=T, H=H, pos0=pos0,
                rows_llama32=",".join(str(int(r)) for r in rows), **scaling)
    st_write_attn.write(os.path.join(OUT, "rope.safetensors"), tensors, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20240611)
    make_rope(gen)
    for name, over in MODES.items():
        make_attention(name, over, gen)


if __name__ == "__main__":
    main()
