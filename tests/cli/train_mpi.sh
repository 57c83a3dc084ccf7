#!/usr/bin/env bash
# cb-train on several ranks started by OpenMPI's mpirun (lib/dist/dist.h): two ranks take
# the step one rank takes on the same global batch (dropout, gradient accumulation and
# evaluation included; strategy ddp and fsdp), rank 0 alone writes, resume works across a change of rank count,
# a batch that does not divide among the ranks is refused, and a rank killed mid-run stops
# the others within a timeout with the last checkpoint intact.
# Tolerance: the ranks sum their gradients in another order than one rank's products do,
# so results agree to rounding, not bit for bit: every loss within 1e-5 relative, final
# weights within 1e-5 in normalised L2 error (||a - b|| / ||a||).
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1 # two ranks on two cores
if ! command -v mpirun >/dev/null; then
    echo "skip - $SCRIPT.all: mpirun is not installed (openmpi-bin; make deps installs it)"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # CI runs as root
export OMPI_MCA_rmaps_base_oversubscribe=1 # more ranks than cores is fine for a test
# Open MPI keeps memory it allocates in MPI_Init until the process ends: not caramba's leaks
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
mpi() { local np=$1; shift; timeout 300 mpirun -np "$np" "$@"; }

"$CB_BIN/cb" compile tests/cli/train/tiny.yml > "$TMP/plan.json" || { not_ok compile "tests/cli/train/tiny.yml"; exit 0; }
LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 3000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", (i * 7 + int(x / 65536) % 5) % 64, (i % 20 == 19 ? "\n" : " ") } }' > "$TMP/train.tokens"
TRAIN=("$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens")
losses() { grep -o '"\(loss\|val_loss\)":[^,}]*' "$1" | cut -d: -f2; }

