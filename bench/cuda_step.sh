#!/bin/bash
# cuda_step.sh: caramba's training step on the GPU (bench/cuda_step.c) and PyTorch's
# (bench/cuda_step_torch.py: float32, bf16 eager, bf16 torch.compile) in the same call on
# the same GPU, the issue's T1 model (bench/llama110m.yml, B 16, T 1024); prints each
# one's tokens/s and caramba's ratio to each.
#   [B=16] [T=1024] [STEPS=10] [MODES=fp32,bf16,compile] [CB=build/rel/bench/cuda_step] bench/cuda_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-16} T=${T:-1024} STEPS=${STEPS:-10} MODES=${MODES:-fp32,bf16,compile}
CB=${CB:-build/rel/bench/cuda_step}
[ -x "$CB" ] || CB_QUIET_CONFIG=1 make -s build/rel/bench/cuda_step >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); B $B T $T"
echo "== caramba (cuda, float32)"
"$CB" -b "$B" -t "$T" -n "$STEPS" | tee "$tmp/cb"
cb=$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/cb")
python3 bench/cuda_step_torch.py -b "$B" -t "$T" -n "$STEPS" --modes "$MODES" | tee "$tmp/torch"
sed -n 's/^tokens\/s: \([0-9.]*\) (\(.*\))/\1 \2/p' "$tmp/torch" | while read -r rate mode; do
    awk -v c="$cb" -v t="$rate" -v m="$mode" 'BEGIN { printf "caramba / torch %s: %.3f\n", m, c / t }'
done
