/* fsdp.h: fsdp's memory during the passes (ZeRO stages 2 and 3). The shard (train/shard.h)
 * gives each rank one part of the weight buffer; this keeps each rank's gradients, and with
 * FULL_SHARD its blocks' weights, to that part, by region, as the passes go:
 *
 * - Gradients (SHARD_GRAD_OP and FULL_SHARD): after a block's backward, the gradients that
 *   became final (a suffix of the buffer, dist/buckets.h cb_grad_ready_from) are summed
 *   over the ranks with a reduce-scatter of that region, and the region less this rank's
 *   part is released. So a rank holds its part plus the region not yet summed: about one
 *   block (and the head or tied embeddings, whose gradients are final late). Every
 *   micro-batch sums: a rank's part then already holds the sum of the earlier ones, and
 *   the other ranks' copies of it were released to zero, so the next sum adds each rank's
 *   new gradients once.
 * - Weights (FULL_SHARD): the blocks of the program (cb_program.segments) whose parameters
 *   lie in a range no other op uses are sharded: outside its passes a rank keeps only its
 *   part of such a block; before the block's forward, and again before its backward, the
 *   block's range is all-gathered, and released after. Weights outside those blocks
 *   (embeddings, final norm, head, weights shared across blocks) stay whole on every rank
 *   and are gathered after each optimizer step.
 *
 * Released memory goes back to the device where the backend can reserve memory by region
 * (backend.h reserve/release: the CPU's pages, a GPU's granules through CUDA's virtual
 * memory management, committed here just before a block's passes write them); elsewhere
 * the buffers are plain allocations and a released region is only zeroed (same results,
 * no memory saved). The gathers and sums are blocking: none overlaps compute yet. */
#ifndef CB_TRAIN_FSDP_H
#define CB_TRAIN_FSDP_H

#include <stddef.h>
#include "backend/backend.h"
#include "dist/dist.h"
#include "model/params.h"
#include "model/program.h"

typedef struct cb_fsdp {
    const cb_dist *dist;
    cb_backend *be;
    const cb_dist_parts *parts; /* the shard's parts of the weight buffer */
    size_t own_lo, own_hi;      /* this rank's part */
    size_t n;                   /* floats in the buffer */
    int full;                   /* FULL_SHARD: blocks' weights released outside their passes */
    int reserved;               /* the buffers came reserved from cb_fsdp_buffer (the caller sets it) */
    int n_segments;
    size_t *unit_lo, *unit_hi;  /* (n_segments) block s's range when no op outside it uses it,
                                   else empty: sharded (its gradients backed just before its
                                   backward; with FULL_SHARD its weights too) */
    int n_units;                /* blocks with a range */
    size_t *kept;               /* [kept[2k], kept[2k+1]): the rest, backed throughout (n_kept) */
    int n_kept;
    int n_ops;
    size_t *ready_from;         /* (n_ops) cb_grad_ready_from */
    unsigned char *block_start; /* (n_ops) 1: the first op of a block */
    float *w, *g;               /* the buffers of the pass */
    size_t summed_from;         /* g[summed_from ..) is summed for this micro-batch */
    int sums;                   /* reduce-scatters this step */
    int measuring;              /* record the resident bytes (the first step) */
    size_t peak_w, peak_g;      /* the largest resident bytes of w and g seen while measuring */
    int failed;                 /* the first failure inside a pass, reported by cb_fsdp_finish */
    cb_error err;
} cb_fsdp;

/* Plan the regions of prog over params for parts (this rank's part [own_lo, own_hi));
 * full: FULL_SHARD. */
int cb_fsdp_init(cb_fsdp *f, const cb_dist *d, cb_backend *be, const cb_program *prog, const cb_param_table *params,
                 const cb_dist_parts *parts, int full, cb_error *e);
void cb_fsdp_free(cb_fsdp *f);

/* A buffer of n floats whose regions can be released, zeroed: reserved (in whole 64 KiB)
 * where the backend can (*reserved 1), else a plain allocation (a GPU whose driver has no
 * virtual memory management); and its end. */
float *cb_fsdp_buffer(cb_backend *be, size_t n, int *reserved, cb_error *e);
void cb_fsdp_buffer_free(cb_backend *be, float *x, size_t n);
/* x[from, to) reads zero again; its whole pages go back where the buffer was reserved. */
void cb_fsdp_release(cb_backend *be, float *x, size_t from, size_t to);
/* Bytes of x (n floats) holding memory now: the device's count, or n floats when it has
 * none (a plain allocation is all resident). */
size_t cb_fsdp_resident(cb_backend *be, const float *x, size_t n);

/* This rank's part of x backed (once, at the start: it is never released). */
int cb_fsdp_commit_part(cb_fsdp *f, float *x, cb_error *e);
/* FULL_SHARD: release the sharded blocks' weights but this rank's part (w whole before);
 * gather them whole again (for a checkpoint). */
void cb_fsdp_shard_weights(cb_fsdp *f, float *w);
int cb_fsdp_gather_weights(cb_fsdp *f, float *w, cb_error *e);
/* After an optimizer step updated this rank's part of w: the weights every rank keeps
 * whole gathered (all of w for SHARD_GRAD_OP). */
int cb_fsdp_gather_kept(cb_fsdp *f, float *w, cb_error *e);

/* The passes of a micro-batch read w and add gradients into g: set the hooks (run.h
 * on_block and on_backward, with f as their context) before, finish after backward (what
 * is left summed, the first failure reported). */
void cb_fsdp_begin(cb_fsdp *f, float *w, float *g);
void cb_fsdp_on_block(void *f, int segment, int event);
void cb_fsdp_on_backward(void *f, int op);
int cb_fsdp_finish(cb_fsdp *f, cb_error *e);
/* A forward pass alone (evaluation) reports its failure here. */
int cb_fsdp_check(cb_fsdp *f, cb_error *e);

#endif
