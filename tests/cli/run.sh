#!/usr/bin/env bash
# cb run: a manifest group as a make graph. A second run does nothing; an edit to one run's
# section redoes that run and what comes after it; a killed run continues from its last
# checkpoint and ends with the weights of a run that never stopped; a failing stage stops
# the graph and names its log; bad input is one line with its exit status (man/cb.1).
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive
CB="$CB_BIN/cb"
W=$TMP/w
mkdir -p "$W"
cp tests/cli/run/tiny.yml "$W/m.yml"
LC_ALL=C awk 'BEGIN { x = 3; for (i = 0; i < 3000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    printf "%d%s", 97 + (i * 7 + int(x / 65536) % 5) % 26, (i % 20 == 19 ? "\n" : " ") } }' > "$W/train.tokens"
cd "$W" || exit 2
stages_line() { grep -o 'stages to run.*' "$TMP/err"; }
mtime() { stat -c %Y.%y "$1" 2>/dev/null; }

# 1. the whole group: every stage, its stamp, its log; each run folder keeps what made it
expect_run first 0 "$CB" run m.yml --group pipe -o exp
expect_out first_prints_exp_dir "^$W/exp\$"
missing=""
for s in build-a train-a build-b train-b build-s sample-s; do
    [ -f "exp/stamps/$s.done" ] && [ -f "exp/logs/$s.log" ] || missing="$missing $s"
done
[ -z "$missing" ] && ok first_stamps_and_logs || not_ok first_stamps_and_logs "no stamp or log for:$missing"
[ -f exp/runs/b/final/model.safetensors ] && [ -s exp/runs/s/sample.txt ] && ok first_outputs ||
    not_ok first_outputs "$(ls exp/runs/b exp/runs/s 2>&1 | tr '\n' ' ')"
if cmp -s m.yml exp/runs/a/manifest.yml && grep -q '"kind": "plan"' exp/runs/a/plan.json &&
    grep -q '"kind": "lowered"' exp/runs/a/lowered.json &&
    grep -q '"command_line"' exp/runs/a/provenance.json && grep -q '"cpu_model"' exp/runs/a/provenance.json &&
    grep -q '"uname"' exp/runs/a/provenance.json; then ok run_folder_provenance
else not_ok run_folder_provenance "$(ls exp/runs/a | tr '\n' ' ')"; fi
if git -C "$CB_ROOT" rev-parse HEAD >/dev/null 2>&1; then
    rev=$(git -C "$CB_ROOT" rev-parse HEAD)
    grep -q "\"revision\": \"$rev\"" exp/runs/a/provenance.json && ok provenance_git_revision ||
        not_ok provenance_git_revision "no revision $rev in provenance.json"
else ok provenance_git_revision_not_a_tree; fi
# b started from a's final weights (train.student.run), so it ran after a
grep -q '"init_from"\|final' exp/runs/b/run.json && ok b_from_a || not_ok b_from_a "$(head -c 300 exp/runs/b/run.json)"

# 2. again: nothing to do, nothing rewritten
before=$(mtime exp/runs/a/final/model.safetensors)
before_s=$(mtime exp/runs/s/sample.txt)
expect_run second 0 "$CB" run m.yml --group pipe -o exp
[ "$(stages_line)" = "stages to run" ] && grep -q ' 0 of 6 stages to run' "$TMP/err" && ok second_does_nothing ||
    not_ok second_does_nothing "$(cat "$TMP/err")"
[ "$(mtime exp/runs/a/final/model.safetensors)" = "$before" ] && [ "$(mtime exp/runs/s/sample.txt)" = "$before_s" ] &&
    ok second_rewrites_nothing || not_ok second_rewrites_nothing "outputs were rewritten"

# 3. an edit to run b's section (through a var only b uses): b and what reads it, not a
cp exp/runs/b/final/model.safetensors "$TMP/b_before"
sed -i 's/lr_b: 0.003/lr_b: 0.004/' m.yml
expect_run edit_b 0 "$CB" run m.yml --group pipe -o exp
[ "$(stages_line)" = "stages to run: build-b, train-b, sample-s" ] && ok edit_b_redoes_b_and_after ||
    not_ok edit_b_redoes_b_and_after "$(cat "$TMP/err")"
