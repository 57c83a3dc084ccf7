#!/usr/bin/env bash
# cb-paper: the offline draft (plan and results only), its number check, versions and
# --update; then the drafting agent against tests/fake_api.c playing the model, arXiv and
# Semantic Scholar on 127.0.0.1: tools, citations, retries, and every failure it scripts.
. "$(dirname "$0")/lib.sh"
. tests/cli/paper/fake.sh
P="$CB_BIN/cb-paper"
M=tests/cli/paper/m.yml
R=tests/cli/paper/results
unset OPENAI_API_KEY

expect_run help 0 "$P" --help
expect_out help_usage '^usage: cb-paper'

# --- offline -------------------------------------------------------------------
O=$TMP/a/paper
expect_run offline 0 "$P" --offline -q -o "$O" -r "$R" "$M"
expect_out offline_kind '"kind": "paper_draft"'
expect_out offline_traced '"untraced_numbers": \[\]'
for f in paper.tex references.bib paper.pdf figures/loss.png; do
    if [ -s "$O/$f" ] || [ "$f" = references.bib -a -e "$O/$f" ]; then ok "offline_file_${f//[\/.]/_}"; else not_ok "offline_file_${f//[\/.]/_}" "missing $O/$f"; fi
done
if grep -q 'Parameters & ' "$O/paper.tex" && grep -q 'KV cache values per token & ' "$O/paper.tex"; then ok offline_arch_table; else
    not_ok offline_arch_table "no architecture rows in paper.tex"; fi
if grep -q '^teacher & 123.06 & 5321.4 & 6144' "$O/paper.tex"; then ok offline_csv_table; else not_ok offline_csv_table "the CSV row is not in paper.tex"; fi
if grep -q 'includegraphics.*figures/loss.png' "$O/paper.tex"; then ok offline_figure; else not_ok offline_figure "no figure"; fi
if grep -q '\\cite' "$O/paper.tex"; then not_ok offline_no_cites "an offline draft cites something"; else ok offline_no_cites; fi
# every number in the body is in a result file: pdftotext-free check through the tool's own flag list (above)
# and a direct one: 123.06 is in bench.csv, 17587712-like totals are in the plan
if grep -q 'Model width \$d\$ & 64' "$O/paper.tex"; then ok offline_plan_number; else not_ok offline_plan_number "d_model 64 not shown"; fi

# no key in the environment and no --offline: a note, then the offline draft
expect_run nokey 0 env -u CB_TEST_API_KEY "$P" -o "$TMP/b/paper" -r "$R" "$M"
expect_err_line nokey_note '^cb-paper: no key in \$CB_TEST_API_KEY: drafting offline$'

# versions: max_versions 2 in the manifest keeps the two newest earlier drafts
"$P" --offline -q -o "$O" -r "$R" "$M" >/dev/null 2>&1
"$P" --offline -q -o "$O" -r "$R" "$M" >/dev/null 2>&1
"$P" --offline -q -o "$O" -r "$R" "$M" >/dev/null 2>&1
n=$(ls "$O/versions" 2>/dev/null | grep -c '^paper_v[0-9][0-9][0-9]_[0-9]\{8\}_[0-9]\{6\}\.tex$')
if [ "$n" -eq 2 ] && ls "$O/versions" | grep -q paper_v003 && ! ls "$O/versions" | grep -q paper_v001; then ok versions_pruned; else
    not_ok versions_pruned "versions/: $(ls "$O/versions" 2>&1 | tr '\n' ' ')"; fi

# the number check: a hand-written claim with a number in no result file is flagged
# (exit 1, one line naming file and line), and --update keeps it while refreshing results
sed -i 's/^The measurements above are those/The student is 97.3 percent as good. The measurements above are those/' "$O/paper.tex"
cp -r "$R" "$TMP/r2"
printf 'student,140.5,6200.0,2304\n' >>"$TMP/r2/bench.csv"
expect_run update_flags 1 "$P" --offline --update -q -o "$O" -r "$TMP/r2" "$M"
expect_err_line update_flag_line "^cb-paper: $O/paper\.tex:[0-9]+: the number 97\.3 is not in any result file$"
if grep -q '97.3 percent' "$O/paper.tex" && grep -q '^student & 140.5 & 6200.0' "$O/paper.tex"; then ok update_keeps_structure; else
    not_ok update_keeps_structure "the hand-written line or the new row is missing"; fi
