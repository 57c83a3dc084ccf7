#!/usr/bin/env bash
# cb-validate on hand-written lowered documents: a good one gives the plan, a bad one
# every error (one line each, file:line:col first) and exit 3.
. "$(dirname "$0")/lib.sh"
V="$CB_BIN/cb-validate"
D=tests/cli/data

expect_run llama_ok 0 "$V" "$D/validate_llama1b.json"
expect_out llama_kind '"kind": "plan"'
expect_out llama_total '"params": 1235814400,'
expect_out llama_kv '"kv_cache_elems_per_token": 16384,'
expect_out llama_tensor_id '"id": "blocks\.\*\.res\.attn"'
expect_out llama_rope_scaling '"original_max_position_embeddings": 8192'
if [ -s "$TMP/err" ]; then not_ok llama_quiet "stderr: $(head -c 200 "$TMP/err")"; else ok llama_quiet; fi

# stdin in, -o out: the file holds the plan, stdout stays empty
run "$V" -o "$TMP/plan.json" - <"$D/validate_tiny.json"
expect_status stdin_to_file 0
expect_empty_out stdin_to_file_quiet
if grep -q '"name": "embed.pos"' "$TMP/plan.json" 2>/dev/null; then ok stdin_to_file_plan; else
    not_ok stdin_to_file_plan "no embed.pos tensor in $TMP/plan.json"; fi

# every error, in order, one line each, nothing on stdout
expect_run bad_status 3 "$V" "$D/validate_bad.json"
expect_empty_out bad_quiet
want="cb-validate: bad.yml:15:18: model.topology.layers[0].n_heads: 12 does not divide d_model 1000
cb-validate: bad.yml:16:21: model.topology.layers[0].n_kv_heads: 5 does not divide n_heads 12
cb-validate: bad.yml:17:9: model.topology.layers[1]: residual body returns width 10, not its input width 1000
cb-validate: bad.yml:4:19: model.tie_embeddings: true needs the topology's output width 10 to equal the embedder's d_model 1000"
if [ "$(cat "$TMP/err")" = "$want" ]; then ok bad_all_errors; else
    not_ok bad_all_errors "stderr was: $(cat "$TMP/err")"; fi

# an error without a source location names the input file
expect_run no_loc_status 3 "$V" "$D/validate_no_loc.json"
expect_err_line no_loc_line "^cb-validate: $D/validate_no_loc\.json: model\.embedder\.d_model: 8 does not match the topology's input width 6$"

# a manifest document is not a lowered one
printf '{"cb_version":"0.1","kind":"manifest","manifest":{}}' >"$TMP/m.json"
expect_run wrong_kind 3 "$V" "$TMP/m.json"
expect_err_line wrong_kind_line '^cb-validate: .*m\.json: expected a document of kind "lowered", got "manifest"$'
expect_empty_out wrong_kind_quiet

printf '{"cb_version":"0.1","kind":' >"$TMP/broken.json"
expect_run broken_json 3 "$V" "$TMP/broken.json"
expect_err_line broken_json_line '^cb-validate: .*broken\.json:1:[0-9]+: invalid JSON'

expect_run missing_file 2 "$V" "$TMP/nope.json"
expect_run bad_option 2 "$V" --frobnicate "$D/validate_tiny.json"
expect_run two_inputs 2 "$V" "$D/validate_tiny.json" "$D/validate_tiny.json"

# a failed run leaves an earlier output untouched
echo previous >"$TMP/keep.json"
expect_run bad_keeps_output 3 "$V" -o "$TMP/keep.json" "$D/validate_bad.json"
if [ "$(cat "$TMP/keep.json")" = previous ]; then ok bad_keeps_output_file; else
    not_ok bad_keeps_output_file "output file changed"; fi

# the manifest's top level is checked before any shape
sed 's/"version": 1/"version": 2/' "$D/validate_tiny.json" >"$TMP/v2.json"
expect_run version_2 3 "$V" "$TMP/v2.json"
expect_err_line version_2_line '^cb-validate: .*v2\.json: version: must be 1'
