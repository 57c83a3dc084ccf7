#!/usr/bin/env bash
# hostile.sh: hostile inputs and faults that once got through (issue 20): a tokenizer id
# far past its file, non-finite weights and logits, a file-size limit (SIGXFSZ) and the
# temporary files it left, a run directory of another plan, a plan.json swapped under its
# weights, malformed id lists, a draft beside --tokenizer, two trainings in one directory.
# Each is refused with one stderr line and the status DESIGN.md section 3 gives it.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

# no_temps NAME DIR: nothing named .*.tmp.* is left in DIR
no_temps() {
    local left
    left=$(find "$2" -maxdepth 1 -name '.*.tmp.*' | head -n 3)
    if [ -z "$left" ]; then ok "$1"; else not_ok "$1" "left behind: $left"; fi
}

# poison FILE TENSOR BYTES4: overwrite every float of TENSOR in a safetensors FILE
poison() {
    local f=$1 name=$2 word=$3 n range lo hi
    n=$(od -An -t u8 -N8 "$f" | tr -d ' ')
    range=$(dd if="$f" bs=1 skip=8 count="$n" 2>/dev/null | jq -r --arg t "$name" '.[$t].data_offsets | "\(.[0]) \(.[1])"')
    read -r lo hi <<<"$range"
    local k=$(((hi - lo) / 4))
    for ((i = 0; i < k; i++)); do printf "$word"; done |
        dd of="$f" bs=1 seek=$((8 + n + lo)) conv=notrunc 2>/dev/null
}

# ---- setup: a tiny Llama-shaped model over bytes, its plan and another one ----
"$CB_BIN/cb" compile tests/cli/train/tiny.yml >"$TMP/plan.json" &&
    "$CB_BIN/cb-build" -o "$TMP/model" "$TMP/plan.json" || { not_ok setup "cb compile / cb-build failed"; exit 1; }
# the same shapes, another seed and another learning rate: another plan
sed -e 's/seed: 7/seed: 8/' -e 's/lr: 0.01/lr: 0.02/' tests/cli/train/tiny.yml >"$TMP/other.yml"
"$CB_BIN/cb" compile "$TMP/other.yml" >"$TMP/other.json" || { not_ok setup "other plan"; exit 1; }
LC_ALL=C awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%d%s", (i * 7) % 64, (i % 20 == 19 ? "\n" : " ") }' \
    >"$TMP/train.tokens"

# ---- 1. a tokenizer id far past what the file holds: refused before allocating ----
# tok EXTRA_TOKEN ID [ADDED_JSON]: a byte-level tokenizer.json with the 256 bytes as ids 0-255
tok() {
    jq -n --arg extra "$1" --argjson id "$2" --argjson added "${3:-[]}" '
        ([range(33; 127)] + [range(161; 173)] + [range(174; 256)]) as $printable
        | (reduce range(0; 256) as $b ({n: 0, m: {}};
              if ($printable | index($b)) != null then .m[[$b] | implode] = $b
              else .m[[256 + .n] | implode] = $b | .n += 1 end) | .m) as $bytes
        | {normalizer: null, pre_tokenizer: {type: "ByteLevel", add_prefix_space: false},
           decoder: {type: "ByteLevel"}, added_tokens: $added,
           model: {type: "BPE", vocab: ($bytes + {($extra): $id}), merges: [($extra | split("") | join(" "))]}}'
}
tok ab 10000000 >"$TMP/huge.json"
printf 'ab' >"$TMP/ab.txt"
expect_run tokenizer_huge_id 3 "$CB_BIN/cb-data" encode -t "$TMP/huge.json" "$TMP/ab.txt"
expect_err_line tokenizer_huge_id.stderr '^cb-data: .*/huge\.json: model\.vocab\."ab": id 10000000 is far past the 257 tokens'
expect_empty_out tokenizer_huge_id.stdout
tok ab 256 '[{"id": 2000000000, "content": "<x>"}]' >"$TMP/huge_added.json"
expect_run tokenizer_huge_added_id 3 "$CB_BIN/cb-data" encode -t "$TMP/huge_added.json" "$TMP/ab.txt"
expect_err_line tokenizer_huge_added_id.stderr 'huge_added\.json: added_tokens\[0\]\.id: id 2000000000 of "<x>" is far past'

# ---- 2. non-finite weights and logits: named where they appear, exit 4 ----
cp -r "$TMP/model" "$TMP/nan"
poison "$TMP/nan/model.safetensors" embed.tok '\x00\x00\xc0\x7f'
for mode in "--temperature 1" "--temperature 0" "--top-k 5" "--cache-kind q8_0"; do
    name=nan_logits.$(echo "$mode" | tr -d ' -')
    expect_run "$name" 4 "$CB_BIN/cb-generate" --ids 1,2,3 --max-new-tokens 3 $mode "$TMP/nan"
    expect_err_line "$name.stderr" "^cb-generate: $TMP/nan: non-finite logits .*tensor embed\.tok holds NaN"
