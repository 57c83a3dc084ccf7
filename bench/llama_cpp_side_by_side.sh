#!/usr/bin/env bash
# llama_cpp_side_by_side.sh: caramba's batch-1 decode and 512-token prefill beside llama.cpp's
# llama-bench (tg and pp512) on the same weights, per weight kind, interleaved in one run: each
# round runs, for every kind, caramba then llama.cpp, so both see the same machine load. The
# 110M Llama shape of bench/decode; the GGUF files are that shape exported by
#   cb compile bench/llama110m.yml > plan.json && cb-build -o m110 plan.json
#   cb-build --export-gguf g_q8_0 --gguf-type q8_0 m110      (and f32, f16, bf16, q4_0)
# llama.cpp is built beside the project, never in it.
#
#   bench/llama_cpp_side_by_side.sh [-t THREADS] [-r ROUNDS] [-n GEN] [-B DECODE_BIN] [-A BEFORE_BIN]
#                                   [-L "LLAMA_ARGS"] LLAMA_BENCH KIND=FILE.gguf...
# -A: another build of bench/decode (e.g. main's, before a change), timed the same way in the
# same rounds, just before DECODE_BIN, so that before and after see the same machine load;
# its figures are the columns b_tg and b_pp512 and the ratios after / before (its share of
# the bound is not shown: a build before 2026-12-07 measured the bound low, bench/bandwidth.h).
# -L: more llama-bench arguments (e.g. "--poll 0": its threads sleep instead of spinning
# while they wait, which a machine shared with other work favours).
# KIND is caramba's name (fp32, fp16, bf16, q8_0, q4_0). Prints each round's figures, then per
# kind the medians over rounds: decode tok/s of both, caramba's share of the memory bound that
# bench/decode measures beside its own timing, and the ratios caramba / llama.cpp; the load
# average before and after. caramba's pp512 is the median of 3 warm prefills (bench/decode -W 3),
# as llama-bench times its pp512 after a warm-up run; each round also prints the session's first,
# cold prefill (cb_pp_cold: its buffers and cache pages touched for the first time).
set -u -o pipefail
threads=2 rounds=3 gen=64 llama_args="" before_bin=""
root=$(cd "$(dirname "$0")/.." && pwd)
decode_bin=$root/build/rel/bench/decode
while getopts "t:r:n:B:A:L:" o; do
    case $o in
    t) threads=$OPTARG ;;
    r) rounds=$OPTARG ;;
    n) gen=$OPTARG ;;
    B) decode_bin=$OPTARG ;;
    A) before_bin=$OPTARG ;;
    L) llama_args=$OPTARG ;;
    *) echo "usage: $0 [-t THREADS] [-r ROUNDS] [-n GEN] [-B DECODE_BIN] [-A BEFORE_BIN] [-L LLAMA_ARGS] LLAMA_BENCH KIND=FILE.gguf..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -lt 2 ]; then
    echo "usage: $0 [-t THREADS] [-r ROUNDS] [-n GEN] [-B DECODE_BIN] [-A BEFORE_BIN] [-L LLAMA_ARGS] LLAMA_BENCH KIND=FILE.gguf..." >&2
    exit 2
