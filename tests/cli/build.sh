#!/usr/bin/env bash
# cb-build: model directories from plans (deterministic for a seed), forward traces,
# Hugging Face export and import, and refusal of hostile weight files.
. "$(dirname "$0")/lib.sh"

cat > "$TMP/m.yml" <<'YML'
version: 1
name: tiny
model:
  type: TransformerModel
  tie_embeddings: true
  embedder: {type: token, vocab_size: 40, d_model: 16}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 16}
              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 16}
              - {type: SwiGLULayer, d_model: 16, d_ff: 32}
      - {type: RMSNormLayer, d_model: 16}
YML
expect_cmd compile eval '"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/plan.json"'
expect_run from_plan 0 "$CB_BIN/cb-build" -o "$TMP/a" "$TMP/plan.json"
[ -f "$TMP/a/plan.json" ] && [ -f "$TMP/a/model.safetensors" ] && ok dir_layout || not_ok dir_layout "missing files"
expect_run from_stdin 0 bash -c "'$CB_BIN/cb-build' -o '$TMP/b' < '$TMP/plan.json'"
expect_same_files same_seed_same_bytes "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"
expect_run other_seed 0 "$CB_BIN/cb-build" --seed 9 -o "$TMP/c" "$TMP/plan.json"
expect_other_files other_seed_other_bytes "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"
expect_run rebuild_replaces 0 "$CB_BIN/cb-build" --seed 9 -o "$TMP/a" "$TMP/plan.json"
expect_same_files replaced_whole "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"
grep -q '\.tmp\.' < <(ls "$TMP") && not_ok no_temp_left "temporary directory left" || ok no_temp_left

expect_run forward 0 "$CB_BIN/cb-build" --forward 1,2,3 --trace '*attn,RMSNormLayer' -o "$TMP/t.safetensors" "$TMP/a"
grep -aq '"blocks.1.res.attn"' "$TMP/t.safetensors" && grep -aq '"logits"' "$TMP/t.safetensors" && ok trace_names || not_ok trace_names "missing"
expect_run forward_bad_token 2 "$CB_BIN/cb-build" --forward 1,2,99 "$TMP/a"
expect_err_line forward_bad_token.msg 'token id 99 is past the vocabulary'

expect_run export 0 "$CB_BIN/cb-build" --export-hf "$TMP/hf" "$TMP/a"
expect_run import 0 "$CB_BIN/cb-build" --from "$TMP/hf" -o "$TMP/back"
expect_run forward_of_plan_dir 0 "$CB_BIN/cb-build" --forward 5,6,7,8 -o "$TMP/l1" "$TMP/a"
expect_run forward_of_hf_dir 0 "$CB_BIN/cb-build" --forward 5,6,7,8 -o "$TMP/l2" "$TMP/hf"
# the logits bytes (the file tail: 4 tokens x 40 logits x 4 bytes) agree; only the plan
# digest in the header differs. Both files must hold them: two missing files compare equal.
if [ "$(stat -c %s "$TMP/l1" 2>/dev/null || echo 0)" -le 640 ] || [ "$(stat -c %s "$TMP/l2" 2>/dev/null || echo 0)" -le 640 ]; then
    not_ok hf_same_logits "a forward output is missing or shorter than its 640 bytes of logits"
elif cmp -s <(tail -c 640 "$TMP/l1") <(tail -c 640 "$TMP/l2"); then ok hf_same_logits
else not_ok hf_same_logits "differ"; fi
expect_run import_onto_plan 0 "$CB_BIN/cb-build" --from "$TMP/hf" -o "$TMP/back2" "$TMP/plan.json"

# hostile inputs: one line, exit 3, nothing left behind
for f in tests/bad/safetensors/*.safetensors; do
    n=$(basename "$f" .safetensors)
    rm -rf "$TMP/h"; mkdir "$TMP/h"; cp "$TMP/a/plan.json" "$TMP/h/"; cp "$f" "$TMP/h/model.safetensors"
    run "$CB_BIN/cb-build" --forward 1 "$TMP/h"
    expect_status "bad_weights.$n" 3
    expect_err_line "bad_weights.$n.msg" "^cb-build: .*model.safetensors: "
done
cp -r "$TMP/hf" "$TMP/hf_bad"; printf '{"hidden_size": "big"}' > "$TMP/hf_bad/config.json"
expect_run bad_config 3 "$CB_BIN/cb-build" --from "$TMP/hf_bad" -o "$TMP/x"
expect_err_line bad_config.msg 'config.json: .*hidden_size'
[ -e "$TMP/x" ] && not_ok bad_config.no_output "output written" || ok bad_config.no_output
sed 's/d_ff: 32/d_ff: 48/' "$TMP/m.yml" > "$TMP/m2.yml"
expect_cmd compile_other eval '"$CB_BIN/cb" compile "$TMP/m2.yml" > "$TMP/plan2.json"'
expect_run other_plan 3 "$CB_BIN/cb-build" --from "$TMP/hf" -o "$TMP/y" "$TMP/plan2.json"
expect_err_line other_plan.msg "^cb-build: .*model.safetensors: .*mlp.gate_proj.weight"
mkdir "$TMP/h2"; cp "$TMP/plan2.json" "$TMP/h2/plan.json"; cp "$TMP/a/model.safetensors" "$TMP/h2/"
expect_run checkpoint_of_other_plan 3 "$CB_BIN/cb-build" --forward 1 "$TMP/h2"
expect_err_line checkpoint_of_other_plan.msg "model.safetensors: "

expect_run no_output_dir 2 "$CB_BIN/cb-build" "$TMP/plan.json"
