#!/usr/bin/env bash
# run.sh: runs every unit-test program and CLI test script once per build variant
# and ends with one line "N passed, N failed, N skipped".
#   tests/run.sh LABEL:BINDIR:TESTDIR [...]
# A test program or script prints "ok - NAME", "not ok - NAME: why" or "skip - NAME: why"
# per check; one that exits non-zero without a "not ok" line counts as a failure too.
# The unit-test programs expected are those of tests/unit/**/test_*.c: one missing from
# TESTDIR is a failure, and one there without a source (a deleted or moved test's old
# binary) is a failure and is not run. A skip must say why ("skip - NAME: why").
# CB_EXPECT_NO_SKIP=1 (the default where CI=true, as CI runs it) makes every skip a failure unless it matches a line of
# tests/expected-skips or the extended regex CB_ALLOWED_SKIPS, both matched against
# "[LABEL] skip - NAME: why".
set -u
cd "$(dirname "$0")/.."
root=$PWD
logdir=$root/build/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0
: >"$logdir/times.tsv"
failed_names=()
ci_default=0
[ "${CI:-}" = true ] && ci_default=1
expect_no_skip=${CB_EXPECT_NO_SKIP:-$ci_default}
allowed_skips=$(grep -v -e '^#' -e '^$' tests/expected-skips 2>/dev/null)
[ -n "${CB_ALLOWED_SKIPS:-}" ] && allowed_skips+=$'\n'$CB_ALLOWED_SKIPS
per_test_timeout=${CB_TEST_TIMEOUT:-900}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:exitcode=99}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# threads sleep rather than spin between parallel regions: on a loaded 2-core machine
# spinning threads starve the ones doing the work
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# run_one LABEL NAME LOG CMD...
run_one() {
    local label=$1 name=$2 log=$3; shift 3
    local out status t0
    t0=$(date +%s.%N)
    out=$(timeout "$per_test_timeout" "$@" 2>"$log")
    status=$?
    printf '%s\t%s\t%.1f\n' "$label" "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" >>"$logdir/times.tsv"
    local n_ok n_bad n_skip
    n_ok=$(grep -c '^ok - ' <<<"$out")
    n_bad=$(grep -c '^not ok - ' <<<"$out")
    n_skip=$(grep -c '^skip - ' <<<"$out")
    grep -E '^(not ok|skip) - ' <<<"$out" | sed "s|^|[$label] |"
    # a skip that does not say why, or (CB_EXPECT_NO_SKIP=1) one not expected here, fails
    local line
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        if ! grep -qE '^skip - [^:]+: .' <<<"$line"; then
            echo "not ok - [$label] $name: a skip that does not say why: $line"
            n_bad=$((n_bad + 1)); n_skip=$((n_skip - 1))
        elif [ "$expect_no_skip" = 1 ] &&
             ! { [ -n "$allowed_skips" ] && grep -qE -f <(printf '%s\n' "$allowed_skips") <<<"[$label] $line"; }; then
            echo "not ok - [$label] $name: skipped, and CB_EXPECT_NO_SKIP=1 expects no skip here (tests/expected-skips, CB_ALLOWED_SKIPS): $line"
            n_bad=$((n_bad + 1)); n_skip=$((n_skip - 1))
        fi
    done < <(grep '^skip - ' <<<"$out")
    pass=$((pass + n_ok)); fail=$((fail + n_bad)); skip=$((skip + n_skip))
    if [ "$n_bad" -gt 0 ]; then
        failed_names+=("$label:$name")
    elif [ "$status" -ne 0 ]; then
        echo "not ok - [$label] $name: exited with status $status (see $log)"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    elif [ $((n_ok + n_skip)) -eq 0 ]; then
        echo "not ok - [$label] $name: ran no check"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    fi
    if [ "$n_bad" -gt 0 ] || [ "$status" -ne 0 ]; then
        sed 's/^/    | /' "$log" | head -40
    fi
}

for spec in "$@"; do
    IFS=: read -r label bindir testdir <<<"$spec"
    export CB_BIN=$root/$bindir CB_VARIANT=$label CB_ROOT=$root
    echo "== $label: unit tests ($testdir)"
    # expected: one program per tests/unit/DIR/test_NAME.c, at TESTDIR/DIR/test_NAME
    expected=$(find tests/unit -name 'test_*.c' | sed 's|^tests/unit/||; s|\.c$||' | LC_ALL=C sort)
    found=$(cd "$testdir" 2>/dev/null && find . -type f -perm -u+x | sed 's|^\./||' | LC_ALL=C sort)
    if [ -z "$expected" ]; then
        echo "not ok - [$label] unit tests: no tests/unit/**/test_*.c found"
        fail=$((fail + 1)); failed_names+=("$label:unit-tests")
    fi
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        echo "not ok - [$label] $name: no test program $testdir/$name (build it: make tests-built)"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    done < <(LC_ALL=C comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        echo "not ok - [$label] $name: $testdir/$name has no source tests/unit/$name.c (a deleted or moved test's old binary: not run; remove it)"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    done < <(LC_ALL=C comm -13 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        run_one "$label" "$name" "$logdir/$label-${name//\//_}.log" "$testdir/$name"
    done < <(LC_ALL=C comm -12 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    echo "== $label: command-line tests (tests/cli)"
    for script in tests/cli/*.sh; do
        [ "$(basename "$script")" = lib.sh ] && continue
        name=$(basename "$script" .sh)
        run_one "$label" "$name" "$logdir/$label-cli-$name.log" bash "$script"
    done
done

echo "== man pages: mandoc -Tlint"
if command -v mandoc >/dev/null; then
    lint=$(mandoc -Tlint -Wwarning man/*.[0-9] 2>&1)
    if [ -z "$lint" ]; then pass=$((pass + 1)); else
        echo "not ok - mandoc -Tlint"; echo "$lint" | sed 's/^/    | /'; fail=$((fail + 1)); failed_names+=(mandoc)
    fi
elif [ "$expect_no_skip" = 1 ]; then
    echo "not ok - mandoc -Tlint: mandoc not installed, and CB_EXPECT_NO_SKIP=1 expects no skip"
    fail=$((fail + 1)); failed_names+=(mandoc)
else
    echo "skip - mandoc -Tlint: mandoc not installed"; skip=$((skip + 1))
fi

if [ "$fail" -gt 0 ]; then echo "failed: ${failed_names[*]}"; fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
