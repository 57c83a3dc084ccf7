#!/usr/bin/env bash
# cb-generate on tiny models built with cb-build (random weights: the mechanics, not the
# text): output forms, determinism, stop rules, context, prompts files, chat, speculative
# decoding, cache kinds and cache_kind auto with its decisions file, Hugging Face
# directories, and refusals of bad input (one stderr line, documented status).
. "$(dirname "$0")/lib.sh"
G="$CB_BIN/cb-generate"

# a Llama-shaped model over bytes; its plan names the byte tokenizer (train.tokenizer)
cat > "$TMP/m.yml" <<'YML'
version: 1
name: tiny
model:
  type: TransformerModel
  tie_embeddings: true
  embedder: {type: token, vocab_size: 256, d_model: 32}
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
  - name: train
    data: data/train.npy
    runs:
      - {id: train, mode: train, steps: 1}
YML
# another vocabulary, and no tokenizer anywhere
sed -n '/^defaults:/q; s/vocab_size: 256/vocab_size: 300/; p' "$TMP/m.yml" > "$TMP/other.yml"
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/plan.json" && "$CB_BIN/cb" compile "$TMP/other.yml" > "$TMP/other.json" &&
"$CB_BIN/cb-build" -o "$TMP/model" "$TMP/plan.json" && "$CB_BIN/cb-build" --seed 5 -o "$TMP/draft" "$TMP/plan.json" &&
"$CB_BIN/cb-build" -o "$TMP/other" "$TMP/other.json" || { not_ok setup "cb-build failed"; exit 1; }
M="$TMP/model"

# ids in, ids out (no text): greedy is deterministic and gives max-new-tokens ids
expect_run ids_greedy 0 "$G" --ids 1,2,3 --tokenizer byte --max-new-tokens 7 --temperature 0 --json "$M"
jq -e '(.ids | length) == 7 and .stop == "length" and .new_tokens == 7 and .prompt_tokens == 3 and .cache.k == "fp32"' \
    "$TMP/out" >/dev/null && ok ids_greedy.json || not_ok ids_greedy.json "$(cat "$TMP/out")"
greedy=$(jq -c .ids "$TMP/out")
expect_run ids_without_tokenizer 0 "$G" --ids "1 2 3" --max-new-tokens 7 --temperature 0 "$TMP/other"
grep -qE '^[0-9]+( [0-9]+){6}$' "$TMP/out" && ok ids_without_tokenizer.out || not_ok ids_without_tokenizer.out "$(cat "$TMP/out")"

# text in, text out, streamed; the tokenizer comes from the plan
expect_run prompt_text 0 "$G" --prompt "hello" --max-new-tokens 5 --seed 4 "$M"
[ "$(wc -c < "$TMP/out")" -ge 2 ] && ok prompt_text.out || not_ok prompt_text.out "no output"
cp "$TMP/out" "$TMP/first"
run "$G" --prompt "hello" --max-new-tokens 5 --seed 4 "$M"
expect_status same_seed_same_text.status 0
expect_same_files same_seed_same_text "$TMP/out" "$TMP/first"
expect_run sampling_options 0 "$G" --prompt "hello" --max-new-tokens 5 --seed 4 --top-k 5 --top-p 0.5 --temperature 0.7 --json "$M"
jq -e '(.ids | length) == 5 and .new_tokens == 5 and .stop == "length" and .prompt_tokens == 5' "$TMP/out" >/dev/null &&
    ok sampling_options.json || not_ok sampling_options.json "$(cat "$TMP/out")"
cp "$TMP/out" "$TMP/sampled"
run "$G" --prompt "hello" --max-new-tokens 5 --seed 4 --top-k 5 --top-p 0.5 --temperature 0.7 --json "$M"
[ "$(jq -c .ids "$TMP/out")" = "$(jq -c .ids "$TMP/sampled")" ] && ok sampling_options.same_seed_same_ids ||
    not_ok sampling_options.same_seed_same_ids "$(jq -c .ids "$TMP/out") vs $(jq -c .ids "$TMP/sampled")"

# stop rules: a stop string cuts the text (tiny random models repeat the last byte)
expect_run stop_string 0 "$G" --prompt "xyz" --temperature 0 --stop "zz" --max-new-tokens 10 --json "$M"
jq -e '.stop == "stop" and .text == "" and .new_tokens == 2' "$TMP/out" >/dev/null && ok stop_string.json ||
    not_ok stop_string.json "$(cat "$TMP/out")"