[ "$(mtime exp/runs/a/final/model.safetensors)" = "$before" ] && ok edit_b_keeps_a || not_ok edit_b_keeps_a "a was retrained"
cmp -s "$TMP/b_before" exp/runs/b/final/model.safetensors && not_ok edit_b_new_weights "b's weights did not change" ||
    ok edit_b_new_weights
cmp -s m.yml exp/runs/b/manifest.yml && ! cmp -s m.yml exp/runs/a/manifest.yml && ok edit_b_run_folders_keep_their_manifest ||
    not_ok edit_b_run_folders_keep_their_manifest "a's folder should keep the manifest that made it, b's the new one"
# the sample settings only: the sample
sed -i 's/max_new_tokens: 8/max_new_tokens: 9/' m.yml
expect_run edit_sample 0 "$CB" run m.yml --group pipe -o exp
[ "$(stages_line)" = "stages to run: build-s, sample-s" ] && ok edit_sample_redoes_sample ||
    not_ok edit_sample_redoes_sample "$(cat "$TMP/err")"
# the data a reads: everything after it
echo "97 98 99 100" >> train.tokens
expect_run edit_data 0 "$CB" run m.yml --group pipe -o exp
[ "$(stages_line)" = "stages to run: train-a, train-b, sample-s" ] && ok edit_data_redoes_training ||
    not_ok edit_data_redoes_training "$(cat "$TMP/err")"
# an output removed by hand: that stage and what comes after it
rm -rf exp/runs/b/final
expect_run output_removed 0 "$CB" run m.yml --group pipe -o exp
[ "$(stages_line)" = "stages to run: train-b, sample-s" ] && ok output_removed_redone ||
    not_ok output_removed_redone "$(cat "$TMP/err")"
# --force: all of it; --var: an override of a var, recorded in provenance.json
expect_run force 0 "$CB" run -q --force m.yml --group pipe -o exp
[ -s "$TMP/err" ] && not_ok force_quiet "progress despite -q: $(head -c 200 "$TMP/err")" || ok force_quiet
grep -q 'continuing from' exp/logs/train-a.log && not_ok force_from_scratch "continued a checkpoint" || ok force_from_scratch
expect_run var_override 0 "$CB" run -q --var steps_a=10 m.yml --group pipe -o exp
[ -d exp/runs/a/step-00000010 ] && [ ! -d exp/runs/a/step-00000015 ] && grep -q '"steps_a": 10' exp/provenance.json &&
    ok var_override_applies || not_ok var_override_applies "$(ls exp/runs/a | tr '\n' ' ')"

# a list var: JSON on the command line, a list in the plan
expect_run var_list 0 "$CB" run -q --var 'betas_b=[0.8,0.99]' m.yml --group pipe -o exp
[ "$(jq -c '.groups[] | select(.name == "pipe") | .runs[] | select(.id == "b") | .train.betas' exp/plan.json)" = "[0.8,0.99]" ] &&
    ok var_list_applies || not_ok var_list_applies "$(jq -c '.groups[0].runs[1].train' exp/plan.json)"

# 4. -j 2 and a dry run
expect_run parallel 0 "$CB" run -q -j 2 m.yml --group pipe -o expj
[ -f expj/stamps/sample-s.done ] && ok parallel_completes || not_ok parallel_completes "no sample stamp"
expect_run dry_run 0 "$CB" run --dry-run m.yml --group pipe -o dry
expect_out dry_run_lists_train "^train-a: .*cb-train --group pipe --run a"
[ ! -e dry ] && ok dry_run_writes_nothing || not_ok dry_run_writes_nothing "dry/ was made"

