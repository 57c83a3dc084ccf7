#!/usr/bin/env bash
# cb-train on several ranks started by OpenMPI's mpirun (lib/dist/dist.h): two ranks take
# the step one rank takes on the same global batch (dropout, gradient accumulation and
# evaluation included; strategy ddp, fsdp and fsdp FULL_SHARD), rank 0 alone writes,
# resume works across a change of rank count, fsdp's memory per rank falls, a batch that
# does not divide among the ranks is refused, and a rank killed mid-run stops the others
# within a timeout with the last checkpoint intact.
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

# 4. strategy fsdp (SHARD_GRAD_OP): each rank holds its part of the optimizer state and
#    of the gradients (parts of 3376 and 3360 floats here); the same losses, weights and,
#    gathered into the checkpoint, the same optimizer state as one rank; the checkpoint
#    resumes on one rank
sed 's/^          grad_accum: 2$/          grad_accum: 2\n          strategy: fsdp/' tests/cli/train/tiny.yml >"$TMP/fsdp.yml"
"$CB_BIN/cb" compile "$TMP/fsdp.yml" >"$TMP/fplan.json" || not_ok fsdp_compile "$(head -c 300 "$TMP/fsdp.yml")"
expect_run fsdp_two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/f2" "$TMP/fplan.json"
close_losses fsdp_losses "$TMP/one/metrics.jsonl" "$TMP/f2/metrics.jsonl"
close_weights fsdp_weights "$TMP/one/final/model.safetensors" "$TMP/f2/final/model.safetensors"
close_weights fsdp_optimizer_state "$TMP/one/step-00000010/optimizer.safetensors" "$TMP/f2/step-00000010/optimizer.safetensors"
expect_run fsdp_resume_one_rank 0 "${TRAIN[@]}" --run adamw -o "$TMP/f1" --resume "$TMP/f2/step-00000010" "$TMP/fplan.json"
close_weights fsdp_resume_weights "$TMP/one/final/model.safetensors" "$TMP/f1/final/model.safetensors"

# 4a. FULL_SHARD: the blocks' weights sharded too (gathered around each block's passes,
#     lib/train/fsdp.h); the same losses, weights and optimizer state as one rank; its
#     checkpoint finished on one rank (2 -> 1), and that run's checkpoint finished on two
#     ranks (1 -> 2), both end where the straight one-rank run ended
sed 's/^          grad_accum: 2$/          grad_accum: 2\n          strategy: fsdp\n          fsdp_sharding_strategy: FULL_SHARD/' \
    tests/cli/train/tiny.yml >"$TMP/full.yml"
"$CB_BIN/cb" compile "$TMP/full.yml" >"$TMP/full.json" || not_ok full_compile "$(head -c 300 "$TMP/full.yml")"
expect_run full_shard_two_ranks 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/fs2" "$TMP/full.json"
[ "$(jq -r .ranks.fsdp_sharding_strategy "$TMP/fs2/run.json" 2>/dev/null)" = FULL_SHARD ] && ok full_shard_recorded ||
    not_ok full_shard_recorded "run.json ranks: $(jq -c .ranks "$TMP/fs2/run.json" 2>&1 | head -c 200)"
close_losses full_shard_losses "$TMP/one/metrics.jsonl" "$TMP/fs2/metrics.jsonl"
close_weights full_shard_weights "$TMP/one/final/model.safetensors" "$TMP/fs2/final/model.safetensors"
close_weights full_shard_optimizer_state "$TMP/one/step-00000010/optimizer.safetensors" "$TMP/fs2/step-00000010/optimizer.safetensors"
expect_run full_resume_2_to_1 0 "${TRAIN[@]}" --run adamw -o "$TMP/fs1" --resume "$TMP/fs2/step-00000010" "$TMP/full.json"
close_weights full_resume_2_to_1_weights "$TMP/one/final/model.safetensors" "$TMP/fs1/final/model.safetensors"
expect_run full_resume_1_to_2 0 mpi 2 "${TRAIN[@]}" --run adamw -o "$TMP/fs12" --resume "$TMP/fs1/step-00000015" "$TMP/full.json"
close_weights full_resume_1_to_2_weights "$TMP/one/final/model.safetensors" "$TMP/fs12/final/model.safetensors"
# FULL_SHARD with fsdp_activation_checkpointing (the recompute reruns a block's forward
# after its weights were gathered for its backward) and tied embeddings (the head reads
# the embedding, kept whole): the losses and weights of one rank, tied, not checkpointed
sed -e 's/^  tie_embeddings: false$/  tie_embeddings: true/' \
    -e 's/^          fsdp_sharding_strategy: FULL_SHARD$/          fsdp_sharding_strategy: FULL_SHARD\n          fsdp_activation_checkpointing: true/' \
    "$TMP/full.yml" >"$TMP/fullck.yml"