expect_run eos 0 "$G" --prompt "xyz" --temperature 0 --eos 122 --json "$M"
jq -e '.stop == "eos" and .ids == [] and .new_tokens == 1' "$TMP/out" >/dev/null && ok eos.json || not_ok eos.json "$(cat "$TMP/out")"
expect_run context_full 0 "$G" --ids 1,2,3 --max-seq-len 6 --max-new-tokens 50 --json "$M"
jq -e '.stop == "context" and (.ids | length) == 4' "$TMP/out" >/dev/null && ok context_full.json || not_ok context_full.json "$(cat "$TMP/out")"
expect_run truncate 0 "$G" --ids 1,2,3,4,5,6,7,8 --max-seq-len 6 --max-new-tokens 2 --truncate --json "$M"
jq -e '.truncated == 4 and .prompt_tokens == 4' "$TMP/out" >/dev/null && ok truncate.json || not_ok truncate.json "$(cat "$TMP/out")"

# a prompts file: one JSON line per prompt, ids copied, the shared beginning reused
printf '{"id": "a", "prompt": "hello world"}\n\n{"id": 7, "prompt": "hello there"}\n{"ids": [1, 2]}\n' > "$TMP/p.jsonl"
expect_run prompts_file 0 "$G" --prompts "$TMP/p.jsonl" --max-new-tokens 3 "$M"
[ "$(wc -l < "$TMP/out")" -eq 3 ] && jq -s -e '.[0].id == "a" and .[1].id == 7 and .[1].reused == 6 and (.[2] | has("id") | not)' \
    "$TMP/out" >/dev/null && ok prompts_file.lines || not_ok prompts_file.lines "$(cat "$TMP/out")"
printf '{"prompt": "ok"}\n{"ids": [1, 256]}\n' > "$TMP/bad.jsonl"
expect_run prompts_bad_id 3 "$G" --prompts "$TMP/bad.jsonl" "$M"
expect_err_line prompts_bad_id.msg "^cb-generate: .*bad.jsonl:2: token id 256 is past the vocabulary \(256\)$"
printf '{"prompt": "ok", "ids": [1]}\n' > "$TMP/bad2.jsonl"
expect_run prompts_bad_line 3 "$G" --prompts "$TMP/bad2.jsonl" "$M"
expect_err_line prompts_bad_line.msg 'bad2.jsonl:1: want exactly one of "prompt"'

# --batch: the prompts decoded together give each the text and ids it gets alone, in the
# file's order, sampled (seeded alike) as greedy; a bad line stops the run before any output
printf '{"id": 1, "prompt": "the cat"}\n{"id": 2, "ids": [5]}\n{"id": 3, "prompt": "a much longer prompt than the others"}\n{"id": 4, "prompt": "dog"}\n{"id": 5, "ids": [9, 8, 7]}\n' > "$TMP/pb.jsonl"
for t in 0 0.8; do
    expect_run "batch_alone.t$t" 0 "$G" --prompts "$TMP/pb.jsonl" --max-new-tokens 9 --temperature $t --seed 3 "$M"
    jq -c '{id, ids, text, stop, new_tokens, prompt_tokens}' "$TMP/out" > "$TMP/alone.$t"
    expect_run "batch_3.t$t" 0 "$G" --prompts "$TMP/pb.jsonl" --max-new-tokens 9 --temperature $t --seed 3 --batch 3 "$M"
    jq -c '{id, ids, text, stop, new_tokens, prompt_tokens}' "$TMP/out" > "$TMP/batch.$t"
    [ "$(wc -l < "$TMP/batch.$t")" -eq 5 ] && cmp -s "$TMP/alone.$t" "$TMP/batch.$t" && ok "batch_3.t$t.same" ||
        not_ok "batch_3.t$t.same" "$(diff "$TMP/alone.$t" "$TMP/batch.$t")"
done
expect_run batch_q8 0 "$G" --prompts "$TMP/pb.jsonl" --max-new-tokens 4 --batch 8 --weight-kind q8_0 --cache-kind q8_0 "$M"
jq -s -e 'length == 5 and all(.[]; .cache.k == "q8_0" and .weights == "q8_0" and .cache.bytes > 0)' "$TMP/out" >/dev/null &&
    ok batch_q8.json || not_ok batch_q8.json "$(cat "$TMP/out")"