# 5. killed mid-training (SIGKILL, then SIGTERM): cb run continues from the last checkpoint
#    and ends with the weights of a run that never stopped
expect_run straight 0 "$CB" run -q --var steps_a=300 m.yml --group pipe -o straight
for sig in KILL TERM; do
    d=killed_$sig
    setsid "$CB" run -q --var steps_a=300 m.yml --group pipe -o "$d" >"$TMP/bg.out" 2>"$TMP/bg.err" &
    pid=$!
    for _ in $(seq 2400); do [ -d "$d/runs/a/step-00000050" ] && break; sleep 0.05; done
    kill -"$sig" -- -"$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ -d "$d/runs/a/final" ]; then not_ok "kill_$sig" "run a ended before the signal (machine too fast for the test)"; continue; fi
    [ -f "$d/stamps/train-a.done" ] && not_ok "kill_${sig}_no_stamp" "train-a stamped though interrupted" ||
        ok "kill_${sig}_no_stamp"
    expect_run "continue_after_$sig" 0 "$CB" run m.yml --var steps_a=300 --group pipe -o "$d"
    grep -q 'continuing from .*step-' "$d/logs/train-a.log" && ok "continue_after_${sig}_resumes" ||
        not_ok "continue_after_${sig}_resumes" "$(head -c 300 "$d/logs/train-a.log")"
    expect_same_files "continue_after_${sig}_same_weights_a" straight/runs/a/final/model.safetensors "$d/runs/a/final/model.safetensors"
    expect_same_files "continue_after_${sig}_same_weights_b" straight/runs/b/final/model.safetensors "$d/runs/b/final/model.safetensors"
done

# 6. a failing stage stops the graph, names its log, and leaves nothing stamped after it
cp m.yml f.yml
sed -i '/- id: b/,/- id: s/ s/eval_iters: 1, save_every: 5/eval_iters: 1, save_every: 5, data: bad.tokens/' f.yml
{ echo "1 2 3 300"; for _ in $(seq 100); do echo "97 98 99 100 101 102 103 104"; done; } > bad.tokens
expect_run failing_stage 4 "$CB" run -q f.yml --group pipe -o fail
expect_err_line failing_stage_one_line "^cb run: stage train-b failed \(exit 3\); its log: $W/fail/logs/train-b.log\$"
grep -q 'past the vocabulary' fail/logs/train-b.log && ok failing_stage_log_says_why || not_ok failing_stage_log_says_why "$(cat fail/logs/train-b.log)"
expect_empty_out failing_stage_no_stdout
[ -f fail/stamps/train-a.done ] && [ ! -f fail/stamps/train-b.done ] && [ ! -f fail/stamps/sample-s.done ] &&
    [ ! -e fail/runs/s/sample.txt ] && ok failing_stage_nothing_after || not_ok failing_stage_nothing_after "$(ls fail/stamps | tr '\n' ' ')"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 800; i++) printf "%d ", 97 + i % 26 }' > bad.tokens
expect_run failing_stage_fixed 0 "$CB" run f.yml --group pipe -o fail
# build-s came after train-b in make's order, so it had not run either
[ "$(stages_line)" = "stages to run: train-b, build-s, sample-s" ] && ok failing_stage_fixed_redoes_from_it ||
    not_ok failing_stage_fixed_redoes_from_it "$(cat "$TMP/err")"

# 7. mode chat: cb-generate --chat after the graph, on this terminal (here: a pipe)
run sh -c "echo 'hello' | '$CB' run -q m.yml --group talk -o talk"
expect_status chat 0
[ "$(wc -l < "$TMP/out")" -ge 2 ] && tail -n 1 "$TMP/out" | grep -q "^$W/talk\$" && ok chat_answers ||
    not_ok chat_answers "$(head -c 300 "$TMP/out")"

# 8. bad input: one line each, with its status
expect_run no_such_group 2 "$CB" run m.yml --group nope -o bad
expect_err_line no_such_group_lists "^cb run: m.yml: no group nope \(the manifest has pipe, other, talk\)\$"
expect_run no_group_given 2 "$CB" run m.yml -o bad
expect_err_line no_group_given_lists "choose one with --group"
sed 's/data: train.tokens/data: missing.tokens/' m.yml > d.yml
expect_run missing_dataset 2 "$CB" run d.yml --group pipe -o bad
expect_err_line missing_dataset_line "^cb run: d.yml:[0-9]+:[0-9]+: train.data: dataset missing.tokens is missing \(run a"
sed 's/eval_iters: 1, save_every: 5, keep_last: 0/eval_iters: 1, save_every: 5, keep_last: 0, device: cuda/' m.yml > g.yml
echo '{}' > "$TMP/none.json"
probe=$("$CB_BIN/cb-generate" --device cuda --prompt x exp/runs/a/final 2>&1 >/dev/null)
if echo "$probe" | grep -q "cuda"; then
    expect_run needs_gpu 2 "$CB" run g.yml --group pipe -o bad
    expect_err_line needs_gpu_line "^cb run: g.yml:[0-9]+:[0-9]+: train.device: group pipe needs a GPU"
