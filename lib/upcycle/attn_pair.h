/* attn_pair.h: a teacher and its student side by side on one device (backend/backend.h),
 * attention layer by attention layer: the teacher's forward pass up to a layer gives
 * that layer's input and output; the student's attention layer then runs alone on the
 * teacher's input, forward and backward, through the backend's op_forward/op_backward
 * (the blockwise distillation of cb-train(1) and the surgery report of cb-build(1)).
 * Every pointer it hands out is device memory of the backend. */
#ifndef CB_UPCYCLE_ATTN_PAIR_H
#define CB_UPCYCLE_ATTN_PAIR_H

#include <stdint.h>
#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model/program.h"
#include "model/run.h"

typedef struct cb_attn_pair {
    cb_backend *be;
    cb_program tp, sp;   /* teacher's and student's programs for (B,T) */
    cb_run tr, sr;       /* teacher: forward arenas; student: with gradient arenas */
    int n;               /* attention layers (one per tensor set) */
    int *t_op, *s_op;    /* (n) op index of layer k in each program */
    int B, T, d;
    const int32_t *tokens; /* of the last teacher pass */
} cb_attn_pair;

/* Programs and arenas for (B,T). The two models must have as many attention layers of
 * the same width (CB_E_INVALID otherwise). */
int cb_attn_pair_init(cb_attn_pair *p, cb_backend *be, const cb_model *teacher, const cb_model *student, int B, int T,
                      cb_error *e);
void cb_attn_pair_free(cb_attn_pair *p);

/* The teacher's ops up to and including attention layer `upto` (n-1: every layer) on
 * tokens (B,T), device memory. */
int cb_attn_pair_teacher(cb_attn_pair *p, const float *t_weights, const int32_t *tokens, int upto, cb_error *e);
/* Layer k's input and output (B,T,d) from the last teacher pass (k <= upto). */
const float *cb_attn_pair_teacher_in(const cb_attn_pair *p, int k);
const float *cb_attn_pair_teacher_out(const cb_attn_pair *p, int k);

/* The student's attention layer k on x (B,T,d; device memory, may be the teacher's
 * slot, or host memory when x_on_host): x is copied into the layer's input slot, the op
 * runs, *out is its output (device memory). */
int cb_attn_pair_student_forward(cb_attn_pair *p, const float *s_weights, int k, const float *x, int x_on_host,
                                 const float **out, cb_error *e);
/* Backward of the last student forward of layer k: dout (B,T,d; host memory) is the
 * loss's gradient with respect to its output; grads (device, laid out like the weights)
 * += the gradients of the layer's parameters. */
int cb_attn_pair_student_backward(cb_attn_pair *p, const float *s_weights, float *grads, int k, const float *dout,
                                  cb_error *e);

/* Host copy of n floats of device memory src into dst (no copy on a unified device:
 * returns src itself). */
const float *cb_attn_pair_host(cb_attn_pair *p, float *dst, const float *src, size_t n, cb_error *e);

/* Mean absolute difference of the student's attention outputs from the teacher's, per
 * layer (l1[k]) and over all layers (returned), on tokens (B,T, host memory): each
 * student layer runs on the teacher's input of that layer. NaN with e filled on error. */
double cb_attn_pair_l1(cb_attn_pair *p, const float *t_weights, const float *s_weights, const int32_t *tokens,
                       double *l1, cb_error *e);

#endif
