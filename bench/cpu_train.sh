#!/bin/bash
# cpu_train.sh: training speed (forward, backward, AdamW, clipping, data loading) of cb-train
# against PyTorch training the same model with the same thread count, back to back:
#   tiny_sotu  presets/tiny_sotu.yml on SOTU GPT-2 tokens (B 8, T 128)
#   110M       bench/llama110m_train.yml on random ids below 32000 (B 4, T 256)
# Prints each one's tokens/s and the ratio.  [STEPS=12] [THREADS=2] bench/cpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-12}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# let OpenBLAS pick its kernels (bench/RESULTS.md, cpu_step) unless CORETYPE names a core
if [ -n "${CORETYPE:-}" ]; then export OPENBLAS_CORETYPE=$CORETYPE; else unset OPENBLAS_CORETYPE; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f data/sotu-gpt2/prepared.json ] || bin/cb-data prepare --quiet --corpus sotu --tokenizer r50k_base --val-from 2010 -o data/sotu-gpt2
/usr/bin/python3 -c "import numpy as np; np.save('$tmp/train.npy', np.random.default_rng(0).integers(0, 32000, 2000000, dtype=np.uint16))"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; THREADS=$THREADS;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OMP_WAIT_POLICY=$OMP_WAIT_POLICY; load $(cut -d' ' -f1-3 /proc/loadavg)"

# median of the logged tok_s after the first logged step
cb_rate() { grep -o '"tok_s":[0-9.]*' "$1" | tail -n +2 | cut -d: -f2 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

bench() { # label, plan, cb-train args, torch args
    local label=$1 plan=$2 cbargs=$3 targs=$4
    bin/cb-train --quiet --steps "$((STEPS + 1))" -o "$tmp/$label" $cbargs "$plan" >/dev/null
    local cb t
    cb=$(cb_rate "$tmp/$label/metrics.jsonl")
    t=$(PYTHONPATH=bench /usr/bin/python3 bench/cpu_train_torch.py --threads "$THREADS" --steps "$STEPS" $targs | sed -n 's/^tokens\/s: //p')
    awk -v l="$label" -v c="$cb" -v t="$t" 'BEGIN { printf "%-10s caramba %8.1f tokens/s   torch %8.1f tokens/s   ratio %.2f\n", l, c, t, c / t }'
}
bin/cb compile presets/tiny_sotu.yml > "$tmp/tiny.plan.json"
sed "s|BENCH_DATA|$tmp|" bench/llama110m_train.yml > "$tmp/110m.yml"
bin/cb compile "$tmp/110m.yml" > "$tmp/110m.plan.json"
bench tiny_sotu "$tmp/tiny.plan.json" "" \
    "--data data/sotu-gpt2/train.npy --vocab 50257 --d 256 --layers 6 --heads 8 --kv 4 --d-ff 768 --batch 8 --seq 128 --tied"
bench 110M "$tmp/110m.plan.json" "" \
    "--data $tmp/train.npy --vocab 32000 --d 768 --layers 12 --heads 12 --d-ff 2048 --batch 4 --seq 256"
