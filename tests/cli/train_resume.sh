#!/usr/bin/env bash
# cb-train resumes on the same trajectory: the loss at every step after a stop (a
# checkpoint, SIGINT, SIGKILL in the middle of saves) is bit-identical to a run that
# never stopped.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive # idle threads sleep: a tiny model on a busy machine

"$CB_BIN/cb" compile tests/cli/train/tiny.yml > "$TMP/plan.json" || { not_ok compile "tests/cli/train/tiny.yml"; exit 0; }
LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 3000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", (i * 7 + int(x / 65536) % 5) % 64, (i % 20 == 19 ? "\n" : " ") } }' > "$TMP/train.tokens"
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" "$@" "$TMP/plan.json"; }
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1"; }

# 1. 20 steps straight (AdamW, grad_accum 2, dropout, warmup and cosine, evaluations)
expect_run straight 0 train --run adamw -o "$TMP/a"
expect_out straight_prints_final "^$TMP/a/final\$"
[ "$(losses "$TMP/a/metrics.jsonl" | wc -l)" -eq 20 ] && ok straight_20_lines || not_ok straight_20_lines "$(wc -l < "$TMP/a/metrics.jsonl") lines"

# 2. the same run stopped after step 10 (its later checkpoints and final model gone),
#    then resumed in the same directory to step 20
#    The lines of steps 11 to 20 the first run left in metrics.jsonl are replaced by
#    wrong losses: the resumed run must cut them and write its own, so the comparison
#    below is of losses it computed, not of the first run's.
mkdir -p "$TMP/b"
expect_run first_run 0 train --run adamw -o "$TMP/b"
rm -rf "$TMP/b/step-00000015" "$TMP/b/step-00000020" "$TMP/b/final"
expect_cmd poison_later_losses eval 'sed -E "/\"step\":(1[1-9]|20),/ s/\"loss\":[^,]*/\"loss\":999/" "$TMP/b/metrics.jsonl" > "$TMP/b.metrics" &&
    mv "$TMP/b.metrics" "$TMP/b/metrics.jsonl" && [ "$(grep -c "\"loss\":999," "$TMP/b/metrics.jsonl")" -eq 10 ]'
expect_run resume_same_dir 0 train --run adamw -o "$TMP/b" --resume "$TMP/b/step-00000010"
if diff <(losses "$TMP/a/metrics.jsonl") <(losses "$TMP/b/metrics.jsonl") >"$TMP/diff"; then ok resume_losses_identical
else not_ok resume_losses_identical "$(head -c 300 "$TMP/diff")"; fi
expect_same_files resume_final_weights_identical "$TMP/a/final/model.safetensors" "$TMP/b/final/model.safetensors"
# into a new directory: its metrics hold steps 11 to 20, equal to the straight run's
expect_run resume_new_dir 0 train --run adamw -o "$TMP/c" --resume "$TMP/a/step-00000010"
[ "$(losses "$TMP/c/metrics.jsonl" | wc -l)" -eq 10 ] && ok resume_new_dir_10_lines ||
    not_ok resume_new_dir_10_lines "$(losses "$TMP/c/metrics.jsonl" | wc -l) loss lines, expected 10"
if diff <(losses "$TMP/a/metrics.jsonl" | sed -n '11,$p') <(losses "$TMP/c/metrics.jsonl") >"$TMP/diff"; then
    ok resume_new_dir_losses; else not_ok resume_new_dir_losses "$(head -c 300 "$TMP/diff")"; fi
grep -q '"resumed_from"' "$TMP/c/run.json" && ok run_json_says_resumed || not_ok run_json_says_resumed "no resumed_from"

# 2b. the manifest edited where a resumed run does not depend on it (lib/train/resume.h):
#     a comment line above everything (every position moves), another log_every and
#     activation checkpointing turned on: the checkpoint resumes to the same losses and
#     weights. An edit its updates depend on (more steps: another schedule) is refused,
#     naming the field and both values.
{ echo "# a comment that moves every line"; sed -e 's/          log_every: 1$/          log_every: 2/' \
    -e 's/          optimizer: adamw/          optimizer: adamw\n          activation_checkpointing: true/' \
    tests/cli/train/tiny.yml; } > "$TMP/edited.yml"
