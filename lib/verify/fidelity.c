/* fidelity.c: NLL per batch through the training forward pass (the loss cb-train reports
 * as val_loss), so a fidelity gate and the training curve measure the same thing. Rows
 * run one at a time, as in compare.c (memory); every row has T targets, so the batch's
 * mean is the mean of the rows'. */
#include "verify/fidelity.h"

#include <stdio.h>
#include <stdlib.h>
#include "verify/batch_forward.h"

int cb_fidelity_nll(double *nll, double *mean, const cb_model *m, const cb_dataset *ds, int B, int T, int batches,
                    const char *who, const cb_verify_progress *progress, cb_error *e) {
    char what[64];
    snprintf(what, sizeof what, "fidelity: %s batches", who ? who : "model");
    int64_t vocab = json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
    CB_TRY(cb_dataset_check_vocab(ds, vocab, e));
    cb_batcher batcher;
    CB_TRY(cb_batcher_init(&batcher, ds, B, T, 0, 0, e));
    cb_batch_forward f;
    CB_TRY(cb_batch_forward_init(&f, m, 1, T, e));
    int32_t *x = cb_malloc((size_t)B * (size_t)T, sizeof *x, e);
    int32_t *y = cb_malloc((size_t)B * (size_t)T, sizeof *y, e);
    int rc = x && y ? CB_OK : CB_E_RUNTIME;
    double sum = 0;
    for (int b = 0; rc == CB_OK && b < batches; b++) {
        cb_batcher_next(&batcher, x, y);
        double rows = 0;
        for (int row = 0; row < B; row++)
            rows += cb_batch_forward_run(&f, x + (size_t)row * (size_t)T, y + (size_t)row * (size_t)T);
        nll[b] = rows / B;
        sum += nll[b];
        cb_verify_progress_step(progress, what, b + 1, batches);
    }
    *mean = batches > 0 ? sum / batches : 0;
    free(x);
    free(y);
    cb_batch_forward_free(&f);
    return rc;
}
