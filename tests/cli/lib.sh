# lib.sh: helpers for command-line tests, sourced by tests/cli/*.sh.
# CB_BIN points at the tools under test (bin/ or build/asan/bin); CB_ROOT at the tree.
# pipefail: a pipeline fails when any of its commands fails, not only the last one
set -u -o pipefail
: "${CB_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${CB_BIN:=$CB_ROOT/bin}"
cd "$CB_ROOT" || exit 2
# The compute tools tell once on stderr when an OPENBLAS_CORETYPE holds the BLAS below this
# CPU; tests/cli/version.sh checks that line, the other tests check their tool's own stderr.
export CB_BLAS_NOTED=1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cbtest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

ok()     { echo "ok - $SCRIPT.$1"; }
not_ok() { echo "not ok - $SCRIPT.$1: $2"; }
SCRIPT=$(basename "$0" .sh)

# run CMD...: runs it, keeps stdout in $TMP/out, stderr in $TMP/err, status in $STATUS
run() {
    "$@" >"$TMP/out" 2>"$TMP/err"
    STATUS=$?
}

# expect_status NAME WANT: the last run's exit status
expect_status() {
    if [ "$STATUS" -eq "$2" ]; then ok "$1"; else
        not_ok "$1" "exit status $STATUS, expected $2; stderr: $(head -c 300 "$TMP/err")"; fi
}

# expect_run NAME STATUS CMD...: run, then check the status
expect_run() {
    local name=$1 want=$2; shift 2
    run "$@"
    expect_status "$name" "$want"
}

# expect_err_line NAME PATTERN: stderr is exactly one line matching the grep -E pattern
expect_err_line() {
    local lines
    lines=$(wc -l <"$TMP/err")
    if [ "$lines" -ne 1 ]; then not_ok "$1" "stderr has $lines lines, expected 1: $(head -c 300 "$TMP/err")"
    elif ! grep -qE -- "$2" "$TMP/err"; then not_ok "$1" "stderr '$(cat "$TMP/err")' does not match '$2'"
    else ok "$1"; fi
}

# expect_out NAME PATTERN: stdout matches the grep -E pattern
expect_out() {
    if grep -qE -- "$2" "$TMP/out"; then ok "$1"; else
        not_ok "$1" "stdout does not match '$2': $(head -c 300 "$TMP/out")"; fi
}

# expect_empty_out NAME: nothing on stdout (after a failure)
expect_empty_out() {
    if [ ! -s "$TMP/out" ]; then ok "$1"; else not_ok "$1" "stdout not empty: $(head -c 200 "$TMP/out")"; fi
}

# expect_same_files NAME A B: both files exist and hold the same bytes (cmp's status 2, a
# missing or unreadable file, is a failure, not a difference)
expect_same_files() {
    cmp -s -- "$2" "$3"
    case $? in
    0) ok "$1" ;;
    1) not_ok "$1" "$2 and $3 differ" ;;
    *) not_ok "$1" "cannot compare: $(cmp -- "$2" "$3" 2>&1 | head -c 300)" ;;
    esac
}

# expect_other_files NAME A B: both files exist and differ
expect_other_files() {
    cmp -s -- "$2" "$3"
    case $? in
    0) not_ok "$1" "$2 and $3 are the same" ;;
    1) ok "$1" ;;
    *) not_ok "$1" "cannot compare: $(cmp -- "$2" "$3" 2>&1 | head -c 300)" ;;
    esac
}

# expect_cmd NAME CMD...: a setup command whose output the later checks compare succeeds
# (its output is its own; stdout and stderr are not captured)
expect_cmd() {
    local name=$1; shift
    if "$@"; then ok "$name"; else not_ok "$name" "exit status $?: $*"; fi
}
