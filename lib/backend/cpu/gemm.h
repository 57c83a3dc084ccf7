/* gemm.h: the large matrix products of the layers, row-major C = alpha op(A) op(B) + beta C as
 * cblas_sgemm computes it, run on OpenMP's threads as a fixed grid of single-threaded BLAS
 * products: the result's bits do not depend on the thread count, and no second pool of BLAS
 * threads competes with OpenMP's for the same cores (bench/RESULTS.md, cpu_step). */
#ifndef CB_LAYERS_GEMM_H
#define CB_LAYERS_GEMM_H

#include <cblas.h>

/* C (M,N) = alpha op(A) op(B) + beta C; op(A) (M,K), op(B) (K,N); A is (K,M) when ta is
 * CblasTrans, else (M,K); B is (N,K) when tb is CblasTrans, else (K,N). Call it from one
 * thread (not from inside a parallel region): it sets OpenBLAS's own thread count. */
void cb_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
             int lda, const float *B, int ldb, float beta, float *C, int ldc);
void cb_gemm_f64(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                 const double *A, int lda, const double *B, int ldb, double beta, double *C, int ldc);

#endif
