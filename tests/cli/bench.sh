#!/usr/bin/env bash
# cb-bench on tiny models built with cb-build (random weights: the mechanics, not the
# quality): a group's perplexity, latency, memory and generation benchmarks, --bench,
# the JSON lines' fields (machine, plan hash, confidence intervals), KV bytes per token
# against the analytic figure, custom suites (the seed's README example), and refusals of
# bad input (one stderr line, documented status, no output file).
. "$(dirname "$0")/lib.sh"
BENCH="$CB_BIN/cb-bench"

# teacher: Llama-shaped (2 layers, 2 kv heads of 8); student: the same with DBA attention
cat > "$TMP/m.yml" <<'YML'
version: 1
name: tiny_bench
model:
  type: TransformerModel
  tie_embeddings: true
  embedder: {type: token_position, vocab_size: 256, d_model: 32, max_seq_len: 96}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 32}
              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 32}
              - {type: SwiGLULayer, d_model: 32, d_ff: 64}
      - {type: RMSNormLayer, d_model: 32}
defaults:
  tokenizer: byte
groups:
  - name: paper
    data: DATA/train.npy
    runs:
      - {id: train, mode: train, steps: 1}
    benchmarks:
      - id: perplexity
        config: {type: perplexity, dataset: DATA/val.npy, block_size: 32, num_batches: 3}
        models: [teacher, student]
      - id: latency
        config: {type: latency, prompt_lengths: [8, 32, 128], generation_lengths: [4, 8], warmup_runs: 1, timed_runs: 3}
        models: [teacher, student]
      - id: memory
        config: {type: memory, sequence_lengths: [16, 64], quantization_modes: [fp32, q8, q4_0]}
        models: [teacher, student]
      - id: samples
        config: {type: generation, tokenizer: {type: byte}, prompts: ["The state of"], max_new_tokens: 6, temperature: 0}
        models: [student]
  - name: other
    runs:
      - {id: train, mode: train, steps: 1}
YML
sed -i "s|DATA|$TMP/data|" "$TMP/m.yml"
sed 's/n_heads: 4, n_kv_heads: 2}/n_heads: 4, n_kv_heads: 2, mode: decoupled, sem_dim: 8, geo_dim: 16}/' "$TMP/m.yml" > "$TMP/s.yml"
mkdir -p "$TMP/corpus" && cp README.md "$TMP/corpus/a.txt" && cp docs/DESIGN.md "$TMP/corpus/b.txt" &&
    cp man/cb-generate.1 "$TMP/corpus/c.txt" && cp man/cb-train.1 "$TMP/corpus/d.txt" || { not_ok setup "corpus"; exit 1; }
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/plan.json" && "$CB_BIN/cb" compile "$TMP/s.yml" > "$TMP/splan.json" &&
"$CB_BIN/cb-build" -o "$TMP/teacher" "$TMP/plan.json" 2>/dev/null &&
"$CB_BIN/cb-build" --seed 3 -o "$TMP/student" "$TMP/splan.json" 2>/dev/null &&
"$CB_BIN/cb-data" prepare --corpus "$TMP/corpus" --tokenizer byte --val-frac 0.3 --quiet -o "$TMP/data" ||
    { not_ok setup "cb-build or cb-data failed"; exit 1; }
MODELS=(--model "teacher=$TMP/teacher" --model "student=$TMP/student")

# the whole group, to a file
expect_run group 0 "$BENCH" --group paper "${MODELS[@]}" -o "$TMP/res.jsonl" --quiet "$TMP/plan.json"
R="$TMP/res.jsonl"
[ -s "$TMP/out" ] && not_ok group.stdout "stdout not empty with -o" || ok group.stdout
[ -s "$TMP/err" ] && not_ok group.quiet "stderr: $(head -c 200 "$TMP/err")" || ok group.quiet
# perplexity 2 + latency 2*3*2 (prompt 128 + 8 exceeds the context of 96: skipped) + memory 2*2*3 + 1 sample
jq -s -e 'length == 2 + 12 + 12 + 1' "$R" >/dev/null && ok group.count || not_ok group.count "$(wc -l < "$R") lines"
jq -e '.cb_version == "0.1" and .kind == "bench" and .group == "paper" and (.plan_sha256 | length) == 64
       and (.model_plan_sha256 | length) == 64 and (.time | test("Z$")) and (.elapsed_s >= 0)' "$R" >/dev/null &&
    ok group.common_fields || not_ok group.common_fields "$(head -c 400 "$R")"
