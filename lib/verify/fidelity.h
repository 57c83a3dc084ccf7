/* fidelity.h: the loss gate: a model's negative log-likelihood (mean next-token
 * cross-entropy, nats per token) over batches of held-out or training tokens. */
#ifndef CB_VERIFY_FIDELITY_H
#define CB_VERIFY_FIDELITY_H

#include "core/error.h"
#include "data/dataset.h"
#include "model/model.h"
#include "verify/progress.h"

/* nll (batches): the mean NLL of each batch of (B,T) windows of ds, taken in order from
 * its start (as compare and cb-train's evaluation take them). *mean: their mean. who
 * ("teacher", "student") names the model to progress. A token
 * past m's vocabulary is CB_E_INVALID. */
int cb_fidelity_nll(double *nll, double *mean, const cb_model *m, const cb_dataset *ds, int B, int T, int batches,
                    const char *who, const cb_verify_progress *progress, cb_error *e);

#endif
