#!/usr/bin/env bash
# train-check.sh: `make train-check`: presets/tiny_sotu.yml trained from scratch on SOTU
# must reach a validation loss 1.0 nat per token below the unigram baseline within ten
# minutes of wall-clock time. Prints both figures and the time; exit 1 if either bar fails.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CB_CHECK_DIR:-build/train-check}
data=data/sotu-gpt2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out" data
[ -f "$data/prepared.json" ] || bin/cb-data prepare --quiet --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$data"
bin/cb compile presets/tiny_sotu.yml > "$out/plan.json"
rm -rf "$out/run"
start=$(date +%s)
bin/cb-train --quiet -o "$out/run" "$out/plan.json" >/dev/null
seconds=$(( $(date +%s) - start ))
unigram=$(bin/cb-data unigram --vocab 50257 "$data/train.npy" "$data/val.npy" | grep -o '"val_nll": [0-9.]*' | grep -o '[0-9.]*$')
trained=$(grep -o '"val_loss":[0-9.]*' "$out/run/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$')
awk -v u="$unigram" -v t="$trained" -v s="$seconds" -v cpu="$(lscpu | sed -n 's/^Model name: *//p')" 'BEGIN {
    printf "tiny_sotu on %s, %d threads: %.0f s\n", cpu, ENVIRON["OMP_NUM_THREADS"] ? ENVIRON["OMP_NUM_THREADS"] : 2, s
    printf "unigram val nll %.4f, trained val loss %.4f: %.3f nats below (bar 1.0); time bar 600 s\n", u, t, u - t
    exit !(u - t >= 1.0 && s <= 600) }'