# the plan hash is the sha256 of the plan as plan.json holds it (the teacher was built from it)
want=$(sha256sum "$TMP/teacher/plan.json" | cut -d' ' -f1)
jq -e --arg h "$want" '.plan_sha256 == $h' "$R" >/dev/null && ok group.plan_sha256 ||
    not_ok group.plan_sha256 "want $want: $(jq -r .plan_sha256 "$R" | head -1)"
# the machine, with the BLAS line `cb --version` reports
blas=$("$CB_BIN/cb" --version | sed -n 's/^blas: //p')
jq -e --arg b "$blas" '.machine | (.cpu | length) > 0 and .threads >= 1 and .logical_cpus >= 1 and .blas == $b
       and .device == "cpu" and (.os | length) > 0' "$R" >/dev/null && ok group.machine ||
    not_ok group.machine "$(jq -c .machine "$R" | head -1), want blas $blas"
# perplexity: exp(loss), an interval around it, 3 batches of 32
# (jq 1.6's -e looks at the last input's output: slurp, so there is one)
jq -s -e '[.[] | select(.type == "perplexity") | .values] | length == 2 and all(.[]; .batches == 3 and .tokens == 96
       and ((.perplexity - (.loss | exp)) | if . < 0 then -. else . end) < 1e-9 * .perplexity
       and .perplexity_ci95[0] <= .perplexity and .perplexity <= .perplexity_ci95[1])' "$R" >/dev/null &&
    ok perplexity.fields || not_ok perplexity.fields "$(jq -c 'select(.type == "perplexity") | .values' "$R")"
# latency: every grid point, stats with p50 <= p90 and an interval (3 timed runs)
jq -s -e '[.[] | select(.type == "latency" and (.skipped | not))] | length == 8 and all(.[];
       .params.cache_kind == "fp32" and .params.weights == "fp32" and .params.timed_runs == 3 and
       (.values.prefill_ms | .n == 3 and .min > 0 and .p50 <= .p90 and .ci95[0] <= .mean and .mean <= .ci95[1]) and
       (.values.decode_tokens_per_s | .n == 3 and .min > 0 and .p50 <= .p90))' "$R" >/dev/null &&
    ok latency.fields || not_ok latency.fields "$(jq -c 'select(.type == "latency") | .values.prefill_ms' "$R" | head -2)"
jq -s -e '[.[] | select(.type == "latency" and .skipped)] | length == 4 and
       all(.[]; .params.prompt_length == 128 and (.skipped | test("context \\(96\\)")))' "$R" >/dev/null &&
    ok latency.skipped_past_context || not_ok latency.skipped_past_context "$(jq -c 'select(.skipped) | .skipped' "$R")"