fi
llama_bench=$1
shift
[ -x "$llama_bench" ] || { echo "$0: $llama_bench: not an executable llama-bench" >&2; exit 2; }
[ -x "$decode_bin" ] || { echo "$0: $decode_bin: not built (make build/rel/bench/decode)" >&2; exit 2; }
[ -z "$before_bin" ] || [ -x "$before_bin" ] || { echo "$0: $before_bin: not an executable" >&2; exit 2; }
kinds=() files=()
for a in "$@"; do
    k=${a%%=*} f=${a#*=}
    case $k in fp32 | fp16 | bf16 | q8_0 | q4_0) ;; *) echo "$0: $a: KIND must be fp32, fp16, bf16, q8_0 or q4_0" >&2; exit 2 ;; esac
    [ -f "$f" ] || { echo "$0: $f: no such GGUF file" >&2; exit 2; }
    kinds+=("$k") files+=("$f")
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# the value of column NAME of llama-bench's csv row matching n_prompt/n_gen
llama_ts() { # FILE.gguf PROMPT GEN -> tokens/s
    # shellcheck disable=SC2086 # LLAMA_ARGS is split on purpose
    "$llama_bench" -m "$1" -t "$threads" -p "$2" -n "$3" -r 3 -o csv $llama_args 2>/dev/null |
        awk -F, 'NR==1{for(i=1;i<=NF;i++){gsub(/"/,"",$i); c[$i]=i}; next}
                 {gsub(/"/,""); print $c["avg_ts"]; exit}'
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; threads $threads"
echo "llama.cpp: $llama_bench $llama_args; caramba: $decode_bin${before_bin:+; before: $before_bin}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# caramba's figures with build BIN: sets tg, frac, bw (decode) and cold, pp (prefill tokens/s)
cb_run() { # BIN KIND
    local line pre
    # decode: context 32, GEN steps, 3 repeats; the row of the table bench/decode prints
    line=$(OMP_NUM_THREADS=$threads "$1" -w "$2" -c fp16 -x 32 -n "$gen" -r 3 -s 0 2>/dev/null | awk -v k="$2" '$1==k && $2=="fp16"{print; exit}')
    tg=$(echo "$line" | awk '{print $4}') frac=$(echo "$line" | awk '{print $12}') bw=$(echo "$line" | awk '{print $9}')
    # prefill: a 512-token context; the session's first prefill (cold: its buffers touched
    # for the first time) and the median of 3 more in the same session (warm, the last
    # column), as llama-bench times pp512 after a warm-up run; the warm one is compared
    pre=$(OMP_NUM_THREADS=$threads "$1" -w "$2" -c fp16 -x 512 -n 1 -r 1 -s 0 -W 3 2>/dev/null | awk -v k="$2" '$1==k && $2=="fp16"{print $(NF-1), $NF; exit}')
    cold=${pre%% *} pre=${pre##* }
    cold=$(awk -v s="${cold%s}" 'BEGIN{if (s > 0) printf "%.1f", 512 / s; else print "nan"}')
    pp=$(awk -v s="${pre%s}" 'BEGIN{if (s > 0) printf "%.1f", 512 / s; else print "nan"}')
}

printf '%-5s %-5s %10s %8s %8s %8s %10s %10s %10s' round kind cb_tg cb_%bnd bw_GB/s ll_tg cb_pp_cold cb_pp512 ll_pp512
[ -n "$before_bin" ] && printf ' %8s %10s' b_tg b_pp512
printf '\n'
for r in $(seq 1 "$rounds"); do
    for i in "${!kinds[@]}"; do
        k=${kinds[$i]} f=${files[$i]}
        b_tg=nan b_pp=nan
        if [ -n "$before_bin" ]; then
            cb_run "$before_bin" "$k"
            b_tg=$tg b_pp=$pp
        fi
        cb_run "$decode_bin" "$k"
        ll_tg=$(llama_ts "$f" 0 "$gen")
        ll_pp=$(llama_ts "$f" 512 0)
        printf '%-5s %-5s %10s %8s %8s %8.1f %10s %10s %10.1f' "$r" "$k" "$tg" "$frac" "$bw" "${ll_tg:-0}" "$cold" "$pp" "${ll_pp:-0}"
        [ -n "$before_bin" ] && printf ' %8s %10s' "$b_tg" "$b_pp"
        printf '\n'
        echo "$k $tg ${frac%\%} $bw ${ll_tg:-nan} $pp ${ll_pp:-nan} ${b_tg:-nan} ${b_pp:-nan}" >>"$tmp/rows"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "medians over $rounds rounds ($threads threads; decode: context 32 + $gen tokens, tg$gen; prefill: 512 tokens, pp512)"
printf '%-5s %10s %8s %8s %7s %10s %10s %7s' kind cb_tg cb_%bnd ll_tg tg_x cb_pp512 ll_pp512 pp_x
[ -n "$before_bin" ] && printf ' %8s %7s %10s %7s' b_tg tg/b b_pp512 pp/b
printf '\n'
for k in "${kinds[@]}"; do
    awk -v k="$k" -v before="${before_bin:+1}" '
        function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
        $1 == k { n++; tg[n] = $2; fr[n] = $3; ll[n] = $5; pp[n] = $6; lp[n] = $7; btg[n] = $8; bpp[n] = $9 }
        END { a = med(tg, n); b = med(ll, n); c = med(pp, n); d = med(lp, n)
              printf "%-5s %10.1f %7.0f%% %8.1f %6.2fx %10.1f %10.1f %6.2fx", k, a, med(fr, n), b, (b > 0 ? a / b : 0), c, d, (d > 0 ? c / d : 0)
              if (before) { e = med(btg, n); f = med(bpp, n)
                            printf " %8.1f %6.2fx %10.1f %6.2fx", e, (e > 0 ? a / e : 0), f, (f > 0 ? c / f : 0) }
              printf "\n" }' "$tmp/rows"
done