expect_out update_lists '"text": "97.3"'
expect_run update_nodraft 2 "$P" --offline --update -q -o "$TMP/none/paper" -r "$R" "$M"

# LaTeX tools are checked before anything else: nothing is written without pdflatex
run env PATH=/nonexistent "$P" --offline -o "$TMP/c/paper" -r "$R" "$M"
expect_status no_pdflatex 4
expect_err_line no_pdflatex_line '^cb-paper: pdflatex not found on PATH'
if [ -e "$TMP/c/paper/paper.tex" ]; then not_ok no_pdflatex_nothing "paper.tex written"; else ok no_pdflatex_nothing; fi

# a bad manifest: exit 3, its error with file:line:col
printf 'version: 1\nname: x\npaper:\n  title: t\n  paper_type: novel\n' >"$TMP/bad.yml"
expect_run bad_manifest 3 "$P" --offline -o "$TMP/d/paper" "$TMP/bad.yml"
if grep -q 'bad.yml:5:15: paper.paper_type' "$TMP/err"; then ok bad_manifest_where; else not_ok bad_manifest_where "$(head -c 300 "$TMP/err")"; fi
expect_run bad_option 2 "$P" --timeout 0 "$M"

# --- online, against the scripted server ------------------------------------------
# the happy path: tool calls, both citation APIs, a 429 with Retry-After and a 500 retried,
# a LaTeX error refused, a duplicate citation and an unknown one refused, a final answer
O=$TMP/on/paper
start_fake paper_ok
run "$P" $(fake_opts) -o "$O" -r "$R" "$M"
stop_fake
expect_status online 0
expect_out online_mode '"mode": "online"'
expect_out online_citations '"citations": 2,'
expect_out online_steps '"steps": 4,'
expect_out online_tokens '"prompt_tokens": 10000,'
expect_out online_cost '"cost": 0\.0[0-9]*'
expect_out online_traced '"untraced_numbers": \[\]'
log=$(cat "$FAKE_LOG/log.txt")
if grep -q ' 429 auth=ok' <<<"$log" && grep -q ' 500 auth=ok' <<<"$log" && [ "$(grep -c 'POST /v1/chat/completions 200 auth=ok' <<<"$log")" -eq 4 ]; then
    ok online_retries_and_auth; else not_ok online_retries_and_auth "server log: $log"; fi
if grep -q 'GET /arxiv?search_query=all:grouped-query%20attention&start=0&max_results=' <<<"$log" &&
   grep -q 'GET /s2/paper/search?query=KV%20cache&limit=' <<<"$log"; then ok online_search_requests; else
    not_ok online_search_requests "server log: $log"; fi
if grep -q 'retrying in 1000 ms' "$TMP/err"; then ok online_retry_after; else not_ok online_retry_after "$(head -c 300 "$TMP/err")"; fi
# references.bib: two entries, each from an API answer, no duplicate of GQA (arXiv and S2 both have it)
if [ "$(grep -c '^@' "$O/references.bib")" -eq 2 ] && grep -q '^@misc{ainslie2023training,' "$O/references.bib" &&
   grep -q 'eprint = {2305.13245}' "$O/references.bib" && grep -q '^@misc{kwon2023efficient,' "$O/references.bib" &&
   grep -q 'Retrieved from arXiv (arxiv:2305.13245)' "$O/references.bib"; then ok online_bib; else
    not_ok online_bib "references.bib: $(cat "$O/references.bib")"; fi
if grep -q 'cite{ainslie2023training}' "$O/paper.tex" && grep -q 'validation loss of 4.9375' "$O/paper.tex" &&
   ! grep -q badcommand "$O/paper.tex" && ! grep -q 'etc/passwd' "$O/paper.tex"; then ok online_draft; else not_ok online_draft "paper.tex lacks the agent's sections"; fi