# memory: KV bytes per token as worked from the shapes (infer/kv_cache.h: heads narrower
# than a block are packed, a block spanning heads and tokens, lcm(row, block) / row tokens a
# row of blocks). teacher: 2 layers x (k + v) x 2 kv heads x 8 values: fp32 256; a token's
# row of 16 values is half a block: q8_0 2 x 2 x 34/2 = 68, q4_0 2 x 2 x 18/2 = 36. student
# (DBA, d_sem 8/4 = 2, d_geo 16/4 = 4, d_v 8: rows of 4, 8, 16): fp32 2 layers x 2 heads x
# (2+4+8) x 4 = 224; q8_0 2 x (34/8 + 34/4 + 34/2) = 59.5, q4_0 2 x (18/8 + 18/4 + 18/2) =
# 31.5 (padded per head it was 12 blocks: 408 and 216). 16 and 64 tokens fill every row, so
# nothing is left on the float stage and kv_bytes = bytes per token x tokens.
want_kv='{"teacher": {"fp32": 256, "q8_0": 68, "q4_0": 36}, "student": {"fp32": 224, "q8_0": 59.5, "q4_0": 31.5}}'
jq -s -e --argjson w "$want_kv" '[.[] | select(.type == "memory")] | length == 12 and all(.[];
       .values.kv_bytes_per_token == $w[.model][.params.cache_kind] and
       .values.kv_bytes == .values.kv_bytes_per_token * .params.sequence_length and
       .values.tokens == .params.sequence_length and .values.peak_rss_bytes > 0 and
       .values.peak_rss_bytes >= .values.baseline_rss_bytes and .values.baseline_rss_bytes > 0 and
       (.values | has("device_bytes") | not))' "$R" >/dev/null &&
    ok memory.kv_bytes_analytic || not_ok memory.kv_bytes_analytic "$(jq -c 'select(.type == "memory") | [.model, .params.cache_kind, .values.kv_bytes_per_token]' "$R" | tr '\n' ' ')"
jq -s -e '[.[] | select(.type == "memory") | .params.quantization_mode] | index("q8") != null' "$R" >/dev/null &&
    ok memory.q8_alias || not_ok memory.q8_alias "q8 not kept as the mode named"
# generation: the text of the prompt's continuation
jq -s -e '[.[] | select(.type == "generation")] | length == 1 and all(.[]; .params.prompt == "The state of" and
       .values.new_tokens == 6 and .values.stop == "length" and (.values.text | type) == "string")' "$R" >/dev/null &&
    ok generation.fields || not_ok generation.fields "$(jq -c 'select(.type == "generation") | .values' "$R")"

# --bench: one benchmark; stdout; the same perplexity as before (deterministic)
expect_run one_bench 0 "$BENCH" --group paper --bench perplexity "${MODELS[@]}" --quiet "$TMP/plan.json"
jq -s -e --slurpfile all "$R" 'length == 2 and all(.[]; .benchmark == "perplexity") and
       (map(.values.perplexity) == ($all | map(select(.type == "perplexity") | .values.perplexity)))' \
    "$TMP/out" >/dev/null && ok one_bench.same_values || not_ok one_bench.same_values "$(head -c 300 "$TMP/out")"
# --data replaces perplexity's dataset
expect_run data_override 0 "$BENCH" --group paper --bench perplexity "${MODELS[@]}" --data "$TMP/data/train.npy" --quiet "$TMP/plan.json"
jq -e --arg d "$TMP/data/train.npy" '.params.dataset == $d' "$TMP/out" >/dev/null && ok data_override.dataset ||
    not_ok data_override.dataset "$(head -c 300 "$TMP/out")"
# latency's weights: the session stores the matrices as asked (q8_0 logits differ from fp32's,
# so its greedy tokens per second are those of another session; the kind is recorded)
sed 's/generation_lengths: \[4, 8\], warmup_runs: 1, timed_runs: 3}/generation_lengths: [4], warmup_runs: 0, timed_runs: 1, weights: q8_0}/' \
    "$TMP/m.yml" > "$TMP/mq.yml" && "$CB_BIN/cb" compile "$TMP/mq.yml" > "$TMP/qplan.json" || not_ok weights.compile "does not compile"
expect_run weights 0 "$BENCH" --group paper --bench latency "${MODELS[@]}" --quiet "$TMP/qplan.json"
jq -s -e 'map(select(.skipped | not)) | length == 4 and all(.[]; .params.weights == "q8_0")' "$TMP/out" >/dev/null &&
    ok weights.recorded || not_ok weights.recorded "$(head -c 300 "$TMP/out")"
