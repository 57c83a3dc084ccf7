#!/usr/bin/env bash
# Every preset compiles through the pipe and through `cb compile` to the same plan, whose
# readable tree (--print-plan) names it and gives its parameter totals; the Llama 3.2 1B
# teacher has exactly 1,235,814,400 parameters.
. "$(dirname "$0")/lib.sh"

for yml in presets/*.yml; do
    name=$(basename "$yml" .yml)
    # pipefail: a failure of cb-parse or cb-lower fails the pipe, not only cb-validate's
    run bash -o pipefail -c "'$CB_BIN/cb-parse' '$yml' | '$CB_BIN/cb-lower' | '$CB_BIN/cb-validate' > '$TMP/pipe.json'"
    expect_status "$name.pipeline" 0
    jq -e '.kind == "plan" and (.name | type) == "string" and .totals.params > 0' "$TMP/pipe.json" >/dev/null &&
        ok "$name.pipeline_plan" || not_ok "$name.pipeline_plan" "not a plan: $(head -c 200 "$TMP/pipe.json")"
    expect_run "$name.compile" 0 "$CB_BIN/cb" compile "$yml"
    expect_same_files "$name.same_plan" "$TMP/out" "$TMP/pipe.json"
    plan_name=$(jq -r .name "$TMP/pipe.json") totals=$(jq -r '[.totals.params, .totals.params_embedding,
        .totals.params_topology, .totals.params_head] | map(tostring) | join(" ")' "$TMP/pipe.json")
    expect_run "$name.print_plan" 0 "$CB_BIN/cb" compile "$yml" --print-plan
    # "plan NAME: TYPE, ..." first; "  params  N (..): embedding E, topology T, head H" in the
    # totals (the first: students of train.student.overrides follow with their own)
    got_name=$(sed -n '1s/^plan \([^:]*\): .*/\1/p' "$TMP/out")
    got_totals=$(sed -n 's/^  params  *\([0-9,]*\) ([^)]*): embedding \([0-9,]*\), topology \([0-9,]*\), head \([0-9,]*\)$/\1 \2 \3 \4/p' \
                 "$TMP/out" | head -n 1 | tr -d ,)
    if [ "$got_name" = "$plan_name" ] && [ "$got_totals" = "$totals" ]; then ok "$name.print_plan_totals"; else
        not_ok "$name.print_plan_totals" "tree says plan '$got_name', params '$got_totals'; the plan says '$plan_name', '$totals'"; fi
done

run "$CB_BIN/cb" compile presets/llama32_1b_dba.yml
expect_status llama32_1b.status 0
jq -e '.totals.params == 1235814400' "$TMP/out" >/dev/null && ok llama32_1b.params ||
    not_ok llama32_1b.params "totals.params $(jq .totals.params "$TMP/out" 2>&1)"
run "$CB_BIN/cb" compile presets/llama32_1b_dba.yml --print-plan
expect_status llama32_1b.tree_status 0
expect_out llama32_1b.tree '^  params +1,235,814,400 \(1\.24B\)'
expect_out llama32_1b.tree_blocks '^  blocks +NestedTopology x16 '
