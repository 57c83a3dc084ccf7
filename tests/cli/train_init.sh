#!/usr/bin/env bash
# cb-train starts from the weights a run names (train.student.run: the final model of an
# earlier run, a sibling of the run directory) or fresh from the seed; the plan may come
# on standard input.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

"$CB_BIN/cb" compile tests/cli/train/tiny.yml > "$TMP/plan.json" || { not_ok compile "tests/cli/train/tiny.yml"; exit 0; }
LC_ALL=C awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%d%s", (i * 7 + i % 3) % 64, (i % 20 == 19 ? "\n" : " ") }' > "$TMP/d.tokens"
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/d.tokens" "$@"; }
forward() { "$CB_BIN/cb-build" --forward 1,2,3,4,5 -o "$2" "$1"; }

expect_run adamw_from_stdin 0 bash -c "'$CB_BIN/cb-train' --quiet --data '$TMP/d.tokens' --run adamw -o '$TMP/runs/adamw' - < '$TMP/plan.json'"
# zero steps from the earlier run's final model: the same weights come out
expect_run finetune_zero_steps 0 train --run finetune --steps 0 -o "$TMP/runs/finetune" "$TMP/plan.json"
expect_cmd forward_adamw forward "$TMP/runs/adamw/final" "$TMP/a.st"
expect_cmd forward_finetune_zero_steps forward "$TMP/runs/finetune/final" "$TMP/f.st"
expect_same_files starts_from_the_named_run "$TMP/a.st" "$TMP/f.st"
[ -d "$TMP/runs/finetune/step-00000000" ] && ok zero_steps_checkpoint || not_ok zero_steps_checkpoint "no step-00000000"
# three steps of training move the weights
expect_run finetune_trains 0 train --run finetune -o "$TMP/runs/finetune" "$TMP/plan.json"
expect_cmd forward_finetune_3_steps forward "$TMP/runs/finetune/final" "$TMP/f3.st"
expect_other_files finetune_moves "$TMP/a.st" "$TMP/f3.st"
# the named run missing: one line, exit 2
expect_run named_run_missing 2 train --run finetune -o "$TMP/elsewhere/finetune" "$TMP/plan.json"
expect_err_line named_run_missing.line "^cb-train: .*elsewhere/adamw/final: cannot open"
