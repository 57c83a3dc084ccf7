/* internal.h: the CUDA backend's state and the parts its files share (backend/cuda/):
 * cuda.c (memory, transfers, loss, clipping, optimizer: the interface), ops.c (the op
 * switch, as backend/cpu/ops.c), attention.c (attention from batched products), blas.c
 * (row-major products through cuBLAS), decode.c (decoding). Internal to backend/cuda/. */
#ifndef CB_BACKEND_CUDA_INTERNAL_H
#define CB_BACKEND_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <stdint.h>
#include <cuda_runtime_api.h>
#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/pass.h"

/* bf16 values as their bits (C has no bf16 type; the kernels read them as __nv_bfloat16) */
typedef uint16_t cb_bf16;

/* amp: the bf16 copy of a weights buffer (a whole allocation's floats from base on),
 * converted when a pass first reads it after a write: upload, zero, scale and the
 * optimizer step mark the shadows they touch stale (cuda.c), so a step converts the
 * weights once, not once a product. */
#define CB_CUDA_SHADOWS 4
typedef struct cuda_shadow {
    const float *base; /* NULL: slot unused */
    size_t n;          /* floats from base to the end of its allocation */
    cb_bf16 *w16;      /* (n) */
    int stale;         /* written since w16 was converted */
    unsigned long used; /* the ctx's clock when last asked for: the oldest is replaced */
} cuda_shadow;

/* A device allocation of the backend (alloc ... free), so a shadow knows its extent. */
typedef struct cuda_block {
    const void *p;
    size_t bytes;
} cuda_block;

typedef struct cuda_ctx {
    cublasHandle_t blas;
    /* Device scratch, grown on demand and kept: ws for an op's temporaries (attention's
     * score matrices, a feed-forward gradient), red for column-sum partials, which an op
     * takes while its ws is in use. Sized in op_forward for the op's backward too, so
     * backward (which cannot fail) never allocates. */
    float *ws, *red;
    size_t ws_elems, red_elems;
    float *loss;  /* device: [0] the mean loss (float), [1] the valid-row count (int) */
    double *norm; /* device: [0] sum of squares, then cbk_sumsq_work() partials */
    /* The first failure of a step that has no error return (a backward, a cuBLAS call),
     * reported by synchronize. */
    int failed;
    cb_error err;
    int amp; /* mixed precision (train.amp): products and attention in bf16 on the tensor
                cores with float32 sums; 0: float32 throughout (what the tests hold to
                the CPU) */
    /* amp: h16 is bf16 scratch for the operands of one product (activations converted
     * before it), reserved with ws by op_forward; the shadows of the weights passes read */
    cb_bf16 *h16;
    size_t h16_elems;
    cuda_shadow shadows[CB_CUDA_SHADOWS];
    unsigned long clock;
    cuda_block *blocks;
    int n_blocks, cap_blocks;
    int fuse; /* the fused paths on (cuda.h's CB_CUDA_FUSE_* bits) */
    /* ADDNORM: op ahead_op of the pass whose slots are ahead_slots had its forward done
     * by the add before it (-1: none); the fused paths taken so far (the tests' proof) */
    int ahead_op;
    const float *ahead_slots;
    unsigned long fused_runs;
} cuda_ctx;

/* Record the first failure (sticky until synchronize reports it). */
void cb_cuda_fail(cuda_ctx *c, const char *what, const char *why);
/* Check the last kernel launch; a failure is recorded. 0 when all is well. */
int cb_cuda_check_launch(cuda_ctx *c, const char *what);
/* ws and red of at least these many floats (a device allocation may happen here, and
 * waits for queued work). CB_OK or CB_E_RUNTIME with e filled. */
int cb_cuda_reserve(cuda_ctx *c, size_t ws_elems, size_t red_elems, cb_error *e);

/* amp (cuda.c): h16 of at least h16_elems bf16 (as cb_cuda_reserve). */
int cb_cuda_reserve_h16(cuda_ctx *c, size_t h16_elems, cb_error *e);
/* amp: make the shadow of the weights buffer w current (converted when stale or new).
 * w outside any allocation of the backend has none (products convert its parts as they
 * go). CB_OK or CB_E_RUNTIME (out of GPU memory) with e filled. */
int cb_cuda_shadow_weights(cuda_ctx *c, const float *w, cb_error *e);
/* The current bf16 shadow of x[0 .. n), or NULL when none holds all of it. */
const cb_bf16 *cb_cuda_shadow_of(const cuda_ctx *c, const float *x, size_t n);

/* blas.c: row-major C (M,N) = alpha op(A) op(B) + beta C, as backend/cpu/gemm.h's cb_gemm
 * (trans_a: op(A) = A^T with A stored (K,M)); and batch of them with element strides. */
