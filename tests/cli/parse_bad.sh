#!/usr/bin/env bash
# cb-parse on hostile input: every tests/bad/manifest/parse_*.yml, from its path and from
# stdin, must fail with the status and the one stderr line its .expect gives, and print
# nothing on stdout. Plus what is too big to commit: a 10 MB and a 65 MiB file made here.
. "$(dirname "$0")/lib.sh"
P=$CB_BIN/cb-parse

n=0
for f in tests/bad/manifest/parse_*.yml; do
    name=$(basename "$f" .yml)
    exp=${f%.yml}.expect
    if [ ! -f "$exp" ]; then not_ok "$name" "no $exp"; continue; fi
    want_status=$(sed -n 1p "$exp")
    want_re=$(sed -n 2p "$exp")
    expect_run "$name.status" "$want_status" timeout 20 "$P" "$f"
    expect_err_line "$name.stderr" "$want_re"
    if ! grep -qF "$f:" "$TMP/err"; then not_ok "$name.names_file" "stderr does not name $f"; else ok "$name.names_file"; fi
    expect_empty_out "$name.stdout"
    run timeout 20 "$P" <"$f"
    expect_status "$name.stdin_status" "$want_status"
    expect_err_line "$name.stdin_stderr" "${want_re/\[^ \]\*/<stdin>}"
    expect_empty_out "$name.stdin_stdout"
    n=$((n + 1))
done
if [ "$n" -ge 15 ]; then ok count; else not_ok count "only $n hostile manifests"; fi

# 10 MB: a manifest whose value opens ten million flow sequences; fails at level 257, fast
{ printf 'name: big\nmodel: '; head -c 10000000 /dev/zero | tr '\0' '['; } >"$TMP/deep10mb.yml"
expect_run deep_10mb_status 3 timeout 20 "$P" "$TMP/deep10mb.yml"
expect_err_line deep_10mb_stderr "^cb-parse: $TMP/deep10mb.yml:2:263: nesting deeper than 256 levels$"
expect_empty_out deep_10mb_stdout

# over 64 MiB: refused before reading (a sparse file), and while reading a pipe
truncate -s 65M "$TMP/huge.yml"
expect_run huge_status 3 timeout 20 "$P" "$TMP/huge.yml"
expect_err_line huge_stderr "^cb-parse: $TMP/huge.yml:1:1: file larger than 64 MiB \(68157440 bytes\)$"
expect_empty_out huge_stdout
run timeout 60 "$P" <"$TMP/huge.yml"
expect_status huge_stdin_status 3
expect_err_line huge_stdin_stderr '^cb-parse: <stdin>:1:1: file larger than 64 MiB$'
