#!/usr/bin/env bash
# `cb compile` on the shape-error manifests tests/bad/manifest/shape_*.yml: each has a
# sibling .expect (line 1: exit status; line 2: extended regex for the first stderr line).
. "$(dirname "$0")/lib.sh"
CB="$CB_BIN/cb"
if [ ! -x "$CB" ]; then
    not_ok built "$CB not built: every tool of cmd/ is built before the tests run"
    exit 1
fi

for yml in tests/bad/manifest/shape_*.yml; do
    name=$(basename "$yml" .yml)
    expect=${yml%.yml}.expect
    want_status=$(sed -n 1p "$expect")
    want_line=$(sed -n 2p "$expect")
    run "$CB" compile "$yml"
    expect_status "$name.status" "$want_status"
    expect_empty_out "$name.quiet"
    if head -n 1 "$TMP/err" | grep -qE -- "$want_line"; then ok "$name.first_line"; else
        not_ok "$name.first_line" "first stderr line '$(head -n 1 "$TMP/err")' does not match '$want_line'"; fi
done

# every error is reported, not only the first
run "$CB" compile tests/bad/manifest/shape_many.yml
if [ "$(grep -c '^cb-validate: ' "$TMP/err")" -eq 3 ]; then ok many_errors; else
    not_ok many_errors "expected 3 cb-validate lines: $(cat "$TMP/err")"; fi

# the same plan as the pipeline of the three tools
cat >"$TMP/m.yml" <<'YML'
version: 1
name: tiny
vars:
  d: 64
model:
  tie_embeddings: true
  embedder: {type: token, vocab_size: 100, d_model: "${d}"}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: "${d}"}
              - {type: AttentionLayer, d_model: "${d}", n_heads: 4, n_kv_heads: 2}
      - {type: RMSNormLayer, d_model: "${d}"}
YML
run "$CB" compile "$TMP/m.yml"
expect_status tiny_status 0
cp "$TMP/out" "$TMP/compiled.json"
"$CB_BIN/cb-parse" "$TMP/m.yml" | "$CB_BIN/cb-lower" | "$CB_BIN/cb-validate" >"$TMP/piped.json"
pipe_status=$? # every stage's (lib.sh sets pipefail)
[ "$pipe_status" -eq 0 ] && ok pipeline_status || not_ok pipeline_status "cb-parse | cb-lower | cb-validate: exit status $pipe_status"
if cmp -s "$TMP/compiled.json" "$TMP/piped.json"; then ok same_as_pipeline; else
    not_ok same_as_pipeline "cb compile and cb-parse | cb-lower | cb-validate differ"; fi

run "$CB" compile --print-plan "$TMP/m.yml"
expect_status tree_status 0
expect_out tree_nested 'NestedTopology x2'
expect_out tree_totals 'KV cache/token +128 elems = 256 bytes fp16, 512 bytes fp32'

run "$CB" compile -o "$TMP/plan.json" "$TMP/m.yml"
expect_status to_file 0
expect_empty_out to_file_quiet
if cmp -s "$TMP/plan.json" "$TMP/compiled.json"; then ok to_file_same; else not_ok to_file_same "-o output differs"; fi

# the first failing stage names itself
printf 'model: [\n' >"$TMP/broken.yml"
expect_run parse_error 3 "$CB" compile "$TMP/broken.yml"
if head -n 1 "$TMP/err" | grep -qE '^cb-parse: .*broken\.yml:[0-9]+:[0-9]+: '; then ok parse_error_stage; else
    not_ok parse_error_stage "stderr: $(head -c 300 "$TMP/err")"; fi

# cb run is tested in run.sh: here only that a manifest without groups has nothing to run
expect_run run_no_groups 2 "$CB" run "$TMP/m.yml"
expect_err_line run_no_groups_line "^cb run: $TMP/m.yml: the manifest has no groups\$"
# cb research is the loop of pipelines/research.sh (tested in paper_research.sh): here only its usage
expect_run research_usage 2 "$CB" research
expect_err_line research_usage_line '^cb research: expected one manifest file$'
expect_run no_command 2 "$CB"
expect_run unknown_command 2 "$CB" frobnicate
expect_run compile_no_file 2 "$CB" compile
expect_run compile_missing_file 2 "$CB" compile "$TMP/nope.yml"
