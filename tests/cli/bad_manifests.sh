#!/usr/bin/env bash
# Every hostile manifest in tests/bad/manifest/ must fail `cb compile` with the status
# and the single stderr line its .expect file gives (line 1: status; line 2: an
# extended regex), print nothing on stdout, and never crash or hang.
# The sanitizer pass runs the tool on every eighth of them (its own paths: the exit status,
# one line, nothing on stdout, no sanitizer report): tests/unit/manifest/test_bad_manifests
# runs the library over every one in one process, under the sanitizers too.
. "$(dirname "$0")/lib.sh"

shopt -s nullglob
files=(tests/bad/manifest/*.yml)
[ ${#files[@]} -gt 0 ] || { echo "skip - $SCRIPT: no hostile manifests yet"; exit 0; }
every=1
[ "${CB_VARIANT:-rel}" = asan ] && every=8
i=0
for yml in tests/bad/manifest/*.yml; do
    i=$((i + 1))
    [ $((i % every)) -eq 0 ] || [ "$every" -eq 1 ] || continue
    name=$(basename "$yml" .yml)
    exp=${yml%.yml}.expect
    if [ ! -f "$exp" ]; then not_ok "$name" "no $exp"; continue; fi
    want_status=$(sed -n 1p "$exp")
    want_regex=$(sed -n 2p "$exp")
    run timeout 60 "$CB_BIN/cb" compile "$yml"
    if [ "$STATUS" -ne "$want_status" ]; then
        not_ok "$name" "exit status $STATUS, expected $want_status; stderr: $(head -c 300 "$TMP/err")"
        continue
    fi
    if [ -s "$TMP/out" ]; then not_ok "$name" "wrote to stdout after failing"; continue; fi
    first=$(head -n 1 "$TMP/err")
    if ! grep -qE -- "$want_regex" <<<"$first"; then
        not_ok "$name" "stderr '$first' does not match '$want_regex'"; continue
    fi
    # every stderr line must be a caramba error line, never a sanitizer report or a trace
    if grep -qvE '^cb(-[a-z]+)?( [a-z]+)?: ' "$TMP/err"; then
        not_ok "$name" "stderr has lines that are not error lines: $(grep -vE '^cb' "$TMP/err" | head -c 300)"; continue
    fi
    ok "$name"
done