sed 's/steps: 20$/steps: 30/' tests/cli/train/tiny.yml > "$TMP/longer.yml"
"$CB_BIN/cb" compile "$TMP/edited.yml" > "$TMP/edited.json" && "$CB_BIN/cb" compile "$TMP/longer.yml" > "$TMP/longer.json" ||
    not_ok edited.compile "does not compile"
expect_run resume_edited_plan 0 "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw -o "$TMP/e" \
    --resume "$TMP/a/step-00000010" "$TMP/edited.json"
# the tensors' bytes (the header differs: it names the plan the file was saved under)
tensors() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +$((9 + n)) "$1"; }
if cmp -s <(tensors "$TMP/a/final/model.safetensors") <(tensors "$TMP/e/final/model.safetensors"); then
    ok resume_edited_plan_weights; else not_ok resume_edited_plan_weights "the final tensors differ"; fi
# log_every 2: steps 12, 14, ... 20 (and those of evaluations), each the straight run's
# loss at that step
if ! losses "$TMP/e/metrics.jsonl" | grep -v -x -F -f <(losses "$TMP/a/metrics.jsonl") >"$TMP/diff" &&
    [ "$(losses "$TMP/e/metrics.jsonl" | grep -c -E '"step":(12|14|16|18|20),')" -eq 5 ]; then ok resume_edited_plan_losses
else not_ok resume_edited_plan_losses "$(head -c 300 "$TMP/diff")"; fi
expect_run resume_longer_refused 3 "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw -o "$TMP/f" \
    --resume "$TMP/a/step-00000010" "$TMP/longer.json"
expect_err_line resume_longer_refused.msg "^cb-train: $TMP/a/step-00000010: a checkpoint of another plan: steps: 20 at the checkpoint, 30 now"
[ ! -e "$TMP/f/final" ] && ok resume_longer_refused.no_output || not_ok resume_longer_refused.no_output "$TMP/f/final written"

# 3. Lion, every instrument, keep_last 2: resumed from the run directory's newest checkpoint
expect_run lion 0 train --run lion -o "$TMP/l"
n=$(ls -d "$TMP"/l/step-* 2>/dev/null | wc -l)
[ "$n" -eq 2 ] && ok keep_last_2 || not_ok keep_last_2 "$n checkpoints"
[ -s "$TMP/l/metrics.h5" ] && ok hdf5_written || not_ok hdf5_written "no metrics.h5"
ls "$TMP"/l/tb/events.out.tfevents.* >/dev/null 2>&1 && ok tensorboard_written || not_ok tensorboard_written "no tb/events"
if command -v gnuplot >/dev/null; then
    [ "$(head -c 4 "$TMP/l/loss.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e47 ] && ok live_plot_png ||
        not_ok live_plot_png "no loss.png"
else echo "skip - $SCRIPT.live_plot_png: gnuplot is not installed"; fi
rm -rf "$TMP/l2"; mkdir -p "$TMP/l2"
expect_cmd lion_copy_checkpoint cp -r "$TMP/l/step-00000011" "$TMP/l2/"
expect_run lion_resume_run_dir 0 train --run lion -o "$TMP/l3" --resume "$TMP/l2"
[ "$(losses "$TMP/l3/metrics.jsonl" | wc -l)" -eq 1 ] && ok lion_resume_1_line ||
    not_ok lion_resume_1_line "$(losses "$TMP/l3/metrics.jsonl" | wc -l) loss lines, expected 1 (step 12)"
if diff <(losses "$TMP/l/metrics.jsonl" | sed -n '12,$p') <(losses "$TMP/l3/metrics.jsonl") >"$TMP/diff"; then
    ok lion_resume_losses; else not_ok lion_resume_losses "$(head -c 300 "$TMP/diff")"; fi

# 4. SIGINT: a checkpoint at the end of the step, one line saying where, exit 0; then resume
expect_run long_straight 0 train --run long -o "$TMP/s"
[ "$(losses "$TMP/s/metrics.jsonl" | wc -l)" -eq 150 ] && ok long_straight_150_lines ||
    not_ok long_straight_150_lines "$(losses "$TMP/s/metrics.jsonl" | wc -l) loss lines"