done
# greedy speculative decoding picks an id from NaN logits too: the target's rows are checked
expect_run nan_logits.spec_greedy 4 "$CB_BIN/cb-generate" --ids 1,2,3 --max-new-tokens 3 --temperature 0 \
    --draft "$TMP/nan" --spec-k 2 "$TMP/nan"
expect_err_line nan_logits.spec_greedy.stderr "^cb-generate: $TMP/nan: non-finite logits"
expect_run check_weights_nan 3 "$CB_BIN/cb-build" --check-weights "$TMP/nan"
expect_err_line check_weights_nan.stderr "^cb-build: $TMP/nan/model\.safetensors: tensor embed\.tok holds NaN"
expect_run check_weights_ok 0 "$CB_BIN/cb-build" --check-weights "$TMP/model"
# finite weights whose product overflows: the first op whose output is not finite is named
cp -r "$TMP/model" "$TMP/inf"
poison "$TMP/inf/model.safetensors" blocks.0.res.norm.weight '\xff\xff\x7f\x7f'
poison "$TMP/inf/model.safetensors" blocks.0.res.attn.q.weight '\xff\xff\x7f\x7f'
expect_run inf_logits 4 "$CB_BIN/cb-generate" --ids 1,2,3 --max-new-tokens 3 --temperature 0 "$TMP/inf"
expect_err_line inf_logits.stderr "^cb-generate: $TMP/inf: non-finite logits .*first in the output of op blocks\.0\."
expect_run inf_check_weights 0 "$CB_BIN/cb-build" --check-weights "$TMP/inf"

# ---- 3. a file-size limit: every writer reports it (exit 2), leaves no temporary ----
mkdir -p "$TMP/fs"
head -c 20000 /dev/zero | tr '\0' 'x' >"$TMP/big.txt"
limited() { (ulimit -f 4 && exec "$@"); }
run limited "$CB_BIN/cb-data" encode -t byte -o "$TMP/fs/ids.json" "$TMP/big.txt"
expect_status xfsz.data_encode 2
expect_err_line xfsz.data_encode.stderr "^cb-data: $TMP/fs/ids\.json: write failed: File too large"
run limited "$CB_BIN/cb-build" -o "$TMP/fs/m" "$TMP/plan.json"
expect_status xfsz.build 2
expect_err_line xfsz.build.stderr "^cb-build: $TMP/fs/m.*File too large"
run limited "$CB_BIN/cb-build" --forward "$(seq -s, 1 60)" --trace '*' -o "$TMP/fs/trace.st" "$TMP/model"
expect_status xfsz.build_forward 2
expect_err_line xfsz.build_forward.stderr "^cb-build: $TMP/fs/trace\.st: .*File too large"
run limited "$CB_BIN/cb" compile -o "$TMP/fs/plan.json" tests/cli/train/tiny.yml
expect_status xfsz.compile 2
expect_err_line xfsz.compile.stderr "^cb: $TMP/fs/plan\.json: .*File too large"
no_temps xfsz.no_temps "$TMP/fs"
# stale temporaries of our own naming (a killed writer's) go at the next write
: >"$TMP/fs/.ids.json.tmp.Ab12Cd"
mkdir -p "$TMP/fs/.m.tmp.Xy34Zw" && : >"$TMP/fs/.m.tmp.Xy34Zw/model.safetensors"
: >"$TMP/fs/.unrelated.tmp"
expect_run stale.data_encode 0 "$CB_BIN/cb-data" encode -t byte -o "$TMP/fs/ids.json" "$TMP/ab.txt"
expect_run stale.build 0 "$CB_BIN/cb-build" -o "$TMP/fs/m" "$TMP/plan.json"
no_temps stale.removed "$TMP/fs"
[ -e "$TMP/fs/.unrelated.tmp" ] && ok stale.others_kept || not_ok stale.others_kept ".unrelated.tmp removed"

