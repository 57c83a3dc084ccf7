#!/usr/bin/env bash
# run.sh: runs every unit-test program and CLI test script once per build variant
# and ends with one line "N passed, N failed, N skipped".
#   tests/run.sh LABEL:BINDIR:TESTDIR [...]
# A test program or script prints "ok - NAME", "not ok - NAME: why" or "skip - NAME: why"
# per check; one that exits non-zero without a "not ok" line counts as a failure too.
set -u
cd "$(dirname "$0")/.."
root=$PWD
logdir=$root/build/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0
failed_names=()
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
    local out status
    out=$(timeout "$per_test_timeout" "$@" 2>"$log")
    status=$?
    local n_ok n_bad n_skip
    n_ok=$(grep -c '^ok - ' <<<"$out")
    n_bad=$(grep -c '^not ok - ' <<<"$out")
    n_skip=$(grep -c '^skip - ' <<<"$out")
    grep -E '^(not ok|skip) - ' <<<"$out" | sed "s|^|[$label] |"
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
    while IFS= read -r prog; do
        name=${prog#$testdir/}
        run_one "$label" "$name" "$logdir/$label-${name//\//_}.log" "$prog"
    done < <(find "$testdir" -type f -perm -u+x | sort)
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
else
    echo "skip - mandoc -Tlint: mandoc not installed"; skip=$((skip + 1))
fi

if [ "$fail" -gt 0 ]; then echo "failed: ${failed_names[*]}"; fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