else ok needs_gpu_has_cuda_backend; fi
sed 's/train: {student: {run: a}/train: {teacher: {ckpt: no\/such\/teacher}/' m.yml > t.yml
expect_run missing_teacher 2 "$CB" run t.yml --group pipe -o bad
expect_err_line missing_teacher_line "^cb run: t.yml:[0-9]+:[0-9]+: train.teacher.ckpt: no/such/teacher is not there \(group pipe needs this teacher checkpoint"
cat > bench.yml <<'YML'
    benchmarks:
      - id: ppl
        config: {type: perplexity, dataset: train.tokens, block_size: 16, num_batches: 1}
        models: [teacher]
YML
awk '/^  - name: other/ { while ((getline l < "bench.yml") > 0) print l } { print }' m.yml > b.yml
expect_run bench_teacher_missing 3 "$CB" run b.yml --group pipe -o bad
expect_err_line bench_teacher_missing_line "^cb run: b.yml:[0-9]+:[0-9]+: benchmark ppl names the teacher, and no training run of group pipe has one"
sed 's/models: \[teacher\]/models: [nosuchrun]/' b.yml > b2.yml
expect_run bench_unknown_model 3 "$CB" run b2.yml --group pipe -o bad
grep -q 'unknown model "nosuchrun"' "$TMP/err" && ok bench_unknown_model_line || not_ok bench_unknown_model_line "$(cat "$TMP/err")"
sed 's/models: \[teacher\]/models: [a]/' b.yml > b3.yml
probe=$("$CB_BIN/cb-bench" 2>&1)
if echo "$probe" | grep -q "not in this build"; then
    expect_run bench_tool_not_built 2 "$CB" run b3.yml --group pipe -o bad
    expect_err_line bench_tool_not_built_line "benchmark ppl needs cb-bench, which is not in this build"
else
    expect_run bench_tool_built 0 "$CB" run --dry-run b3.yml --group pipe -o bad
    expect_out bench_tool_built_stage "^bench-ppl: .*cb-bench --group pipe --bench ppl --model a=$W/bad/runs/a/final"
    # a benchmark's device goes to cb-bench; cuda without a GPU stops everything first
    sed 's/        models: \[a\]/        models: [a]\n        device: cpu/' b3.yml > b4.yml
    expect_run bench_device 0 "$CB" run --dry-run b4.yml --group pipe -o bad
    expect_out bench_device_stage "^bench-ppl: .*cb-bench --group pipe --bench ppl --model a=$W/bad/runs/a/final --device cpu "
    if [ -z "$(nvidia-smi -L 2>/dev/null)" ]; then
        sed 's/device: cpu/device: cuda/' b4.yml > b5.yml
        expect_run bench_needs_gpu 2 "$CB" run b5.yml --group pipe -o bad
        expect_err_line bench_needs_gpu_line "^cb run: b5.yml:[0-9]+:[0-9]+: device: group pipe needs a GPU \(benchmark ppl asks for cuda\)"
    fi
fi
[ ! -e bad ] && ok bad_input_writes_nothing || not_ok bad_input_writes_nothing "bad/ was made"
sed 's/n_heads: 4, n_kv_heads: 2/n_heads: 5, n_kv_heads: 2/' m.yml > v.yml
expect_run invalid_manifest 3 "$CB" run v.yml --group pipe -o bad
grep -q '^cb-validate: v.yml:[0-9]*:[0-9]*: ' "$TMP/err" && ok invalid_manifest_names_stage || not_ok invalid_manifest_names_stage "$(cat "$TMP/err")"
expect_run bad_var 2 "$CB" run --var nosuch=1 m.yml --group pipe -o bad
expect_err_line bad_var_line "the manifest has no var nosuch"
expect_run bad_jobs 2 "$CB" run -j 0 m.yml --group pipe
expect_run no_manifest 2 "$CB" run --group pipe

