#!/usr/bin/env bash
# cb research: two iterations of write -> review against tests/fake_api.c, once ending
# approved, once with a proposed experiment (valid manifest kept, recorded as pending since
# auto_run_experiments is off) and max_iterations reached; and the offline loop.
. "$(dirname "$0")/lib.sh"
. tests/cli/paper/fake.sh
C="$CB_BIN/cb"
M=tests/cli/paper/m.yml
R=tests/cli/paper/results

expect_run help 0 "$C" research --help
expect_out help_text 'review_iterN\.json'

D=$TMP/a/paper
start_fake research_approve
run "$C" research -q $(fake_opts) -o "$D" -r "$R" "$M"
stop_fake
expect_status approve 0
j=$D/research_loop_result.json
if [ "$(jq -r '.kind, .approved, .stopped_by, (.iterations | length), .iterations[0].action, .iterations[1].action, .final_score' "$j" | tr '\n' ' ')" = \
     "research_loop_result true approved 2 style_fix approve 8.5 " ]; then ok approve_result; else not_ok approve_result "$(cat "$j")"; fi
if [ -f "$D/review_iter1.json" ] && [ -f "$D/review_iter2.json" ] && [ "$(ls "$D/versions" | grep -c '^paper_iter[12]_')" -eq 2 ]; then
    ok approve_files; else not_ok approve_files "$(ls "$D" "$D/versions" | tr '\n' ' ')"; fi
# the second draft answered the first review: its requested change went to the model
if grep -lq 'shorten the discussion' "$FAKE_LOG"/body_3.txt; then ok review_fed_back; else not_ok review_fed_back "the second cb-paper request lacks the review"; fi
if [ "$(grep -c 'auth=ok' "$FAKE_LOG/log.txt")" -eq 4 ]; then ok approve_requests; else not_ok approve_requests "$(cat "$FAKE_LOG/log.txt")"; fi
no_key approve_no_key "$D"

D=$TMP/b/paper
start_fake research_experiment
run "$C" research -q $(fake_opts) -o "$D" -r "$R" "$M"
stop_fake
expect_status experiment_not_approved 1
j=$D/research_loop_result.json
if [ "$(jq -r '.approved, .stopped_by, (.iterations | length), .iterations[0].action, .experiments[0].manifest, .experiments[0].status, (.experiments | length)' "$j" | tr '\n' ' ')" = \
     "false max_iterations 2 new_experiment proposed_longer_training.yml pending 1 " ]; then ok experiment_result; else not_ok experiment_result "$(cat "$j")"; fi
if "$C" compile "$D/proposed_longer_training.yml" >/dev/null 2>&1; then ok experiment_manifest_valid; else not_ok experiment_manifest_valid "cb compile failed"; fi

# offline: the structural review scores the offline draft 9.0 (two uncited key topics), which
# reaches auto_approve_score 9.0 in the first iteration
D=$TMP/c/paper
run env -u CB_TEST_API_KEY "$C" research -q --offline --max-iterations 1 -o "$D" -r "$R" "$M"
expect_status offline 0
if [ "$(jq -r '.stopped_by, (.iterations | length)' "$D/research_loop_result.json" | tr '\n' ' ')" = "auto_approved 1 " ]; then
    ok offline_result; else not_ok offline_result "$(cat "$D/research_loop_result.json" 2>&1 | head -c 300)"; fi
expect_run bad_iterations 2 "$C" research --max-iterations 0 "$M"

# auto_run_experiments: the proposed manifest goes to `cb run`, which finds its dataset
# missing before anything starts, so the experiment is recorded as run_failed with its
# log, and the loop goes on
sed 's/^  auto_run_experiments: false$/  auto_run_experiments: true/' "$M" >"$TMP/autorun.yml"
D=$TMP/d/paper
start_fake research_experiment
run "$C" research -q $(fake_opts) -o "$D" -r "$R" "$TMP/autorun.yml"
stop_fake
expect_status autorun_not_approved 1
if [ "$(jq -r '.experiments[0].status, (.iterations | length)' "$D/research_loop_result.json" | tr '\n' ' ')" = "run_failed 2 " ] &&
   grep -q 'train.data: dataset data/none.npy is missing' "$D/run_proposed_longer_training.log"; then ok autorun_recorded; else
    not_ok autorun_recorded "$(cat "$D/research_loop_result.json" 2>&1 | head -c 400)"; fi
