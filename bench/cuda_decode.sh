#!/bin/bash
# cuda_decode.sh: batch-1 decode on the GPU, caramba (bench/cuda_decode.c: bf16 weights,
# bf16 cache) beside transformers (bench/cuda_decode_torch.py: LlamaForCausalLM in bf16,
# eager, static cache) in the same call on the same GPU, the Llama-3.2-1B shape
# (bench/llama32_1b.yml) at each context; prints caramba's share of its bandwidth bound
# and its ratio to transformers per context (caramba's default step: a CUDA graph, the
# argmax on the GPU; cuda_decode also prints the step op by op beside it).
#   [CTX=1024,...,32768] [STEPS=64] [W=bf16] [C=bf16] [TORCH=1] bench/cuda_decode.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CTX=${CTX:-1024,2048,4096,8192,16384,32768} STEPS=${STEPS:-64} W=${W:-bf16} C=${C:-bf16} TORCH=${TORCH:-1}
CB=${CB:-build/rel/bench/cuda_decode}
[ -x "$CB" ] || CB_QUIET_CONFIG=1 make -s build/rel/bench/cuda_decode >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); contexts $CTX, $STEPS steps"
echo "== caramba (cuda, weights $W, cache $C)"
"$CB" -w "$W" -c "$C" -x "$CTX" -n "$STEPS" | tee "$tmp/cb"
[ "$TORCH" = 1 ] || exit 0
echo "== transformers (bf16, eager)"
python3 bench/cuda_decode_torch.py -x "$CTX" -n "$STEPS" | tee "$tmp/torch"
sed -n 's/^ctx \([0-9]*\): tokens\/s \([0-9.]*\).*/\1 \2/p' "$tmp/torch" | while read -r L t; do
    c=$(sed -n "s/^ctx $L: tokens\/s \([0-9.]*\).*share \([0-9.]*\)%.*/\1 \2/p" "$tmp/cb")
    [ -n "$c" ] || continue
    set -- $c
    awk -v L="$L" -v c="$1" -v s="$2" -v t="$t" 'BEGIN {
        printf "ctx %d: caramba %.1f tok/s (%.1f%% of bound), transformers %.1f tok/s, ratio %.2f\n", L, c, s, t, c / t }'
done