# ---- 4. a new run into a directory holding a run of another plan ----
train() { "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw "$@"; }
train -o "$TMP/run" "$TMP/plan.json" >/dev/null || not_ok run_setup "first run failed"
cp "$TMP/run/metrics.jsonl" "$TMP/metrics.before"
expect_run run_of_another_plan 2 train -o "$TMP/run" "$TMP/other.json"
expect_err_line run_of_another_plan.stderr "^cb-train: $TMP/run: holds run adamw of another plan .*--resume.*--force"
cmp -s "$TMP/run/metrics.jsonl" "$TMP/metrics.before" && ok run_of_another_plan.kept ||
    not_ok run_of_another_plan.kept "metrics.jsonl changed"
expect_run run_of_another_plan.force 0 train --force -o "$TMP/run" "$TMP/other.json"
n=$(ls -d "$TMP"/run/step-* | wc -l)
[ "$n" -eq 4 ] && ok run_of_another_plan.force_checkpoints || not_ok run_of_another_plan.force_checkpoints "$n checkpoints"
expect_run run_of_another_plan.force_resume 0 train -o "$TMP/run" --resume "$TMP/run/step-00000010" "$TMP/other.json"
expect_run run_same_plan_again 0 train -o "$TMP/run" "$TMP/other.json"

# ---- 5a. plan.json swapped for another plan of the same shapes ----
cp -r "$TMP/model" "$TMP/swapped"
cp "$TMP/other.json" "$TMP/swapped/plan.json"
expect_run plan_swapped.generate 3 "$CB_BIN/cb-generate" --ids 1,2 --max-new-tokens 2 "$TMP/swapped"
expect_err_line plan_swapped.generate.stderr "^cb-generate: $TMP/swapped/model\.safetensors: .*plan_sha256 [0-9a-f]+.*plan\.json is plan_sha256 [0-9a-f]+"
expect_run plan_swapped.forward 3 "$CB_BIN/cb-build" --forward 1,2 "$TMP/swapped"
# ---- 5b. a model directory without plan.json names plan.json ----
mkdir -p "$TMP/noplan" && cp "$TMP/model/model.safetensors" "$TMP/noplan/"
expect_run no_plan.forward 2 "$CB_BIN/cb-build" --forward 1,2 "$TMP/noplan"
expect_err_line no_plan.forward.stderr "^cb-build: $TMP/noplan.*plan\.json"
expect_run no_plan.from 2 "$CB_BIN/cb-build" --from "$TMP/noplan" -o "$TMP/x"
expect_err_line no_plan.from.stderr "^cb-build: $TMP/noplan.*(plan\.json|config\.json)"
# ---- 5c. malformed id lists ----
for ids in 1,,2 1,2, ,1; do
    expect_run "ids_empty_item.generate.$ids" 2 "$CB_BIN/cb-generate" --ids "$ids" --max-new-tokens 1 "$TMP/model"
    expect_run "ids_empty_item.forward.$ids" 2 "$CB_BIN/cb-build" --forward "$ids" "$TMP/model"
done
expect_run ids_spaces_ok 0 "$CB_BIN/cb-build" --forward "1 2 3" -o "$TMP/f.st" "$TMP/model"
# ---- 5d. a draft is checked against --tokenizer when one is given, else against its own ----
sed 's/vocab: 64/vocab: 300/' tests/cli/train/tiny.yml >"$TMP/v300.yml"
"$CB_BIN/cb" compile "$TMP/v300.yml" >"$TMP/v300.json" && "$CB_BIN/cb-build" -o "$TMP/vmodel" "$TMP/v300.json" &&
    "$CB_BIN/cb-build" --seed 3 -o "$TMP/draft" "$TMP/v300.json" || not_ok draft_setup "cb-build failed"
tok ab 256 >"$TMP/abc.json"
tok ba 256 >"$TMP/draft/tokenizer.json"
expect_run draft_tokenizer_flag 0 "$CB_BIN/cb-generate" --ids 1,2 --max-new-tokens 2 --tokenizer "$TMP/abc.json" \
    --draft "$TMP/draft" --quiet "$TMP/vmodel"
cp -r "$TMP/vmodel" "$TMP/tmodel" && cp "$TMP/abc.json" "$TMP/tmodel/tokenizer.json"
expect_run draft_tokenizer_own 3 "$CB_BIN/cb-generate" --ids 1,2 --max-new-tokens 2 --draft "$TMP/draft" "$TMP/tmodel"
expect_err_line draft_tokenizer_own.stderr "^cb-generate: $TMP/draft: the draft's tokenizer .* differs"
# ---- 5e. two cb-train into one directory at once: the second fails at start ----
sed -e 's/steps: 20/steps: 100000/' -e 's/save_every: 5/save_every: 100000/' tests/cli/train/tiny.yml >"$TMP/long.yml"
"$CB_BIN/cb" compile "$TMP/long.yml" >"$TMP/long.json"
"$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw -o "$TMP/busy" "$TMP/long.json" >/dev/null 2>"$TMP/first.err" &
first=$!
for _ in $(seq 300); do [ -s "$TMP/busy/metrics.jsonl" ] && break; sleep 0.1; done
expect_run second_train 2 timeout 20 "$CB_BIN/cb-train" --quiet --data "$TMP/train.tokens" --run adamw -o "$TMP/busy" "$TMP/long.json"
expect_err_line second_train.stderr "^cb-train: $TMP/busy: another cb-train is writing to this directory"
kill -TERM "$first" 2>/dev/null
wait "$first"
[ $? -eq 0 ] && ok second_train.first_unharmed || not_ok second_train.first_unharmed "$(cat "$TMP/first.err")"
