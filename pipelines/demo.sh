#!/usr/bin/env bash
# demo.sh: what `make demo` runs: the pipeline as far as this build goes, on the presets.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CB_DEMO_DIR:-build/demo}
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

step "compile every preset (parse | lower | validate)"
for m in presets/*.yml; do
    bin/cb compile "$m" > "$out/$(basename "$m" .yml).plan.json"
    printf '  %-28s %s parameters\n' "$(basename "$m")" \
        "$(grep -m1 -o '"params": [0-9]*' "$out/$(basename "$m" .yml).plan.json" | tail -c +11)"
done

step "the DBA preset as a tree"
bin/cb compile presets/dba.yml --print-plan

step "build the DBA model from its plan (seeded initialisation)"
bin/cb-build --seed 1337 -o "$out/dba-model" "$out/dba.plan.json"
ls -l "$out/dba-model"

step "one forward pass, tracing every attention layer"
bin/cb-build --forward 464,1181,286,8900,286,262,4479 --trace '*attn' -o "$out/dba-trace.safetensors" "$out/dba-model"
grep -ao '"blocks[^"]*attn"\|"logits"' "$out/dba-trace.safetensors" | sort -u | sed 's/^/  traced /'

step "a Llama block model through the Hugging Face layout and back"
bin/cb-build --seed 7 -o "$out/llama-model" "$out/llama_block.plan.json"
bin/cb-build --export-hf "$out/llama-hf" "$out/llama-model"
bin/cb-build --from "$out/llama-hf" -o "$out/llama-again"
ls "$out/llama-hf"
echo
echo "demo outputs are in $out"
