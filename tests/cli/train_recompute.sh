#!/usr/bin/env bash
# train.activation_checkpointing: a run that reruns its blocks' forward in backward trains
# to the same losses and weights, bit for bit, as the run that kept every block's saved
# values (CPU; the GPU's in tests/cli/train_cuda.sh), with dropout, gradient accumulation
# and evaluations; run.json says what was checkpointed and the activations it saved; a
# threshold above the activations checkpoints nothing; a bad threshold is refused at its
# line; under mpirun (ddp, gradients in buckets during the backward pass) the same again.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 3000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", (i * 7 + int(x / 65536) % 5) % 64, (i % 20 == 19 ? "\n" : " ") } }' > "$TMP/train.tokens"
# manifest NAME EXTRA_LINES: tests/cli/train/tiny.yml with lines added to its run's train mapping
manifest() {
    sed "s/          optimizer: adamw/          optimizer: adamw\n$2/" tests/cli/train/tiny.yml > "$TMP/$1.yml"
    "$CB_BIN/cb" compile "$TMP/$1.yml" > "$TMP/$1.json" 2> "$TMP/err" || { not_ok "$1.compile" "$(head -c 300 "$TMP/err")"; return 1; }
}
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw "$@"; }
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }
# the tensors of a safetensors file, after its header (the header names the plan's hash)
tensors() { python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; sys.stdout.buffer.write(b[8+n:])' "$1"; }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("activation_checkpointing", {}).get(sys.argv[2], "none"))' "$1" "$2"; }
same_run() { # NAME RUN_A RUN_B
    if [ -n "$(losses "$2/metrics.jsonl")" ] && [ "$(losses "$2/metrics.jsonl")" = "$(losses "$3/metrics.jsonl")" ]; then ok "$1.losses"
    else not_ok "$1.losses" "the losses differ"; fi
    if cmp -s <(tensors "$2/final/model.safetensors") <(tensors "$3/final/model.safetensors"); then ok "$1.weights"
    else not_ok "$1.weights" "the final weights differ"; fi
}

manifest plain "          activation_checkpointing: false" || exit 0
manifest ck "          activation_checkpointing: true" || exit 0
manifest ck_high "          activation_checkpointing: true\n          activation_checkpoint_threshold_mb: 4096" || exit 0

# 1. every block checkpointed: the same run, bit for bit
expect_run plain_run 0 train -o "$TMP/plain" "$TMP/plain.json"
expect_run ck_run 0 train -o "$TMP/ck" "$TMP/ck.json"
same_run recompute "$TMP/plain" "$TMP/ck"
[ "$(field "$TMP/ck/run.json" blocks)" = 2 ] && [ "$(field "$TMP/ck/run.json" of)" = 2 ] && ok run_json_blocks ||
    not_ok run_json_blocks "run.json: $(grep -o '"activation_checkpointing":{[^}]*}' "$TMP/ck/run.json")"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["activation_checkpointing"]; sys.exit(not 0 < a["activations_mb"] < a["without_mb"])' \
    "$TMP/ck/run.json" && ok run_json_saves || not_ok run_json_saves "$(grep -o '"activation_checkpointing":{[^}]*}' "$TMP/ck/run.json")"
[ "$(field "$TMP/plain/run.json" blocks)" = none ] && ok run_json_plain_says_nothing || not_ok run_json_plain_says_nothing "$(field "$TMP/plain/run.json" blocks)"

# 2. a threshold above the activations: nothing to checkpoint
expect_run ck_high_run 0 train -o "$TMP/ck_high" "$TMP/ck_high.json"
[ "$(field "$TMP/ck_high/run.json" blocks)" = 0 ] && ok threshold_above_checkpoints_nothing ||
    not_ok threshold_above_checkpoints_nothing "blocks: $(field "$TMP/ck_high/run.json" blocks)"
same_run threshold_above "$TMP/plain" "$TMP/ck_high"

# 3. the checkpointed run resumed from its step 10: the plain run's steps 11-20
if [ -d "$TMP/ck/step-00000010" ]; then
    expect_run resume_ck 0 train -o "$TMP/resumed" --resume "$TMP/ck/step-00000010" "$TMP/ck.json"
    if [ "$(losses "$TMP/plain/metrics.jsonl" | sed -n '11,$p')" = "$(losses "$TMP/resumed/metrics.jsonl")" ] &&
        [ -n "$(losses "$TMP/resumed/metrics.jsonl")" ]; then ok resume_with_recompute.losses
    else not_ok resume_with_recompute.losses "steps 11-20 differ"; fi
    cmp -s <(tensors "$TMP/plain/final/model.safetensors") <(tensors "$TMP/resumed/final/model.safetensors") &&
        ok resume_with_recompute.weights || not_ok resume_with_recompute.weights "the final weights differ"
else not_ok resume_with_recompute "no step-00000010 checkpoint in $(ls "$TMP/ck" | tr '\n' ' ')"; fi

# 4. a bad threshold: cb compile names the line
sed "s/          optimizer: adamw/          optimizer: adamw\n          activation_checkpointing: true\n          activation_checkpoint_threshold_mb: -1/" \
    tests/cli/train/tiny.yml > "$TMP/bad.yml"
expect_run bad_threshold 3 "$CB_BIN/cb" compile "$TMP/bad.yml"
grep -q "bad.yml:[0-9]*.*activation_checkpoint_threshold_mb" "$TMP/err" && ok bad_threshold.names_the_line ||
    not_ok bad_threshold.names_the_line "$(head -c 300 "$TMP/err")"

# 5. two ranks, ddp with gradient buckets: checkpointing changes nothing there either
if ! command -v mpirun >/dev/null; then
    echo "skip - $SCRIPT.mpi: mpirun is not installed (openmpi-bin; make deps installs it)"; exit 0; fi
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # Open MPI's own allocations in MPI_Init
for r in plain ck; do
    expect_run "mpi_$r" 0 timeout 300 mpirun -np 2 "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw \
        -o "$TMP/mpi_$r" "$TMP/$r.json"
done
same_run mpi_recompute "$TMP/mpi_plain" "$TMP/mpi_ck"
