/* tokenizer_spec.h: a manifest's tokenizer mapping ({type: tiktoken, encoding: ...},
 * {type: hf, path: ...}, {type: gpt2[, path]}, {type: byte}) as the spec string that
 * cb_tokenizer_open (tokenizer/load.h) resolves. */
#ifndef CB_BENCH_TOKENIZER_SPEC_H
#define CB_BENCH_TOKENIZER_SPEC_H

#include <stddef.h>
#include <jansson.h>
#include "core/error.h"

int cb_bench_tokenizer_spec(const json_t *tok, char *spec, size_t cap, cb_error *e);

#endif
