#!/usr/bin/env bash
# cb-train --device cuda: the tiny Llama trains on the GPU close to the CPU's losses; its
# checkpoints are the CPU's files (cb-generate decodes the GPU's final model on the CPU,
# a run moves between the devices with --resume); cb-generate --device cuda decodes it on the
# GPU to the CPU's greedy ids.
# (Lion and SGD on the GPU: tests/unit/backend/test_cuda.c.) Skips where the build has no CUDA backend or the machine no GPU.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

"$CB_BIN/cb" compile tests/cli/train/tiny.yml > "$TMP/plan.json" || { not_ok compile "tests/cli/train/tiny.yml"; exit 0; }
LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 3000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", (i * 7 + int(x / 65536) % 5) % 64, (i % 20 == 19 ? "\n" : " ") } }' > "$TMP/train.tokens"
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" "$@" "$TMP/plan.json"; }
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1" | sed 's/.*"loss"://'; }

run train --device cuda --run adamw --steps 1 -o "$TMP/probe"
if [ "$STATUS" -ne 0 ] && grep -qE "no cuda backend|none is present" "$TMP/err"; then
    echo "skip - $SCRIPT: $(sed 's/^cb-train: //' "$TMP/err" | head -n 1)"
    exit 0
fi

# within TOL (relative) at every step: float32 on both, sums in another order
TOL=2e-4
close() { # NAME FILE_A FILE_B [FIRST_LINE_OF_A]
    local name=$1 a=$2 b=$3 from=${4:-1}
    if paste <(losses "$a" | sed -n "$from,\$p") <(losses "$b") | awk -v t=$TOL '
        { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r }
        END { printf "  %s: %d steps, worst relative loss difference %.2e (tol %g)\n", name, n, worst, t > "/dev/stderr";
              exit !(n > 0 && worst <= t) }' name="$name"; then ok "$name"
    else not_ok "$name" "the losses differ by more than $TOL"; fi
}

# 1. 20 steps of AdamW (grad_accum 2, clipping, dropout, evaluations) on each device
expect_run cpu_run 0 train --device cpu --run adamw -o "$TMP/cpu"
expect_run gpu_run 0 train --device cuda --run adamw -o "$TMP/gpu"
[ "$(losses "$TMP/gpu/metrics.jsonl" | wc -l)" -eq 20 ] && ok gpu_20_steps || not_ok gpu_20_steps "$(losses "$TMP/gpu/metrics.jsonl" | wc -l) loss lines"
close gpu_losses_match_cpu "$TMP/cpu/metrics.jsonl" "$TMP/gpu/metrics.jsonl"

# 2. the GPU's checkpoint decodes on the CPU (greedy: the same ids as from the CPU's own
#    final model when the weights agree to float rounding is not promised; both must run)
expect_run generate_cpu_from_gpu_model 0 "$CB_BIN/cb-generate" --device cpu --ids 1,2,3 --max-new-tokens 8 \
    --temperature 0 "$TMP/gpu/final"
[ "$(wc -w < "$TMP/out")" -eq 8 ] && ok generate_8_tokens || not_ok generate_8_tokens "output: $(head -c 200 "$TMP/out")"

# 3. across devices: CPU steps 1-10 resumed on the GPU, and GPU steps 1-10 on the CPU
expect_run resume_cpu_to_gpu 0 train --device cuda --run adamw -o "$TMP/c2g" --resume "$TMP/cpu/step-00000010"
close resume_cpu_to_gpu_losses "$TMP/cpu/metrics.jsonl" "$TMP/c2g/metrics.jsonl" 11
expect_run resume_gpu_to_cpu 0 train --device cpu --run adamw -o "$TMP/g2c" --resume "$TMP/gpu/step-00000010"
close resume_gpu_to_cpu_losses "$TMP/gpu/metrics.jsonl" "$TMP/g2c/metrics.jsonl" 11

# 4. decoding on the GPU: greedy, the CPU's ids (float32 weights and cache on both: the
#    logits agree to rounding, tests/unit/backend/test_cuda_decode.c)
expect_run generate_gpu_from_gpu_model 0 "$CB_BIN/cb-generate" --device cuda --ids 1,2,3 --max-new-tokens 8 \
    --temperature 0 "$TMP/gpu/final"
cp "$TMP/out" "$TMP/gpu_ids"
expect_run generate_cpu_again 0 "$CB_BIN/cb-generate" --device cpu --ids 1,2,3 --max-new-tokens 8 \
    --temperature 0 "$TMP/gpu/final"
if cmp -s "$TMP/out" "$TMP/gpu_ids"; then ok generate_gpu_equals_cpu
else not_ok generate_gpu_equals_cpu "gpu: $(head -c 200 "$TMP/gpu_ids"); cpu: $(head -c 200 "$TMP/out")"; fi