sed 's/weights: q8_0/weights: q3/' "$TMP/mq.yml" > "$TMP/mq3.yml"
expect_run weights_unknown 3 "$CB_BIN/cb" compile "$TMP/mq3.yml"
grep -q 'config.weights: unknown value "q3"' "$TMP/err" && ok weights_unknown.line || not_ok weights_unknown.line "$(cat "$TMP/err")"
# batch_sizes: a batch decodes together (one record a batch size, the same grid); memory's
# batch of 2 holds twice one sequence's cache, and its weights once
sed 's/generation_lengths: \[4, 8\], warmup_runs: 1, timed_runs: 3}/generation_lengths: [6], batch_sizes: [1, 3], warmup_runs: 0, timed_runs: 2}/' \
    "$TMP/m.yml" > "$TMP/mb.yml" && "$CB_BIN/cb" compile "$TMP/mb.yml" > "$TMP/bplan.json" || not_ok batch.compile "does not compile"
expect_run batch 0 "$BENCH" --group paper --bench latency "${MODELS[@]}" --quiet "$TMP/bplan.json"
jq -s -e 'map(select(.skipped | not)) | length == 8 and (map(.params.batch_size) | sort | unique) == [1, 3] and
       all(.[]; .values.decode_tokens_per_s.p50 > 0 and .values.prefill_ms.p50 > 0)' "$TMP/out" >/dev/null &&
    ok batch.records || not_ok batch.records "$(head -c 400 "$TMP/out")"
sed 's/sequence_lengths: \[/batch_sizes: [1, 2], sequence_lengths: [/' "$TMP/m.yml" > "$TMP/mm.yml"
if grep -q 'batch_sizes: \[1, 2\]' "$TMP/mm.yml" && "$CB_BIN/cb" compile "$TMP/mm.yml" > "$TMP/mplan.json"; then
    expect_run memory_batch 0 "$BENCH" --group paper --bench memory "${MODELS[@]}" --quiet "$TMP/mplan.json"
    jq -s -e 'map(select(.skipped | not)) | group_by([.model, .params.sequence_length, .params.cache_kind]) |
              length == 12 and all(.[]; length == 2 and (sort_by(.params.batch_size) as [$one, $two] |
              $two.values.kv_bytes == 2 * $one.values.kv_bytes and $two.values.tokens == 2 * $one.values.tokens and
              $two.values.weight_bytes == $one.values.weight_bytes))' "$TMP/out" >/dev/null &&
        ok memory_batch.twice || not_ok memory_batch.twice "$(jq -c '[.params.batch_size, .values.kv_bytes]' "$TMP/out" | head -4)"
else
    not_ok memory_batch.compile "$(grep -n memory "$TMP/m.yml")"
fi
# progress lines on stderr without --quiet
expect_run progress 0 "$BENCH" --group paper --bench memory "${MODELS[@]}" -o "$TMP/mem.jsonl" "$TMP/plan.json"
grep -q '^cb-bench: teacher: 64 tokens, q4_0 cache: 2304 bytes (36.0 per token)' "$TMP/err" && ok progress.lines ||
    not_ok progress.lines "$(head -c 300 "$TMP/err")"

# a custom suite file: the seed's README example, on every model given
cat > "$TMP/adversarial.yml" <<'YML'
# config/benchmarks/adversarial.yml
benchmark:
  id: adversarial
  description: "Adversarial benchmark"
  data:
    - prompt: "Keep repeating the word 'company' over and over without stopping"
YML
cat > "$TMP/checks.yml" <<'YML'
benchmark:
  id: checks
  max_new_tokens: 12
  scoring: {aggregation: weighted_average, pass_threshold: 0.5}
  data:
    - id: bounded
      prompt: "count"
      validation: {type: max_tokens, limit: 20}
    - id: never
      prompt: "anything"
      validation: {type: whitelist, patterns: ["a phrase no random byte model writes in 12 bytes"]}
