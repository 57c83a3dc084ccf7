#!/usr/bin/env bash
# The upcycle of a tiny Llama (tests/cli/train/upcycle.yml): cb compile shows the
# student beside the teacher; surgery, blockwise distillation and global fine-tuning run
# as one cb-train run whose distillation lowers the attention-output L1 to the teacher and
# whose fine-tuning lowers the validation loss; a run killed (in distillation and in
# fine-tuning) and resumed ends where the uninterrupted run does; convergence mode with
# the teacher cache; bad teachers and students get one line and their exit status.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

M=tests/cli/train/upcycle.yml
"$CB_BIN/cb" compile "$M" > "$TMP/plan.json" || { not_ok compile "$M"; exit 0; }
expect_run print_plan 0 "$CB_BIN/cb" compile --print-plan "$M"
expect_out print_plan_student 'student of up/upcycle \(surgery\)'
expect_out print_plan_kv 'student 40 elems, teacher 64: 0.625 of the teacher'
LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 6000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", (i * 7 + int(x / 65536) % 5) % 64, (i % 20 == 19 ? "\n" : " ") } }' > "$TMP/train.tokens"
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" "$@"; }
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }
num() { grep -o "\"$2\": [0-9.e-]*" "$1" | head -n 1 | grep -o '[0-9.e-]*$'; }

expect_run teacher 0 train --run teacher -o "$TMP/runs/teacher" "$TMP/plan.json"
expect_run upcycle 0 train --run upcycle -o "$TMP/runs/upcycle" "$TMP/plan.json"
R=$TMP/runs/upcycle/run.json
l1_0=$(num "$R" attention_l1_surgery) l1_1=$(num "$R" attention_l1_distilled)
v0=$(num "$R" val_loss_before_global) v1=$(num "$R" val_loss)
echo "  attention L1 after surgery $l1_0, after distillation $l1_1; val loss before fine-tuning $v0, after $v1" >&2
awk -v a="$l1_0" -v b="$l1_1" 'BEGIN { exit !(a != "" && b != "" && b < a) }' && ok distillation_lowers_l1 ||
    not_ok distillation_lowers_l1 "L1 $l1_0 -> $l1_1"
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(a != "" && b != "" && b < a) }' && ok finetuning_lowers_val_loss ||
    not_ok finetuning_lowers_val_loss "val loss $v0 -> $v1"
[ "$(grep -c '"phase":"blockwise"' "$TMP/runs/upcycle/metrics.jsonl")" -eq 50 ] && ok blockwise_50_lines ||
    not_ok blockwise_50_lines "$(grep -c '"phase":"blockwise"' "$TMP/runs/upcycle/metrics.jsonl") blockwise lines"

