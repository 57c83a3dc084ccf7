/* batch_forward.h: one model compiled for a batch shape (B,T), run forward over batches
 * of tokens with every op's output kept (model/run.h), as model/trace.h does for one
 * sequence: what compare reads layer by layer and fidelity scores. Dropout is off. */
#ifndef CB_VERIFY_BATCH_FORWARD_H
#define CB_VERIFY_BATCH_FORWARD_H

#include <stdint.h>
#include "core/error.h"
#include "model/model.h"
#include "model/program.h"
#include "model/run.h"

typedef struct cb_batch_forward {
    const cb_model *model; /* borrowed */
    cb_program prog;
    cb_run run;
} cb_batch_forward;

int cb_batch_forward_init(cb_batch_forward *f, const cb_model *m, int B, int T, cb_error *e);
void cb_batch_forward_free(cb_batch_forward *f);

/* Forward over x (B,T); with y (B,T) returns the mean next-token cross-entropy, else 0. */
double cb_batch_forward_run(cb_batch_forward *f, const int32_t *x, const int32_t *y);

/* The output of op i of the last forward, (B,T,*width). */
const float *cb_batch_forward_output(const cb_batch_forward *f, int op, int *width);
/* The logits (B,T,V) of the last forward. */
const float *cb_batch_forward_logits(const cb_batch_forward *f);

/* The indices of the attention ops, in the order they run: *n of them into ops (at most
 * max). */
int cb_batch_forward_attention_ops(const cb_batch_forward *f, int *ops, int max);

#endif
