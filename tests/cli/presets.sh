#!/usr/bin/env bash
# Every preset compiles through the pipe and through `cb compile` to the same plan;
# the Llama 3.2 1B teacher has exactly 1,235,814,400 parameters.
. "$(dirname "$0")/lib.sh"

for yml in presets/*.yml; do
    name=$(basename "$yml" .yml)
    run bash -c "'$CB_BIN/cb-parse' '$yml' | '$CB_BIN/cb-lower' | '$CB_BIN/cb-validate' > '$TMP/pipe.json'"
    expect_status "$name.pipeline" 0
    expect_run "$name.compile" 0 "$CB_BIN/cb" compile "$yml"
    if cmp -s "$TMP/out" "$TMP/pipe.json"; then ok "$name.same_plan"; else not_ok "$name.same_plan" "cb compile and the pipe differ"; fi
    expect_run "$name.print_plan" 0 "$CB_BIN/cb" compile "$yml" --print-plan
done

run "$CB_BIN/cb" compile presets/llama32_1b_dba.yml
expect_out llama32_1b.params '"params": 1235814400'
run "$CB_BIN/cb" compile presets/llama32_1b_dba.yml --print-plan
expect_out llama32_1b.tree 'blocks'
