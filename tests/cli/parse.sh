#!/usr/bin/env bash
# cb-parse on good input: the exact JSON for a small manifest from a file, stdin and -o,
# a 10 MB manifest made here, and the usage and output errors.
. "$(dirname "$0")/lib.sh"
P=$CB_BIN/cb-parse
good=tests/cli/parse/good.yml
want=tests/cli/parse/good.json

expect_run help 0 "$P" --help
expect_out help_usage '^usage: cb-parse \[-o file\] \[file\]$'
if [ -s "$TMP/err" ]; then not_ok help_quiet "--help wrote to stderr"; else ok help_quiet; fi

expect_run file 0 "$P" "$good"
if cmp -s "$TMP/out" "$want"; then ok file_exact; else
    not_ok file_exact "output differs from $want: $(diff "$want" "$TMP/out" | head -5)"; fi
if [ -s "$TMP/err" ]; then not_ok file_quiet "stderr: $(head -c 200 "$TMP/err")"; else ok file_quiet; fi

# stdin, with no argument and with "-": the same document named "<stdin>"
sed 's|"tests/cli/parse/good.yml|"<stdin>|' "$want" >"$TMP/want_stdin"
run "$P" <"$good"
if [ "$STATUS" -eq 0 ] && cmp -s "$TMP/out" "$TMP/want_stdin"; then ok stdin_exact; else
    not_ok stdin_exact "status $STATUS: $(diff "$TMP/want_stdin" "$TMP/out" | head -5)"; fi
run "$P" - <"$good"
if [ "$STATUS" -eq 0 ] && cmp -s "$TMP/out" "$TMP/want_stdin"; then ok dash_exact; else
    not_ok dash_exact "status $STATUS: $(diff "$TMP/want_stdin" "$TMP/out" | head -5)"; fi

# -o writes the file, nothing on stdout; a failure leaves an earlier file untouched
expect_run output_file 0 "$P" -o "$TMP/m.json" "$good"
expect_empty_out output_file_quiet_stdout
if cmp -s "$TMP/m.json" "$want"; then ok output_file_exact; else not_ok output_file_exact "-o file differs"; fi
printf 'a: [1\n' >"$TMP/broken.yml"
expect_run output_kept_on_failure_status 3 "$P" --output "$TMP/m.json" "$TMP/broken.yml"
if cmp -s "$TMP/m.json" "$want" && [ -z "$(ls -A "$TMP" | grep '\.tmp\.')" ]; then ok output_kept_on_failure; else
    not_ok output_kept_on_failure "the earlier -o file changed or a temporary file was left"; fi
expect_empty_out output_failure_quiet_stdout

# usage and I/O errors: exit 2, one line, nothing on stdout
expect_run bad_option 2 "$P" --frobnicate "$good"
expect_err_line bad_option_line '^cb-parse: unknown option --frobnicate'
expect_empty_out bad_option_quiet
expect_run missing_o_arg 2 "$P" -o
expect_err_line missing_o_arg_line '^cb-parse: option -o needs an argument'
expect_run missing_output_arg 2 "$P" --output
expect_err_line missing_output_arg_line '^cb-parse: option --output needs an argument'
expect_run bad_short_option 2 "$P" -x "$good"
expect_err_line bad_short_option_line '^cb-parse: unknown option -x'
expect_run two_files 2 "$P" "$good" "$good"
expect_err_line two_files_line '^cb-parse: one manifest at a time'
expect_run missing_file 2 "$P" "$TMP/nope.yml"
expect_err_line missing_file_line "^cb-parse: $TMP/nope.yml: cannot open: No such file or directory$"
expect_empty_out missing_file_quiet
expect_run directory 2 "$P" "$TMP"
expect_err_line directory_line "^cb-parse: $TMP"
expect_run unwritable_output 2 "$P" -o "$TMP/no/such/dir/m.json" "$good"
expect_err_line unwritable_output_line "^cb-parse: $TMP/no/such/dir/m.json: cannot create"
if [ -w /dev/full ]; then
    "$P" "$good" >/dev/full 2>"$TMP/err"
    STATUS=$?
    expect_status full_disk 2
    expect_err_line full_disk_line '^cb-parse: .*(write failed|No space left)'
fi

# a 10 MB manifest, made here rather than committed: 150,000 runs of two keys each
awk 'BEGIN { print "runs:"; for (i = 0; i < 150000; i++)
             printf "  - {id: run_%06d, note: \"%s\"}\n", i, "0123456789abcdefghijklmnopqrstuvwxyz0123" }' \
    >"$TMP/big.yml"
size=$(wc -c <"$TMP/big.yml")
if [ "$size" -ge 10000000 ]; then ok big_file_size; else not_ok big_file_size "made only $size bytes"; fi
expect_run big_file 0 timeout 120 "$P" -o "$TMP/big.json" "$TMP/big.yml"
if grep -q '"id": "run_149999"' "$TMP/big.json" && grep -q "\"\": \"$TMP/big.yml:150001:5\"" "$TMP/big.json"
then ok big_file_content; else not_ok big_file_content "last run or its location missing"; fi
