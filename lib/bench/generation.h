/* generation.h: sample texts for the report: a model's continuation of each prompt, with
 * the manifest's sampling settings, and how fast it came. */
#ifndef CB_BENCH_GENERATION_H
#define CB_BENCH_GENERATION_H

#include "backend/backend.h"
#include "core/error.h"
#include "infer/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* Generate from the text prompt on a fresh session of m (cache kind kind, device be) whose
 * context holds the prompt and g->stop.max_new_tokens; the output's text is valid UTF-8
 * (invalid bytes replaced). */
int cb_bench_generate_text(const cb_model *m, cb_backend *be, cb_tokenizer *tok, const char *prompt,
                           const cb_generate_config *g, cb_kv_kind kind, cb_generate_output *out, cb_error *e);

#endif
