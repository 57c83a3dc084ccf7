/* blas.c: the row-major products of layers/ on the GPU through cuBLAS (column-major):
 * a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T, so the operands
 * are passed swapped with the same transpose flags. Float32 by default: the handle keeps
 * cuBLAS's default math (no TF32), so products round as the CPU's sgemm does up to order.
 * With c->amp (train.amp), mixed precision: the operands in bf16 (a weight from its
 * shadow, converted once a step by cuda.c; an activation converted into h16 just before
 * its product), the sums and the outputs in float32 (cublasGemmEx, CUBLAS_COMPUTE_32F),
 * gradients still added with beta = 1 onto the float32 ones. */
#include "backend/cuda/internal.h"

#include "backend/cuda/kernels.h"

/* The most bf16 a linear layer's row blocks take of h16 (256 MB): the head's backward
 * at vocabulary 32000 converts its logits' gradient 4096 rows at a time instead of
 * keeping a bf16 copy of all of it. */
#define LINEAR_H16_CAP ((size_t)128 << 20)

static void check(cuda_ctx *c, cublasStatus_t st, const char *what) {
    if (st != CUBLAS_STATUS_SUCCESS) cb_cuda_fail(c, what, cublasGetStatusString(st));
}

static void gemm_f32(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!c->amp) {
        check(c, cublasSgemm(c->blas, tb, ta, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc), "cublasSgemm");
        return;
    }
    /* amp without room for bf16 operands: TF32 (more precise than bf16, as fast per byte) */
    check(c,
          cublasGemmEx(c->blas, tb, ta, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F,
                       ldc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (tf32)");
}

/* C = alpha op(A) op(B) + beta C with A, B bf16, C float32 or (c_bf16) bf16 */
static void gemm_bf16_to(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const cb_bf16 *A,
                         int lda, const cb_bf16 *B, int ldb, float beta, void *C, int c_bf16, int ldc) {
    check(c,
          cublasGemmEx(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                       &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                       c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx (bf16)");
}

/* C (float32) = alpha op(A) op(B) + beta C with A, B bf16 */
static void gemm_bf16(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const cb_bf16 *A,
                      int lda, const cb_bf16 *B, int ldb, float beta, float *C, int ldc) {
    gemm_bf16_to(c, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, 0, ldc);
}

void cb_cuda_gemm16(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const cb_bf16 *A,
                    int lda, const cb_bf16 *B, int ldb, float beta, void *C, int c_bf16, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return; /* K = 0 never comes: a layer's widths are positive */
    gemm_bf16_to(c, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, c_bf16, ldc);
}

/* Elements from a row-major (rows, cols) operand's first to its last (leading dimension ld). */
static size_t extent(int rows, int cols, int ld) { return (size_t)(rows - 1) * (size_t)ld + (size_t)cols; }

/* bf16 of x[0 .. n): its shadow's, else converted into h16 from *used on (advanced, kept
 * a multiple of 8 so every operand starts 16-byte aligned); NULL when h16 has no room. */
const cb_bf16 *cb_cuda_as_bf16(cuda_ctx *c, const float *x, size_t n, size_t *used) {
    const cb_bf16 *s = cb_cuda_shadow_of(c, x, n);
    if (s) return s;
    if (!c->h16 || *used + n > c->h16_elems) return NULL;
    cb_bf16 *d = c->h16 + *used;
    cbk_to_bf16(d, x, n);
    *used += (n + 7) & ~(size_t)7;
    return d;
}

void cb_cuda_gemm(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: C = beta C, as BLAS */
        if (beta != 1.0f)
            for (int r = 0; r < M; r++) cbk_scale(C + (size_t)r * ldc, (size_t)N, beta);
        return;
    }
    if (c->amp) {
        size_t used = 0;
        const cb_bf16 *a16 = cb_cuda_as_bf16(c, A, trans_a ? extent(K, M, lda) : extent(M, K, lda), &used);
        const cb_bf16 *b16 =
            a16 ? cb_cuda_as_bf16(c, B, trans_b ? extent(N, K, ldb) : extent(K, N, ldb), &used) : NULL;
        if (b16) {
            gemm_bf16(c, trans_a, trans_b, M, N, K, alpha, a16, lda, b16, ldb, beta, C, ldc);
            return;
        }
    }
    gemm_f32(c, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cb_cuda_gemm_batched(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                          int lda, long long stride_a, const float *B, int ldb, long long stride_b, float beta,
                          float *C, int ldc, long long stride_c, int batch) {
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0) return;
    cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (c->amp) /* attention's score products: TF32 (their operands are not converted) */
        check(c,
              cublasGemmStridedBatchedEx(c->blas, tb, ta, N, M, K, &alpha, B, CUDA_R_32F, ldb, stride_b, A,
                                         CUDA_R_32F, lda, stride_a, &beta, C, CUDA_R_32F, ldc, stride_c, batch,
                                         CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
              "cublasGemmStridedBatchedEx (tf32)");
    else
        check(c,
              cublasSgemmStridedBatched(c->blas, tb, ta, N, M, K, &alpha, B, ldb, stride_b, A, lda, stride_a, &beta,
                                        C, ldc, stride_c, batch),
              "cublasSgemmStridedBatched");
}

size_t cb_cuda_linear_h16(int N, int IC, int OC) {
    size_t want = (size_t)N * ((size_t)IC + (size_t)OC) + 16;
    return want < LINEAR_H16_CAP ? want : LINEAR_H16_CAP;
}

/* amp: rows of a linear layer's row block, with h16 holding `width` bf16 a row besides
 * the weight w (NULL: not read) when that has no shadow; 0 when not even one row fits */
static int block_rows(const cuda_ctx *c, const float *w, int IC, int OC, int width, int N) {
    size_t room = c->h16 ? c->h16_elems : 0;
    if (w && !cb_cuda_shadow_of(c, w, (size_t)IC * OC)) {
        size_t wn = ((size_t)IC * OC + 7) & ~(size_t)7;
        if (wn >= room) return 0;
        room -= wn;
    }
    if (room <= 16) return 0;
    size_t r = (room - 16) / (size_t)width; /* 16: each of two operands' ends rounded up to 8 */
    return r > (size_t)N ? N : (int)r;
}

void cb_cuda_linear_forward(cuda_ctx *c, float *out, const float *in, const float *w, const float *b, int N, int IC,
                            int OC) {
    float beta = 0;
    if (b) {
        cbk_bias_rows(out, b, N, OC);
        beta = 1;
    }
    int R = c->amp ? block_rows(c, w, IC, OC, IC, N) : 0;
    if (R <= 0) { /* float32 (TF32 under amp when nothing fits) */
        gemm_f32(c, 0, 1, N, OC, IC, 1, in, IC, w, IC, beta, out, OC);
        return;
    }
    for (int r0 = 0; r0 < N; r0 += R) {
        int rows = N - r0 < R ? N - r0 : R;
        size_t used = 0;
        const cb_bf16 *w16 = cb_cuda_as_bf16(c, w, (size_t)OC * IC, &used);
        const cb_bf16 *x16 = cb_cuda_as_bf16(c, in + (size_t)r0 * IC, (size_t)rows * IC, &used);
        gemm_bf16(c, 0, 1, rows, OC, IC, 1, x16, IC, w16, IC, beta, out + (size_t)r0 * OC, OC);
    }
}

void cb_cuda_linear_backward(cuda_ctx *c, float *din, float *dw, float *db, const float *dy, const float *in,
                             const float *w, int N, int IC, int OC) {
    if (db) cbk_colsum(db, c->red, dy, N, OC);
    if (!din && !dw) return;
    int R = c->amp ? block_rows(c, din ? w : NULL, IC, OC, IC + OC, N) : 0;
    if (R <= 0) {
        if (din) gemm_f32(c, 0, 0, N, IC, OC, 1, dy, OC, w, IC, 1, din, IC);
        if (dw) gemm_f32(c, 1, 0, OC, IC, N, 1, dy, OC, in, IC, 1, dw, IC);
        return;
    }
    /* a row block at a time: din's rows, and dw += the block's share (beta = 1) */
    for (int r0 = 0; r0 < N; r0 += R) {
        int rows = N - r0 < R ? N - r0 : R;
        size_t used = 0;
        const cb_bf16 *w16 = din ? cb_cuda_as_bf16(c, w, (size_t)OC * IC, &used) : NULL;
        const cb_bf16 *dy16 = cb_cuda_as_bf16(c, dy + (size_t)r0 * OC, (size_t)rows * OC, &used);
        if (din) gemm_bf16(c, 0, 0, rows, IC, OC, 1, dy16, OC, w16, IC, 1, din + (size_t)r0 * IC, IC);
        if (dw) {
            const cb_bf16 *x16 = cb_cuda_as_bf16(c, in + (size_t)r0 * IC, (size_t)rows * IC, &used);
            gemm_bf16(c, 1, 0, OC, IC, rows, 1, dy16, OC, x16, IC, 1, dw, IC);
        }
    }
}
