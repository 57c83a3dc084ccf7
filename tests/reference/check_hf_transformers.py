#!/usr/bin/env python3
"""Load Hugging Face Llama directories written by `cb-build --export-hf` with
transformers' LlamaForCausalLM and compare its logits with caramba's own forward pass
(`cb-build --forward TOKENS -o logits.safetensors MODEL_DIR`).

usage: check_hf_transformers.py HF_DIR CARAMBA_LOGITS.safetensors TOKENS [HF_DIR LOGITS TOKENS ...]
Prints one line per model with max |delta| and exits 1 if any exceeds 1e-4 (fp32)."""
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

TOL = 1e-4
args = sys.argv[1:]
if not args or len(args) % 3:
    sys.exit(__doc__)
worst_all = 0.0
for i in range(0, len(args), 3):
    hf_dir, logits_path, tokens = args[i], args[i + 1], args[i + 2]
    ids = torch.tensor([[int(t) for t in tokens.split(",")]])
    model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        hf_logits = model(ids).logits
    ours = load_file(logits_path)["logits"]
    delta = (hf_logits - ours).abs().max().item()
    scale = hf_logits.abs().max().item()
    print(f"{hf_dir}: transformers {torch.__version__} vs caramba: logits {tuple(ours.shape)}, "
          f"max |delta| {delta:.3e} (max |logit| {scale:.3f}, tol {TOL:g})")
    worst_all = max(worst_all, delta)
sys.exit(0 if worst_all <= TOL else 1)