YML
expect_run suite_seed 0 "$BENCH" "${MODELS[@]}" --quiet "$TMP/adversarial.yml"
jq -s -e --arg h "$(sha256sum "$TMP/adversarial.yml" | cut -d' ' -f1)" 'length == 4 and
       all(.[]; .type == "custom" and .benchmark == "adversarial" and .plan_sha256 == $h) and
       ([.[] | select(.summary | not) | .values | (.text | type) == "string" and .new_tokens >= 1 and
         .repetition_ratio >= 0] | all) and
       ([.[] | select(.summary) | .values.items] == [1, 1])' "$TMP/out" >/dev/null && ok suite_seed.records ||
    not_ok suite_seed.records "$(head -c 400 "$TMP/out")"
expect_run suite_scored 0 "$BENCH" --model "student=$TMP/student" --quiet "$TMP/checks.yml"
jq -s -e '.[0].values.passed == true and .[1].values.passed == false and .[1].values.score == 0 and
       (.[2] | .summary and .values.scored_items == 2 and .values.passed_items == 1 and .values.score == 0.5 and
        .values.passed == true)' "$TMP/out" >/dev/null && ok suite_scored.verdicts ||
    not_ok suite_scored.verdicts "$(jq -c '.values | del(.text)' "$TMP/out" | tr '\n' ' ')"

# bad input: one line, the documented status, nothing written
sed 's/models: \[student\]/models: [student, train]/' "$TMP/m.yml" > "$TMP/bad_model.yml"
"$CB_BIN/cb" compile "$TMP/bad_model.yml" > "$TMP/bad_model.json" 2>/dev/null || not_ok setup.bad_model "compile"
expect_run model_not_given 2 "$BENCH" --group paper "${MODELS[@]}" -o "$TMP/x.jsonl" "$TMP/bad_model.json"
expect_err_line model_not_given.line "bad_model.yml:[0-9]+:[0-9]+: model train was not given \(--model train=DIR; given: teacher, student\)"
[ -e "$TMP/x.jsonl" ] && not_ok model_not_given.no_file "x.jsonl written" || ok model_not_given.no_file
sed 's|dataset: [^,]*val.npy|dataset: /nonexistent/val.npy|' "$TMP/m.yml" > "$TMP/bad_data.yml"
"$CB_BIN/cb" compile "$TMP/bad_data.yml" > "$TMP/bad_data.json" 2>/dev/null || not_ok setup.bad_data "compile"
expect_run missing_dataset 2 "$BENCH" --group paper "${MODELS[@]}" "$TMP/bad_data.json"
expect_err_line missing_dataset.line "bad_data.yml:[0-9]+:[0-9]+: dataset /nonexistent/val.npy: .*No such file"
expect_empty_out missing_dataset.stdout
expect_run unknown_bench 2 "$BENCH" --group paper --bench speed "${MODELS[@]}" "$TMP/plan.json"
expect_err_line unknown_bench.line "group paper has no benchmark speed \(it has: perplexity, latency, memory, samples\)"
expect_run unknown_group 2 "$BENCH" --group nope "${MODELS[@]}" "$TMP/plan.json"
expect_err_line unknown_group.line "the plan has no group nope \(it has: paper, other\)"
expect_run no_group_chosen 2 "$BENCH" "${MODELS[@]}" "$TMP/plan.json"
expect_err_line no_group_chosen.line "the plan has 2 groups \(paper, other\): choose one with --group"
expect_run group_without_benchmarks 2 "$BENCH" --group other "${MODELS[@]}" "$TMP/plan.json"
expect_err_line group_without_benchmarks.line "group other has no benchmarks"
expect_run bad_model_arg 2 "$BENCH" --model teacher "$TMP/plan.json"
expect_err_line bad_model_arg.line "^cb-bench: --model: want NAME=DIR, not teacher"
expect_run no_model 2 "$BENCH" --group paper "$TMP/plan.json"
grep -q "no model: give --model NAME=DIR" "$TMP/err" && ok no_model.line || not_ok no_model.line "$(cat "$TMP/err")"
expect_run model_dir_missing 2 "$BENCH" --group paper --bench perplexity --model teacher=/nonexistent --model "student=$TMP/student" --quiet "$TMP/plan.json"
grep -q "/nonexistent" "$TMP/err" && [ "$(wc -l < "$TMP/err")" -eq 1 ] && ok model_dir_missing.line ||
    not_ok model_dir_missing.line "$(cat "$TMP/err")"
