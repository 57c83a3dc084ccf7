#!/usr/bin/env bash
# Every tool's --version says which BLAS kernels run and who chose them; the fallback to
# lesser kernels, simulated (CB_BLAS_TEST_CORE), is fixed by a re-execution under a core that
# passed its self-check, or kept and told once where every candidate fails (CB_BLAS_TEST_WRONG);
# a user's OPENBLAS_CORETYPE below the CPU is kept and told once, and not with --quiet.
. "$(dirname "$0")/lib.sh"
unset CB_BLAS_NOTED

for tool in "$CB_BIN"/cb "$CB_BIN"/cb-*; do
    [ -x "$tool" ] || continue
    t=$(basename "$tool")
    run "$tool" --version
    expect_status "$t.version_exit" 0
    expect_out "$t.version_blas" "^blas: OpenBLAS [0-9.]+.*, kernels [A-Za-z0-9]+, (chosen by the BLAS|chosen by caramba|set by the user)"
    if [ -s "$TMP/err" ]; then not_ok "$t.version_quiet" "--version wrote to stderr: $(head -c 200 "$TMP/err")"
    else ok "$t.version_quiet"; fi
done

# who chose, as the environment says
run "$CB_BIN"/cb --version
chosen=${CB_BLAS_CHOSEN:-}
if [ -n "${OPENBLAS_CORETYPE:-}" ] && [ "${chosen%% *}" != "$OPENBLAS_CORETYPE" ]; then
    expect_out env.user "kernels [A-Za-z0-9]+, set by the user"
else
    expect_out env.unset "kernels [A-Za-z0-9]+, chosen by (the BLAS|caramba)"
fi
cpu_flags=$(sed -n 's/^cpu: .*: //p' "$TMP/out")

if ! grep -qw avx2 <<<"$cpu_flags" || ! grep -qw fma <<<"$cpu_flags"; then
    echo "skip - $SCRIPT.fallback: this CPU has no AVX2, so no fallback to simulate"
else
    # The BLAS "took" Prescott: the tool re-executes once under the best core that passes,
    # and the BLAS in the new process really runs it.
    run env -u OPENBLAS_CORETYPE -u CB_BLAS_CHOSEN CB_BLAS_TEST_CORE=Prescott "$CB_BIN"/cb-train --version
    expect_status fallback.exit 0
    expect_out fallback.fixed "kernels [A-Za-z0-9]+, chosen by caramba \(the BLAS took Prescott\)"
    if grep -q "kernels Prescott" "$TMP/out"; then not_ok fallback.not_prescott "$(cat "$TMP/out")"; else ok fallback.not_prescott; fi
    # a tool it starts inherits the choice (OPENBLAS_CORETYPE and the marker) and keeps it
    core=$(sed -n 's/.*kernels \([A-Za-z0-9]*\), chosen by caramba.*/\1/p' "$TMP/out")
    run env OPENBLAS_CORETYPE="$core" CB_BLAS_CHOSEN="$core Prescott" "$CB_BIN"/cb-parse --version
    expect_out fallback.inherited "kernels $core, chosen by caramba \(the BLAS took Prescott\)"

    # Every candidate computes wrong results: the tool stays on the fallback and says so once.
    run env -u OPENBLAS_CORETYPE -u CB_BLAS_CHOSEN CB_BLAS_TEST_CORE=Prescott CB_BLAS_TEST_WRONG='*' \
        "$CB_BIN"/cb-train --version
    expect_out wrong.kept "kernels Prescott, chosen by the BLAS; this CPU runs [A-Za-z]+, but caramba's self-check failed \(.*wrong results"
    run env -u OPENBLAS_CORETYPE -u CB_BLAS_CHOSEN CB_BLAS_TEST_CORE=Prescott CB_BLAS_TEST_WRONG='*' \
        "$CB_BIN"/cb-train "$TMP/none.json"
    n=$(grep -c "staying there, since the self-check failed" "$TMP/err")
    [ "$n" -eq 1 ] && ok wrong.told_once || not_ok wrong.told_once "told $n times: $(cat "$TMP/err")"
    run env -u OPENBLAS_CORETYPE -u CB_BLAS_CHOSEN CB_BLAS_TEST_CORE=Prescott CB_BLAS_TEST_WRONG='*' \
        "$CB_BIN"/cb-train --quiet "$TMP/none.json"
    expect_err_line wrong.quiet "^cb-train: .*none\.json: cannot open"
fi

# A user's OPENBLAS_CORETYPE holding the BLAS below this CPU: kept, told once on stderr
if grep -qw avx <<<"$cpu_flags"; then
    run env -u CB_BLAS_CHOSEN OPENBLAS_CORETYPE=Prescott "$CB_BIN"/cb-train --version
    expect_out user.kept "kernels Prescott, set by the user \(OPENBLAS_CORETYPE\); this CPU runs [A-Za-z]+"
    run env -u CB_BLAS_CHOSEN OPENBLAS_CORETYPE=Prescott "$CB_BIN"/cb-train "$TMP/none.json"
    n=$(grep -c "^cb-train: OPENBLAS_CORETYPE=Prescott holds the BLAS to its Prescott kernels" "$TMP/err")
    [ "$n" -eq 1 ] && ok user.told_once || not_ok user.told_once "told $n times: $(cat "$TMP/err")"
    run env -u CB_BLAS_CHOSEN OPENBLAS_CORETYPE=Prescott "$CB_BIN"/cb-train -q "$TMP/none.json"
    expect_err_line user.quiet "^cb-train: .*none\.json: cannot open"
    run env -u CB_BLAS_CHOSEN OPENBLAS_CORETYPE=Prescott CB_BLAS_NOTED=1 "$CB_BIN"/cb-generate --max-new-tokens 1 "$TMP/none"
    expect_err_line user.noted_before "^cb-generate: "
else
    echo "skip - $SCRIPT.user: this CPU has no AVX, so Prescott is not below it"
fi
