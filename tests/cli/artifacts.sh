#!/usr/bin/env bash
# cb-artifacts on the results of cb-bench, a cb-train run directory and a verify.json:
# the folder NAME_TIMESTAMP with report.json, the CSVs, the charts (each PNG decodes to the
# size asked: its IHDR width and height), tables.tex (compiled with pdflatex) and tables.md;
# gnuplot missing or failing (one line, exit 4, the CSVs and report.json still written);
# bad input (one line, documented status, nothing written).
. "$(dirname "$0")/lib.sh"
ART="$CB_BIN/cb-artifacts"

cat > "$TMP/m.yml" <<'YML'
version: 1
name: tiny_art
model:
  type: TransformerModel
  tie_embeddings: true
  embedder: {type: token, vocab_size: 256, d_model: 32}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 32}
              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 32}
              - {type: SwiGLULayer, d_model: 32, d_ff: 64}
      - {type: RMSNormLayer, d_model: 32}
defaults:
  tokenizer: byte
groups:
  - name: paper
    data: DATA/train.npy
    runs:
      - {id: pretrain, mode: train, steps: 3, train: {block_size: 16, batch_size: 2, eval_every: 1, eval_iters: 1, log_every: 1, val_split: DATA/val.npy}}
    benchmarks:
      - id: perplexity
        config: {type: perplexity, dataset: DATA/val.npy, block_size: 32, num_batches: 3}
        models: [teacher, student]
      - id: latency
        config: {type: latency, prompt_lengths: [8, 16, 32], generation_lengths: [4], warmup_runs: 1, timed_runs: 3}
        models: [teacher, student]
      - id: memory
        config: {type: memory, sequence_lengths: [16, 32, 64], quantization_modes: [fp16, q8_0]}
        models: [teacher, student]
      - id: samples
        config: {type: generation, tokenizer: {type: byte}, prompts: ["The state of"], max_new_tokens: 6, temperature: 0}
        models: [student]
YML
sed -i "s|DATA|$TMP/data|" "$TMP/m.yml"
sed 's/n_heads: 4, n_kv_heads: 2}/n_heads: 4, n_kv_heads: 2, mode: decoupled, sem_dim: 8, geo_dim: 16}/' "$TMP/m.yml" > "$TMP/s.yml"
mkdir -p "$TMP/corpus" && cp README.md "$TMP/corpus/a.txt" && cp docs/DESIGN.md "$TMP/corpus/b.txt" &&
    cp man/cb-generate.1 "$TMP/corpus/c.txt" && cp man/cb-train.1 "$TMP/corpus/d.txt" || { not_ok setup "corpus"; exit 1; }
"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/plan.json" && "$CB_BIN/cb" compile "$TMP/s.yml" > "$TMP/splan.json" &&
"$CB_BIN/cb-data" prepare --corpus "$TMP/corpus" --tokenizer byte --val-frac 0.3 --quiet -o "$TMP/data" &&
"$CB_BIN/cb-build" -o "$TMP/teacher" "$TMP/plan.json" 2>/dev/null &&
"$CB_BIN/cb-build" --seed 3 -o "$TMP/student" "$TMP/splan.json" 2>/dev/null &&
"$CB_BIN/cb-train" --quiet -o "$TMP/runs/pretrain" "$TMP/plan.json" >/dev/null 2>&1 &&
"$CB_BIN/cb-bench" --quiet --model "teacher=$TMP/teacher" --model "student=$TMP/student" -o "$TMP/res.jsonl" "$TMP/plan.json" ||
    { not_ok setup "cb-build, cb-data, cb-train or cb-bench failed"; exit 1; }
printf '{\n  "cb_version": "0.1",\n  "kind": "verify",\n  "passed": true\n}\n' > "$TMP/verify.json"
export SOURCE_DATE_EPOCH=1700000000   # 2023-11-14 22:13:20 UTC
STAMP=20231114_221320

# png_size FILE: "W H" from the IHDR chunk (bytes 16..23, big-endian), after the signature
png_size() {
    local sig
    sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
    [ "$sig" = 89504e470d0a1a0a ] || { echo "not a PNG"; return; }
    od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'
}