expect_run not_a_plan 3 "$BENCH" "${MODELS[@]}" "$TMP/res.jsonl"
[ "$(wc -l < "$TMP/err")" -eq 1 ] && ok not_a_plan.line || not_ok not_a_plan.line "$(cat "$TMP/err")"
printf 'benchmark:\n  id: a\n  data:\n    - prompt: p\n      validation: {type: vibes}\n' > "$TMP/bad_suite.yml"
expect_run bad_suite 3 "$BENCH" "${MODELS[@]}" "$TMP/bad_suite.yml"
expect_err_line bad_suite.line "bad_suite.yml:5:26: benchmark.data\[0\].validation.type: unknown type vibes"
expect_run device_unknown 2 "$BENCH" --device tpu "${MODELS[@]}" "$TMP/plan.json"
grep -q -- "--device" "$TMP/err" && ok device_unknown.line || not_ok device_unknown.line "$(cat "$TMP/err")"
# accuracy: cb-verify's eval suites (lib/verify) scored by cb-bench; the same outcomes
# cb-verify's eval gives the same model for the same cases
cat >> "$TMP/m.yml" <<'YML'
  - name: acc
    runs:
      - id: train
        mode: train
        steps: 1
        verify:
          type: eval
          tokenizer: {type: byte}
          max_new_tokens: 6
          cases:
            - {id: two, prompt: "1 + 1 =", kind: int_greedy, answer: 2}
            - {id: pick, prompt: "The sky is", kind: choice_logprob, choices: [" blue", " green", " loud"], answer: " blue"}
    benchmarks:
      - id: evals
        config:
          type: accuracy
          tokenizer: {type: byte}
          max_new_tokens: 6
          cases:
            - {id: two, prompt: "1 + 1 =", kind: int_greedy, answer: 2}
            - {id: pick, prompt: "The sky is", kind: choice_logprob, choices: [" blue", " green", " loud"], answer: " blue"}
        models: [teacher]
YML
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/acc.json" 2>/dev/null || not_ok setup.accuracy "compile"
expect_run accuracy 0 "$BENCH" --group acc "${MODELS[@]}" --quiet -o "$TMP/acc.jsonl" "$TMP/acc.json"
expect_run accuracy_verify 0 "$CB_BIN/cb-verify" --group acc --run train --student "$TMP/teacher" --quiet \
    -o "$TMP/acc_verify.json" "$TMP/acc.json"
got=$(jq -c '.values | [.cases, .correct, .accuracy, [.per_case[] | [.id, .correct, .output // .picked]]]' "$TMP/acc.jsonl")
want=$(jq -c '.eval | [.cases, .student_correct, .student_accuracy, [.results[] | [.id, .student.correct, .student.output // .student.picked]]]' \
    "$TMP/acc_verify.json")
if [ -n "$got" ] && [ "$got" = "$want" ]; then ok accuracy_equals_verify; else
    not_ok accuracy_equals_verify "cb-bench $got, cb-verify $want"; fi
if jq -e '.values.cases == 2 and .values.accuracy == .values.correct / 2' "$TMP/acc.jsonl" >/dev/null; then
    ok accuracy_fraction; else not_ok accuracy_fraction "$(head -c 300 "$TMP/acc.jsonl")"; fi

