#!/usr/bin/python3
"""make_model_fixtures.py: PyTorch references for whole caramba models.

For each tests/reference/models/M.yml the plan M.plan.json (made by
`bin/cb-parse M.yml | bin/cb-lower | bin/cb-validate`) is read and its model built here in
plain torch ops by walking the plan tree, independently of the C code: every layer from
docs/DESIGN.md section 5 and the layer and topology meanings of CONTRACTS.md. Weights get a fixed
seed and larger values than caramba's init (std 0.15-0.25, norms near 1, biases and DBA
gates non-zero) so every path carries signal. The forward pass, the mean cross-entropy loss
and its backward run in float64 on float32-representable weights, so the fixture holds the
exact answer rounded once to float32. M.safetensors gets every weight under its caramba
name (NestedTopology instances expanded: blocks.0..., as lib/model/params.c lays them out),
"tokens" and "targets" (I32 [B,T]), "logits" [B,T,V], "loss" [] and "grad.<name>" for
every weight. tests/unit/model/test_model_reference.c compares the C runtime with them.
DropoutLayer must have p 0 here: caramba's masks come from its own hash.
Run with Debian's PyTorch 1.13: /usr/bin/python3 tests/reference/make_model_fixtures.py
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write  # noqa: E402

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
MODELS = ["llama_gqa", "dba_gate", "gpt2", "topologies"]
B, T = 2, 8
DT = torch.float64
META = {"cb.source": "tests/reference/make_model_fixtures.py", "cb.torch": torch.__version__}


# ---- RoPE: Hugging Face Llama convention (rotate_half), transformers' llama3 scaling ----

def rope_inv_freq(dim, theta, scaling):
    """transformers' _compute_default_rope_parameters and _compute_llama3_parameters, float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if not scaling:
        return inv_freq
    kind = scaling.get("type", scaling.get("rope_type"))
    assert kind == "llama3", kind
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_cos_sin(dim, theta, scaling):
    """cos, sin (T, dim): angles t * inv_freq in float32 as transformers forms them."""
    inv_freq = rope_inv_freq(dim, theta, scaling)
    freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1).to(DT)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cfg):
    """x (B,T,H,D): rotated by position t."""
    cos, sin = rope_cos_sin(x.shape[-1], cfg.get("rope_theta", 10000.0), cfg.get("rope_scaling"))
    return x * cos[None, :, None, :] + rotate_half(x) * sin[None, :, None, :]


# ---- layers ----

def linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def attention(x, cfg, p):
    """docs/DESIGN.md section 5: standard, GQA and decoupled (DBA) causal attention."""
    d, H = cfg["d_model"], cfg["n_heads"]
    Hkv = cfg.get("n_kv_heads", H)
    mode = cfg.get("mode", "standard" if Hkv == H else "gqa")
    rope = cfg.get("rope_enabled", True)
    Bx, Tx, _ = x.shape

    def proj(name, heads):
        y = linear(x, p[name + ".weight"], p.get(name + ".bias"))
        return y.view(Bx, Tx, heads, -1)

    def expand(kv):  # (B,T,Hkv,D) -> (B,T,H,D): query head h uses kv head h // (H / Hkv)
        return kv.repeat_interleave(H // Hkv, dim=2)

    def scores(q, k):  # (B,T,H,D) x (B,T,H,D) -> (B,H,T,T)
        return torch.einsum("bthd,bshd->bhts", q, k)

    v = expand(proj("v", Hkv))
    if mode in ("standard", "gqa"):
        q, k = proj("q", H), proj("k", Hkv)
        if rope:
            q, k = apply_rope(q, cfg), apply_rope(k, cfg)
        s = scores(q, expand(k)) / math.sqrt(d // H)
    else:
        assert mode == "decoupled", mode
        q_sem, k_sem = proj("q_sem", H), proj("k_sem", Hkv)
        q_geo, k_geo = proj("q_geo", H), proj("k_geo", Hkv)
        if rope:
            q_geo, k_geo = apply_rope(q_geo, cfg), apply_rope(k_geo, cfg)
        if cfg.get("decoupled_gate", False):
            a = p["gate"].view(1, 1, H).expand(Bx, Tx, H)
            if cfg.get("decoupled_gate_dynamic", False):
                a = a + linear(x, p["gate_proj.weight"])
            g = torch.sigmoid(a)[..., None]  # (B,T,H,1) per token and head
            q_sem, q_geo = q_sem * (2 * g), q_geo * (2 - 2 * g)
        s = (scores(q_sem, expand(k_sem)) / math.sqrt(q_sem.shape[-1]) +
             scores(q_geo, expand(k_geo)) / math.sqrt(q_geo.shape[-1]))
    if cfg.get("is_causal", True):
        mask = torch.ones(Tx, Tx, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    att = torch.einsum("bhts,bshd->bthd", s.softmax(dim=-1), v).reshape(Bx, Tx, -1)
    return linear(att, p["o.weight"], p.get("o.bias"))


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def layer(x, node, p):
    cfg, kind = node["config"], node["type"]
    if kind == "RMSNormLayer":
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + cfg["eps"]) * p["weight"]
    if kind == "LayerNormLayer":
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + cfg["eps"]) * p["weight"]
        return y + p["bias"] if "bias" in p else y
    if kind == "SwiGLULayer":
        return linear(F.silu(linear(x, p["gate.weight"])) * linear(x, p["up.weight"]), p["down.weight"])
    if kind == "MLPLayer":
        assert cfg.get("activation", "gelu") == "gelu"
        h = gelu_tanh(linear(x, p["fc.weight"], p.get("fc.bias")))
        return linear(h, p["proj.weight"], p.get("proj.bias"))
    if kind == "LinearLayer":
        return linear(x, p["weight"], p.get("bias"))
    if kind == "DropoutLayer":
        assert cfg["p"] == 0, "dropout masks are caramba's own: keep p 0 in reference models"
        return x
    if kind == "RoPE":
        H = cfg.get("n_heads", 1)
        return apply_rope(x.view(x.shape[0], x.shape[1], H, -1), cfg).reshape(x.shape)
    if kind == "AttentionLayer":
        return attention(x, cfg, p)
    raise ValueError("unknown layer " + kind)


# ---- the plan tree ----

def instance_id(node_id, reps):
    """A plan id with each "*" replaced by the enclosing NestedTopology repeat indices."""
    parts = node_id.split(".")
    it = iter(reps)
    return ".".join(str(next(it)) if q == "*" else q for q in parts)


def node_params(node, reps, weights):
    iid = instance_id(node["id"], reps)
    return {t["name"]: weights[iid + "." + t["name"]] for t in node.get("tensors", [])}


def run_node(x, node, reps, weights):
    kind = node["type"]
    if "Topology" not in kind:
        return layer(x, node, node_params(node, reps, weights))
    kids = node["children"]

    def chain(h, r=reps):
        for child in kids:
            h = run_node(h, child, r, weights)
        return h

    if kind in ("StackedTopology", "SequentialTopology"):
        return chain(x)
    if kind == "ResidualTopology":
        return x + chain(x)
    if kind == "NestedTopology":
        for r in range(node["repeat"]):
            x = chain(x, reps + [r])
        return x
    if kind in ("ParallelTopology", "BranchingTopology"):
        outs = [run_node(x, child, reps, weights) for child in kids]
        if kind == "BranchingTopology":
            return torch.cat(outs, dim=-1)
        total = sum(outs[1:], outs[0])
        return total / len(outs) if node.get("combine", "sum") == "mean" else total
    if kind == "CyclicTopology":
        h = x
        for _ in range(node.get("cycles", 2)):
            h = chain(h)
        return h
    if kind == "RecurrentTopology":
        h = x
        for _ in range(node.get("steps", 2)):
            h = chain(h) + x
        return h
    raise ValueError("unknown topology " + kind)


def tensor_specs(model):
    """(full name, shape, init, node type) of every tensor, repeats expanded."""
    specs = [(t["name"], t["shape"], t["init"], "embed") for t in model["embedder"]["tensors"]]

    def walk(node, reps):
        iid = instance_id(node["id"], reps)
        specs.extend((iid + "." + t["name"], t["shape"], t["init"], node["type"]) for t in node.get("tensors", []))
        if node["type"] == "NestedTopology":
            for r in range(node["repeat"]):
                for child in node["children"]:
                    walk(child, reps + [r])
        else:
            for child in node.get("children", []):
                walk(child, reps)

    walk(model["topology"], [])
    specs.extend((t["name"], t["shape"], t["init"], "head") for t in model["head"]["tensors"])
    return specs


def init_value(name, shape, init, gen):
    """Larger than caramba's init so every path carries signal; float32-representable."""
    noise = torch.randn(*shape, generator=gen, dtype=torch.float32)
    local = name.rsplit(".", 1)[-1]
    if init == "ones":
        v = 1 + 0.2 * noise
    elif name.endswith(".gate"):
        v = 0.8 * noise   # DBA gate logits a_h: g away from 1/2
    elif name.endswith("gate_proj.weight"):
        v = 0.25 * noise
    elif init == "zeros" or local == "bias":
        v = 0.1 * noise
    elif name in ("embed.tok", "embed.pos", "head.weight"):
        v = 0.25 * noise
    else:
        v = 0.15 * noise * math.sqrt(32 / shape[-1])  # about 0.15 at fan-in 32
    return v.to(torch.float32)


def make(name, seed):
    with open(os.path.join(MODELS_DIR, name + ".plan.json")) as f:
        model = json.load(f)["model"]
    V = model["vocab_size"]
    gen = torch.Generator().manual_seed(seed)
    weights32 = {n: init_value(n, s, i, gen) for n, s, i, _ in tensor_specs(model)}
    weights = {n: w.to(DT).requires_grad_(True) for n, w in weights32.items()}
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)

    emb = model["embedder"]
    x = weights["embed.tok"][tokens]
    if emb["type"] == "token_position":
        x = x + weights["embed.pos"][:T][None]
    assert emb.get("dropout", 0) == 0
    h = run_node(x, model["topology"], [], weights)
    head = model["head"]
    if head["tied"]:
        logits = linear(h, weights["embed.tok"])
    else:
        logits = linear(h, weights["head.weight"], weights.get("head.bias"))
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()

    out = dict(weights32)
    for n, w in weights.items():
        out["grad." + n] = w.grad.to(torch.float32)
    out["tokens"] = tokens.to(torch.int32)
    out["targets"] = targets.to(torch.int32)
    out["logits"] = logits.detach().to(torch.float32)
    out["loss"] = loss.detach().to(torch.float32)
    path = os.path.join(MODELS_DIR, name + ".safetensors")
    st_write.write(path, out, dict(META, **{"cb.model": name}))
    n_params = sum(w.numel() for w in weights32.values())
    print(f"{name}: {len(weights32)} tensors, {n_params} params, loss {loss.item():.6f}, "
          f"|logits| max {logits.abs().max().item():.3f}, {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(1)
    for i, name in enumerate(MODELS):
        make(name, 1000 + i)


if __name__ == "__main__":
    main()
