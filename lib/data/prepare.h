/* prepare.h: a corpus to a training dataset: documents split into train and validation,
 * tokenized, written as DIR/train.npy, DIR/val.npy and DIR/prepared.json, the directory
 * appearing complete or not at all (cb-data prepare). */
#ifndef CB_DATA_PREPARE_H
#define CB_DATA_PREPARE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "data/corpus.h"

/* The default share of documents for validation when no rule is given. */
#define CB_PREPARE_VAL_FRAC 0.1

typedef struct cb_prepare_opts {
    const char *corpus;    /* sotu, moby-dick, brown, a directory or a file (corpus.h) */
    const char *tokenizer; /* anything cb_tokenizer_open accepts (tokenizer/load.h) */
    double val_frac;       /* share of documents in validation, in (0, 1); 0 = unset */
    int val_from;          /* documents of this year and later are validation; 0 = unset */
    const char *out_dir;
} cb_prepare_opts;

enum { CB_SPLIT_TRAIN = 0, CB_SPLIT_VAL = 1 };

typedef struct cb_prepare_stats {
    size_t documents[2];   /* [CB_SPLIT_TRAIN], [CB_SPLIT_VAL] */
    size_t tokens[2];      /* end-of-text tokens included */
    size_t bytes[2];       /* clean UTF-8 text */
    size_t dropped_empty;  /* documents with no text left after cleaning */
    size_t vocab_size;
    int32_t eot_id;        /* -1: the tokenizer has no end-of-text token */
} cb_prepare_stats;

/* 1 when document d goes to validation under the rule of o: val_from compares the year
 * its name starts with (it must have one: else CB_E_INVALID); val_frac (or the default)
 * takes the document when the top 53 bits of cb_hash_str(0, name), as a fraction of
 * 2^53, fall below val_frac, so a document keeps its side whatever else is in the corpus. */
int cb_prepare_is_val(const cb_prepare_opts *o, const cb_document *d, int *is_val, cb_error *e);

/* The whole step. Documents are tokenized in corpus order, each followed by the
 * tokenizer's end-of-text token ("<|endoftext|>", Llama 3's "<|end_of_text|>") or, for a
 * tokenizer without one, by the tokens of "\n\n". Either split left empty is
 * CB_E_INVALID. stats may be NULL. */
int cb_prepare(const cb_prepare_opts *o, cb_prepare_stats *stats, cb_error *e);

#endif
