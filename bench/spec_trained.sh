#!/bin/bash
# spec_trained.sh: speculative decoding on the trained tiny_sotu (make demo's model) with
# prompts from held-out text: self-drafts (its own weights stored q8_0 / q4_0, all or the
# first 3 of its 6 blocks), then a separately trained small draft of the same family
# (bench/tiny_sotu_draft.yml, trained here if missing), each for fp32 and bf16 targets.
#   [TARGET=build/demo/run/final] [REPEATS=5] [THREADS=2] bench/spec_trained.sh
# bench/RESULTS-spec-draft.md holds what it printed and what limits each figure.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-build/demo/run/final}
DRAFT=${DRAFT:-build/tiny_sotu_draft/final}
REPEATS=${REPEATS:-5}
export OMP_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=passive
unset OPENBLAS_CORETYPE
[ -f "$TARGET/plan.json" ] || { echo "spec_trained: no $TARGET: run make demo first (or set TARGET)" >&2; exit 2; }
[ -f data/sotu-gpt2/val.npy ] || { echo "spec_trained: no data/sotu-gpt2/val.npy: run make demo first" >&2; exit 2; }
make -s bench-built CB_QUIET_CONFIG=1
if [ ! -f "$DRAFT/plan.json" ]; then
    out=$(dirname "$DRAFT")
    bin/cb compile bench/tiny_sotu_draft.yml > build/tiny_sotu_draft.plan.json
    bin/cb-train --quiet -o "$out" build/tiny_sotu_draft.plan.json >/dev/null
fi
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "OMP_NUM_THREADS=$OMP_NUM_THREADS; load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "$TARGET" "$DRAFT"; do # what one decode step of each costs, per weight kind
    build/rel/bench/decode -M "$m" -s 0 -w fp32,bf16,q8_0,q4_0 -c fp32 -x 64 -r "$REPEATS"
done
build/rel/bench/decode -M "$TARGET" -P data/sotu-gpt2/val.npy -S -r "$REPEATS" -t fp32,bf16 -d q8_0,q4_0,q8_0@3,q4_0@3
build/rel/bench/decode -M "$TARGET" -D "$DRAFT" -P data/sotu-gpt2/val.npy -S -r "$REPEATS" -t fp32,bf16 -d fp32,q8_0,q4_0
