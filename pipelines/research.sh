#!/usr/bin/env bash
# research.sh: what `cb research` runs: the write -> review -> (style fixes, or new
# experiments) -> write again loop of the seed, with the manifest's research: settings.
#   pipelines/research.sh [options] manifest
# Leaves in the paper folder: paper.tex (with versions/paper_iterN_*.tex), review_iterN.json,
# proposed_*.yml (from cb-review, checked by cb-validate) and research_loop_result.json.
# Options: -o|--output-dir DIR, -r|--results DIR, --max-iterations N, --offline, and the
# endpoint options of cb-paper (--base-url, --arxiv-url, --semantic-scholar-url, --timeout,
# --retries, --backoff-ms, --api-key-env), passed to cb-paper and (where they apply) cb-review.
# Exit: 0 approved; 1 not approved when the loop ended; 2 usage; else the failing tool's status.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CB_BIN:-$root/bin}
say() { [ -n "$quiet" ] || echo "cb research: $*" >&2; }
die() { echo "cb research: $*" >&2; exit "${2:-2}"; }
command -v jq >/dev/null || die "jq not found (apt-get install jq)" 4

paper_dir="" results="" max_iter="" offline="" quiet=""
paper_opts=() review_opts=()
while [ $# -gt 0 ]; do
    case $1 in
    -o|--output-dir) paper_dir=${2:?}; shift 2 ;;
    -r|--results) results=${2:?}; shift 2 ;;
    --max-iterations) max_iter=${2:?}; shift 2
        [[ $max_iter =~ ^[1-9][0-9]*$ ]] || die "--max-iterations: an integer >= 1, got '$max_iter'" ;;
    --offline) offline=1; shift ;;
    -q|--quiet) quiet=1; shift ;;
    --base-url|--timeout|--retries|--backoff-ms|--api-key-env|--model)
        paper_opts+=("$1" "${2:?}"); review_opts+=("$1" "${2:?}"); shift 2 ;;
    --arxiv-url|--semantic-scholar-url) paper_opts+=("$1" "${2:?}"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die "unknown option: $1 (try 'cb research --help')" ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || die "expected one manifest file"
manifest=$1

plan=$(mktemp); trap 'rm -f "$plan"' EXIT
"$bin/cb" compile "$manifest" >"$plan" || exit $?
setting() { jq -r "(.research // {}) as \$r | \$r.$1 // $2" "$plan"; }
[ -n "$max_iter" ] || max_iter=$(setting max_iterations 5)
per_iter=$(setting max_experiments_per_iteration 2)
max_total=$(setting max_total_experiments 5)
min_score=$(setting min_score_to_approve 7.5)
auto_score=$(setting auto_approve_score 9.0)
auto_run=$(jq -r '.research.auto_run_experiments | if . == null then true else . end' "$plan")
save_all=$(jq -r '.research.save_all_versions | if . == null then true else . end' "$plan")
[ -n "$paper_dir" ] || paper_dir=$(jq -r '.paper.output_dir // ("artifacts/" + .name + "/paper")' "$plan")
[ -n "$results" ] || results=$(dirname "$paper_dir")
[ -n "$offline" ] && { paper_opts+=(--offline); review_opts+=(--offline); }
mkdir -p "$paper_dir/versions"

iterations='[]' experiments='[]' total=0 stopped_by=max_iterations approved=false final_score=null
for ((iter = 1; iter <= max_iter; iter++)); do
    say "iteration $iter: write"
    upd=()
    [ -f "$paper_dir/paper.tex" ] && upd=(--update)
    [ -f "$paper_dir/review_iter$((iter - 1)).json" ] && upd+=(--review "$paper_dir/review_iter$((iter - 1)).json")
    "$bin/cb-paper" -q "${paper_opts[@]}" "${upd[@]}" -o "$paper_dir" -r "$results" "$manifest" >"$paper_dir/.draft_iter$iter.json"
    st=$?
    [ $st -le 1 ] || die "iteration $iter: cb-paper failed (exit $st)" $st
    version=null
    if [ "$save_all" = true ]; then
        version=versions/paper_iter${iter}_$(date -u +%Y%m%d_%H%M%S).tex
        cp "$paper_dir/paper.tex" "$paper_dir/$version"
        version="\"$version\""
    fi
    say "iteration $iter: review"
    review=$paper_dir/review_iter$iter.json
    "$bin/cb-review" -q "${review_opts[@]}" -p "$paper_dir" -r "$results" -o "$review" "$manifest"
    st=$?
    [ $st -le 1 ] || die "iteration $iter: cb-review failed (exit $st)" $st
    score=$(jq -r .score "$review")
    action=$(jq -r .action "$review")
    final_score=$score
    say "iteration $iter: score $score, $action"
    # experiments the reviewer proposed with a valid manifest, within the budgets
    ran='[]'
    if [ "$action" = new_experiment ]; then
        n=0
        while IFS= read -r file; do
            [ -n "$file" ] || continue
            if [ "$n" -ge "$per_iter" ] || [ "$total" -ge "$max_total" ]; then
                ran=$(jq -c --arg f "$file" '. + [{manifest: $f, status: "over_budget"}]' <<<"$ran"); continue
            fi
            n=$((n + 1)); total=$((total + 1))
            status=pending
            if [ "$auto_run" = true ]; then
                if "$bin/cb" run "$paper_dir/$file" >"$paper_dir/run_${file%.yml}.log" 2>&1; then status=ran; else status=run_failed; fi
            fi
            ran=$(jq -c --arg f "$file" --arg s "$status" '. + [{manifest: $f, status: $s}]' <<<"$ran")
        done < <(jq -r '.proposed_experiments[] | .manifest // empty' "$review")
        experiments=$(jq -c --argjson r "$ran" '. + $r' <<<"$experiments")
    fi
    iterations=$(jq -c --argjson i "$iter" --argjson s "$score" --arg a "$action" --arg r "review_iter$iter.json" \
        --argjson v "$version" --argjson e "$ran" --argjson ok "$(jq .approved "$review")" \
        '. + [{iteration: $i, score: $s, action: $a, approved: $ok, review: $r, paper_version: $v, experiments: $e}]' <<<"$iterations")
    if awk -v s="$score" -v a="$auto_score" 'BEGIN { exit !(s >= a) }'; then
        approved=true stopped_by=auto_approved; break
    fi
    if [ "$action" = approve ] && awk -v s="$score" -v m="$min_score" 'BEGIN { exit !(s >= m) }'; then
        approved=true stopped_by=approved; break
    fi
done
rm -f "$paper_dir"/.draft_iter*.json

result=$(jq -n --argjson it "$iterations" --argjson ex "$experiments" --arg sb "$stopped_by" \
    --argjson ok "$approved" --argjson fs "$final_score" --argjson mi "$max_iter" --argjson ms "$min_score" \
    --argjson aas "$auto_score" \
    '{cb_version: "0.1", kind: "research_loop_result", approved: $ok, stopped_by: $sb, final_score: $fs,
      iterations: $it, experiments: $ex,
      settings: {max_iterations: $mi, min_score_to_approve: $ms, auto_approve_score: $aas}}') ||
    die "cannot make research_loop_result.json" 4
tmp=$paper_dir/.research_loop_result.json.tmp
printf '%s\n' "$result" >"$tmp" && mv "$tmp" "$paper_dir/research_loop_result.json" || die "cannot write research_loop_result.json"
say "done: $stopped_by after $(jq length <<<"$iterations") iteration(s), approved $approved"
[ "$approved" = true ]
