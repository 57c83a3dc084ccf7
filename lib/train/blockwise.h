/* blockwise.h: what blockwise distillation (cb-train(1), phases blockwise and upcycle)
 * needs besides the attention pairs of upcycle/attn_pair.h: the optimizer over one
 * layer's tensors, the distance between the student's and the teacher's attention outputs
 * with its gradient, and the on-disk cache of the teacher's attention inputs and outputs
 * per batch (cache_teacher_outputs), so the teacher runs once per batch for every layer. */
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

/* run_dir/teacher_cache/batch-NNNNNNNN.bin: the teacher's attention inputs and outputs
 * of every layer for one training batch, n_layers x 2 x (B,T,d) floats after a header
 * naming the shape. Read returns CB_OK and fills buf, or CB_E_IO when absent (or of
 * another shape: a cache of another run is not used); write is atomic. */
int cb_teacher_cache_read(const char *run_dir, uint64_t batch, float *buf, int n_layers, int B, int T, int d,
                          cb_error *e);
int cb_teacher_cache_write(const char *run_dir, uint64_t batch, const float *buf, int n_layers, int B, int T, int d,
                           cb_error *e);

#endif
