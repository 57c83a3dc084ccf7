/* buckets.h: data parallel's gradient sums overlapped with the backward pass, in buckets
 * (PyTorch DDP's bucket_cap_mb). The backward pass runs the ops last to first, and a
 * parameter's gradient is final once the first op that uses it (the lowest index: a tied
 * embedding is used by the first op and the head) has run its backward. Parameters lie
 * in the weight buffer in op order, so after op i's backward a suffix of the gradient
 * buffer, g[ready_from[i] ..), is final; whenever the final part not yet sent reaches the
 * bucket size it is sent (cb_dist_sum_start) while the backward pass goes on, and the
 * rest when the pass ends. Each element is summed once, over the same ranks, so the
 * result is what one all-reduce after the pass gives (bit for bit on two ranks). */
#ifndef CB_DIST_BUCKETS_H
#define CB_DIST_BUCKETS_H

#include <stddef.h>
#include "dist/dist.h"
#include "model/params.h"
#include "model/program.h"

typedef struct cb_grad_buckets {
    const cb_dist *dist;
    cb_backend *be;
    float *g;            /* the gradient buffer of this step (device memory of be) */
    size_t n;            /* its floats */
    size_t *ready_from;  /* (n_ops) after op i's backward, g[ready_from[i] ..) is final */
    int n_ops;
    size_t cap;          /* floats a bucket gathers before it is sent (0: one sum at the end) */
    size_t sent_from;    /* g[sent_from ..) is sent */
    int buckets;         /* sums started this step (for the tests and the log) */
    int failed;          /* the first failure inside the pass, reported by finish */
    cb_error err;
} cb_grad_buckets;

/* The tensor of params (items in offset order) that holds offset off, or -1. */
int cb_param_tensor_at(const cb_param_table *params, size_t off);
/* ready_from (prog->n_ops): after op i's backward, the gradients g[ready_from[i] ..) are final. */
int cb_grad_ready_from(const cb_program *prog, const cb_param_table *params, size_t *ready_from, cb_error *e);

/* Plan the buckets of prog over params: cap_floats per bucket (0: no overlap). */
int cb_grad_buckets_init(cb_grad_buckets *b, const cb_dist *d, cb_backend *be, const cb_program *prog,
                         const cb_param_table *params, size_t cap_floats, cb_error *e);
void cb_grad_buckets_free(cb_grad_buckets *b);
/* A backward pass into g (n floats) whose gradients are to be summed begins. */
void cb_grad_buckets_begin(cb_grad_buckets *b, float *g, size_t n);
/* The pass's hook (pass.h on_backward): op has run its backward. */
void cb_grad_buckets_op_done(void *b, int op);
/* Send what is left and wait for every sum of the pass. */
int cb_grad_buckets_finish(cb_grad_buckets *b, cb_error *e);

#endif
