#!/bin/bash
# cuda_sotu.sh: presets/tiny_sotu.yml trained on the GPU (cb-train --device cuda) against
# `make train-check`'s bar (a validation loss 1.0 nat per token below the unigram model),
# with the time; its checkpoint then decoded on the CPU by cb-generate. CPU=1 trains the
# same run on the CPU too, for the two validation losses side by side.
#   [CPU=1] [OUT_DIR=build/cuda-sotu] bench/cuda_sotu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT_DIR:-build/cuda-sotu}
data=data/sotu-gpt2
mkdir -p "$out" data
[ -f "$data/prepared.json" ] || bin/cb-data prepare --quiet --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$data"
# metrics.jsonl only: the live plot needs gnuplot, which GPU machines may lack
sed -e 's/instrument: \[jsonl, live\]/instrument: jsonl/' -e "s|data/sotu-gpt2|$PWD/$data|g" presets/tiny_sotu.yml > "$out/tiny_sotu.yml"
bin/cb compile "$out/tiny_sotu.yml" > "$out/plan.json"
unigram=$(bin/cb-data unigram --vocab 50257 "$data/train.npy" "$data/val.npy" | grep -o '"val_nll": [0-9.]*' | grep -o '[0-9.]*$')
train_on() { # device: trains into $out/$device, prints the figures
    local dev=$1 start seconds trained
    rm -rf "${out:?}/$dev"
    start=$(date +%s.%N)
    bin/cb-train --quiet --device "$dev" -o "$out/$dev" "$out/plan.json" >/dev/null || return 1
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    trained=$(grep -o '"val_loss":[0-9.]*' "$out/$dev/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$') || return 1
    awk -v u="$unigram" -v t="$trained" -v s="$seconds" -v d="$dev" 'BEGIN {
        printf "tiny_sotu on %s: %.1f s; unigram val nll %.4f, trained val loss %.4f: %.3f nats below (bar 1.0)\n",
               d, s, u, t, u - t; exit !(u - t >= 1.0) }'
}
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name --format=csv,noheader); $(nproc) cores"
status=0
train_on cuda || status=1
[ "${CPU:-0}" = 1 ] && { train_on cpu || status=1; }
echo "== the GPU's checkpoint decoded on the CPU"
bin/cb-generate --device cpu --tokenizer r50k_base --prompt "Mr. Speaker, Mr. President, members of the Congress" \
    --max-new-tokens 48 --temperature 0.8 --top-k 40 --seed 1 "$out/cuda/final"
echo
exit $status