# close_losses NAME A B: the same number of losses, each within 1e-5 relative
close_losses() {
    local report
    report=$(paste <(losses "$2") <(losses "$3") | awk -v na="$(losses "$2" | wc -l)" -v nb="$(losses "$3" | wc -l)" '
        { d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1; if (d > 1e-5 * s) bad = bad " " NR ":" $1 "/" $2 }
        END { if (na != nb || na == 0) print "loss counts " na " and " nb; else if (bad != "") print "differ at" bad }')
    if [ -z "$report" ]; then ok "$1"; else not_ok "$1" "$report"; fi
}
# close_weights NAME A B: two safetensors files of one layout (same header), their floats
# within 1e-5 normalised L2 error
close_weights() {
    if ! cmp -s <(head -c 8 "$2") <(head -c 8 "$3"); then not_ok "$1" "the files' headers differ"; return; fi
    local h err
    h=$(od -An -tu8 -N8 "$2" | tr -d ' ')
    err=$(paste <(od -An -v -f -w4 -j $((8 + h)) "$2") <(od -An -v -f -w4 -j $((8 + h)) "$3") |
        awk '{ d = $1 - $2; e += d * d; w += $1 * $1 } END { if (NR == 0 || w == 0) print "nan"; else printf "%.3g", sqrt(e / w) }')
    if awk -v x="$err" 'BEGIN { exit !(x != "nan" && x + 0 <= 1e-5) }'; then ok "$1"; else
        not_ok "$1" "normalised weight error $err > 1e-5"; fi
}

# 1. one rank, then two ranks on the same global batch (AdamW, grad_accum 2, dropout, evaluation)
expect_run one_rank 0 "${TRAIN[@]}" --run adamw -o "$TMP/one" "$TMP/plan.json"
expect_run two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/two" "$TMP/plan.json"
if [ "$(cat "$TMP/out")" = "$TMP/two/final" ]; then ok two_ranks_print_once; else
    not_ok two_ranks_print_once "stdout: $(head -c 300 "$TMP/out")"; fi
close_losses two_ranks_losses "$TMP/one/metrics.jsonl" "$TMP/two/metrics.jsonl"
close_weights two_ranks_weights "$TMP/one/final/model.safetensors" "$TMP/two/final/model.safetensors"
n=$(grep -c '"step":' "$TMP/two/metrics.jsonl")
[ "$n" -eq 20 ] && ok rank0_writes_once || not_ok rank0_writes_once "$n metric lines, expected 20 (one writer)"
# Lion (sign updates: the most sensitive to a gradient that differs) on two ranks
expect_run lion_one 0 "${TRAIN[@]}" --run lion -o "$TMP/l1" "$TMP/plan.json"
expect_run lion_two 0 mpi 2 "${TRAIN[@]}" --run lion -o "$TMP/l2" "$TMP/plan.json"
close_losses lion_two_losses "$TMP/l1/metrics.jsonl" "$TMP/l2/metrics.jsonl"

# 2. resume across a change of rank count: two ranks' checkpoint at step 10 finished on
#    one rank, and one rank's on two, both end where the straight run ended
expect_run resume_2_to_1 0 "${TRAIN[@]}" --run adamw -o "$TMP/r1" --resume "$TMP/two/step-00000010" "$TMP/plan.json"
close_weights resume_2_to_1_weights "$TMP/one/final/model.safetensors" "$TMP/r1/final/model.safetensors"
expect_run resume_1_to_2 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/r2" --resume "$TMP/one/step-00000010" "$TMP/plan.json"
close_weights resume_1_to_2_weights "$TMP/one/final/model.safetensors" "$TMP/r2/final/model.safetensors"

# 3. a global batch of 2 rows among 3 ranks: one line naming the field, exit 2, nothing written
run mpi 3 "${TRAIN[@]}" --run adamw -o "$TMP/three" "$TMP/plan.json"
if [ "$STATUS" -ne 0 ] && grep -q '^cb-train: batch_size: the global batch of 2 rows does not divide among 3 ranks$' "$TMP/err"; then
    ok indivisible_batch; else not_ok indivisible_batch "status $STATUS: $(head -c 300 "$TMP/err")"; fi
[ ! -e "$TMP/three/metrics.jsonl" ] && ok indivisible_nothing_written || not_ok indivisible_nothing_written "metrics written"

# 4. strategy fsdp (SHARD_GRAD_OP): each rank holds its part of the optimizer state
#    (parts of 3376 and 3360 floats here); the same losses, weights and, gathered into the
#    checkpoint, the same optimizer state as one rank; the checkpoint resumes on one rank
sed 's/^          grad_accum: 2$/          grad_accum: 2\n          strategy: fsdp/' tests/cli/train/tiny.yml >"$TMP/fsdp.yml"
"$CB_BIN/cb" compile "$TMP/fsdp.yml" >"$TMP/fplan.json" || not_ok fsdp_compile "$(head -c 300 "$TMP/fsdp.yml")"
expect_run fsdp_two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/f2" "$TMP/fplan.json"
close_losses fsdp_losses "$TMP/one/metrics.jsonl" "$TMP/f2/metrics.jsonl"
close_weights fsdp_weights "$TMP/one/final/model.safetensors" "$TMP/f2/final/model.safetensors"
close_weights fsdp_optimizer_state "$TMP/one/step-00000010/optimizer.safetensors" "$TMP/f2/step-00000010/optimizer.safetensors"
expect_run fsdp_resume_one_rank 0 "${TRAIN[@]}" --run adamw -o "$TMP/f1" --resume "$TMP/f2/step-00000010" "$TMP/fplan.json"
close_weights fsdp_resume_weights "$TMP/one/final/model.safetensors" "$TMP/f1/final/model.safetensors"
sed 's/^          grad_accum: 2$/          grad_accum: 2\n          strategy: fsdp\n          fsdp_sharding_strategy: FULL_SHARD/' \
    tests/cli/train/tiny.yml >"$TMP/full.yml"
"$CB_BIN/cb" compile "$TMP/full.yml" >"$TMP/full.json"
expect_run full_shard_refused 2 "${TRAIN[@]}" --run adamw -o "$TMP/fs" "$TMP/full.json"
expect_err_line full_shard_line 'full.yml:[0-9]+:[0-9]+: train.fsdp_sharding_strategy: FULL_SHARD .* is not in this build'

# 4b. strategy ddp sums the gradients in buckets during the backward pass (bucket_cap_mb):
#     with buckets of 0.004 MB (1048 floats) a step starts several sums, and the weights are
#     bit for bit those of one sum after the pass (two ranks: each element is a + b either
#     way); tied embeddings, whose gradient is final only after the first op's backward
bucketed() { sed -e "s/^  tie_embeddings: false$/  tie_embeddings: true/" \
    -e "s/^          grad_accum: 2$/          grad_accum: 2\n          bucket_cap_mb: $1/" tests/cli/train/tiny.yml; }
bucketed 0.004 >"$TMP/b.yml"
bucketed 0 >"$TMP/b0.yml"
"$CB_BIN/cb" compile "$TMP/b.yml" >"$TMP/bplan.json" && "$CB_BIN/cb" compile "$TMP/b0.yml" >"$TMP/b0plan.json" ||
    not_ok bucket_compile "$(head -c 300 "$TMP/err")"
expect_run buckets_two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/bk" "$TMP/bplan.json"
expect_run no_buckets_two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/bk0" "$TMP/b0plan.json"
nb=$(jq -r '.ranks.grad_buckets' "$TMP/bk/run.json" 2>/dev/null)
nb0=$(jq -r '.ranks.grad_buckets' "$TMP/bk0/run.json" 2>/dev/null)
[ "${nb:-0}" -gt 2 ] 2>/dev/null && [ "$nb0" = 0 ] && ok buckets_overlap ||
    not_ok buckets_overlap "grad_buckets $nb with 0.004 MB buckets (want > 2), $nb0 with none (want 0)"
tensors() { tail -c +$((9 + $(od -An -tu8 -N8 "$1" | tr -d ' '))) "$1"; } # the bytes after the header (whose plan hash differs)
cmp -s <(tensors "$TMP/bk/final/model.safetensors") <(tensors "$TMP/bk0/final/model.safetensors") && ok buckets_same_weights ||
    not_ok buckets_same_weights "the bucketed run's weights differ from one sum after the pass"
paste <(losses "$TMP/bk/metrics.jsonl") <(losses "$TMP/bk0/metrics.jsonl") | awk '$1 != $2 { bad = 1 } END { exit bad }' &&
    ok buckets_same_losses || not_ok buckets_same_losses "losses differ"

# 5. a rank killed mid-run: mpirun ends the others within 30 s, and the newest
#    checkpoint is whole (the run resumes from it)
(mpi 2 "${TRAIN[@]}" --run adamw --steps 1000000 -o "$TMP/k" "$TMP/plan.json" >"$TMP/k.out" 2>"$TMP/k.err"
 echo $? >"$TMP/k.rc") &
for _ in $(seq 1 600); do [ -d "$TMP/k/step-00000010" ] && break; sleep 0.1; done
victim=$(pgrep -f "cb-train .*-o $TMP/k " | sort -n | tail -1)
if [ -z "$victim" ] || [ ! -d "$TMP/k/step-00000010" ]; then not_ok killed_rank "the run did not reach step 10"
else
    kill -9 "$victim"
    for _ in $(seq 1 300); do [ -s "$TMP/k.rc" ] && break; sleep 0.1; done
    if [ -s "$TMP/k.rc" ] && [ "$(cat "$TMP/k.rc")" -ne 0 ]; then ok killed_rank_stops_all; else
        not_ok killed_rank_stops_all "the other rank still runs 30 s after the kill"; pkill -9 -f "cb-train .*-o $TMP/k " ; fi
    newest=$(ls -d "$TMP"/k/step-* | sort | tail -1)
    expect_run killed_checkpoint_resumes 0 "${TRAIN[@]}" --run adamw --steps $((10#${newest##*step-} + 2)) \
        -o "$TMP/k2" --resume "$newest" "$TMP/plan.json"
fi

# 6. on a GPU: the NCCL path (one rank under mpirun makes an NCCL communicator and sums
#    through it) takes the steps a single process takes on the GPU, ddp and fsdp
if "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw --steps 1 --device cuda -o "$TMP/g0" \
        "$TMP/plan.json" >/dev/null 2>"$TMP/gpu.err"; then
    expect_run gpu_single 0 "${TRAIN[@]}" --device cuda --run adamw -o "$TMP/g1" "$TMP/plan.json"
    expect_run gpu_nccl_ddp 0 mpi 1 "${TRAIN[@]}" --device cuda --run adamw -o "$TMP/g2" "$TMP/plan.json"
    close_losses gpu_nccl_ddp_losses "$TMP/g1/metrics.jsonl" "$TMP/g2/metrics.jsonl"
    close_weights gpu_nccl_ddp_weights "$TMP/g1/final/model.safetensors" "$TMP/g2/final/model.safetensors"
    expect_run gpu_nccl_fsdp 0 mpi 1 "${TRAIN[@]}" --device cuda --run adamw -o "$TMP/g3" "$TMP/fplan.json"
    close_weights gpu_nccl_fsdp_weights "$TMP/g1/final/model.safetensors" "$TMP/g3/final/model.safetensors"
else
    echo "skip - $SCRIPT.gpu_nccl: no GPU here ($(head -c 120 "$TMP/gpu.err" | tr '\n' ' '))"
fi

