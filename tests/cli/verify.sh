#!/usr/bin/env bash
# cb-verify end to end: a teacher trained on a repeated text, students that differ in
# attention (GQA, DBA; random from cb-build --seed), and the run's verify blocks of
# tests/cli/verify/tiny.yml. The exit status is the verdict (0 pass, 1 a failed check
# under fail_fast true; fail_fast false: warnings, exit 0); bad input is one line with
# the documented status and no output, an earlier verify.json untouched.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

M=tests/cli/verify/tiny.yml
"$CB_BIN/cb" compile "$M" > "$TMP/plan.json" || { not_ok compile "$M"; exit 0; }
sed 's/n_kv_heads: 4}/n_kv_heads: 2}/' "$M" > "$TMP/gqa.yml"
sed 's/n_kv_heads: 4}/mode: decoupled, sem_dim: 8, geo_dim: 8}/' "$M" > "$TMP/dba.yml"
sed 's/vocab: 256/vocab: 64/' "$M" > "$TMP/v64.yml"
for s in gqa dba v64; do
    "$CB_BIN/cb" compile "$TMP/$s.yml" > "$TMP/$s.json" || { not_ok "compile_$s" "$s.yml"; exit 0; }
done
# "Q:42\n" over and over, as byte ids: a teacher learns it in 150 steps
awk 'BEGIN { for (i = 0; i < 600; i++) printf "81 58 52 50 10\n" }' > "$TMP/d.tokens"
awk 'BEGIN { for (i = 0; i < 400; i++) printf "%d ", (i * 7) % 64 }' > "$TMP/small.tokens"
expect_run train_teacher 0 "$CB_BIN/cb-train" --quiet --run teach --data "$TMP/d.tokens" -o "$TMP/teach" "$TMP/plan.json"
TEACHER=$TMP/teach/final
expect_cmd build_gqa "$CB_BIN/cb-build" --seed 5 -o "$TMP/gqa" "$TMP/gqa.json"
expect_cmd build_dba "$CB_BIN/cb-build" --seed 6 -o "$TMP/dba" "$TMP/dba.json"
expect_cmd build_v64 "$CB_BIN/cb-build" --seed 7 -o "$TMP/v64" "$TMP/v64.json"

verify() { "$CB_BIN/cb-verify" --quiet --teacher "$TEACHER" --data "$TMP/d.tokens" "$@"; }
# jq_is NAME FILTER: the filter gives true on $TMP/v.json
jq_is() {
    if [ "$(jq -r "$2" "$TMP/v.json" 2>/dev/null)" = true ]; then ok "$1"; else
        not_ok "$1" "$2 is not true: $(head -c 300 "$TMP/v.json")"; fi
}

# compare: the teacher against itself is distance 0 and a pass
expect_run compare_self 0 verify --run compare --student "$TEACHER" -o "$TMP/v.json" "$TMP/plan.json"
jq_is compare_self.json '.kind == "verify" and .type == "compare" and .verdict == "pass" and .logits.mean_l1 == 0
    and .logits.max_l1 == 0 and ([.attention.layers[].mean_l1] == [0, 0]) and .data.split == "val"
    and (.checks | length) == 6 and .exit_status == 0'
# a random GQA student fails the logits thresholds: fail_fast true, exit 1, verify.json written
expect_run compare_gqa_fails 1 verify --run compare --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/plan.json"
jq_is compare_gqa.json '.verdict == "fail" and .exit_status == 1 and .checks_failed > 0 and (.warnings | length) == 0
    and ([.checks[] | select(.pass == false) | .name] | index("logits.mean_l1") != null)
    and .attention.layers[1].teacher_op == "blocks.1.res.attn" and .thresholds.logits.max_max_l1 == 0.25'
# a DBA student: the layers pair one to one
expect_run compare_dba 1 verify --run compare --student "$TMP/dba" -o "$TMP/v.json" "$TMP/plan.json"
jq_is compare_dba.json '(.attention.layers | length) == 2 and .attention.mean_l1 > 0 and .student.plan_sha256 != .teacher.plan_sha256'
# fail_fast false (the default): the failed checks are warnings, exit 0, the verdict in the JSON
expect_run compare_warn 0 verify --run compare_warn --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/plan.json"
jq_is compare_warn.json '.verdict == "fail" and .exit_status == 0 and .fail_fast == false
    and (.warnings | length) == .checks_failed and .checks_failed == 4 and .thresholds.logits == null'
# a Hugging Face Llama directory as the teacher: the same weights, distance 0
expect_cmd export_hf "$CB_BIN/cb-build" --export-hf "$TMP/hf" "$TEACHER"
expect_run compare_hf_teacher 0 verify --run compare --teacher "$TMP/hf" --student "$TEACHER" -o "$TMP/v.json" \
    "$TMP/plan.json"