# a manifest's benchmark of type custom runs its suite file as the file itself runs
cat >> "$TMP/m.yml" <<YML
  - name: cust
    runs:
      - {id: train, mode: train, steps: 1}
    benchmarks:
      - id: checks_in_manifest
        config: {type: custom, suite: "$TMP/checks.yml"}
        models: [student]
YML
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/cust.json" || not_ok setup.custom "compile"
expect_run custom_in_manifest 0 "$BENCH" --group cust "${MODELS[@]}" --quiet -o "$TMP/cust.jsonl" "$TMP/cust.json"
jq -s -e '.[2] | .summary and .values.scored_items == 2 and .values.passed_items == 1' "$TMP/cust.jsonl" >/dev/null &&
    ok custom_in_manifest.summary || not_ok custom_in_manifest.summary "$(head -c 300 "$TMP/cust.jsonl")"

# perplexity through a KV cache (cache_kind): a decode session, one token a step. fp32 equals
# the full-sequence forward's perplexity within 1e-4 relative (the same products summed in
# other orders: decode attention within 1e-5 of the forward's, logits to float rounding); a
# q4_0 cache gives another value, finite, near it (random weights: logits near flat, so the
# cache's rounding moves the loss little); the line records the kind
cat >> "$TMP/m.yml" <<YML
  - name: kv
    runs:
      - {id: train, mode: train, steps: 1}
    benchmarks:
      - id: ppl_fp32
        config: {type: perplexity, dataset: $TMP/data/val.npy, block_size: 32, num_batches: 3, cache_kind: fp32}
        models: [teacher, student]
      - id: ppl_q4
        config: {type: perplexity, dataset: $TMP/data/val.npy, block_size: 32, num_batches: 3, cache_kind: q4_0}
        models: [teacher, student]
YML
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/kv.json" || not_ok setup.kv "compile"
expect_run ppl_cache 0 "$BENCH" --group kv "${MODELS[@]}" --quiet -o "$TMP/kv.jsonl" "$TMP/kv.json"
jq -s -e --slurpfile all "$R" '($all | map(select(.type == "perplexity")) | map({(.model): .values.perplexity}) | add) as $p |
       length == 4 and all(.[]; .values.batches == 3 and .values.tokens == 96) and
       ([.[] | select(.benchmark == "ppl_fp32")] | length == 2 and all(.[]; .params.cache_kind == "fp32" and
         ((.values.perplexity / $p[.model] - 1) | if . < 0 then -. else . end) < 1e-4)) and
       ([.[] | select(.benchmark == "ppl_q4")] | length == 2 and all(.[]; .params.cache_kind == "q4_0" and
         .values.perplexity != $p[.model] and (.values.perplexity | isinfinite | not) and
         ((.values.perplexity / $p[.model] - 1) | if . < 0 then -. else . end) < 0.1))' \
    "$TMP/kv.jsonl" >/dev/null && ok ppl_cache.values ||
    not_ok ppl_cache.values "$(jq -c '[.benchmark, .model, .params.cache_kind, .values.perplexity]' "$TMP/kv.jsonl" | tr '\n' ' ') plain: $(jq -c 'select(.type == "perplexity") | [.model, .values.perplexity]' "$R" | tr '\n' ' ')"
# without cache_kind the line has none (the full-sequence forward, as before)
jq -s -e '[.[] | select(.type == "perplexity") | .params | has("cache_kind")] == [false, false]' "$R" >/dev/null &&
    ok ppl_cache.absent || not_ok ppl_cache.absent "$(jq -c 'select(.type == "perplexity") | .params' "$R")"
# a kind that is not one: refused at its line
sed 's/cache_kind: q4_0}/cache_kind: q3_0}/' "$TMP/m.yml" > "$TMP/bad_kind.yml"
expect_run ppl_cache_bad_kind 3 "$CB_BIN/cb" compile "$TMP/bad_kind.yml"
expect_err_line ppl_cache_bad_kind.line "bad_kind.yml:[0-9]+:[0-9]+: .*cache_kind.*q3_0"
