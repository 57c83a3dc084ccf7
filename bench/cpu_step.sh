#!/bin/bash
# cpu_step.sh: caramba's training step (bench/cpu_step.c) and PyTorch's (bench/cpu_step_torch.py)
# back to back on this machine: same model (bench/llama110m.yml), batch, thread count and
# OpenBLAS kernels; prints each one's tokens/s and the ratio caramba / torch.
#   [STEPS=5] [THREADS=2] [CORETYPE=Haswell] [OMP_WAIT_POLICY=active] bench/cpu_step.sh
# PyTorch runs twice when Debian's OpenMP build of OpenBLAS is installed: on the BLAS it is
# linked with (libblas.so.3, the pthreads build by default) and on the OpenMP build; the
# ratio is taken against the faster of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-5}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
# OpenBLAS picks its kernels for the CPU (Cooperlake, AVX-512, on the bench machine's AMD EPYC)
# unless OPENBLAS_CORETYPE pins them; that machine's environment pins Haswell (AVX2 only, half
# the sgemm rate). The bench lets OpenBLAS choose unless CORETYPE names a core.
if [ -n "${CORETYPE:-}" ]; then export OPENBLAS_CORETYPE=$CORETYPE; else unset OPENBLAS_CORETYPE; fi
# Other processes share these cores (bench/RESULTS.md): threads that sleep at OpenMP barriers
# instead of spinning leave the cores to whichever thread has work, which on a loaded machine
# is worth more than the microseconds a sleeping thread takes to wake.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
CB_QUIET_CONFIG=1 make -s bench-built >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "THREADS=$THREADS OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OMP_WAIT_POLICY=$OMP_WAIT_POLICY;" \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== caramba"
build/rel/bench/cpu_step -n "$STEPS" | tee "$tmp/caramba"
cb=$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/caramba")

torch_run() { # label, then the environment of the run
    local label=$1
    shift
    echo "== torch ($label)"
    env "$@" /usr/bin/python3 bench/cpu_step_torch.py -n "$STEPS" --threads "$THREADS" | tee "$tmp/torch"
    echo "$(sed -n 's/^tokens\/s: \([0-9.]*\).*/\1/p' "$tmp/torch") $label" >>"$tmp/torch_rates"
}
: >"$tmp/torch_rates"
libblas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
torch_run "libblas.so.3 = $libblas" OMP_NUM_THREADS="$THREADS"
omp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ -e "$omp_blas/libblas.so.3" ] && [ "$(dirname "$libblas")" != "$omp_blas" ]; then
    torch_run "OpenBLAS OpenMP build" LD_LIBRARY_PATH="$omp_blas"
fi
echo "== summary"
while read -r rate label; do echo "torch ($label): $rate tokens/s"; done <"$tmp/torch_rates"
best=$(sort -g -r "$tmp/torch_rates" | head -n 1 | cut -d' ' -f1)
echo "caramba: $cb tokens/s"
awk -v cb="$cb" -v t="$best" 'BEGIN { printf "ratio caramba / torch (faster torch run): %.2f\n", cb / t }'
