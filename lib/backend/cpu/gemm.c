/* gemm.c: the layers' large matrix products over `real` (float here, double via f64/gemm_f64.c),
 * split into a grid of blocks that depends only on the shape; each block is one BLAS call on
 * one thread. */
#include "backend/cpu/gemm.h"

#include "layers/real.h"

/* Blocks per product: enough for two or four threads to share, few enough that re-copying the
 * operand every block reads (BLAS packs it again per call) stays a small part of the work. */
#define CB_GEMM_BLOCKS 4
/* Block widths are multiples of this (the micro-kernels' tile sizes divide it). */
#define CB_GEMM_ALIGN 64
/* Below this many multiply-adds one BLAS call does the whole product. */
#define CB_GEMM_MIN_WORK ((size_t)1 << 21)

void CB_FN(cb_gemm)(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, real alpha,
                    const real *A, int lda, const real *B, int ldb, real beta, real *C, int ldc) {
    // Split the rows of C when op(B) (K,N) is the smaller operand, since each block packs the
    // operand it does not split again; else split the columns.
    const int split_rows = N <= M;
    const int D = split_rows ? M : N;
    int block = (D + CB_GEMM_BLOCKS - 1) / CB_GEMM_BLOCKS;
    block = (block + CB_GEMM_ALIGN - 1) / CB_GEMM_ALIGN * CB_GEMM_ALIGN;
    const int n_blocks = (D + block - 1) / block;
    if (n_blocks < 2 || (size_t)M * N * K < CB_GEMM_MIN_WORK) {
        CB_GEMM(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // OpenBLAS's pthreads build would run each block on all its threads; its OpenMP build
    // already keeps a call made inside a parallel region on the calling thread.
    const int pthreads = openblas_get_parallel() == 1;
    const int blas_threads = pthreads ? openblas_get_num_threads() : 1;
    if (blas_threads > 1) openblas_set_num_threads(1);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int blk = 0; blk < n_blocks; blk++) {
        const int d0 = blk * block, n = D - d0 < block ? D - d0 : block;
        if (split_rows) {
            const real *a = ta == CblasTrans ? A + d0 : A + (size_t)d0 * lda;
            CB_GEMM(CblasRowMajor, ta, tb, n, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)d0 * ldc, ldc);
        } else {
            const real *b = tb == CblasTrans ? B + (size_t)d0 * ldb : B + d0;
            CB_GEMM(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda, b, ldb, beta, C + d0, ldc);
        }
    }
    if (blas_threads > 1) openblas_set_num_threads(blas_threads);
}