expect_run all 0 "$ART" -o "$TMP/artifacts" --plan "$TMP/plan.json" --group paper "$TMP/res.jsonl" "$TMP/runs/pretrain" "$TMP/verify.json"
D="$TMP/artifacts/tiny_art_$STAMP"
[ "$(cat "$TMP/out")" = "$D" ] && ok all.prints_dir || not_ok all.prints_dir "stdout '$(cat "$TMP/out")', expected $D"
[ -s "$TMP/err" ] && not_ok all.quiet "$(head -c 300 "$TMP/err")" || ok all.quiet
missing=""
for f in report.json perplexity.csv latency.csv memory.csv summary.png latency_vs_context.png memory_scaling.png \
         tables.tex tables.md plots/summary.gp plots/latency_vs_context.gp plots/memory_scaling.gp; do
    [ -s "$D/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && ok all.files || not_ok all.files "missing:$missing"
[ "$(png_size "$D/summary.png")" = "1500 500" ] && ok png.summary_size || not_ok png.summary_size "$(png_size "$D/summary.png")"
[ "$(png_size "$D/latency_vs_context.png")" = "900 600" ] && ok png.latency_size ||
    not_ok png.latency_size "$(png_size "$D/latency_vs_context.png")"
[ "$(png_size "$D/memory_scaling.png")" = "900 600" ] && ok png.memory_size ||
    not_ok png.memory_size "$(png_size "$D/memory_scaling.png")"
# the charts can be drawn again from what the folder keeps
if (cd "$D" && rm summary.png && gnuplot plots/summary.gp 2>/dev/null) && [ "$(png_size "$D/summary.png")" = "1500 500" ]; then
    ok png.redraw; else not_ok png.redraw "gnuplot plots/summary.gp in $D"; fi

# report.json
teacher_sha=$(sha256sum "$TMP/teacher/plan.json" | cut -d' ' -f1)
jq -e --arg h "$teacher_sha" '.kind == "report" and .name == "tiny_art" and .created == "2023-11-14T22:13:20Z" and
       .plan_sha256 == $h and .results_plan_sha256 == [$h] and .manifest.name == "tiny_art" and .manifest.group == "paper" and
       .manifest.plan.kind == "plan" and (.machine.blas | length) > 0 and (.git.revision | test("^[0-9a-f]{40}$")) and
       (.inputs | length) == 3 and .plots == {"summary.png": "drawn", "latency_vs_context.png": "drawn",
       "memory_scaling.png": "drawn"} and .summary.reference == "teacher" and .summary.models == ["teacher", "student"] and
       (.timings.benchmarks | length) == 7 and .timings.benchmark_seconds > 0' "$D/report.json" >/dev/null &&
    ok report.fields || not_ok report.fields "$(jq -c 'del(.manifest.plan, .summary)' "$D/report.json" | head -c 600)"
# the comparison: student over teacher, from the records
jq -s -e '(.[0].summary.comparison[] | select(.metric == "Perplexity")) as $row |
       ([.[1:][] | select(.type == "perplexity")] | map({(.model): .values.perplexity}) | add) as $p |
       $row.values == $p and $row.better == "lower" and
       (($row.change.student - $p.student / $p.teacher) | if . < 0 then -. else . end) < 1e-12' \
    "$D/report.json" "$TMP/res.jsonl" >/dev/null && ok report.comparison_from_records ||
    not_ok report.comparison_from_records "$(jq -c '.summary.comparison[0]' "$D/report.json")"
jq -e '[.summary.comparison[].metric] == ["Perplexity", "Decode throughput (prompt 32)", "Prefill (prompt 32)",
       "KV cache, fp16", "Peak resident memory (64 tokens, fp16)", "KV cache, q8_0"] and
       (.summary.comparison[] | select(.metric == "KV cache, fp16") | .values == {"teacher": 128, "student": 112})' \
    "$D/report.json" >/dev/null && ok report.metrics || not_ok report.metrics "$(jq -c '[.summary.comparison[] | [.metric, .values]]' "$D/report.json")"
jq -e '.summary.training[0] | .run == "pretrain" and .step == 3 and (.val_loss | type) == "number" and .status == "finished"' \
    "$D/report.json" >/dev/null && ok report.training || not_ok report.training "$(jq -c '.summary.training' "$D/report.json")"
jq -e '.summary.verify == [{"cb_version": "0.1", "kind": "verify", "passed": true}] and
       (.summary.samples | length) == 1 and .summary.samples[0].model == "student"' "$D/report.json" >/dev/null &&
    ok report.verify_and_samples || not_ok report.verify_and_samples "$(jq -c '.summary.verify, .summary.samples' "$D/report.json")"

# CSVs: the header, one row per measured point, the numbers of the records
[ "$(head -1 "$D/perplexity.csv")" = "benchmark,model,dataset,block_size,batch_size,batches,tokens,loss,perplexity,loss_ci95_lo,loss_ci95_hi" ] &&
    [ "$(wc -l < "$D/perplexity.csv")" -eq 3 ] && ok csv.perplexity || not_ok csv.perplexity "$(cat "$D/perplexity.csv")"
[ "$(wc -l < "$D/latency.csv")" -eq 7 ] && head -1 "$D/latency.csv" | grep -q '^benchmark,model,cache_kind,prompt_length,generation_length,timed_runs,prefill_ms_mean,prefill_ms_p50,prefill_ms_p90' &&
    ok csv.latency || not_ok csv.latency "$(head -3 "$D/latency.csv")"
