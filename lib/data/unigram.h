/* unigram.h: the unigram baseline of a dataset: token frequencies fitted on the training
 * split, scored on the validation split. A language model that has learnt anything beyond
 * word frequencies scores below it. */
#ifndef CB_DATA_UNIGRAM_H
#define CB_DATA_UNIGRAM_H

#include <stdint.h>
#include "core/error.h"
#include "data/dataset.h"

typedef struct cb_unigram_score {
    int64_t vocab_size;
    double smoothing;  /* added to every count (0.5: the Krichevsky-Trofimov estimator) */
    double val_nll;    /* mean negative log-likelihood per validation token, nats */
} cb_unigram_score;

/* vocab_size: the model's vocabulary (every id of both splits must be below it). */
int cb_unigram_score_of(const cb_dataset *train, const cb_dataset *val, int64_t vocab_size, double smoothing,
                        cb_unigram_score *out, cb_error *e);

#endif