if [ -s "$O/paper.pdf" ]; then ok online_pdf; else not_ok online_pdf "no paper.pdf"; fi
tr=$O/agent_trace.jsonl
if grep -q '"event":"tool_call","name":"add_citation"' "$tr" && grep -q 'is not a paper returned by a search' "$tr" &&
   grep -q 'already in references.bib' "$tr" && grep -q 'the arguments are not a JSON object' "$tr" &&
   [ "$(grep '"event":"tool_call"' "$tr" | grep -c 'the text was not accepted')" -eq 2 ] && grep -q '"stopped_by":"finished"' "$tr"; then ok online_trace; else
    not_ok online_trace "trace lacks expected events"; fi
# what went back to the model: the tool results of the first turn are in the second request
if grep -q '"tool_call_id":"call_2"' "$FAKE_LOG"/body_5.txt 2>/dev/null || grep -lq '"tool_call_id":"call_2"' "$FAKE_LOG"/body_*.txt; then
    ok online_tool_results_sent; else not_ok online_tool_results_sent "no tool result in later requests"; fi
# the key goes to the chat endpoint only: not to arXiv or Semantic Scholar, and never in a body
if grep -q 'GET /arxiv.* auth=none$' <<<"$log" && grep -q 'GET /s2/.* auth=none$' <<<"$log"; then ok online_key_not_to_search; else
    not_ok online_key_not_to_search "server log: $log"; fi
no_key online_no_key "$O" "$TMP/on" "$FAKE_LOG"

# a Semantic Scholar key goes to Semantic Scholar alone, in its x-api-key header
S2KEY=s2-test-key-$$
export FAKE_API_EXPECT_S2_KEY=$S2KEY
start_fake paper_ok
run env SEMANTIC_SCHOLAR_API_KEY=$S2KEY "$P" $(fake_opts) -o "$TMP/s2/paper" -r "$R" "$M"
stop_fake
log=$(cat "$FAKE_LOG/log.txt")
if grep -q 'GET /s2/.* auth=s2key$' <<<"$log" && grep -q 'GET /arxiv.* auth=none$' <<<"$log" &&
   ! grep -q 'POST .* auth=s2key$' <<<"$log"; then ok s2_key_header; else not_ok s2_key_header "server log: $log"; fi
if grep -rq "$S2KEY" "$TMP/s2" "$TMP/out" "$TMP/err"; then not_ok s2_key_not_written "the key is in an output"; else ok s2_key_not_written; fi

# failures: one clear line, the right status, the earlier draft untouched
cp "$O/paper.tex" "$TMP/before.tex"
fail_case() { # NAME SCRIPT STATUS PATTERN [extra options]
    local name=$1 script=$2 want=$3 pat=$4; shift 4
    start_fake "$script"
    run "$P" $(fake_opts) --retries 1 -o "$O" -r "$R" "$@" "$M"
    stop_fake
    expect_status "$name" "$want"
    if grep -qE -- "$pat" "$TMP/err" && [ "$(grep -c '^cb-paper: ' "$TMP/err" | tr -d ' ')" -ge 1 ]; then ok "${name}_message"; else
        not_ok "${name}_message" "stderr '$(head -c 300 "$TMP/err")' does not match '$pat'"; fi
    if cmp -s "$O/paper.tex" "$TMP/before.tex"; then ok "${name}_draft_kept"; else not_ok "${name}_draft_kept" "paper.tex changed"; fi
    expect_empty_out "${name}_quiet"
    no_key "${name}_no_key" "$O"
}
fail_case server_500 paper_500 4 'chat endpoint: HTTP 500.*\(retries used up\)$'
fail_case malformed paper_malformed 3 'chat endpoint: the answer is not JSON'
fail_case no_choices paper_nochoices 3 'chat endpoint: no choices in the answer'
fail_case refused_401 paper_401 3 'chat endpoint: HTTP 401: .*\[redacted\]'
fail_case closed paper_close 4 'connection closed without an answer.*\(retries used up\)$'
fail_case slow paper_slow 4 'chat endpoint: no answer within 1000 ms$' --timeout 1
# not retried: no retry said on stderr, one request in the server's log (it logs a request
# when it takes it, before the delay); counted, not timed, so a loaded machine cannot fail it
posts=$(grep -c 'POST /v1/chat/completions' "$FAKE_LOG/log.txt" 2>/dev/null)
if [ "$posts" = 1 ] && ! grep -q 'retrying' "$TMP/err"; then ok slow_not_retried; else
    not_ok slow_not_retried "$posts requests; stderr: $(head -c 300 "$TMP/err")"; fi
