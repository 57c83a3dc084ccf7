/* fsdp.c: fsdp's gradients and weights kept to each rank's part during the passes (fsdp.h). */
#include "train/fsdp.h"

#include <stdlib.h>
#include <string.h>
#include "backend/pass.h"
#include "dist/buckets.h"

/* ---- buffers released by region ---- */

/* A reserved buffer of n floats spans whole 64 KiB (any page size up to that), so a
 * release that reaches its end can give back the last page too. */
static size_t reserved_floats(size_t n) { return ((n ? n : 1) + 16383) / 16384 * 16384; }

float *cb_fsdp_buffer(cb_backend *be, size_t n, int *reserved, cb_error *e) {
    float *x = be->reserve ? be->reserve(be, reserved_floats(n) * sizeof(float), e) : NULL;
    *reserved = x != NULL;
    if (!x && be->reserve && be->device == CB_DEVICE_CPU) return NULL; /* address space is never short there */
    return x ? x : be->alloc(be, (n ? n : 1) * sizeof(float), e);
}

void cb_fsdp_buffer_free(cb_backend *be, float *x, size_t n) {
    if (!x) return;
    if (be->reserve) be->unreserve(be, x, reserved_floats(n) * sizeof(float));
    else be->free(be, x);
}

void cb_fsdp_release(cb_backend *be, float *x, size_t from, size_t to) {
    if (from >= to) return;
    if (be->release) be->release(be, x, from * sizeof(float), to * sizeof(float));
    else be->zero(be, x + from, (to - from) * sizeof(float));
}

size_t cb_fsdp_resident(cb_backend *be, const float *x, size_t n) {
    return be->resident ? be->resident(be, x, n * sizeof(float)) : n * sizeof(float);
}

/* [from, to) less this rank's part released */
static void release_others(cb_fsdp *f, float *x, size_t from, size_t to) {
    if (to == f->n && f->reserved) to = reserved_floats(f->n); /* the last page too */
    cb_fsdp_release(f->be, x, from, to < f->own_lo ? to : f->own_lo);
    cb_fsdp_release(f->be, x, from > f->own_hi ? from : f->own_hi, to);
}

/* ---- the plan ---- */

