#!/usr/bin/env bash
# fsdp_memory.sh: the memory each rank holds, and the step time, for strategy ddp, fsdp
# SHARD_GRAD_OP (ZeRO-2) and FULL_SHARD (ZeRO-3) on 2 CPU ranks under mpirun
# (lib/train/fsdp.h). A Llama-style model of d_model 256 and 8 blocks (6.3M parameters,
# 24 MB a buffer); memory is run.json's "memory" (the weight and gradient buffers' bytes
# resident at the peak of the first step, the largest of the ranks); time is the mean
# tok/s of steps 2..STEPS from metrics.jsonl, each ratio against ddp's in the same run.
# Usage: bench/fsdp_memory.sh [STEPS [BATCH [BLOCK]]] (default 6 4 64). Needs mpirun and bin/
set -eu -o pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-6} BATCH=${2:-4} BLOCK=${3:-64}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fsdpmem.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
awk 'BEGIN { srand(5); for (i = 0; i < 200000; i++) printf "%d%s", int(rand() * 256), (i % 20 == 19 ? "\n" : " ") }' \
    >"$TMP/train.tokens"
manifest() {
    cat <<YML
version: 1
name: fsdp_memory
model:
  type: TransformerModel
  tie_embeddings: false
  embedder: {type: token, vocab_size: 256, d_model: 256}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 8
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 256}
              - {type: AttentionLayer, d_model: 256, n_heads: 8, n_kv_heads: 4}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 256}
              - {type: SwiGLULayer, d_model: 256, d_ff: 768}
      - {type: RMSNormLayer, d_model: 256}
groups:
  - name: bench
    data: train.tokens
    runs:
      - id: m
        mode: train
        seed: 1
        steps: $STEPS
        train:
          batch_size: $BATCH
          block_size: $BLOCK
          lr: 0.001
          log_every: 1
          eval_every: 0
          eval_iters: 1
          val_frac: 0.01
$1
YML
}
manifest "          strategy: ddp" >"$TMP/ddp.yml"
manifest "          strategy: fsdp" >"$TMP/zero2.yml"
manifest "          strategy: fsdp
          fsdp_sharding_strategy: FULL_SHARD" >"$TMP/zero3.yml"
printf '%-22s %10s %10s %10s %10s %8s\n' strategy buffer_MB weights_MB grads_MB tok/s ratio
base=
for s in ddp zero2 zero3; do
    bin/cb compile "$TMP/$s.yml" >"$TMP/$s.json"
    mpirun -np 2 bin/cb-train --quiet --data "$TMP/train.tokens" --run m -o "$TMP/$s" "$TMP/$s.json" >/dev/null
    tok=$(grep -o '"tok_s":[^,}]*' "$TMP/$s/metrics.jsonl" | tail -n +2 | cut -d: -f2 | awk '{ s += $1; n++ } END { printf "%.0f", s / n }')
    base=${base:-$tok}
    name=$(case $s in ddp) echo ddp;; zero2) echo "fsdp SHARD_GRAD_OP";; zero3) echo "fsdp FULL_SHARD";; esac)
    printf '%-22s %10.2f %10.2f %10.2f %10s %8.2f\n' "$name" "$(jq .memory.buffer_mb "$TMP/$s/run.json")" \
        "$(jq .memory.weights_mb "$TMP/$s/run.json")" "$(jq .memory.grads_mb "$TMP/$s/run.json")" "$tok" \
        "$(awk -v a="$tok" -v b="$base" 'BEGIN { print a / b }')"
done