sed -e 's/^  tie_embeddings: false$/  tie_embeddings: true/' tests/cli/train/tiny.yml >"$TMP/tied.yml"
"$CB_BIN/cb" compile "$TMP/fullck.yml" >"$TMP/fullck.json" && "$CB_BIN/cb" compile "$TMP/tied.yml" >"$TMP/tied.json" ||
    not_ok fullck_compile "$(head -c 300 "$TMP/fullck.yml")"
expect_run tied_one_rank 0 "${TRAIN[@]}" --run adamw --steps 6 -o "$TMP/t1" "$TMP/tied.json"
expect_run full_checkpointed_tied 0 mpi 2 "${TRAIN[@]}" --run adamw --steps 6 -o "$TMP/fck" "$TMP/fullck.json"
[ "$(jq -r .activation_checkpointing.blocks "$TMP/fck/run.json" 2>/dev/null)" = 2 ] && ok fsdp_activation_checkpointing ||
    not_ok fsdp_activation_checkpointing "run.json: $(jq -c .activation_checkpointing "$TMP/fck/run.json" 2>&1 | head -c 200)"
close_losses full_checkpointed_losses "$TMP/t1/metrics.jsonl" "$TMP/fck/metrics.jsonl"
close_weights full_checkpointed_weights "$TMP/t1/final/model.safetensors" "$TMP/fck/final/model.safetensors"

# 4c. the memory each rank holds (run.json "memory": the weight and gradient buffers'
#     resident bytes at the peak of the first step, the largest of the two ranks) on a
#     model of six blocks of 147 KB: ddp holds both buffers whole; fsdp (SHARD_GRAD_OP)
#     its half of the gradients plus the region not yet summed (about a block), expected
#     ~0.67 of the whole; FULL_SHARD the same for the weights too. Bound: 0.8 of ddp's.
wide() { sed -e 's/^  d: 16$/  d: 64/' -e 's/^        repeat: 2$/        repeat: 6/' -e 's/d_ff: 32/d_ff: 128/' \
    -e "s/^          grad_accum: 2$/          grad_accum: 2\n$1/" tests/cli/train/tiny.yml; }
wide '          strategy: ddp' >"$TMP/wd.yml"
wide '          strategy: fsdp' >"$TMP/wf.yml"
wide '          strategy: fsdp\n          fsdp_sharding_strategy: FULL_SHARD' >"$TMP/wfull.yml"
for w in wd wf wfull; do "$CB_BIN/cb" compile "$TMP/$w.yml" >"$TMP/$w.json" || not_ok "${w}_compile" "$(head -c 200 "$TMP/err")"; done
for w in wd wf wfull; do expect_run "memory_$w" 0 mpi 2 "${TRAIN[@]}" --run adamw --steps 1 -o "$TMP/m$w" "$TMP/$w.json"; done
mem() { jq -r ".memory.$2" "$TMP/m$1/run.json" 2>/dev/null; }
echo "# memory per rank (MB, whole buffer $(mem wd buffer_mb)): ddp w $(mem wd weights_mb) g $(mem wd grads_mb);" \
    "fsdp w $(mem wf weights_mb) g $(mem wf grads_mb); FULL_SHARD w $(mem wfull weights_mb) g $(mem wfull grads_mb)"
awk -v d="$(mem wd grads_mb)" -v b="$(mem wd buffer_mb)" -v f="$(mem wf grads_mb)" -v s="$(mem wfull grads_mb)" \
    'BEGIN { exit !(d + 0 >= b + 0 && f + 0 > 0 && f < 0.8 * d && s + 0 > 0 && s < 0.8 * d) }' && ok memory_grads_sharded ||
    not_ok memory_grads_sharded "gradient MB: ddp $(mem wd grads_mb) (whole $(mem wd buffer_mb)), fsdp $(mem wf grads_mb), FULL_SHARD $(mem wfull grads_mb); want < 0.8 of ddp's"
awk -v d="$(mem wd weights_mb)" -v f="$(mem wf weights_mb)" -v s="$(mem wfull weights_mb)" \
    'BEGIN { exit !(f + 0 >= d + 0 && s + 0 > 0 && s < 0.8 * d) }' && ok memory_weights_sharded ||
    not_ok memory_weights_sharded "weight MB: ddp $(mem wd weights_mb), fsdp $(mem wf weights_mb) (whole), FULL_SHARD $(mem wfull weights_mb); want < 0.8 of ddp's"

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
    # FULL_SHARD: the weights and gradients in memory reserved by region (CUDA's virtual
    # memory management, backend/cuda/vmm.c), committed before each block's passes
    expect_run gpu_nccl_full_shard 0 mpi 1 "${TRAIN[@]}" --device cuda --run adamw -o "$TMP/g4" "$TMP/full.json"
    close_losses gpu_nccl_full_shard_losses "$TMP/g1/metrics.jsonl" "$TMP/g4/metrics.jsonl"
    close_weights gpu_nccl_full_shard_weights "$TMP/g1/final/model.safetensors" "$TMP/g4/final/model.safetensors"
else
    echo "skip - $SCRIPT.gpu_nccl: no GPU here ($(head -c 120 "$TMP/gpu.err" | tr '\n' ' '))"
fi

