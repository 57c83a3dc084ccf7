/* blockwise.h: what blockwise distillation (cb-train(1), phases blockwise and upcycle)
 * needs besides the attention pairs of upcycle/attn_pair.h: the optimizer over one
 * layer's tensors, the distance between the student's and the teacher's attention outputs
 * with its gradient, and the cache of the teacher's attention inputs and outputs per
 * batch (cache_teacher_outputs), in memory or on disk, so the teacher runs once per batch for every layer. */
#ifndef CB_TRAIN_BLOCKWISE_H
#define CB_TRAIN_BLOCKWISE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "model/program.h"
#include "train/optimizer.h"

/* An optimizer over the tensors of one op of a program only: a view of full (its
 * settings and its state buffers, laid out like the weights) whose parameter table lists
 * that op's tensors; its step count is its own. [*lo, *hi) is the span of the weights
 * they occupy (what the gradient clipping of this layer covers). */
typedef struct cb_layer_optimizer {
    cb_optimizer view;
    cb_param_table table;
} cb_layer_optimizer;
int cb_layer_optimizer_init(cb_layer_optimizer *lo_opt, const cb_optimizer *full, const cb_op *op, size_t *lo,
                            size_t *hi, cb_error *e);
void cb_layer_optimizer_free(cb_layer_optimizer *lo_opt);

/* The mean absolute (mse 0) or mean squared (mse 1) difference of s from t over n
 * values; ds (n) receives its gradient with respect to s. Summed in double. */
double cb_blockwise_loss(float *ds, const float *s, const float *t, size_t n, int mse);

/* The teacher's attention inputs and outputs of every layer for one training batch,
 * n_layers x 2 x (B,T,d) floats, kept for the later layers: in memory when all the
 * batches a layer can take (max_batches) fit in mem_budget bytes, else on disk in
 * run_dir/teacher_cache/batch-NNNNNNNN.bin (a header naming the shape, then the floats;
 * written atomically; a file of another shape is not used). */
typedef struct cb_teacher_cache {
    char dir[4200];      /* run_dir/teacher_cache */
    int n_layers, B, T, d;
    size_t batch_floats;
    float **mem;         /* in memory: one buffer per batch (NULL until computed); NULL: on disk */
    long n_mem;
} cb_teacher_cache;
int cb_teacher_cache_init(cb_teacher_cache *c, const char *run_dir, int n_layers, int B, int T, int d,
                          long max_batches, size_t mem_budget, cb_error *e);
/* CB_OK with *out the batch's floats (in buf, or held by the cache) when cached; else
 * CB_E_IO. */
int cb_teacher_cache_get(cb_teacher_cache *c, uint64_t batch, float *buf, const float **out, cb_error *e);
int cb_teacher_cache_put(cb_teacher_cache *c, uint64_t batch, const float *buf, cb_error *e);
void cb_teacher_cache_free(cb_teacher_cache *c);

#endif
