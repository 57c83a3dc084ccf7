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
# CB_TEST_JOBS tests run at once (default: the CPU count), every variant's in one pool;
# each is independent (its own temporary folder). The report is in the order of a single
# run, variant by variant, whatever the order they finish in; each test's stdout and
# stderr are kept in build/test-logs/LABEL-NAME.{out,log}, its wall time in
# build/test-logs/times.tsv, which the next run reads to start the slowest first.
set -u
cd "$(dirname "$0")/.."
root=$PWD
logdir=$root/build/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0
failed_names=()
ci_default=0
[ "${CI:-}" = true ] && ci_default=1
expect_no_skip=${CB_EXPECT_NO_SKIP:-$ci_default}
allowed_skips=$(grep -v -e '^#' -e '^$' tests/expected-skips 2>/dev/null)
[ -n "${CB_ALLOWED_SKIPS:-}" ] && allowed_skips+=$'\n'$CB_ALLOWED_SKIPS
per_test_timeout=${CB_TEST_TIMEOUT:-900}
jobs=${CB_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: CB_TEST_JOBS=$jobs: expected a count >= 1" >&2; exit 2; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:exitcode=99}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# threads sleep rather than spin between parallel regions: on a loaded 2-core machine
# spinning threads starve the ones doing the work
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# report LABEL NAME BASE: the result of a finished test, from BASE.out (stdout), BASE.log
# (stderr) and BASE.status
report() {
    local label=$1 name=$2 base=$3
    local out status log=$base.log
    out=$(cat "$base.out")
    status=$(cat "$base.status")
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

# The tests, in the order they are reported: per variant its unit-test programs, then the
# CLI scripts. Fields: label, name, bindir, base of the log files, command.
labels=() names=() bindirs=() bases=() cmds=() heads=() run_labels=()
# add LABEL NAME BINDIR BASE CMD: one test; the variant's pending heading goes with it
pending=""
add() {
    labels+=("$1"); names+=("$2"); bindirs+=("$3"); bases+=("$4"); cmds+=("$5"); heads+=("$pending")
    pending=""
}
for spec in "$@"; do
    IFS=: read -r label bindir testdir <<<"$spec"
    run_labels+=("$label")
    # expected: one program per tests/unit/DIR/test_NAME.c, at TESTDIR/DIR/test_NAME
    expected=$(find tests/unit -name 'test_*.c' | sed 's|^tests/unit/||; s|\.c$||' | LC_ALL=C sort)
    found=$(cd "$testdir" 2>/dev/null && find . -type f -perm -u+x | sed 's|^\./||' | LC_ALL=C sort)
    # what is missing or left over is counted now and reported under the variant's heading
    pending="== $label: unit tests ($testdir)"
    if [ -z "$expected" ]; then
        pending+=$'\n'"not ok - [$label] unit tests: no tests/unit/**/test_*.c found"
        fail=$((fail + 1)); failed_names+=("$label:unit-tests")
    fi
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        pending+=$'\n'"not ok - [$label] $name: no test program $testdir/$name (build it: make tests-built)"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    done < <(LC_ALL=C comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        pending+=$'\n'"not ok - [$label] $name: $testdir/$name has no source tests/unit/$name.c (a deleted or moved test's old binary: not run; remove it)"
        fail=$((fail + 1)); failed_names+=("$label:$name")
    done < <(LC_ALL=C comm -13 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        add "$label" "$name" "$bindir" "$logdir/$label-${name//\//_}" "$testdir/$name"
    done < <(LC_ALL=C comm -12 <(printf '%s\n' "$expected") <(printf '%s\n' "$found"))
    [ -n "$pending" ] && pending+=$'\n'
    pending+="== $label: command-line tests (tests/cli)"
    for script in tests/cli/*.sh; do
        [ "$(basename "$script")" = lib.sh ] && continue
        name=$(basename "$script" .sh)
        add "$label" "$name" "$bindir" "$logdir/$label-cli-$name" "bash $script"
    done
done
[ -n "$pending" ] && echo "$pending"
n=${#names[@]}

# The order they start in: slowest first by the last run's times (a long test started
# last would run alone at the end); tests with no time yet first of all.
declare -A last
if [ -f "$logdir/times.tsv" ]; then
    while IFS=$'\t' read -r l nm t; do last["$l/$nm"]=$t; done <"$logdir/times.tsv"
fi
order=$(for ((i = 0; i < n; i++)); do
    printf '%s\t%d\n' "${last["${labels[i]}/${names[i]}"]:-999999}" "$i"
done | sort -t$'\t' -k1,1gr -k2,2n | cut -f2)
for ((i = 0; i < n; i++)); do rm -f "${bases[i]}.status"; done

# start I: the test in the background; BASE.status is written last, when it is done
start() {
    local i=$1
    (
        export CB_BIN=$root/${bindirs[i]} CB_VARIANT=${labels[i]} CB_ROOT=$root
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086 # cmds holds "bash SCRIPT" or a program path
        timeout "$per_test_timeout" ${cmds[i]} >"${bases[i]}.out" 2>"${bases[i]}.log"
        status=$?
        echo "$(date +%s.%N) - $t0" | bc >"${bases[i]}.time"
        echo "$status" >"${bases[i]}.status"
    ) &
}

t_start=$(date +%s)
next=0 running=0
mapfile -t queue <<<"$order"
for ((i = 0; i < n; i++)); do
    # start up to $jobs, then report, in order, every test that is done
    while [ "$running" -lt "$jobs" ] && [ "$next" -lt "$n" ]; do
        start "${queue[next]}"
        next=$((next + 1))
        running=$(jobs -rp | wc -l)
    done
    while [ ! -f "${bases[i]}.status" ]; do
        wait -n 2>/dev/null
        running=$(jobs -rp | wc -l)
        while [ "$running" -lt "$jobs" ] && [ "$next" -lt "$n" ]; do
            start "${queue[next]}"
            next=$((next + 1))
            running=$(jobs -rp | wc -l)
        done
    done
    [ -n "${heads[i]}" ] && echo "${heads[i]}"
    report "${labels[i]}" "${names[i]}" "${bases[i]}"
done
wait

# the times, for the next run's order and for anyone asking where the time goes (the
# variants this run did not run keep theirs)
old_times=$(cat "$logdir/times.tsv" 2>/dev/null)
: >"$logdir/times.tsv"
declare -A total
for ((i = 0; i < n; i++)); do
    t=$(cat "${bases[i]}.time" 2>/dev/null || echo 0)
    printf '%s\t%s\t%.1f\n' "${labels[i]}" "${names[i]}" "$t" >>"$logdir/times.tsv"
    total[${labels[i]}]=$(echo "${total[${labels[i]}]:-0} + $t" | bc)
done
while IFS=$'\t' read -r l nm t; do
    [ -n "$l" ] && [ -z "${total[$l]:-}" ] && printf '%s\t%s\t%s\n' "$l" "$nm" "$t" >>"$logdir/times.tsv"
done <<<"$old_times"
summary=""
for l in "${run_labels[@]}"; do summary+="$l $(printf '%.0f' "${total[$l]:-0}") s, "; done
echo "== times: test time ${summary}on $jobs jobs in $(($(date +%s) - t_start)) s of wall time (build/test-logs/times.tsv)"

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
