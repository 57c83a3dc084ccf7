#!/usr/bin/env bash
# cb-review: the structural checks offline (sections, numbers, claims, citations), then the
# reviewer agent against tests/fake_api.c: its tools, proposed experiments whose manifests
# are checked with cb-validate (invalid ones sent back, a bounded number of times, never
# written), submit_review, and the failures of a reviewer that never submits.
. "$(dirname "$0")/lib.sh"
. tests/cli/paper/fake.sh
P="$CB_BIN/cb-paper"
V="$CB_BIN/cb-review"
M=tests/cli/paper/m.yml
R=tests/cli/paper/results
D=$TMP/p/paper

expect_run help 0 "$V" --help
expect_out help_usage '^usage: cb-review'
"$P" --offline -q -o "$D" -r "$R" "$M" >/dev/null 2>&1 || not_ok draft "cb-paper --offline failed"

# offline: the offline draft cites nothing, so the key topics are flagged; not approved (exit 1)
expect_run offline 1 "$V" --offline -q -p "$D" -r "$R" "$M"
j=$D/review.json
if grep -q '"kind": "review"' "$j" && grep -q '"action": "style_fix"' "$j" && grep -q '"approved": false' "$j" &&
   grep -q "no citation for the key topic 'grouped-query attention'" "$j" && grep -q '"untraced_numbers": \[\]' "$j" &&
   grep -q '"missing_sections": \[\]' "$j"; then ok offline_review; else not_ok offline_review "$(head -c 600 "$j")"; fi

# a damaged draft: a section removed, a number and a claim made up
cp -r "$D" "$TMP/bad"
B=$TMP/bad
sed -i -e '/^\\section{Conclusion}/,/^$/d' -e 's/^The measurements above are those/Our model clearly outperforms every baseline. It reaches 97.3 percent. The measurements above are those/' "$B/paper.tex"
expect_run damaged 1 "$V" --offline -q -p "$B" -r "$R" -o - "$M"
expect_out damaged_missing '"missing_sections": \[\s*$|"conclusion"'
expect_out damaged_untraced '"text": "97.3"'
expect_out damaged_claim 'Our model clearly outperforms every baseline'
expect_out damaged_action '"action": "clarification"'
# stricter venues take more off the same draft
s_conf=$(sed -n 's/^  "score": \(.*\),$/\1/p' "$TMP/out")
run "$V" --offline -q -p "$B" -r "$R" -o - --strictness top_venue "$M"
s_top=$(sed -n 's/^  "score": \(.*\),$/\1/p' "$TMP/out")
if awk -v a="$s_top" -v b="$s_conf" 'BEGIN { exit !(a < b) }'; then ok strictness_scores; else
    not_ok strictness_scores "top_venue $s_top not below conference $s_conf"; fi
# no results at all: a new experiment is asked for
mkdir -p "$TMP/empty"
"$P" --offline -q -o "$TMP/e/paper" -r "$TMP/empty" "$M" >/dev/null 2>&1
expect_run no_results 1 "$V" --offline -q -p "$TMP/e/paper" -r "$TMP/empty" -o - "$M"
expect_out no_results_action '"action": "new_experiment"'
expect_run no_draft 2 "$V" --offline -q -p "$TMP/nothing" "$M"
expect_run bad_strictness 2 "$V" --strictness lenient "$M"

# --- the reviewer agent ----------------------------------------------------------------
start_fake review_ok
run "$V" $(review_opts) -q -p "$D" -r "$R" "$M"
stop_fake
expect_status agent_not_approved 1
if grep -q '"mode": "online"' "$j" && grep -q '"score": 6.5' "$j" && grep -q '"action": "new_experiment"' "$j" &&
   grep -q '"a single training length"' "$j" && grep -q '"priority": "high"' "$j" &&
   grep -q '"manifest": "proposed_longer_training.yml"' "$j" && grep -q '"manifest": null' "$j"; then ok agent_review; else
    not_ok agent_review "$(head -c 1500 "$j")"; fi
if [ "$(grep -c '"name": "' "$j")" -eq 2 ]; then ok agent_max_proposed; else not_ok agent_max_proposed "$(grep '"name": "' "$j")"; fi
# the written manifest is valid, the invalid one was never written
if [ -f "$D/proposed_longer_training.yml" ] && "$CB_BIN/cb" compile "$D/proposed_longer_training.yml" >/dev/null 2>&1 &&
   [ ! -e "$D/proposed_kv_ablation.yml" ] && [ ! -e "$D/proposed_third_one.yml" ]; then ok agent_manifests; else
    not_ok agent_manifests "$(ls "$D")"; fi
t=$D/review_trace.jsonl
if grep -q 'n_heads: 3 does not divide d_model 64' "$t" && grep -q 'invalid (try 3 of 3)' "$t" && grep -q 'no more tries' "$t" &&
   grep -q 'max_proposed_experiments (2) reached' "$t" && grep -q 'name must be letters' "$t" &&
   grep -q 'propose the experiment first' "$t" && grep -q "no section named 'nonexistent'" "$t"; then ok agent_trace; else
    not_ok agent_trace "the trace lacks the manifest errors sent back"; fi
if grep -q ' 503 auth=ok' "$FAKE_LOG/log.txt"; then ok agent_retried_503; else not_ok agent_retried_503 "$(cat "$FAKE_LOG/log.txt")"; fi
no_key agent_no_key "$D"

start_fake review_approve
run "$V" $(review_opts) -q -p "$D" -r "$R" -o "$TMP/approve.json" "$M"
stop_fake
expect_status agent_approved 0
if grep -q '"approved": true' "$TMP/approve.json"; then ok agent_approved_doc; else not_ok agent_approved_doc "$(head -c 300 "$TMP/approve.json")"; fi

cp "$j" "$TMP/review_before.json"
for case in nosubmit badsubmit; do
    start_fake review_$case
    run "$V" $(review_opts) -q -p "$D" -r "$R" "$M"
    stop_fake
    expect_status "agent_$case" 3
    expect_err_line "agent_${case}_line" 'cb-review: .*the reviewer ended \(finished\) without submit_review$'
    if cmp -s "$j" "$TMP/review_before.json"; then ok "agent_${case}_kept"; else not_ok "agent_${case}_kept" "review.json changed"; fi
done
if grep -q 'score must be a number from 0 to 10' "$t" && grep -q 'action must be approve' "$t"; then ok agent_submit_checked; else
    not_ok agent_submit_checked "no refusal of a bad submit_review in the trace"; fi
