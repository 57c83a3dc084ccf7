#!/bin/bash
# attention_cuda.sh: the mixed-precision attention core alone, forward + backward:
# caramba's flash kernels (bench/attention_cuda.c) and PyTorch's SDPA in bf16 with
# is_causal (bench/attention_cuda_torch.py: its default kernel, then flash and cuDNN) in
# the same call on the same GPU, at the T1 model's shapes (B 16 at T 1024, B 4 at 4096,
# H 12, head widths 64 and 128; GQA with 4 kv heads; DBA of the same total query-key
# width). Prints each one's times, caramba / SDPA speed ratios (SDPA's time over
# caramba's: above 1 is faster) and DBA's time over standard attention's.
# Then caramba's forward again as 8 warps of one m-tile (attention_cuda -l 1) against the
# default 4 warps of two.
#   [N=10] bench/attention_cuda.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10}
CB=${CB:-build/rel/bench/attention_cuda}
[ -x "$CB" ] || CB_QUIET_CONFIG=1 make -s "$CB" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
echo "== caramba (flash kernels, bf16 tiles, float32 in and out)"
"$CB" -n "$N" | tee "$tmp/cb"
echo "== PyTorch SDPA (bf16, is_causal)"
python3 bench/attention_cuda_torch.py -n "$N" | tee "$tmp/torch"
echo "== ratios"
awk '
    FNR == NR { if ($1 == "case") { cb_f[$2] = $4; cb_b[$2] = $6; cb_t[$2] = $8 } next }
    $1 == "case" && ($2 in cb_t) {
        printf "%-16s speed vs SDPA %-8s fwd %.2f bwd %.2f fwd+bwd %.2f\n", $2, $NF, $4 / cb_f[$2], $6 / cb_b[$2], $8 / cb_t[$2]
    }
    END {
        for (n in cb_t) if (n ~ /^dba_/) { s = n; sub(/^dba_/, "std_", s)
            if (s in cb_t) printf "%-16s time / %s: fwd %.2f bwd %.2f fwd+bwd %.2f\n", n, s, cb_f[n] / cb_f[s], cb_b[n] / cb_b[s], cb_t[n] / cb_t[s] }
    }' "$tmp/cb" "$tmp/torch"
echo "== caramba, forward up to width 128 as 8 warps of one m-tile (-l 1): fwd time / default's"
"$CB" -n "$N" -l 1 | tee "$tmp/cb8" | awk 'FNR == NR { if ($1 == "case") f[$2] = $4; next }
    $1 == "case" && ($2 in f) { printf "%-16s fwd %.3f ms (8 warps) vs %.3f ms (4 warps x 2 m-tiles): %.2f\n", $2, $4, f[$2], $4 / f[$2] }' "$tmp/cb" -