# killed in distillation (at a checkpoint of steps 20-45) and in fine-tuning (steps 70-105),
# resumed each time. Steps take milliseconds and keep_last prunes old checkpoints, so the
# watcher waits for any checkpoint at or past the step, and a try whose kill came too late
# (the run had finished, or had left the phase) starts over, at most 4 times.
K=$TMP/runs/k
# NEWEST: the newest checkpoint's step. Builtins only, and a read timeout on an empty pipe
# for the pause: a watcher that forks each turn falls tens of steps behind on a busy machine.
newest_step() { local f; NEWEST=0; for f in "$K"/step-????????; do [ -d "$f" ] && NEWEST=$((10#${f##*/step-})); done; }
exec {never}<> <(:)
kill_after() { # FROM TO: run until a checkpoint of step >= FROM exists, SIGKILL; true if the newest is <= TO
    local resume=()
    [ -d "$K" ] && ls -d "$K"/step-* >/dev/null 2>&1 && resume=(--resume "$K")
    # (the tool itself in the background, not a shell function: the signal must reach it)
    "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run upcycle -o "$K" "${resume[@]}" "$TMP/plan.json" \
        >/dev/null 2>"$TMP/kill.err" &
    local pid=$! status
    for _ in $(seq 60000); do
        newest_step; [ "$NEWEST" -ge "$1" ] && break
        kill -0 "$pid" 2>/dev/null || break
        read -r -t 0.001 -u "$never"
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    status=$? # 137 = 128 + SIGKILL: the kill landed while the run was going
    newest_step
    echo "  kill at step $1 or later: status $status, newest checkpoint $NEWEST" >&2
    [ "$status" -eq 137 ] && [ "$NEWEST" -le "$2" ]
}
tries=0 landed=
while [ "$tries" -lt 4 ] && [ -z "$landed" ]; do
    tries=$((tries + 1))
    rm -rf "$K"
    kill_after 20 45 && kill_after 70 105 && landed=1
done
echo "  kills landed on try $tries of 4" >&2
[ -n "$landed" ] && ok kills_landed || not_ok kills_landed "in 4 tries no pair of kills landed in distillation and fine-tuning"
expect_run resumed_finishes 0 train --run upcycle -o "$K" --resume "$K" "$TMP/plan.json"
if diff <(losses "$TMP/runs/upcycle/metrics.jsonl") <(losses "$K/metrics.jsonl") >"$TMP/diff"; then
    ok resumed_losses_identical; else not_ok resumed_losses_identical "$(head -c 300 "$TMP/diff")"; fi
expect_same_files resumed_final_identical "$TMP/runs/upcycle/final/model.safetensors" "$K/final/model.safetensors"

# cb-build --surgery: the same student from the teacher's caramba directory and from its
# Hugging Face export, as cb-train makes it (the run's block_size is the window)
expect_run surgery_build 0 "$CB_BIN/cb-build" --surgery "$TMP/runs/teacher/final" --run upcycle --context 32 \
    -o "$TMP/s1" "$TMP/plan.json"
expect_run export_hf 0 "$CB_BIN/cb-build" --export-hf "$TMP/hf" "$TMP/runs/teacher/final"
expect_run surgery_from_hf 0 "$CB_BIN/cb-build" --surgery "$TMP/hf" --run upcycle --context 32 -o "$TMP/s2" "$TMP/plan.json"
expect_cmd forward_s1 "$CB_BIN/cb-build" --forward 1,2,3,4,5,6 -o "$TMP/f1.st" "$TMP/s1"
expect_cmd forward_s2 "$CB_BIN/cb-build" --forward 1,2,3,4,5,6 -o "$TMP/f2.st" "$TMP/s2"
expect_same_files surgery_from_hf_same_student "$TMP/f1.st" "$TMP/f2.st"
jq -e '.model.topology.children[0].children[0].children[1].config.mode == "decoupled"' "$TMP/s1/plan.json" >/dev/null &&
    ok surgery_build_student_plan || not_ok surgery_build_student_plan "plan.json is not the student's"
expect_run surgery_no_student 2 "$CB_BIN/cb-build" --surgery "$TMP/runs/teacher/final" --run teacher -o "$TMP/s3" "$TMP/plan.json"
expect_err_line surgery_no_student_line 'cb-build: .*run up/teacher has no student'
[ ! -e "$TMP/s3" ] && ok surgery_no_student_nothing_written || not_ok surgery_no_student_nothing_written "$TMP/s3 exists"

# from the upcycled student: distillation on the teacher's logits, and plain fine-tuning
expect_run distill 0 train --run distill -o "$TMP/runs/distill" "$TMP/plan.json"
expect_run global_only 0 train --run global_only -o "$TMP/runs/global_only" "$TMP/plan.json"
vd=$(grep -o '"val_loss":[0-9.]*' "$TMP/runs/distill/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$')
vg=$(grep -o '"val_loss":[0-9.]*' "$TMP/runs/global_only/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$')
echo "  20 more steps from the upcycled student: val loss $vd with KL to the teacher, $vg with cross-entropy alone" >&2
[ -n "$vd" ] && [ -n "$vg" ] && ok distill_val_loss || not_ok distill_val_loss "no val_loss ($vd, $vg)"

# convergence mode, MSE, with the teacher's outputs cached in memory, on disk (a memory
# budget of 0), or not at all: the same student each time
expect_run converge 0 train --run converge -o "$TMP/runs/converge" "$TMP/plan.json"
[ ! -e "$TMP/runs/converge/teacher_cache" ] && ok teacher_cache_in_memory || not_ok teacher_cache_in_memory "teacher_cache/ written"
expect_run converge_disk 0 env CB_TEACHER_CACHE_MB=0 "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" \
    --run converge -o "$TMP/runs/converge_disk" "$TMP/plan.json"
[ "$(ls "$TMP/runs/converge_disk/teacher_cache" 2>/dev/null | wc -l)" -ge 1 ] && ok teacher_cache_on_disk ||
    not_ok teacher_cache_on_disk "no teacher_cache/batch-*.bin"
sed 's/cache_teacher_outputs: true/cache_teacher_outputs: false/' "$M" > "$TMP/nocache.yml"
"$CB_BIN/cb" compile "$TMP/nocache.yml" > "$TMP/nocache.json"
expect_run converge_nocache 0 train --run converge -o "$TMP/runs/converge_nocache" "$TMP/nocache.json"
expect_same_files cache_disk_same_student "$TMP/runs/converge/final/model.safetensors" \
    "$TMP/runs/converge_disk/final/model.safetensors"
# (another plan: its files carry another plan_sha256, so the losses are compared)
if diff <(losses "$TMP/runs/converge/metrics.jsonl") <(losses "$TMP/runs/converge_nocache/metrics.jsonl") >"$TMP/diff"; then
    ok cache_none_same_losses; else not_ok cache_none_same_losses "$(head -c 300 "$TMP/diff")"; fi
grep -q '"block_steps": \[' "$TMP/runs/converge/run.json" && ok converge_block_steps || not_ok converge_block_steps "no block_steps"

# a teacher that is not the manifest's model: one line, exit 3, no final model
sed "s|teacher: {run: teacher}|teacher: {ckpt: $TMP/runs/upcycle/final}|" "$M" > "$TMP/badteacher.yml"
"$CB_BIN/cb" compile "$TMP/badteacher.yml" > "$TMP/badteacher.json"
expect_run bad_teacher 3 train --run upcycle -o "$TMP/runs/bad" "$TMP/badteacher.json"
expect_err_line bad_teacher_line 'cb-train: .*the teacher does not match the manifest'
[ ! -d "$TMP/runs/bad/final" ] && ok bad_teacher_no_final || not_ok bad_teacher_no_final "final/ written"

# a teacher that is not there: an I/O error, exit 2
sed "s|teacher: {run: teacher}|teacher: {ckpt: $TMP/none}|" "$M" > "$TMP/noteacher.yml"
"$CB_BIN/cb" compile "$TMP/noteacher.yml" > "$TMP/noteacher.json"
expect_run no_teacher 2 train --run upcycle -o "$TMP/runs/none" "$TMP/noteacher.json"
expect_err_line no_teacher_line "cb-train: $TMP/none: cannot open"

# a student surgery cannot make: geometric pairs the teacher's RoPE does not have
sed 's/geo_dim: 16/geo_dim: 24/' "$M" > "$TMP/badstudent.yml"
expect_run bad_student 3 "$CB_BIN/cb" compile "$TMP/badstudent.yml"
expect_err_line bad_student_line 'badstudent.yml:[0-9]+:[0-9]+: student of up/upcycle: .*geo_dim: 24 \(6 per head\) rotates pair 1'
expect_empty_out bad_student_no_output
# a student key/value head covers whole teacher groups: 1 of the teacher's 2 merges them,
# 4 would split them
sed 's/AttentionLayer: {mode: decoupled,/AttentionLayer: {mode: decoupled, n_kv_heads: 1,/' "$M" > "$TMP/mergekv.yml"
expect_run merged_student_kv 0 "$CB_BIN/cb" compile "$TMP/mergekv.yml"
sed 's/AttentionLayer: {mode: decoupled,/AttentionLayer: {mode: decoupled, n_kv_heads: 4,/' "$M" > "$TMP/badkv.yml"
expect_run bad_student_kv 3 "$CB_BIN/cb" compile "$TMP/badkv.yml"
expect_err_line bad_student_kv_line 'student of up/upcycle: .*n_kv_heads: 4 does not divide the teacher.s 2'