jq_is compare_hf_teacher.json '.logits.max_l1 == 0 and .attention.max_l1 == 0 and .teacher.dir == "'"$TMP/hf"'"'
# without --quiet: progress lines and a summary on stderr, the JSON unchanged
expect_run compare_progress 1 "$CB_BIN/cb-verify" --run compare --teacher "$TEACHER" --student "$TMP/gqa" \
    --data "$TMP/d.tokens" -o "$TMP/v2.json" "$TMP/plan.json"
if grep -q "^cb-verify: compare: batches 2/2$" "$TMP/err" && grep -q "^cb-verify: compare test/compare: fail" "$TMP/err"
then ok compare_progress.stderr; else not_ok compare_progress.stderr "$(head -c 300 "$TMP/err")"; fi
verify --run compare --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/plan.json"
expect_same_files compare_progress.same_json "$TMP/v.json" "$TMP/v2.json"
# stdout without -o
expect_run compare_stdout 0 verify --run compare --student "$TEACHER" "$TMP/plan.json"
expect_out compare_stdout.json '"kind": "verify"'

# fidelity: the teacher against itself, delta 0 and ratio 1; a random student fails
expect_run fidelity_self 0 verify --run fidelity --student "$TEACHER" -o "$TMP/v.json" "$TMP/plan.json"
jq_is fidelity_self.json '.fidelity.delta_nll == 0 and .fidelity.ppl_ratio == 1 and .verdict == "pass"
    and .data.split == "val" and (.fidelity.batches | length) == 2 and .fidelity.teacher_nll < 0.1'
expect_run fidelity_random_student 1 verify --run fidelity --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/plan.json"
jq_is fidelity_random_student.json '.fidelity.delta_nll > 1 and .fidelity.ppl_ratio > 2 and .checks_failed == 2
    and ((.fidelity.student_nll - .fidelity.teacher_nll - .fidelity.delta_nll) | fabs) < 1e-9'

# eval: the trained teacher answers 42 greedily and prefers "42"; a random student does not
expect_run eval_self 0 verify --run eval --student "$TEACHER" -o "$TMP/v.json" "$TMP/plan.json"
jq_is eval_self.json '.eval.teacher_accuracy == 1 and .eval.student_accuracy == 1 and .eval.accuracy_drop == 0
    and .eval.results[0].student.integer == 42 and .eval.results[1].student.picked == "42"
    and .eval.tokenizer == "byte"'
expect_run eval_random_student 1 verify --run eval --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/plan.json"
jq_is eval_random_student.json '.eval.results[0].student.correct == false and .eval.accuracy_drop >= 0.5
    and .checks[1].name == "accuracy_drop" and .checks[1].pass == false and .checks[0].pass == true'
# a suite file adds its cases
printf 'suite: more\ncases:\n  - {id: again, prompt: "42\\nQ:4", kind: int_greedy, answer: 2}\n' > "$TMP/suite.yml"
expect_run eval_suite 0 verify --run eval --student "$TEACHER" --suite "$TMP/suite.yml" -o "$TMP/v.json" "$TMP/plan.json"
jq_is eval_suite.json '.eval.cases == 3 and .eval.results[2].id == "again" and .eval.results[2].teacher.integer == 2'
# no teacher: only min_student_accuracy can be checked
jq '(.groups[0].runs[] | select(.id == "eval") | .verify.thresholds) = {"min_student_accuracy": 1.0}' \
    "$TMP/plan.json" > "$TMP/noteacher.json"
expect_run eval_no_teacher 1 "$CB_BIN/cb-verify" --quiet --run eval --student "$TMP/gqa" -o "$TMP/v.json" "$TMP/noteacher.json"
jq_is eval_no_teacher.json '.teacher == null and .eval.teacher_accuracy == null and .checks[0].name == "student_accuracy"'

# ---- bad input: one line, the documented status, nothing written ----
echo '{"earlier": true}' > "$TMP/keep.json"
cp "$TMP/keep.json" "$TMP/keep.orig"
bad() { # NAME STATUS PATTERN ARGS...: fails as documented; keep.json untouched, stdout empty
    local name=$1 want=$2 pat=$3; shift 3
    expect_run "$name" "$want" "$CB_BIN/cb-verify" --quiet "$@"
    expect_err_line "$name.line" "$pat"
    expect_empty_out "$name.stdout"
    expect_same_files "$name.no_output" "$TMP/keep.orig" "$TMP/keep.json"
}
V=(--teacher "$TEACHER" --data "$TMP/d.tokens" -o "$TMP/keep.json")
bad no_plan 2 "no plan given" --student "$TMP/gqa" "${V[@]}"
bad no_student 2 "--student DIR is required" "${V[@]}" "$TMP/plan.json"
bad no_such_run 2 "no group has a run nope" --run nope --student "$TMP/gqa" "${V[@]}" "$TMP/plan.json"
bad no_such_group 2 "no group other" --group other --run compare --student "$TMP/gqa" "${V[@]}" "$TMP/plan.json"
bad no_verify_block 2 "tiny.yml:[0-9]+:[0-9]+: run teach of group test has no verify block" \
    --run teach --student "$TMP/gqa" "${V[@]}" "$TMP/plan.json"
