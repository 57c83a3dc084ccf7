#!/usr/bin/env bash
# cb-train on bad input: each is one clear line on stderr, nothing on stdout, and the
# exit status of docs/DESIGN.md section 3; a full disk at save time leaves the earlier
# checkpoint whole.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

"$CB_BIN/cb" compile tests/cli/train/tiny.yml > "$TMP/plan.json" || { not_ok compile "tests/cli/train/tiny.yml"; exit 0; }
LC_ALL=C awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%d%s", (i * 7) % 64, (i % 20 == 19 ? "\n" : " ") }' > "$TMP/ok.tokens"
T=(--quiet --run adamw)

# a .npy array of uint16 ids: header (version 1.0, padded to 64 bytes) and data;
# npy PATH N [DATA_COUNT]: the header claims N ids, DATA_COUNT (default N) are written
npy() {
    local path=$1 n=$2 count=${3:-$2}
    local dict="{'descr': '<u2', 'fortran_order': False, 'shape': ($n,), }"
    local pad=$(( 64 - (10 + ${#dict} + 1) % 64 ))
    { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#dict} + pad + 1) % 256 )))\\x00"
      printf '%s%*s\n' "$dict" "$pad" ''
      LC_ALL=C awk -v n="$count" 'BEGIN { for (i = 0; i < n; i++) printf "%c%c", (i * 5) % 64, 0 }'; } > "$path"
}
npy "$TMP/good.npy" 2000
expect_run npy_trains 0 "$CB_BIN/cb-train" "${T[@]}" --steps 2 --data "$TMP/good.npy" -o "$TMP/g" "$TMP/plan.json"

expect_run missing_data 2 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/nope.npy" -o "$TMP/r" "$TMP/plan.json"
expect_err_line missing_data.line "^cb-train: .*nope\.npy: cannot open"
expect_empty_out missing_data.stdout

npy "$TMP/short.npy" 2000 100
expect_run truncated_data 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/short.npy" -o "$TMP/r" "$TMP/plan.json"
expect_err_line truncated_data.line "^cb-train: .*short\.npy: header claims 2000 elements"

printf '1 2 3 70 4\n%.0s' $(seq 50) > "$TMP/vocab.tokens"
expect_run past_vocab 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/vocab.tokens" -o "$TMP/r" "$TMP/plan.json"
expect_err_line past_vocab.line "^cb-train: .*vocab\.tokens: token id 70 at index 3 is past the vocabulary \(64\)"

printf '1 2 3 4 5 6 7 8 9 10\n' > "$TMP/tiny.tokens"
expect_run block_too_big 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/tiny.tokens" -o "$TMP/r" "$TMP/plan.json"
expect_err_line block_too_big.line "^cb-train: .*tiny\.tokens: .*fewer than block_size \+ 1"

printf '1 2 x 4\n' > "$TMP/text.tokens"
expect_run not_tokens 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/text.tokens" -o "$TMP/r" "$TMP/plan.json"
expect_err_line not_tokens.line "^cb-train: .*text\.tokens:1:5: 'x' is not a token id"

expect_run no_such_run 2 "$CB_BIN/cb-train" --quiet --run nope --data "$TMP/ok.tokens" "$TMP/plan.json"
expect_err_line no_such_run.line "no group has a run nope"
expect_run bad_steps 2 "$CB_BIN/cb-train" --steps -3 "$TMP/plan.json"
expect_run no_plan 2 "$CB_BIN/cb-train" --quiet
expect_run bad_plan 3 "$CB_BIN/cb-train" --quiet tests/cli/train/tiny.yml
expect_err_line bad_plan.line "^cb-train: tests/cli/train/tiny\.yml"

# numbers that blow up: exit 4 naming the step (a model without attention: its fast exp
# takes no NaN)
"$CB_BIN/cb" compile tests/cli/train/mlp.yml > "$TMP/mlp.json"
expect_run nan_loss 4 "$CB_BIN/cb-train" --quiet --run nan --data "$TMP/ok.tokens" -o "$TMP/n" "$TMP/mlp.json"
expect_err_line nan_loss.line "^cb-train: step [0-9]+: the loss is (nan|inf)$"
grep -q '"status": "failed"' "$TMP/n/run.json" && ok nan_loss.run_json || not_ok nan_loss.run_json "status"

# checkpoints: of another plan, corrupt, truncated, missing
expect_run train_10 0 "$CB_BIN/cb-train" "${T[@]}" --steps 10 --data "$TMP/ok.tokens" -o "$TMP/c" "$TMP/plan.json"
ck=$TMP/c/step-00000010
sed 's/d: 16/d: 24/' tests/cli/train/tiny.yml > "$TMP/other.yml"
"$CB_BIN/cb" compile "$TMP/other.yml" > "$TMP/other.json"
expect_run other_plan 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/ok.tokens" -o "$TMP/o" --resume "$ck" "$TMP/other.json"
expect_err_line other_plan.line "^cb-train: .*step-00000010: a checkpoint of another plan"
expect_run other_run 3 "$CB_BIN/cb-train" --quiet --run lion --data "$TMP/ok.tokens" -o "$TMP/o" --resume "$ck" "$TMP/plan.json"
expect_err_line other_run.line "a checkpoint of run test/adamw, not of test/lion"
cp -r "$ck" "$TMP/corrupt"
printf '\x01' | dd of="$TMP/corrupt/model.safetensors" bs=1 seek=2000 conv=notrunc status=none
expect_run corrupt_ckpt 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/ok.tokens" -o "$TMP/o" --resume "$TMP/corrupt" "$TMP/plan.json"
expect_err_line corrupt_ckpt.line "^cb-train: .*corrupt/model\.safetensors: corrupt: CRC-32C"
cp -r "$ck" "$TMP/trunc"
truncate -s 5000 "$TMP/trunc/optimizer.safetensors"
expect_run truncated_ckpt 3 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/ok.tokens" -o "$TMP/o" --resume "$TMP/trunc" "$TMP/plan.json"
expect_err_line truncated_ckpt.line "^cb-train: .*trunc/optimizer\.safetensors: truncated"
expect_run missing_ckpt 2 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/ok.tokens" -o "$TMP/o" --resume "$TMP/none" "$TMP/plan.json"
expect_err_line missing_ckpt.line "^cb-train: .*none: cannot open"

# a full disk at save time (a file-size limit): exit 2, one line, the earlier checkpoint whole
cp "$ck/model.safetensors" "$TMP/model.before"
run bash -c "ulimit -f 40; exec '$CB_BIN/cb-train' ${T[*]} --data '$TMP/ok.tokens' -o '$TMP/c' --resume '$ck' '$TMP/plan.json'"
expect_status full_disk 2
expect_err_line full_disk.line "^cb-train: .*step-00000015/[a-z.]+: write failed"
cmp -s "$ck/model.safetensors" "$TMP/model.before" && ok full_disk.previous_intact || not_ok full_disk.previous_intact "changed"
ls -A "$TMP/c" | grep -q '\.tmp\.' && not_ok full_disk.no_temp "$(ls -A "$TMP/c")" || ok full_disk.no_temp
expect_run full_disk.resume_after 0 "$CB_BIN/cb-train" "${T[@]}" --data "$TMP/ok.tokens" -o "$TMP/c" --resume "$ck" "$TMP/plan.json"
