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
expect_err_line nokey_note "^cb-paper: no key in \$CB_TEST_API_KEY: drafting offline$"

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