jq '.groups[0].runs[1].verify.type = "bogus"' "$TMP/plan.json" > "$TMP/bogus.json"
bad unknown_type 3 "tiny.yml:[0-9]+:[0-9]+: groups\[0\]\.runs\[1\]\.verify\.type: unknown verify type bogus" \
    --run compare --student "$TMP/gqa" "${V[@]}" "$TMP/bogus.json"
jq '.groups[0].runs[1].verify.attention.max_mean_l1 = -1' "$TMP/plan.json" > "$TMP/neg.json"
bad bad_threshold 3 "tiny.yml:[0-9]+:[0-9]+: .*verify\.attention\.max_mean_l1: must be >= 0" \
    --run compare --student "$TMP/gqa" "${V[@]}" "$TMP/neg.json"
jq '.groups[0].runs[4].verify.cases[1].answer = "99"' "$TMP/plan.json" > "$TMP/answer.json"
bad answer_not_a_choice 3 "tiny.yml:[0-9]+:[0-9]+: .*answer \"99\" is not one of the choices" \
    --run eval --student "$TMP/gqa" "${V[@]}" "$TMP/answer.json"
jq '.groups[0].runs[4].verify.cases[1].choices[0] = ""' "$TMP/plan.json" > "$TMP/empty.json"
bad choice_without_tokens 3 "tiny.yml:[0-9]+:[0-9]+: verify\.cases\[1\]\.choices\[0\]: \"\" has no tokens" \
    --run eval --student "$TMP/gqa" "${V[@]}" "$TMP/empty.json"
bad missing_teacher_dir 2 "nope.*cannot open" --run compare --student "$TMP/gqa" \
    --teacher "$TMP/nope" --data "$TMP/d.tokens" -o "$TMP/keep.json" "$TMP/plan.json"
bad compare_needs_teacher 2 "give --teacher DIR" --run compare --student "$TMP/gqa" --data "$TMP/d.tokens" \
    -o "$TMP/keep.json" "$TMP/plan.json"
bad missing_data 2 "none.tokens: cannot open" --run compare --student "$TMP/gqa" --teacher "$TEACHER" \
    --data "$TMP/none.tokens" -o "$TMP/keep.json" "$TMP/plan.json"
bad other_vocabulary 3 "vocabulary has 256 ids and the student's 64" --run fidelity --student "$TMP/v64" \
    "${V[@]}" "$TMP/plan.json"
bad tokenizer_past_vocab 3 "byte: the tokenizer has 256 ids, the model.s vocabulary 64" --run eval --teacher "$TMP/v64" --student "$TMP/v64" -o "$TMP/keep.json" \
    "$TMP/v64.json"
bad tokens_past_vocab 3 "past the vocabulary" --run compare --teacher "$TMP/v64" --student "$TMP/v64" \
    --data "$TMP/d.tokens" -o "$TMP/keep.json" "$TMP/v64.json"
bad split_val_without_val 2 "split val" --run fidelity --student "$TMP/gqa" "${V[@]}" \
    <(jq '.groups[0].runs[3].train.val_frac = 0' "$TMP/plan.json")
echo 1 2 3 > "$TMP/short.tokens"
bad short_data 3 "fewer than block_size" --run compare --student "$TMP/gqa" --teacher "$TEACHER" \
    --data "$TMP/short.tokens" -o "$TMP/keep.json" "$TMP/plan.json"
printf 'cases:\n  - {id: x, prompt: p, kind: greedy, answer: 1}\n' > "$TMP/badsuite.yml"
bad bad_suite 3 "badsuite.yml:2:[0-9]+: cases\[0\]\.kind" --run eval --student "$TMP/gqa" \
    --suite "$TMP/badsuite.yml" "${V[@]}" "$TMP/plan.json"
bad suite_on_compare 2 "--suite adds eval cases" --run compare --student "$TMP/gqa" \
    --suite "$TMP/suite.yml" "${V[@]}" "$TMP/plan.json"
printf 'not json' > "$TMP/notplan.json"
bad not_a_plan 3 "notplan.json" --run compare --student "$TMP/gqa" "${V[@]}" "$TMP/notplan.json"
bad unwritable_output 2 "nodir" --run compare --student "$TEACHER" --teacher "$TEACHER" --data "$TMP/d.tokens" \
    -o "$TMP/nodir/v.json" "$TMP/plan.json"
