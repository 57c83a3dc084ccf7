/* unigram.c: add-constant smoothed token frequencies, scored in one pass. */
#include "data/unigram.h"

#include <math.h>
#include <stdlib.h>

int cb_unigram_score_of(const cb_dataset *train, const cb_dataset *val, int64_t vocab_size, double smoothing,
                        cb_unigram_score *out, cb_error *e) {
    if (vocab_size <= 0 || vocab_size > (int64_t)1 << 31)
        return cb_fail(e, CB_E_USAGE, "--vocab", "vocabulary size %lld out of range", (long long)vocab_size);
    if (!(smoothing > 0)) return cb_fail(e, CB_E_USAGE, "--smoothing", "must be positive");
    CB_TRY(cb_dataset_check_vocab(train, vocab_size, e));
    CB_TRY(cb_dataset_check_vocab(val, vocab_size, e));
    if (val->n_tokens == 0) return cb_fail(e, CB_E_INVALID, val->path, "no validation tokens");
    double *counts = cb_calloc((size_t)vocab_size, sizeof *counts, e);
    if (!counts) return e->code;
    for (size_t i = 0; i < train->n_tokens; i++) counts[cb_dataset_token(train, i)] += 1;
    double total = (double)train->n_tokens + smoothing * (double)vocab_size;
    double nll = 0;
    for (size_t i = 0; i < val->n_tokens; i++) nll -= log((counts[cb_dataset_token(val, i)] + smoothing) / total);
    free(counts);
    out->vocab_size = vocab_size;
    out->smoothing = smoothing;
    out->val_nll = nll / (double)val->n_tokens;
    return CB_OK;
}
