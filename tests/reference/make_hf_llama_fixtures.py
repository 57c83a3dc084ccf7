#!/usr/bin/env python3
"""make_hf_llama_fixtures.py: small Llama checkpoints made and run by Hugging Face
transformers, for tests/unit/io/test_hf_llama.c: caramba reads the directory that
transformers' save_pretrained wrote (config.json, model.safetensors) and must give the
logits transformers computed, so its Hugging Face import and its forward pass are checked
against an independent implementation, not a round trip through caramba itself.

Two models, tied and untied embeddings: vocab 37, hidden 16, 3 layers, 4 heads over 2 KV
heads, SwiGLU 40, RMSNorm eps 1e-6, RoPE theta 500000 with llama3 scaling (factor 8, low 1,
high 4, original context 16). Weights have a fixed seed and are larger than the init's
(std 0.3, norms near 1), so every path carries signal. For each, DIR/{tied,untied}/ gets
save_pretrained's files and transformers_logits.safetensors: "tokens" (I32 [T]), "logits"
(F32 [T, V], the float32 forward) and "logits_f64" (F64 [T, V], the same weights in float64).

    python3 tests/reference/make_hf_llama_fixtures.py [OUT_DIR]   (default tests/reference/hf_llama)
    python3 tests/reference/make_hf_llama_fixtures.py --logits-of HF_DIR OUT.safetensors
The second form writes transformers' logits for the tokens below for an existing directory.
Needs torch, transformers and safetensors."""
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = [(i * 7 + 3) % 37 for i in range(12)]
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}


def config(tied):
    common = dict(vocab_size=37, hidden_size=16, intermediate_size=40, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=4, max_position_embeddings=64,
                  rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, mlp_bias=False,
                  tie_word_embeddings=tied)
    try:
        return LlamaConfig(rope_theta=500000.0, rope_scaling=dict(ROPE), **common)
    except Exception as err:  # a transformers that takes rope_parameters only
        print(f"LlamaConfig(rope_scaling=...): {err}; using rope_parameters", file=sys.stderr)
        return LlamaConfig(rope_parameters=dict(ROPE, rope_theta=500000.0), **common)


def logits_of(model):
    ids = torch.tensor([TOKENS])
    with torch.no_grad():
        f32 = model.float()(ids).logits[0].contiguous()
        f64 = model.double()(ids).logits[0].contiguous()
    model.float()
    return f32, f64


def write_logits(model, path):
    f32, f64 = logits_of(model)
    save_file({"tokens": torch.tensor(TOKENS, dtype=torch.int32), "logits": f32.float(),
               "logits_f64": f64.double()}, path,
              metadata={"transformers": transformers.__version__, "torch": torch.__version__})
    print(f"{path}: logits {tuple(f32.shape)}, max |logit| {f32.abs().max().item():.3f}, "
          f"f32 vs f64 {(f32.double() - f64).abs().max().item():.3e}", file=sys.stderr)


def make(out_dir, tied):
    torch.manual_seed(2024 + tied)
    model = LlamaForCausalLM(config(tied)).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model.eval()
    d = os.path.join(out_dir, "tied" if tied else "untied")
    model.save_pretrained(d, safe_serialization=True)
    write_logits(model, os.path.join(d, "transformers_logits.safetensors"))


def main():
    args = sys.argv[1:]
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", file=sys.stderr)
    if args[:1] == ["--logits-of"]:
        try:
            model = LlamaForCausalLM.from_pretrained(args[1], dtype=torch.float32)
        except TypeError:
            model = LlamaForCausalLM.from_pretrained(args[1], torch_dtype=torch.float32)
        model.eval()
        write_logits(model, args[2])
        return
    out_dir = args[0] if args else os.path.join(HERE, "hf_llama")
    for tied in (True, False):
        make(out_dir, tied)


if __name__ == "__main__":
    main()