void cb_cuda_gemm(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
void cb_cuda_gemm_batched(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                          int lda, long long stride_a, const float *B, int ldb, long long stride_b, float beta,
                          float *C, int ldc, long long stride_c, int batch);
/* With c->amp the products of cb_cuda_gemm and cb_cuda_linear_* read bf16 operands (a
 * weight's shadow, an activation converted into h16) and sum in float32 into float32
 * outputs; where h16 cannot hold an operand, the product runs in float32 on the tensor
 * cores' TF32 instead, as do the batched products (attention's). Without amp, float32. */
/* bf16 of x[0 .. n): its shadow's, else converted into h16 from element *used on (*used
 * advanced to a multiple of 8, so every operand starts 16-byte aligned); NULL when h16
 * has no room for it. A weight needs at most n + 8 of h16, an activation n + 8. */
const cb_bf16 *cb_cuda_as_bf16(cuda_ctx *c, const float *x, size_t n, size_t *used);
/* C = alpha op(A) op(B) + beta C as cb_cuda_gemm, the operands bf16 already, the sums in
 * float32, C float32 or (c_bf16) bf16, rounded to nearest once */
void cb_cuda_gemm16(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const cb_bf16 *A,
                    int lda, const cb_bf16 *B, int ldb, float beta, void *C, int c_bf16, int ldc);
/* bf16 scratch a linear layer's products want: (IC + OC) bf16 a row of N rows, capped
 * (linear_* then run row blocks of what fits) */
size_t cb_cuda_linear_h16(int N, int IC, int OC);
/* out (N, OC) = in (N, IC) w^T (+ b); and its backward: din (N, IC) += dy w,
 * dw (OC, IC) += dy^T in, db (OC) += column sums of dy (any NULL: not computed). */
void cb_cuda_linear_forward(cuda_ctx *c, float *out, const float *in, const float *w, const float *b, int N, int IC,
                            int OC);
void cb_cuda_linear_backward(cuda_ctx *c, float *din, float *dw, float *db, const float *dy, const float *in,
                             const float *w, int N, int IC, int OC);

/* decode.c: the decoding state of backend.h (decode_init ... decode_end), and a
 * decoding pass's op (ops.c hands every op of a pass with p->decode to it). */
int cb_cuda_decode_init(cb_backend *be, cb_decode *d, const cb_program *prog, const struct cb_param_table *params,
                        const float *weights, const cb_decode_config *cfg, cb_error *e);
int cb_cuda_decode_reserve(cb_backend *be, cb_decode *d, int pos0, int m, cb_error *e);
void cb_cuda_decode_truncate(cb_backend *be, cb_decode *d, int len);
void cb_cuda_decode_free(cb_backend *be, cb_decode *d);
void cb_cuda_decode_begin(cb_backend *be);
void cb_cuda_decode_end(cb_backend *be);
int cb_cuda_decode_op_forward(cuda_ctx *c, cb_pass *p, int i, cb_error *e);
/* backend.h's decode_argmax: cbk_argmax on the device, 8 bytes back */
int cb_cuda_decode_argmax(cb_backend *be, cb_decode *d, const float *x, int n, int *id, int *nonfinite,
                          cb_error *e);

/* ops.c */
int cb_cuda_op_forward(cuda_ctx *c, cb_pass *p, int i, cb_error *e);
void cb_cuda_op_backward(cuda_ctx *c, cb_pass *p, int i);
/* backend.h's head_loss (ops.c) */
float cb_cuda_head_loss(cuda_ctx *c, cb_pass *p, int chunk_rows);

/* swiglu16.c: a SwiGLU op under amp with CB_CUDA_FUSE_SWIGLU, bf16 from the gate and up
 * product to the down product's operand (its saved values bf16, in the first half of the
 * float32 layout's room); the h16 it needs, and whether a pass of N rows takes it (the
 * same answer in forward and backward: h16 only grows) */
size_t cb_cuda_swiglu16_h16(int N, int C, int F);
int cb_cuda_swiglu16_on(const cuda_ctx *c, int N, int C, int F);
void cb_cuda_swiglu16_forward(cuda_ctx *c, cb_pass *p, int i);
void cb_cuda_swiglu16_backward(cuda_ctx *c, cb_pass *p, int i);

/* attention.c: an attention op of a full-sequence pass, forward and backward; the floats
 * of ws and red it needs. */
void cb_cuda_attention_work(const cuda_ctx *c, const cb_attention_config *cfg, int B, int T, size_t *ws, size_t *red);
void cb_cuda_attention_forward(cuda_ctx *c, cb_pass *p, int i);
void cb_cuda_attention_backward(cuda_ctx *c, cb_pass *p, int i);

#endif
