/* model_dir.h: what a generating tool needs from a model directory besides the weights
 * (opened by io/model_dir.h, included here): the tokenizer it goes with, and its
 * end-of-text ids. */
#ifndef CB_INFER_MODEL_DIR_H
#define CB_INFER_MODEL_DIR_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* The tokenizer of a model: spec when not NULL; else the model directory's own files
 * (tokenizer.json, or encoder.json + vocab.bpe); else the tokenizer its plan's runs were
 * trained with (train.tokenizer); names resolve in cb_tokenizer_open (tokenizer/load.h).
 * *found 0 (and CB_OK) when there is none. used (n bytes) gets where it came from. A tokenizer with more ids than the model's vocabulary:
 * CB_E_INVALID. */
int cb_model_tokenizer(cb_tokenizer *t, const char *spec, const char *dir, const cb_model *m, int *found, char *used,
                       size_t n, cb_error *e);

/* The id of the added token whose text is content exactly, or -1. */
int32_t cb_tokenizer_special_id(const cb_tokenizer *t, const char *content);

/* 1 when a and b map every id to the same bytes (the same vocabulary). */
int cb_tokenizer_same(const cb_tokenizer *a, const cb_tokenizer *b);

/* End-of-text ids: generation_config.json's eos_token_id in dir when there is one, else
 * the tokenizer's end tokens (<|end_of_text|>, <|endoftext|>, <|eot_id|>, <|eom_id|>,
 * <|im_end|>) it has. t may be NULL. Returns how many went into ids (at most max). */
int cb_model_eos_ids(const char *dir, const cb_tokenizer *t, int32_t *ids, int max);

#endif