static int by_start(const void *a, const void *b) {
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Which blocks' weights can be sharded: block s's range [lo, hi) spans the tensors its ops
 * use; it is sharded when every tensor in it is used by s's ops alone (or by none), so no
 * op outside the block reads it while it is released. The ranges of the rest are kept. */
static int plan_units(cb_fsdp *f, const cb_program *prog, const cb_param_table *params, cb_error *e) {
    enum { UNUSED = -3, SHARED = -2 };
    int *user = malloc((size_t)(params->n ? params->n : 1) * sizeof *user);
    size_t *ranges = malloc(2 * (size_t)(prog->n_segments + 1) * sizeof *ranges);
    f->kept = malloc(2 * (size_t)(prog->n_segments + 2) * sizeof *f->kept);
    if (!user || !ranges || !f->kept) {
        free(user);
        free(ranges);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    for (int k = 0; k < params->n; k++) user[k] = UNUSED;
    for (int i = 0; i < prog->n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            if (prog->ops[i].p[r] == CB_NO_PARAM) continue;
            int k = cb_param_tensor_at(params, prog->ops[i].p[r]), s = prog->ops[i].segment;
            if (k < 0) continue;
            user[k] = user[k] == UNUSED ? (s >= 0 ? s : SHARED) : user[k] == s ? s : SHARED;
        }
    int n_ranges = 0;
    for (int s = 0; s < prog->n_segments; s++) {
        size_t lo = SIZE_MAX, hi = 0;
        for (int k = 0; k < params->n; k++)
            if (user[k] == s) {
                const cb_param *p = &params->items[k];
                if (p->offset < lo) lo = p->offset;
                if (p->offset + p->numel > hi) hi = p->offset + p->numel;
            }
        int alone = lo < hi;
        for (int k = 0; alone && k < params->n; k++) {
            const cb_param *p = &params->items[k];
            if (p->offset < hi && p->offset + p->numel > lo && user[k] != s && user[k] != UNUSED) alone = 0;
        }
        if (!alone) continue;
        f->unit_lo[s] = lo;
        f->unit_hi[s] = hi;
        ranges[2 * n_ranges] = lo;
        ranges[2 * n_ranges + 1] = hi;
        n_ranges++;
    }
    f->n_units = n_ranges;
    /* what is kept whole: the buffer less the sharded ranges (which do not overlap) */
    qsort(ranges, (size_t)n_ranges, 2 * sizeof *ranges, by_start);
    size_t at = 0;
    for (int u = 0; u <= n_ranges; u++) {
        size_t next = u < n_ranges ? ranges[2 * u] : f->n;
        if (next > at) {
            f->kept[2 * f->n_kept] = at;
            f->kept[2 * f->n_kept + 1] = next;
            f->n_kept++;
        }
        if (u < n_ranges) at = ranges[2 * u + 1];
    }
    free(user);
    free(ranges);
    return CB_OK;
}

int cb_fsdp_init(cb_fsdp *f, const cb_dist *d, cb_backend *be, const cb_program *prog, const cb_param_table *params,
                 const cb_dist_parts *parts, int full, cb_error *e) {
    memset(f, 0, sizeof *f);
    f->dist = d;
    f->be = be;
    f->parts = parts;
    f->own_lo = parts->begin[d->rank];
    f->own_hi = f->own_lo + parts->count[d->rank];
    f->n = params->total_floats;
    f->full = full;
    f->n_segments = prog->n_segments;
    f->n_ops = prog->n_ops;
    f->unit_lo = calloc((size_t)prog->n_segments + 1, sizeof *f->unit_lo);
    f->unit_hi = calloc((size_t)prog->n_segments + 1, sizeof *f->unit_hi);
    f->ready_from = malloc(((size_t)prog->n_ops + 1) * sizeof *f->ready_from);
    f->block_start = calloc((size_t)prog->n_ops + 1, 1);
    int rc = !f->unit_lo || !f->unit_hi || !f->ready_from || !f->block_start ? cb_fail(e, CB_E_RUNTIME, "", "out of memory") : CB_OK;
    if (rc == CB_OK) rc = cb_grad_ready_from(prog, params, f->ready_from, e);
    if (rc == CB_OK) rc = plan_units(f, prog, params, e);
    for (int s = 0; rc == CB_OK && s < prog->n_segments; s++) f->block_start[prog->segments[s].first] = 1;
    if (rc != CB_OK) cb_fsdp_free(f);
    return rc;
}

void cb_fsdp_free(cb_fsdp *f) {
    free(f->unit_lo);
    free(f->unit_hi);
    free(f->kept);
    free(f->ready_from);
    free(f->block_start);
    memset(f, 0, sizeof *f);
}

/* ---- weights ---- */

/* x[from, to) backed before it is written, where the device needs that (backend.h commit) */
static int commit(cb_fsdp *f, float *x, size_t from, size_t to, cb_error *e) {
    if (!f->be->commit || from >= to) return CB_OK;
    return f->be->commit(f->be, x, from * sizeof(float), to * sizeof(float), e);
}

int cb_fsdp_commit_part(cb_fsdp *f, float *x, cb_error *e) { return commit(f, x, f->own_lo, f->own_hi, e); }

void cb_fsdp_shard_weights(cb_fsdp *f, float *w) {
    for (int s = 0; f->full && s < f->n_segments; s++) release_others(f, w, f->unit_lo[s], f->unit_hi[s]);
}

int cb_fsdp_gather_weights(cb_fsdp *f, float *w, cb_error *e) {
    for (int s = 0; f->full && s < f->n_segments; s++)
        if (f->unit_lo[s] < f->unit_hi[s]) {
            CB_TRY(commit(f, w, f->unit_lo[s], f->unit_hi[s], e));
            CB_TRY(cb_dist_gather_region(f->dist, f->be, w, f->parts, f->unit_lo[s], f->unit_hi[s], e));
        }
    return CB_OK;
}

int cb_fsdp_gather_kept(cb_fsdp *f, float *w, cb_error *e) {
    if (!f->full) return cb_dist_gather_region(f->dist, f->be, w, f->parts, 0, f->n, e);
    for (int k = 0; k < f->n_kept; k++)
        CB_TRY(cb_dist_gather_region(f->dist, f->be, w, f->parts, f->kept[2 * k], f->kept[2 * k + 1], e));
    return CB_OK;
}

/* ---- the passes ---- */

static void measure(cb_fsdp *f) {
    if (!f->measuring) return;
    size_t w = cb_fsdp_resident(f->be, f->w, f->n), g = f->g ? cb_fsdp_resident(f->be, f->g, f->n) : 0;
    if (w > f->peak_w) f->peak_w = w;
    if (g > f->peak_g) f->peak_g = g;
}

void cb_fsdp_begin(cb_fsdp *f, float *w, float *g) {
    f->w = w;
    f->g = g;
    f->summed_from = f->n;
    /* the gradients outside the sharded blocks are written by ops outside them, at any
       time of the backward pass: backed for the whole of it */
    for (int k = 0; g && !f->failed && k < f->n_kept; k++)
        if (commit(f, g, f->kept[2 * k], f->kept[2 * k + 1], &f->err) != CB_OK) f->failed = 1;
}

void cb_fsdp_on_block(void *ctx, int s, int event) {
    cb_fsdp *f = ctx;
    if (f->failed || s < 0 || s >= f->n_segments || f->unit_lo[s] >= f->unit_hi[s]) return;
    const size_t lo0 = f->unit_lo[s], hi0 = f->unit_hi[s];
    if (event == CB_BLOCK_BACKWARD && f->g && commit(f, f->g, lo0, hi0, &f->err) != CB_OK) {
        f->failed = 1; /* the block's gradients are written next */
        return;
    }
    if (!f->full) return;
    if (event == CB_BLOCK_FORWARD || event == CB_BLOCK_BACKWARD) {
        if (commit(f, f->w, lo0, hi0, &f->err) != CB_OK ||
            cb_dist_gather_region(f->dist, f->be, f->w, f->parts, lo0, hi0, &f->err) != CB_OK)
            f->failed = 1;
        return;
    }
    measure(f); /* the block is whole here: the weights' peak */
    /* the device may still read the block (a GPU's queue): the release waits for it */
    if (!f->be->unified && f->be->synchronize(f->be, &f->err) != CB_OK) {
        f->failed = 1;
        return;
    }
    /* with its sharded neighbours, which are released now too (one block is whole at a
       time): the pages that straddle two blocks go back as well */
    size_t lo = f->unit_lo[s], hi = f->unit_hi[s];
    if (s > 0 && f->unit_hi[s - 1] == lo && f->unit_lo[s - 1] < lo) lo = f->unit_lo[s - 1];
    if (s + 1 < f->n_segments && f->unit_lo[s + 1] == hi && f->unit_hi[s + 1] > hi) hi = f->unit_hi[s + 1];
    release_others(f, f->w, lo, hi);
}

/* g[from, summed_from) summed over the ranks; the rest of it but this rank's part released */
static void sum_down_to(cb_fsdp *f, size_t from) {
    if (f->failed || from >= f->summed_from) return;
    measure(f); /* the region not yet summed is largest here: the gradients' peak */
    if (cb_dist_sum_region(f->dist, f->be, f->g, f->parts, from, f->summed_from, &f->err) != CB_OK) {
        f->failed = 1;
        return;
    }
    /* up to the end: past summed_from all but this rank's part reads zero already, so the
       pages that straddle this region and the last one go back as well */
    release_others(f, f->g, from, f->n);
    f->summed_from = from;
    f->sums++;
}

void cb_fsdp_on_backward(void *ctx, int op) {
    cb_fsdp *f = ctx;
    /* at each block's first op (the block's gradients are final) the final suffix is summed;
       the ops outside blocks are summed with the next block, or at the end */
    if (f->g && op >= 0 && op < f->n_ops && f->block_start[op]) sum_down_to(f, f->ready_from[op]);
}

int cb_fsdp_finish(cb_fsdp *f, cb_error *e) {
    if (f->g) sum_down_to(f, 0);
    f->g = NULL;
    return cb_fsdp_check(f, e);
}

int cb_fsdp_check(cb_fsdp *f, cb_error *e) {
    if (!f->failed) return CB_OK;
    f->failed = 0;
    *e = f->err;
    return e->code;
}