expect_run batch_bad_id 3 "$G" --prompts "$TMP/bad.jsonl" --batch 2 "$M"
[ ! -s "$TMP/out" ] && ok batch_bad_id.nothing || not_ok batch_bad_id.nothing "$(cat "$TMP/out")"
expect_err_line batch_bad_id.msg "^cb-generate: .*bad.jsonl:2: token id 256 is past the vocabulary \(256\)$"
expect_run batch_no_prompts 2 "$G" --prompt hi --batch 2 "$M"
expect_err_line batch_no_prompts.msg "^cb-generate: --batch decodes the prompts of --prompts together "
expect_run batch_zero 2 "$G" --prompts "$TMP/pb.jsonl" --batch 0 "$M"
expect_err_line batch_zero.msg "^cb-generate: --batch: not an integer in \[1, 4096\]: 0 "

# chat: a plain transcript for the byte tokenizer, one answer line per message
printf 'hi\n\nthere\n' | "$G" --chat --max-new-tokens 4 --temperature 0 "$M" > "$TMP/out" 2> "$TMP/err"
STATUS=$?
expect_status chat 0
[ "$(wc -l < "$TMP/out")" -eq 2 ] && ok chat.two_answers || not_ok chat.two_answers "$(od -c "$TMP/out" | head -3)"

# speculative decoding: greedy output equals the model's own greedy output
expect_run spec_greedy 0 "$G" --ids 1,2,3 --max-new-tokens 7 --temperature 0 --draft "$TMP/draft" --spec-k 3 --json "$M"
[ "$(jq -c .ids "$TMP/out")" = "$greedy" ] && ok spec_greedy.same || not_ok spec_greedy.same "$(jq -c .ids "$TMP/out") vs $greedy"
jq -e '.speculative.rounds >= 1 and .speculative.drafted >= .speculative.accepted' "$TMP/out" >/dev/null &&
    ok spec_greedy.stats || not_ok spec_greedy.stats "$(cat "$TMP/out")"
expect_run spec_sampling 0 "$G" --prompt "abc" --max-new-tokens 9 --draft "$TMP/draft" --spec-k-adaptive --spec-disable-below 0.1 "$M"
grep -q "draft tokens accepted" "$TMP/err" && ok spec_sampling.report || not_ok spec_sampling.report "$(cat "$TMP/err")"
expect_run spec_other_vocab 3 "$G" --ids 1,2 --draft "$TMP/other" "$M"
expect_err_line spec_other_vocab.msg "vocabulary \(300 tokens\) differs from the target's \(256\)"
expect_empty_out spec_other_vocab.stdout

# cache kinds
expect_run cache_q8 0 "$G" --ids 1,2,3 --cache-kind q8_0 --cache-v-kind fp16 --max-new-tokens 3 --json "$M"
jq -e '.cache.k == "q8_0" and .cache.v == "fp16" and .cache.bytes > 0' "$TMP/out" >/dev/null && ok cache_q8.json ||
    not_ok cache_q8.json "$(cat "$TMP/out")"
expect_run weight_kind 0 "$G" --ids 1,2,3 --weight-kind q8_0 --max-new-tokens 3 --json "$M"
jq -e '.weights == "q8_0" and (.ids | length) == 3' "$TMP/out" >/dev/null && ok weight_kind.json || not_ok weight_kind.json "$(cat "$TMP/out")"
expect_run cache_bad_kind 2 "$G" --ids 1 --cache-kind q3 "$M"
expect_err_line cache_bad_kind.msg 'unknown cache kind "q3"'
expect_run decode_plan_fixed 0 "$G" --ids 1,2,3 --max-new-tokens 7 --temperature 0 --decode-plan fixed --decode-q-chunk 1 --json "$M"
[ "$(jq -c .ids "$TMP/out")" = "$greedy" ] && ok decode_plan_fixed.same || not_ok decode_plan_fixed.same "differs"

# cache_kind auto: a budget nothing meets, then a decision kept in a file and reused
expect_run auto_budget 3 "$G" --ids 1,2 --cache-kind auto --cache-budget-mb 0.001 "$M"
expect_err_line auto_budget.msg "^cb-generate: no cache kind fits cache_budget_mb 0.001 for 2048 tokens"
expect_run auto_decide 0 "$G" --ids 1,2 --max-new-tokens 2 --cache-kind auto --cache-max-delta-nll 0.5 \
    --cache-plan "$TMP/plans.json" --max-seq-len 128 "$M"
grep -q "^cb-generate: cache: fp16 (the best quality that passes)$" "$TMP/err" && ok auto_decide.reason ||
    not_ok auto_decide.reason "$(cat "$TMP/err")"