# 9. the legacy front: --mode sample on a checkpoint, train through cb run, bad values
expect_run legacy_sample 0 "$CB" --manifest m.yml --mode sample --ckpt exp/runs/a/final --prompt "the " --seed 3
[ -s "$TMP/out" ] && ok legacy_sample_text || not_ok legacy_sample_text "no text"
expect_run legacy_train 0 "$CB" --manifest f.yml --mode train --seed 11 --data train.tokens
expect_out legacy_train_exp_dir "^$W/runs/tiny_run/pipe\$"
grep -q '"seed": 11' runs/tiny_run/pipe/plan.json && ok legacy_train_seed || not_ok legacy_train_seed "no seed 11 in the plan"
expect_run legacy_bad_mode 2 "$CB" --manifest m.yml --mode dance
expect_run legacy_bad_exp 2 "$CB" --exp nosuch
expect_run legacy_exp_no_model 2 "$CB" --exp baseline --mode sample

# 10. the runtime plan: decided and measured once, then from the cache; cb run passes it on
export CB_CACHE_DIR=$TMP/cache
"$CB" compile m.yml > rp.json
expect_run runtime_plan_first 0 "$CB_BIN/cb-train" --runtime-plan --group pipe --run a -o rp --force rp.json
grep -q '^runtime plan (threads measured now, kept in '"$TMP"'/cache/runtime_plans.json' "$TMP/err" &&
    grep -q '^  cuda graphs  not applicable (cpu)$' "$TMP/err" && ok runtime_plan_measured ||
    not_ok runtime_plan_measured "$(head -c 400 "$TMP/err")"
expect_run runtime_plan_again 0 "$CB_BIN/cb-train" --runtime-plan --group pipe --run a -o rp --force rp.json
grep -q '^runtime plan (threads from the cache' "$TMP/err" && ok runtime_plan_cached || not_ok runtime_plan_cached "$(head -c 400 "$TMP/err")"
CB_MEMORY_BUDGET_MB=0.0001 run "$CB_BIN/cb-train" --runtime-plan --group pipe --run a -o rp --force rp.json
expect_status runtime_plan_no_room 4
expect_err_line runtime_plan_no_room_line "^cb-train: the model does not fit the memory budget even at batch 1"
# batch_size: auto asks for the plan by itself: the largest batch that fits the budget (a
# small one, a larger one: 0.3 MiB holds one row of this model at block 16, 0.5 MiB three),
# kept and then from the cache; the data caps a large budget's (its training part, under
# 3000 tokens, holds under 188 rows of 16, where 100 MiB has room for over 1000); a budget
# below batch 1 is one line and status 4
sed 's/batch_size: 2, block_size: 16, lr: 0.01,/batch_size: auto, block_size: 16, lr: 0.01,/' m.yml > auto.yml
"$CB" compile auto.yml > rpa.json
auto_batch() { sed -n 's/^  batch        \([0-9]*\) x grad_accum \([0-9]*\) (auto: .*/\1 \2/p' "$TMP/err"; }
CB_MEMORY_BUDGET_MB=0.3 expect_run batch_auto_small 0 "$CB_BIN/cb-train" --steps 1 --group pipe --run a -o rpa --force rpa.json
[ "$(auto_batch)" = "1 1" ] && grep -q '^runtime plan (.*batch auto decided now and kept' "$TMP/err" &&
    ok batch_auto_small_budget_small_batch || not_ok batch_auto_small_budget_small_batch "$(head -c 600 "$TMP/err")"
grep -q '"batch_size": 1,' rpa/run.json && ok batch_auto_trainer_uses_it || not_ok batch_auto_trainer_uses_it "$(grep batch rpa/run.json)"
CB_MEMORY_BUDGET_MB=0.5 expect_run batch_auto_larger 0 "$CB_BIN/cb-train" --steps 1 --group pipe --run a -o rpa --force rpa.json
[ "$(auto_batch)" = "3 1" ] && ok batch_auto_larger_budget_larger_batch ||
    not_ok batch_auto_larger_budget_larger_batch "$(head -c 600 "$TMP/err")"
