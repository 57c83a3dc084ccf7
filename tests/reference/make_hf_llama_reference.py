#!/usr/bin/python3
"""make_hf_llama_reference.py: two small Llama checkpoints in the Hugging Face layout
(config.json, model.safetensors with transformers' tensor names), written here without
caramba, and the logits that transformers' LlamaForCausalLM computes for them, computed
here in plain float64 torch ops that follow transformers' modeling_llama.py and
modeling_rope_utils.py (RMSNorm, rotate_half RoPE with llama3 scaling, grouped KV heads,
SwiGLU, tied or separate lm_head). tests/unit/io/test_hf_llama.c reads each directory with
caramba's Hugging Face import and must give these logits; its export must give back these
tensors. So the import and the forward pass are checked against an outside reading of the
format, not a round trip through caramba.

Where transformers is installed, tests/reference/make_hf_llama_fixtures.py makes the same
kind of directory with transformers itself (save_pretrained and its forward pass).

Models: vocab 37, hidden 16, 3 layers, 4 heads over 2 KV heads (head_dim 4), SwiGLU 40,
RMSNorm eps 1e-6, RoPE theta 500000 with llama3 scaling (factor 8, low 1, high 4, original
context 16); weights float32 with a fixed seed, std 0.3 (norms 1 + 0.2 N(0,1)). Tokens
(i * 7 + 3) % 37 for i < 12. Each directory gets reference_logits.safetensors: "tokens"
(I32 [T]) and "logits" (F64 [T, V]).

Run with Debian's PyTorch: /usr/bin/python3 tests/reference/make_hf_llama_reference.py [OUT]"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
V, D, L, H, HKV, F = 37, 16, 3, 4, 2, 40
HD = D // H
EPS, THETA = 1e-6, 500000.0
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}
TOKENS = [(i * 7 + 3) % V for i in range(12)]


def weights(seed, tied):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)

    def norm():
        return (1.0 + 0.2 * rng.standard_normal(D)).astype(np.float32)

    w = {"model.embed_tokens.weight": normal(V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = normal(H * HD, D)
        w[p + "self_attn.k_proj.weight"] = normal(HKV * HD, D)
        w[p + "self_attn.v_proj.weight"] = normal(HKV * HD, D)
        w[p + "self_attn.o_proj.weight"] = normal(D, H * HD)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = normal(F, D)
        w[p + "mlp.up_proj.weight"] = normal(F, D)
        w[p + "mlp.down_proj.weight"] = normal(D, F)
    w["model.norm.weight"] = norm()
    if not tied:
        w["lm_head.weight"] = normal(V, D)
    return w


def config(tied):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": D,
        "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": HKV,
        "head_dim": HD, "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": EPS,
        "rope_theta": THETA, "rope_scaling": ROPE, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "tie_word_embeddings": tied, "torch_dtype": "float32",
    }


def llama3_inv_freq():
    """transformers' _compute_llama3_parameters, in float64"""
    inv_freq = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    factor, low, high = ROPE["factor"], ROPE["low_freq_factor"], ROPE["high_freq_factor"]
    old_context = ROPE["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, inv_freq_llama)


def rms_norm(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def logits_of(w, tied):
    t = {k: torch.from_numpy(v).double() for k, v in w.items()}
    T = len(TOKENS)
    h = t["model.embed_tokens.weight"][torch.tensor(TOKENS)]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), llama3_inv_freq())
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]  # (T, 1, HD)
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(L):
        p = f"model.layers.{i}."
        x = rms_norm(h, t[p + "input_layernorm.weight"])
        q = (x @ t[p + "self_attn.q_proj.weight"].T).view(T, H, HD)
        k = (x @ t[p + "self_attn.k_proj.weight"].T).view(T, HKV, HD)
        v = (x @ t[p + "self_attn.v_proj.weight"].T).view(T, HKV, HD)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // HKV, dim=1)  # repeat_kv: query head j reads kv head j // group
        v = v.repeat_interleave(H // HKV, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) * HD ** -0.5 + mask
        att = torch.einsum("hts,shd->thd", torch.softmax(scores, dim=-1), v).reshape(T, H * HD)
        h = h + att @ t[p + "self_attn.o_proj.weight"].T
        x = rms_norm(h, t[p + "post_attention_layernorm.weight"])
        gate, up = x @ t[p + "mlp.gate_proj.weight"].T, x @ t[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(gate) * up) @ t[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, t["model.norm.weight"])
    head = t["model.embed_tokens.weight"] if tied else t["lm_head.weight"]
    return h @ head.T


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "hf_llama")
    for tied in (True, False):
        d = os.path.join(out, "tied" if tied else "untied")
        os.makedirs(d, exist_ok=True)
        w = weights(2024 + tied, tied)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config(tied), f, indent=2)
            f.write("\n")
        st_write.write(os.path.join(d, "model.safetensors"), w, metadata={"format": "pt"})
        logits = logits_of(w, tied)
        st_write.write(os.path.join(d, "reference_logits.safetensors"),
                       {"tokens": np.array(TOKENS, dtype=np.int32), "logits": logits.numpy()},
                       metadata={"source": "tests/reference/make_hf_llama_reference.py", "torch": torch.__version__})
        print(f"{d}: logits {tuple(logits.shape)}, max |logit| {logits.abs().max().item():.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
