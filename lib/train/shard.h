/* shard.h: the optimizer state sharded across data-parallel ranks (ZeRO stage 1, with the
 * gradient reduction scattered: fsdp_sharding_strategy SHARD_GRAD_OP). The weight buffer
 * is cut into one contiguous part per rank (16-float aligned). A step sums the gradients
 * with a reduce-scatter, so each rank receives only the sum of its own part; the global
 * norm for clipping comes from the parts' norms; each rank updates its part of the
 * weights with its part of the optimizer state (which alone lives on its device: 1/W of
 * it); an all-gather hands every rank the whole updated weights. The update is the one
 * an unsharded step makes, element for element. For a checkpoint the parts of the state
 * are gathered into the optimizer's host buffers, the files a single process writes. */
#ifndef CB_TRAIN_SHARD_H
#define CB_TRAIN_SHARD_H

#include "backend/backend.h"
#include "dist/dist.h"
#include "train/fsdp.h"
#include "train/optimizer.h"

typedef struct cb_shard {
    cb_dist_parts parts;      /* every rank's part of the weight buffer */
    size_t begin, n;          /* this rank's part */
    cb_param_table table;     /* the parameters cut to this part, offsets from begin */
    cb_optimizer view;        /* the optimizer over the part (its settings, decay flags, step) */
    float *m, *v;             /* n each, on the device (v: AdamW only) */
} cb_shard;

/* This rank's part of o (o->m and o->v: the whole state, host memory, as loaded or fresh),
 * its state placed on be. */
int cb_shard_init(cb_shard *s, const cb_dist *d, cb_backend *be, const cb_optimizer *o, cb_error *e);
void cb_shard_free(cb_shard *s, cb_backend *be);

/* One step: g (the whole gradient of this rank's rows, device memory) summed over ranks
 * into this rank's part (f NULL; with f the passes summed it already, train/fsdp.h) and
 * multiplied by scale; clipped to the global norm max_norm (0: no clipping; *norm gets
 * the norm before clipping); this rank's part of w updated at lr; w gathered (with f:
 * what f keeps whole). o's step count advances as an unsharded step's would. */
int cb_shard_step(cb_shard *s, const cb_dist *d, cb_backend *be, cb_optimizer *o, cb_fsdp *f, float *w, float *g,
                  float scale, double max_norm, double lr, double *norm, cb_error *e);

/* Every rank's part of the state into o->m and o->v (host memory), for a checkpoint. */
int cb_shard_collect(cb_shard *s, const cb_dist *d, cb_backend *be, cb_optimizer *o, cb_error *e);

#endif