jq -e '.kind == "cache_plans" and (.plans | length) == 1' "$TMP/plans.json" >/dev/null && ok auto_decide.file ||
    not_ok auto_decide.file "$(head -c 300 "$TMP/plans.json")"
expect_run auto_reuse 0 "$G" --ids 1,2 --max-new-tokens 2 --cache-kind auto --cache-max-delta-nll 0.5 \
    --cache-plan "$TMP/plans.json" --max-seq-len 128 "$M"
expect_err_line auto_reuse.msg "^cb-generate: cache: fp16 \(reused from .*plans.json\)$"
run "$G" --ids 1,2 --max-new-tokens 2 --cache-kind auto --cache-max-delta-nll 0.5 --cache-plan "$TMP/plans.json" \
    --max-seq-len 128 --json --quiet "$M"
jq -e '.cache.k == "fp16" and (.cache.auto | test("reused"))' "$TMP/out" >/dev/null && [ ! -s "$TMP/err" ] &&
    ok auto_json_quiet || not_ok auto_json_quiet "$(cat "$TMP/out" "$TMP/err")"
echo '{ not json' > "$TMP/plans.json"
expect_run auto_corrupt_file 0 "$G" --ids 1,2 --max-new-tokens 2 --cache-kind auto --cache-plan "$TMP/plans.json" \
    --max-seq-len 128 "$M"
grep -q "^cb-generate: warning: .*plans.json: ignored, not a cache plan file" "$TMP/err" && ok auto_corrupt_file.warning ||
    not_ok auto_corrupt_file.warning "$(cat "$TMP/err")"
jq -e '.kind == "cache_plans"' "$TMP/plans.json" >/dev/null && ok auto_corrupt_file.replaced || not_ok auto_corrupt_file.replaced "not replaced"

# a Hugging Face directory gives the same greedy output
expect_run export_hf 0 "$CB_BIN/cb-build" --export-hf "$TMP/hf" "$M"
expect_run hf_dir 0 "$G" --ids 1,2,3 --max-new-tokens 7 --temperature 0 --tokenizer byte --json "$TMP/hf"
[ "$(jq -c .ids "$TMP/out")" = "$greedy" ] && ok hf_dir.same || not_ok hf_dir.same "$(jq -c .ids "$TMP/out") vs $greedy"

# bad input: one line on stderr, nothing on stdout, the documented status
expect_run bad_utf8 2 "$G" --prompt $'ab\xffcd' "$M"
expect_err_line bad_utf8.msg "^cb-generate: --prompt: the prompt is not valid UTF-8 \(byte 2\)$"
expect_empty_out bad_utf8.stdout
expect_run empty_prompt 2 "$G" --prompt "" "$M"
expect_err_line empty_prompt.msg "^cb-generate: --prompt: empty prompt$"
expect_run id_past_vocab 2 "$G" --ids 1,256 "$M"
expect_err_line id_past_vocab.msg "^cb-generate: --ids: token id 256 is past the vocabulary \(256\)$"
expect_run bad_ids 2 "$G" --ids 1,x "$M"
expect_err_line bad_ids.msg "^cb-generate: --ids: not a list of token ids"
expect_run too_long 2 "$G" --ids 1,2,3,4,5,6,7,8 --max-seq-len 6 "$M"
expect_err_line too_long.msg "^cb-generate: prompt of 8 tokens is longer than the context \(max_seq_len 6\)$"
expect_empty_out too_long.stdout
expect_run no_source 2 "$G" "$M"
expect_err_line no_source.msg "^cb-generate: one of --prompt, --ids, --prompts or --chat is required"
expect_empty_out no_source.stdout
expect_run no_tokenizer 2 "$G" --prompt hi "$TMP/other"
expect_err_line no_tokenizer.msg "no tokenizer for this model"
expect_run no_model 2 "$G" --ids 1 "$TMP/nothing"
expect_err_line no_model.msg "^cb-generate: .*nothing/plan.json: cannot open"
expect_run bad_temperature 2 "$G" --ids 1 --temperature -1 "$M"
expect_err_line bad_temperature.msg "^cb-generate: --temperature: not a number in \[0, .*\]: -1"
expect_run spec_option_without_draft 2 "$G" --ids 1 --spec-k-adaptive "$M"
expect_err_line spec_option_without_draft.msg "^cb-generate: speculative options need --draft"
