#!/usr/bin/env bash
# cb-build --export-gguf: a Llama-shaped model as DIR/model.gguf (the file's contents are
# checked by tests/unit/io/test_gguf.c), a bad type and a DBA model refused in one line with
# nothing written; with a llama.cpp build at hand ($CB_LLAMA_CPP_DIR), a model with the GPT-2
# tokenizer exported and run by llama-simple: the same prompt tokens and the same greedy text
# as cb-generate's (the tokenizer's vocabulary and merges went over whole).
. "$(dirname "$0")/lib.sh"

cat > "$TMP/m.yml" <<'YML'
version: 1
name: tiny
model:
  type: TransformerModel
  tie_embeddings: true
  embedder: {type: token, vocab_size: 40, d_model: 64}
  topology:
    type: StackedTopology
    layers:
      - type: ResidualTopology
        layers:
          - {type: RMSNormLayer, d_model: 64}
          - {type: AttentionLayer, d_model: 64, n_heads: 4, n_kv_heads: 2}
      - type: ResidualTopology
        layers:
          - {type: RMSNormLayer, d_model: 64}
          - {type: SwiGLULayer, d_model: 64, d_ff: 96}
      - {type: RMSNormLayer, d_model: 64}
YML
sed 's/n_kv_heads: 2}/mode: decoupled, sem_dim: 16, geo_dim: 32}/' "$TMP/m.yml" > "$TMP/dba.yml"
expect_cmd compile eval '"$CB_BIN/cb" compile "$TMP/m.yml" > "$TMP/plan.json"'
expect_cmd compile_dba eval '"$CB_BIN/cb" compile "$TMP/dba.yml" > "$TMP/dba.json"'
expect_run build 0 "$CB_BIN/cb-build" -o "$TMP/a" "$TMP/plan.json"
expect_run build_dba 0 "$CB_BIN/cb-build" -o "$TMP/d" "$TMP/dba.json"
expect_run export_q8_0 0 "$CB_BIN/cb-build" --export-gguf "$TMP/g" --gguf-type q8_0 "$TMP/a"
[ "$(head -c 4 "$TMP/g/model.gguf" 2>/dev/null)" = GGUF ] && ok magic || not_ok magic "no GGUF file"
expect_run export_again_replaces 0 "$CB_BIN/cb-build" --export-gguf "$TMP/g" "$TMP/a"
expect_run bad_type 2 "$CB_BIN/cb-build" --export-gguf "$TMP/x" --gguf-type q5_k "$TMP/a"
expect_err_line bad_type.msg 'gguf-type.*q5_k'
expect_run dba_refused 3 "$CB_BIN/cb-build" --export-gguf "$TMP/x" "$TMP/d"
expect_err_line dba_refused.msg 'only standard or GQA attention'
[ -e "$TMP/x" ] && not_ok nothing_written "$TMP/x exists" || ok nothing_written

# the GPT-2 tokenizer through llama.cpp
simple=""
for c in bin/llama-simple llama-simple; do
    [ -n "${CB_LLAMA_CPP_DIR:-}" ] && [ -x "$CB_LLAMA_CPP_DIR/$c" ] && simple="$CB_LLAMA_CPP_DIR/$c" && break
done
if [ -z "$simple" ]; then
    echo "skip - gguf.llama_cpp_gpt2_text: no llama.cpp: set CB_LLAMA_CPP_DIR to a llama.cpp build directory with llama-simple"
else
    sed 's/vocab_size: 40/vocab_size: 50257/; s/tie_embeddings: true/tie_embeddings: false/' "$TMP/m.yml" > "$TMP/g2.yml"
    printf 'defaults:\n  tokenizer: gpt2\ngroups:\n  - name: train\n    data: data/train.npy\n    runs:\n      - {id: train, mode: train, steps: 1}\n' >> "$TMP/g2.yml"
    prompt="Hello world, this is"
    if "$CB_BIN/cb" compile "$TMP/g2.yml" > "$TMP/g2.json" && "$CB_BIN/cb-build" -o "$TMP/g2" "$TMP/g2.json" 2>/dev/null &&
        "$CB_BIN/cb-build" --export-gguf "$TMP/g2g" "$TMP/g2" 2>/dev/null &&
        "$CB_BIN/cb-generate" --prompt "$prompt" --temperature 0 --max-new-tokens 12 "$TMP/g2" > "$TMP/cb.txt" 2>/dev/null &&
        "$simple" -m "$TMP/g2g/model.gguf" -n 12 "$prompt" > "$TMP/ll.txt" 2>/dev/null; then
        if [ "$(cat "$TMP/ll.txt")" = "$prompt$(cat "$TMP/cb.txt")" ]; then ok llama_cpp_gpt2_text
        else not_ok llama_cpp_gpt2_text "llama.cpp: $(head -c 200 "$TMP/ll.txt"); caramba: $prompt$(head -c 200 "$TMP/cb.txt")"; fi
    else
        not_ok llama_cpp_gpt2_text "a step failed"
    fi
fi