CB_MEMORY_BUDGET_MB=0.5 expect_run batch_auto_again 0 "$CB_BIN/cb-train" --steps 1 --group pipe --run a -o rpa --force rpa.json
[ "$(auto_batch)" = "3 1" ] && grep -q '^runtime plan (threads from the cache .*; batch auto from the cache' "$TMP/err" &&
    ok batch_auto_from_the_cache || not_ok batch_auto_from_the_cache "$(head -c 600 "$TMP/err")"
CB_MEMORY_BUDGET_MB=100 expect_run batch_auto_capped 0 "$CB_BIN/cb-train" --steps 1 --group pipe --run a -o rpa --force rpa.json
n=$(auto_batch | cut -d' ' -f1)
[ "${n:-0}" -ge 100 ] && [ $((n * 16)) -le 3000 ] && grep -q 'the data holds no more rows of the block' "$TMP/err" &&
    ok batch_auto_capped_by_the_data || not_ok batch_auto_capped_by_the_data "$(head -c 600 "$TMP/err")"
CB_MEMORY_BUDGET_MB=0.1 run "$CB_BIN/cb-train" --steps 1 --group pipe --run a -o rpa --force rpa.json
expect_status batch_auto_no_room 4
expect_err_line batch_auto_no_room_line "^cb-train: the model does not fit the memory budget even at batch 1: 0\.[0-9] MiB of 0\.1 "
expect_run runtime_plan_through_cb_run 0 "$CB" run -q --runtime-plan m.yml --group pipe -o rpexp
grep -q '^runtime plan' rpexp/logs/train-a.log && ok runtime_plan_in_stage_log || not_ok runtime_plan_in_stage_log "no plan in the log"

# 11. cb compile --fit-params: a manifest that compiles to the count it promises
expect_run fit_params 0 "$CB" compile --fit-params 20M -o fitted.yml "$CB_ROOT/presets/tiny_sotu.yml"
expect_err_line fit_params_line "^cb compile: fitted to 20000000 parameters: [0-9]+ \([-+][0-9.]+%\): d_model [0-9]+, n_layers [0-9]+, n_heads [0-9]+, n_kv_heads [0-9]+"
got=$("$CB" compile --print-plan fitted.yml | awk '$1 == "params" { gsub(",", "", $2); print $2 }')
awk -v g="$got" 'BEGIN { exit !(g >= 19000000 && g <= 21000000) }' && ok fit_params_within_5_percent ||
    not_ok fit_params_within_5_percent "fitted manifest has $got parameters"
diff <(grep -v '^  d_model:\|^  n_layers:\|^  n_heads:\|^  n_kv_heads:' "$CB_ROOT/presets/tiny_sotu.yml") \
     <(grep -v '^  d_model:\|^  n_layers:\|^  n_heads:\|^  n_kv_heads:' fitted.yml) >/dev/null &&
    ok fit_params_keeps_the_rest || not_ok fit_params_keeps_the_rest "other lines changed"
expect_run fit_params_bad_count 2 "$CB" compile --fit-params lots m.yml
expect_run fit_params_with_print_plan 2 "$CB" compile --fit-params 1M --print-plan m.yml
expect_run fit_params_too_small 3 "$CB" compile --fit-params 1M "$CB_ROOT/presets/llama32_1b_dba.yml"
expect_err_line fit_params_too_small_line "already has [0-9]+ parameters, more than 1000000"

# 12. one cb run at a time in a folder
setsid "$CB" run -q --var steps_a=1000000 --force m.yml --group pipe -o lockexp >/dev/null 2>&1 &
lpid=$!
for _ in $(seq 400); do [ -f lockexp/stamps/train-a.started ] && break; sleep 0.05; done
expect_run second_cb_run_refused 2 "$CB" run -q m.yml --group pipe -o lockexp
expect_err_line second_cb_run_refused_line "^cb run: $W/lockexp: another cb run is working in this folder"
kill -KILL -- -"$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null || true # killed: its status is not the test's