want_mem=$(jq -r 'select(.type == "memory") | [.model, .params.cache_kind, .params.sequence_length, .values.kv_bytes] | join(",")' "$TMP/res.jsonl")
got_mem=$(awk -F, 'NR > 1 { print $2 "," $3 "," $4 "," $6 }' "$D/memory.csv")
[ "$want_mem" = "$got_mem" ] && [ "$(wc -l < "$D/memory.csv")" -eq 13 ] && ok csv.memory_values ||
    not_ok csv.memory_values "want $(echo $want_mem) got $(echo $got_mem)"

# tables: booktabs with arrows and x, the same in Markdown
grep -q '^\\toprule$' "$D/tables.tex" && grep -q '^\\textbf{Metric} & \\textbf{teacher} & \\textbf{student} & \\textbf{Change} \\\\$' "$D/tables.tex" &&
    grep -q '^Perplexity \$\\downarrow\$ & .* & .* & [0-9.]*\$\\times\$ \\\\$' "$D/tables.tex" &&
    grep -q '^Decode throughput (prompt 32) (tok/s) \$\\uparrow\$' "$D/tables.tex" && ok tables.tex ||
    not_ok tables.tex "$(head -12 "$D/tables.tex")"
grep -q '^| Metric | teacher | student | Change |$' "$D/tables.md" && grep -q '^| Perplexity ↓ | .* | .* | [0-9.]*× |$' "$D/tables.md" &&
    grep -q '^| pretrain | 3 |' "$D/tables.md" && grep -q '^## Samples' "$D/tables.md" && ok tables.md ||
    not_ok tables.md "$(head -12 "$D/tables.md")"
if command -v pdflatex >/dev/null 2>&1; then
    mkdir -p "$TMP/tex" && printf '\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{%s}\n\\end{document}\n' \
        "$D/tables.tex" > "$TMP/tex/doc.tex"
    if (cd "$TMP/tex" && pdflatex -interaction=nonstopmode -halt-on-error doc.tex >/dev/null 2>&1) && [ -s "$TMP/tex/doc.pdf" ]; then
        ok tables.pdflatex; else not_ok tables.pdflatex "$(grep -m3 '^!' "$TMP/tex/doc.log")"; fi
elif [ "${CI:-}" = true ]; then not_ok tables.pdflatex "pdflatex missing in CI (texlive-latex-base is in DEB_PKGS)"
else echo "skip - $SCRIPT.tables.pdflatex: pdflatex not installed (apt-get install texlive-latex-base)"; fi

# the same second again replaces the folder; without --plan the name is "results"
expect_run again 0 "$ART" -o "$TMP/artifacts" --plan "$TMP/plan.json" "$TMP/res.jsonl"
[ "$(ls "$TMP/artifacts" | wc -l)" -eq 1 ] && jq -e '.inputs | length == 1' "$D/report.json" >/dev/null && ok again.replaced ||
    not_ok again.replaced "$(ls "$TMP/artifacts")"
expect_run unnamed 0 "$ART" -o "$TMP/artifacts" --name run_2 "$TMP/res.jsonl"
[ -d "$TMP/artifacts/run_2_$STAMP" ] && ok unnamed.name || not_ok unnamed.name "$(ls "$TMP/artifacts")"