# (the tool itself in the background, not a shell function: the signal must reach it)
"$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run long -o "$TMP/i" "$TMP/plan.json" 2>"$TMP/int.err" >/dev/null &
pid=$!
# run.json appears once the run is set up, after the handlers are in place
for _ in $(seq 1000); do [ -f "$TMP/i/run.json" ] && break; sleep 0.01; done
kill -INT "$pid" 2>/dev/null
wait "$pid"
status=$?
if grep -q 'interrupted after step' "$TMP/int.err"; then
    [ "$status" -eq 0 ] && ok sigint_exit_0 || not_ok sigint_exit_0 "exit $status"
    [ "$(wc -l < "$TMP/int.err")" -eq 1 ] && ok sigint_one_line || not_ok sigint_one_line "$(cat "$TMP/int.err")"
    grep -q '"status": "interrupted"' "$TMP/i/run.json" && ok sigint_run_json || not_ok sigint_run_json "status"
    ckpt=$(sed -n 's/.*continue with --resume \(.*\))$/\1/p' "$TMP/int.err")
    expect_run sigint_resume 0 train --run long -o "$TMP/i" --resume "$ckpt"
    if diff <(losses "$TMP/s/metrics.jsonl") <(losses "$TMP/i/metrics.jsonl") >"$TMP/diff"; then ok sigint_resume_identical
    else not_ok sigint_resume_identical "$(head -c 300 "$TMP/diff")"; fi
else
    echo "skip - $SCRIPT.sigint: the run ended (status $status) before the signal came"
fi

# 5. SIGKILL at random moments of a run that saves at every step, several times; each
#    time the run goes on from its newest complete checkpoint. Each attempt waits for a
#    checkpoint newer than the one it started from, then kills within 0.1 s: in the middle
#    of the steps and saves that follow, and after at least one step of its own.
rm -rf "$TMP/k"
kills=0 resumed_after_kill=0 landed=0
newest() { ls -d "$TMP"/k/step-???????? 2>/dev/null | tail -n 1; }
for attempt in 1 2 3 4 5; do
    if [ -n "$(newest)" ]; then
        resume=(--resume "$TMP/k")
        [ "$landed" = 1 ] && resumed_after_kill=$((resumed_after_kill + 1))
    else resume=(); fi
    before=$(newest)
    "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run long -o "$TMP/k" "${resume[@]}" "$TMP/plan.json" \
        >/dev/null 2>"$TMP/kill.err" &
    pid=$!
    for _ in $(seq 3000); do
        now=$(newest)
        [ -n "$now" ] && [ "$now" != "$before" ] && break
        [ -d "$TMP/k/final" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    sleep "0.0$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    # 137 = 128 + SIGKILL: the kill landed while the run was going
    if [ $? -eq 137 ]; then kills=$((kills + 1)); landed=1; else landed=0; fi
    if [ -d "$TMP/k/final" ]; then break; fi
done
echo "# $kills kills landed" >&2
if [ -n "$(newest)" ]; then
    resume=(--resume "$TMP/k")
    [ "$landed" = 1 ] && resumed_after_kill=$((resumed_after_kill + 1))
else resume=(); fi
[ "$kills" -ge 1 ] && ok kills_landed || not_ok kills_landed "no SIGKILL landed while a run was going"
[ "$resumed_after_kill" -ge 1 ] && ok resumed_after_kill ||
    not_ok resumed_after_kill "no run went on from a checkpoint after a SIGKILL"
expect_run after_kills_finishes 0 train --run long -o "$TMP/k" "${resume[@]}"
if diff <(losses "$TMP/s/metrics.jsonl") <(losses "$TMP/k/metrics.jsonl") >"$TMP/diff"; then ok after_kills_identical
else not_ok after_kills_identical "$(head -c 300 "$TMP/diff")"; fi
grep -q '\.tmp\.' < <(ls -A "$TMP/k") && not_ok after_kills_no_temp "$(ls -A "$TMP/k")" || ok after_kills_no_temp
