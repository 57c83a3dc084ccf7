/* buckets.c: gradient sums in buckets during the backward pass (buckets.h). */
#include "dist/buckets.h"

#include <stdlib.h>
#include <string.h>

int cb_param_tensor_at(const cb_param_table *t, size_t off) {
    int lo = 0, hi = t->n - 1; /* items lie in offset order */
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const cb_param *p = &t->items[mid];
        if (off < p->offset) hi = mid - 1;
        else if (off >= p->offset + p->numel) lo = mid + 1;
        else return mid;
    }
    return -1;
}

int cb_grad_ready_from(const cb_program *prog, const cb_param_table *params, size_t *ready_from, cb_error *e) {
    int *first_use = malloc((size_t)(params->n ? params->n : 1) * sizeof *first_use);
    if (!first_use) return cb_fail(e, CB_E_RUNTIME, "", "out of memory for the gradient buckets");
    /* each tensor's first user; one no op uses stays -1 (its gradient is final at once) */
    for (int k = 0; k < params->n; k++) first_use[k] = -1;
    for (int i = prog->n_ops - 1; i >= 0; i--)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            if (prog->ops[i].p[r] == CB_NO_PARAM) continue;
            int k = cb_param_tensor_at(params, prog->ops[i].p[r]);
            if (k >= 0) first_use[k] = i;
        }
    /* after op i's backward: the longest suffix of tensors whose first user is >= i */
    for (int i = 0; i < prog->n_ops; i++) {
        size_t from = params->total_floats;
        for (int k = params->n - 1; k >= 0 && first_use[k] >= i; k--) from = params->items[k].offset;
        ready_from[i] = from;
    }
    free(first_use);
    return CB_OK;
}

int cb_grad_buckets_init(cb_grad_buckets *b, const cb_dist *d, cb_backend *be, const cb_program *prog,
                         const cb_param_table *params, size_t cap_floats, cb_error *e) {
    memset(b, 0, sizeof *b);
    b->dist = d;
    b->be = be;
    b->cap = cap_floats;
    b->n_ops = prog->n_ops;
    b->ready_from = malloc((size_t)(prog->n_ops ? prog->n_ops : 1) * sizeof *b->ready_from);
    if (!b->ready_from) return cb_fail(e, CB_E_RUNTIME, "", "out of memory for the gradient buckets");
    int rc = cb_grad_ready_from(prog, params, b->ready_from, e);
    if (rc != CB_OK) cb_grad_buckets_free(b);
    return rc;
}

void cb_grad_buckets_free(cb_grad_buckets *b) {
    free(b->ready_from);
    b->ready_from = NULL;
}

void cb_grad_buckets_begin(cb_grad_buckets *b, float *g, size_t n) {
    b->g = g;
    b->n = n;
    b->sent_from = n;
    b->buckets = 0;
    b->failed = 0;
}

static void send(cb_grad_buckets *b, size_t from) {
    if (b->failed || from >= b->sent_from) return;
    if (cb_dist_sum_start(b->dist, b->be, b->g + from, b->sent_from - from, &b->err) != CB_OK) {
        b->failed = 1;
        return;
    }
    b->sent_from = from;
    b->buckets++;
}

void cb_grad_buckets_op_done(void *ctx, int op) {
    cb_grad_buckets *b = ctx;
    if (b->cap == 0 || op < 0 || op >= b->n_ops) return;
    size_t from = b->ready_from[op];
    if (from < b->sent_from && b->sent_from - from >= b->cap) send(b, from);
    else cb_dist_sum_poll(b->dist);
}

int cb_grad_buckets_finish(cb_grad_buckets *b, cb_error *e) {
    send(b, 0);
    if (b->failed) {
        cb_dist_sum_wait(b->dist, b->be, e); /* nothing stays in flight */
        *e = b->err;
        return e->code;
    }
    return cb_dist_sum_wait(b->dist, b->be, e);
}
