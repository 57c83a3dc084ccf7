#!/bin/bash
# cuda_step.sh: caramba's training step on the GPU (bench/cuda_step.c: float32, with TF32
# products, and mixed precision: bf16 products, train.amp) and PyTorch's (bench/cuda_step_torch.py: float32, TF32, bf16 eager, bf16
# torch.compile) in the same call on the same GPU: the issue's T1 model
# (bench/llama110m.yml, B 16, T 1024); prints each one's tokens/s and caramba's ratios.
# MODEL=bench/llama110m_gqa4.yml KV=4 times the GQA variant (PyTorch with 4 kv heads);
# MODEL=bench/llama110m_dba.yml MODES= times caramba's DBA alone (no PyTorch twin yet).
#   [B=16] [T=1024] [STEPS=10] [MODEL=...] [KV=12] [MODES=fp32,tf32,bf16,compile] bench/cuda_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-16} T=${T:-1024} STEPS=${STEPS:-10} MODEL=${MODEL:-bench/llama110m.yml} KV=${KV:-12}
MODES=${MODES-fp32,tf32,bf16,compile}
CB=${CB:-build/rel/bench/cuda_step}
[ -x "$CB" ] || CB_QUIET_CONFIG=1 make -s build/rel/bench/cuda_step >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); $MODEL B $B T $T"
echo "== caramba (cuda, float32)"
"$CB" -m "$MODEL" -b "$B" -t "$T" -n "$STEPS" | tee "$tmp/cb"
echo "== caramba (cuda, float32, TF32 products)"
"$CB" -m "$MODEL" -b "$B" -t "$T" -n "$STEPS" -x | tee "$tmp/cbx"
echo "== caramba (cuda, amp: bf16 products, float32 sums and weights)"
"$CB" -m "$MODEL" -b "$B" -t "$T" -n "$STEPS" -a | tee "$tmp/cba"
cb=$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/cb")
cbx=$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/cbx")
cba=$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/cba")
[ -n "$MODES" ] || exit 0
python3 bench/cuda_step_torch.py -b "$B" -t "$T" -n "$STEPS" --kv "$KV" --modes "$MODES" | tee "$tmp/torch"
sed -n 's/^tokens\/s: \([0-9.]*\) (\(.*\))/\1 \2/p' "$tmp/torch" | while read -r rate mode; do
    awk -v c="$cb" -v x="$cbx" -v a="$cba" -v t="$rate" -v m="$mode" 'BEGIN {
        printf "caramba fp32 / torch %s: %.3f; caramba tf32 / torch %s: %.3f; caramba amp / torch %s: %.3f\n",
            m, c / t, m, x / t, m, a / t }'
done
