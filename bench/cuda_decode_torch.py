#!/usr/bin/env python3
"""cuda_decode_torch.py: the transformers twin of bench/cuda_decode.c: batch-1 greedy decode
tokens/s of a random-weight LlamaForCausalLM of the Llama-3.2-1B shape (bench/llama32_1b.yml:
vocab 128256, d_model 2048, 16 layers, 32 heads over 8 kv heads, SwiGLU 8192, RoPE theta
500000 with llama3 scaling, tied head) in bf16 on the GPU, eager, at each context: a prompt
of random ids prefilled (the base model in chunks, no logits), then STEPS decode steps timed
after 4 untimed, each taking the argmax of its logits on the GPU. The KV cache is a
StaticCache of exactly context + steps + 8 tokens when this transformers has one (else the
DynamicCache, said so). Prints one line per context, as cuda_decode prints its own:
  ctx L: tokens/s R ms/token T (cache KIND)"""
import argparse
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def static_cache(config, length):
    try:
        from transformers import StaticCache
    except ImportError:
        return None
    for kw in (dict(config=config, max_batch_size=1, max_cache_len=length, device="cuda", dtype=torch.bfloat16),
               dict(config=config, max_cache_len=length),
               dict(config=config, batch_size=1, max_cache_len=length, device="cuda", dtype=torch.bfloat16)):
        try:
            return StaticCache(**kw)
        except TypeError:
            continue
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-x", "--contexts", default="1024,2048,4096,8192,16384,32768")
    ap.add_argument("-n", "--steps", type=int, default=64)
    ap.add_argument("-p", "--chunk", type=int, default=4096)
    a = ap.parse_args()
    contexts = [int(c) for c in a.contexts.split(",")]
    config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                         rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {torch.cuda.get_device_name()}", flush=True)
    g = torch.Generator(device="cuda").manual_seed(1337)
    for L in contexts:
        ids = torch.randint(0, config.vocab_size, (1, L), device="cuda", generator=g)
        cache = static_cache(config, L + a.steps + 8)
        kind = "static" if cache is not None else "dynamic"
        if cache is None:
            from transformers import DynamicCache
            cache = DynamicCache()
        with torch.inference_mode():
            for s in range(0, L, a.chunk):
                n = min(a.chunk, L - s)
                model.model(input_ids=ids[:, s:s + n], past_key_values=cache, use_cache=True,
                            cache_position=torch.arange(s, s + n, device="cuda"))
            tok = ids[:, -1:]
            pos = L
            def step(tok, pos):
                out = model(input_ids=tok, past_key_values=cache, use_cache=True,
                            cache_position=torch.tensor([pos], device="cuda"))
                return out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(4):
                tok = step(tok, pos)
                pos += 1
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                tok = step(tok, pos)
                pos += 1
            torch.cuda.synchronize()
            t = (time.perf_counter() - t0) / a.steps
        print(f"ctx {L}: tokens/s {1 / t:.1f} ms/token {t * 1e3:.3f} (cache {kind})", flush=True)
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
