/* blas.c: the row-major products of layers/ on the GPU through cuBLAS (column-major):
 * a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T, so the operands
 * are passed swapped with the same transpose flags. Float32 throughout: the handle keeps
 * cuBLAS's default math (no TF32), so products round as the CPU's sgemm does up to order. */
#include "backend/cuda/internal.h"

#include "backend/cuda/kernels.h"

static void check(cuda_ctx *c, cublasStatus_t st, const char *what) {
    if (st != CUBLAS_STATUS_SUCCESS) cb_cuda_fail(c, what, cublasGetStatusString(st));
}

void cb_cuda_gemm(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum: C = beta C, as BLAS */
        if (beta != 1.0f)
            for (int r = 0; r < M; r++) cbk_scale(C + (size_t)r * ldc, (size_t)N, beta);
        return;
    }
    check(c,
          cublasSgemm(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                      &alpha, B, ldb, A, lda, &beta, C, ldc),
          "cublasSgemm");
}

void cb_cuda_gemm_batched(cuda_ctx *c, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                          int lda, long long stride_a, const float *B, int ldb, long long stride_b, float beta,
                          float *C, int ldc, long long stride_c, int batch) {
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0) return;
    check(c,
          cublasSgemmStridedBatched(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    N, M, K, &alpha, B, ldb, stride_b, A, lda, stride_a, &beta, C, ldc, stride_c,
                                    batch),
          "cublasSgemmStridedBatched");
}

void cb_cuda_linear_forward(cuda_ctx *c, float *out, const float *in, const float *w, const float *b, int N, int IC,
                            int OC) {
    float beta = 0;
    if (b) {
        cbk_bias_rows(out, b, N, OC);
        beta = 1;
    }
    cb_cuda_gemm(c, 0, 1, N, OC, IC, 1, in, IC, w, IC, beta, out, OC);
}

void cb_cuda_linear_backward(cuda_ctx *c, float *din, float *dw, float *db, const float *dy, const float *in,
                             const float *w, int N, int IC, int OC) {
    if (din) cb_cuda_gemm(c, 0, 0, N, IC, OC, 1, dy, OC, w, IC, 1, din, IC);
    if (dw) cb_cuda_gemm(c, 1, 0, OC, IC, N, 1, dy, OC, in, IC, 1, dw, IC);
    if (db) cbk_colsum(db, c->red, dy, N, OC);
}
