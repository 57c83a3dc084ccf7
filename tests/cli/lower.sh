#!/usr/bin/env bash
# cb-lower on manifest documents in tests/cli/data/lower_*.json: a whole manifest against
# its expected lowering, the hostile cases of tests/bad/manifest/lower_*.yml as parsed
# JSON (same .expect files), and the command line's own errors.
. "$(dirname "$0")/lib.sh"
D=tests/cli/data
LOWER=$CB_BIN/cb-lower

# a whole manifest: vars, arithmetic, defaults, top-level runs, verify, ids
expect_run ok_model.status 0 "$LOWER" $D/lower_ok_model.json
if diff -u $D/lower_ok_model.want "$TMP/out" >"$TMP/diff"; then ok ok_model.output; else
    not_ok ok_model.output "differs from lower_ok_model.want: $(head -c 600 "$TMP/diff")"; fi
if [ -s "$TMP/err" ]; then not_ok ok_model.quiet "stderr: $(head -c 200 "$TMP/err")"; else ok ok_model.quiet; fi
expect_out ok_model.kind '^  "kind": "lowered",$'
expect_out ok_model.nested_id '"id": "blocks\.\*\.res_1\.mlp"'
expect_out ok_model.arith '"d_ff": 1524,'

# stdin, "-" and -o give the same document
run "$LOWER" <$D/lower_ok_model.json
if cmp -s $D/lower_ok_model.want "$TMP/out"; then ok stdin; else not_ok stdin "output differs"; fi
run "$LOWER" - <$D/lower_ok_model.json
if cmp -s $D/lower_ok_model.want "$TMP/out"; then ok dash; else not_ok dash "output differs"; fi
expect_run output_file.status 0 "$LOWER" -o "$TMP/lowered.json" $D/lower_ok_model.json
expect_empty_out output_file.stdout
if cmp -s $D/lower_ok_model.want "$TMP/lowered.json"; then ok output_file.content; else
    not_ok output_file.content "the -o file differs"; fi
expect_run output_long.status 0 "$LOWER" --output="$TMP/long.json" $D/lower_ok_model.json
if cmp -s $D/lower_ok_model.want "$TMP/long.json"; then ok output_long.content; else
    not_ok output_long.content "the --output file differs"; fi

# hostile cases: the YAML case's .expect says the status and the stderr line
n_bad=0
for json in $D/lower_bad_*.json; do
    name=$(basename "$json" .json); name=${name#lower_bad_}
    expect=tests/bad/manifest/lower_$name.expect
    if [ ! -f "$expect" ]; then not_ok "bad_$name" "no $expect"; continue; fi
    want_status=$(sed -n 1p "$expect"); want_line=$(sed -n 2p "$expect")
    expect_run "bad_$name.status" "$want_status" timeout 20 "$LOWER" -o "$TMP/bad.json" "$json"
    expect_err_line "bad_$name.stderr" "^cb-lower: (.*/)?$want_line"
    expect_empty_out "bad_$name.stdout"
    if [ -e "$TMP/bad.json" ]; then not_ok "bad_$name.no_file" "-o file written after a failure"; else
        ok "bad_$name.no_file"; fi
    n_bad=$((n_bad + 1))
done
if [ "$n_bad" -ge 12 ]; then ok bad_count; else not_ok bad_count "only $n_bad hostile cases"; fi

# every error is reported, one line each, as "cb-lower: FILE:LINE:COL: PATH: message"
expect_run multi.status 3 "$LOWER" $D/lower_multi_errors.json
expect_empty_out multi.stdout
cat >"$TMP/want_err" <<'WANT'
cb-lower: multi.yml:3:6: vars.x: w / 3 = 10 / 3 is not exact
cb-lower: multi.yml:4:4: a: undefined variable "nothing"
cb-lower: multi.yml:7:13: model.topology.layers[0].id: id "embed" is reserved at the root level (the embedder uses it)
WANT
if diff -u "$TMP/want_err" "$TMP/err" >"$TMP/diff"; then ok multi.stderr; else
    not_ok multi.stderr "$(head -c 600 "$TMP/diff")"; fi

# documents that are not manifests
"$LOWER" $D/lower_ok_model.json >"$TMP/lowered.json" 2>/dev/null
expect_run wrong_kind.status 3 "$LOWER" "$TMP/lowered.json"
expect_err_line wrong_kind.stderr 'expected a document of kind "manifest", got "lowered"'
printf '{"cb_version": "0.1", "kind": "manifest", "manifest": [1]}' >"$TMP/list.json"
expect_run not_mapping.status 3 "$LOWER" "$TMP/list.json"
expect_err_line not_mapping.stderr '^cb-lower: .*manifest: expected a mapping at the top, got a list$'
printf '{"cb_version": "0.1", "kind": "manifest", "manif' >"$TMP/cut.json"
expect_run bad_json.status 3 "$LOWER" "$TMP/cut.json"
expect_err_line bad_json.stderr "^cb-lower: $TMP/cut.json:1:[0-9]+: invalid JSON"

# the command line
expect_run missing_file.status 2 "$LOWER" "$TMP/nope.json"
expect_empty_out missing_file.stdout
expect_run two_files.status 2 "$LOWER" a.json b.json
expect_err_line two_files.stderr '^cb-lower: too many arguments'
expect_run bad_option.status 2 "$LOWER" --frobnicate
expect_err_line bad_option.stderr '^cb-lower: unknown option --frobnicate'
expect_run no_o_arg.status 2 "$LOWER" -o
expect_err_line no_o_arg.stderr '^cb-lower: option -o needs an argument'