# nothing listening: a port the fake server held and gave back
start_fake paper_500 1 1; port_url=$FAKE_URL; stop_fake
run "$P" -q --base-url "$port_url/v1" --retries 0 -o "$O" -r "$R" "$M"
expect_status unreachable 4
expect_err_line unreachable_line 'chat endpoint: unreachable'

# a number the model made up is flagged, and the draft is still written (exit 1)
start_fake paper_untraced
run "$P" $(fake_opts) -o "$TMP/u/paper" -r "$R" "$M"
stop_fake
expect_status untraced 1
if grep -q 'the number 97.3 is not in any result file' "$TMP/err" && grep -q 'these numbers are not in any result file.*97.3' "$TMP/u/paper/agent_trace.jsonl"; then
    ok untraced_flagged; else not_ok untraced_flagged "$(head -c 300 "$TMP/err")"; fi

# citation services failing (bad XML from arXiv, 429s from Semantic Scholar) are reported to the
# model and in the summary; the draft is still made
start_fake paper_badxml
run "$P" $(fake_opts) --retries 1 -o "$TMP/x/paper" -r "$R" "$M"
stop_fake
expect_status search_errors 0
expect_out search_errors_count '"search_errors": 2'
if grep -q 'arXiv: the answer is not XML' "$TMP/err" && grep -q 'Semantic Scholar: HTTP 429' "$TMP/err"; then ok search_errors_warned; else
    not_ok search_errors_warned "$(head -c 400 "$TMP/err")"; fi

# a step budget ends the loop early; the draft so far is kept and the summary says why
start_fake paper_ok
run "$P" -q $(fake_opts) --max-steps 1 -o "$TMP/s/paper" -r "$R" "$M"
stop_fake
expect_status budget 0
expect_out budget_stopped '"stopped_by": "max_steps"'
expect_out budget_steps '"steps": 1,'

# a token budget (paper.max_tokens) ends the loop too: the first answer used 1100
sed '0,/^  max_steps: 12$/s//  max_steps: 12\n  max_tokens: 1000/' "$M" >"$TMP/tokens.yml"
cp -r tests/cli/paper/results "$TMP/tok_results"
start_fake paper_ok
run "$P" -q $(fake_opts) -o "$TMP/tok_results/paper" "$TMP/tokens.yml"
stop_fake
expect_status token_budget 0
expect_out token_budget_stopped '"stopped_by": "max_tokens"'

# the preset with a paper: section drafts offline (no results yet) and compiles, and its
# structural review runs
run "$P" --offline -q -o "$TMP/preset/paper" -r "$TMP/empty_results" presets/llama32_1b_dba_paper.yml
expect_status preset_offline 0
expect_out preset_traced '"untraced_numbers": \[\]'
if [ -s "$TMP/preset/paper/paper.pdf" ] && grep -q 'Parameters & 1235814400' "$TMP/preset/paper/paper.tex"; then ok preset_pdf; else
    not_ok preset_pdf "no PDF, or the parameter count is missing"; fi
run "$CB_BIN/cb-review" --offline -q -p "$TMP/preset/paper" -r "$TMP/empty_results" -o - presets/llama32_1b_dba_paper.yml
expect_status preset_review 1
expect_out preset_review_action '"action": "new_experiment"'