# gnuplot missing: one line, exit 4, CSVs, tables and report.json written, no PNGs
mkdir -p "$TMP/nobin"
PATH="$TMP/nobin" expect_run no_gnuplot 4 "$ART" -o "$TMP/ng" "$TMP/res.jsonl"
expect_err_line no_gnuplot.line "^cb-artifacts: gnuplot not found on PATH \(install gnuplot-nox\): no charts drawn$"
N="$TMP/ng/results_$STAMP"
[ "$(cat "$TMP/out")" = "$N" ] && [ -s "$N/report.json" ] && [ -s "$N/perplexity.csv" ] && [ -s "$N/latency.csv" ] &&
    [ -s "$N/memory.csv" ] && [ -s "$N/tables.tex" ] && ! ls "$N"/*.png >/dev/null 2>&1 && ok no_gnuplot.rest_written ||
    not_ok no_gnuplot.rest_written "$(ls "$N" 2>&1)"
jq -e '.plots["summary.png"] | test("^not drawn: gnuplot not found")' "$N/report.json" >/dev/null &&
    ok no_gnuplot.report_says || not_ok no_gnuplot.report_says "$(jq -c .plots "$N/report.json")"
# gnuplot failing: its first message in the line
mkdir -p "$TMP/badbin" && printf '#!/bin/sh\necho "line 0: unknown or ambiguous terminal type" >&2\nexit 1\n' > "$TMP/badbin/gnuplot" &&
    chmod +x "$TMP/badbin/gnuplot"
PATH="$TMP/badbin:$PATH" expect_run bad_gnuplot 4 "$ART" -o "$TMP/bg" "$TMP/res.jsonl"
expect_err_line bad_gnuplot.line "^cb-artifacts: gnuplot failed on plots/summary.gp \(exit status 1\): line 0: unknown or ambiguous terminal type$"
[ -s "$TMP/bg/results_$STAMP/report.json" ] && [ -s "$TMP/bg/results_$STAMP/memory.csv" ] && ok bad_gnuplot.rest_written ||
    not_ok bad_gnuplot.rest_written "$(ls "$TMP/bg" 2>&1)"

# bad input: one line, the documented status, nothing written
printf 'hello\n' > "$TMP/text.txt"
expect_run not_results 3 "$ART" -o "$TMP/bad" "$TMP/res.jsonl" "$TMP/text.txt"
expect_err_line not_results.line "text.txt:1: not JSON"
[ -e "$TMP/bad" ] && [ -n "$(ls -A "$TMP/bad")" ] && not_ok not_results.nothing "$(ls -A "$TMP/bad")" || ok not_results.nothing
expect_run plan_as_result 3 "$ART" -o "$TMP/bad" "$TMP/plan.json"
expect_err_line plan_as_result.line "plan.json: a plan document, not cb-bench results, a verify.json or metrics"
head -3 "$TMP/res.jsonl" > "$TMP/mixed.jsonl" && echo '{"kind": "review"}' >> "$TMP/mixed.jsonl"
expect_run foreign_line 3 "$ART" -o "$TMP/bad" "$TMP/mixed.jsonl"
expect_err_line foreign_line.line "mixed.jsonl:4: neither a cb-bench record \(kind bench\) nor a metrics line \(step\)"
expect_run missing_file 2 "$ART" -o "$TMP/bad" "$TMP/nonexistent.jsonl"
expect_err_line missing_file.line "nonexistent.jsonl: cannot open"
mkdir -p "$TMP/empty_run"
expect_run not_a_run_dir 2 "$ART" -o "$TMP/bad" "$TMP/empty_run"
expect_err_line not_a_run_dir.line "empty_run: not a run directory \(no readable metrics.jsonl\)"
expect_run no_inputs 2 "$ART" -o "$TMP/bad"
grep -q "no result files" "$TMP/err" && ok no_inputs.line || not_ok no_inputs.line "$(cat "$TMP/err")"
expect_run unknown_group 2 "$ART" -o "$TMP/bad" --plan "$TMP/plan.json" --group nope "$TMP/res.jsonl"
expect_err_line unknown_group.line "the plan has no group nope \(it has: paper\)"
expect_run bad_name 2 "$ART" --name "../x" "$TMP/res.jsonl"
grep -q -- "--name: want letters" "$TMP/err" && ok bad_name.line || not_ok bad_name.line "$(cat "$TMP/err")"
printf 'x' > "$TMP/afile"
expect_run output_not_dir 2 "$ART" -o "$TMP/afile" "$TMP/res.jsonl"
expect_err_line output_not_dir.line "afile: not a directory$"

# the folder is what cb-paper and cb-review read (issue 19): an offline draft from it
# compiles, every number in it is in report.json or a CSV (exit 0), its tables and
# figures come from the folder, and the offline review of it is written
expect_run paper_offline 0 "$CB_BIN/cb-paper" --offline -q -o "$D/paper" -r "$D" "$TMP/m.yml"
jq -e '.untraced_numbers == [] and .figures == 3 and .result_tables == 3' "$TMP/out" >/dev/null &&
    ok paper_offline.summary || not_ok paper_offline.summary "$(head -c 400 "$TMP/out")"
missing=""
for f in paper.tex paper.pdf figures/summary.png figures/latency_vs_context.png figures/memory_scaling.png; do
    [ -s "$D/paper/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && ok paper_offline.files || not_ok paper_offline.files "missing:$missing"
perp_row=$(awk -F, 'NR == 2 { print $1 }' "$D/perplexity.csv")
grep -q "^$perp_row & " "$D/paper/paper.tex" && ok paper_offline.csv_rows || not_ok paper_offline.csv_rows "no row '$perp_row' from perplexity.csv"
run "$CB_BIN/cb-review" --offline -q -p "$D/paper" -r "$D" "$TMP/m.yml"
{ [ "$STATUS" -eq 0 ] || [ "$STATUS" -eq 1 ]; } && jq -e '.kind == "review" and (.score | type) == "number"' "$D/paper/review.json" >/dev/null &&
    ok review_offline || not_ok review_offline "status $STATUS: $(head -c 300 "$TMP/err")"
