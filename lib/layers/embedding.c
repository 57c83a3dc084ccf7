/* embedding.c: token (and position) embedding over `real` (float here, double via
 * f64/embedding_f64.c). */
#include "layers/embedding.h"

#include <string.h>
#include "layers/loops.h"

static inline void embedding_row(real *restrict y, const real *restrict tok, const real *restrict pos, int C) {
    if (pos) {
#pragma omp simd
        for (int c = 0; c < C; c++) y[c] = tok[c] + pos[c];
    } else {
        memcpy(y, tok, (size_t)C * sizeof(real));
    }
}

void CB_FN(cb_embedding_forward)(real *restrict out, const int32_t *restrict tokens, const real *restrict wte,
                                 const real *restrict wpe, int B, int T, int C, int pos0) {
    int N = B * T;
#define EMBEDDING_ROW(n) \
    embedding_row(out + (size_t)(n) * C, wte + (size_t)tokens[n] * C, wpe ? wpe + (size_t)(pos0 + (n) % T) * C : NULL, C)
    if ((size_t)N * C > CB_OMP_MIN_WORK) { // (no if clause: loops.h)
#pragma omp parallel for
        for (int n = 0; n < N; n++) EMBEDDING_ROW(n);
    } else {
        for (int n = 0; n < N; n++) EMBEDDING_ROW(n);
    }
#undef EMBEDDING_ROW
}

void CB_FN(cb_embedding_backward)(real *restrict dwte, real *restrict dwpe, const real *restrict dout,
                                  const int32_t *restrict tokens, int B, int T, int C, int pos0) {
    int N = B * T;
    if (dwte) {
        // a token may repeat, so rows of dwte are shared between positions: split by columns instead
        int n_blocks = (C + CB_COL_BLOCK - 1) / CB_COL_BLOCK;
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK && n_blocks > 1)
        for (int blk = 0; blk < n_blocks; blk++) {
            int c0 = blk * CB_COL_BLOCK;
            int c1 = c0 + CB_COL_BLOCK < C ? c0 + CB_COL_BLOCK : C;
            for (int n = 0; n < N; n++) {
                real *dst = dwte + (size_t)tokens[n] * C;
                const real *src = dout + (size_t)n * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) dst[c] += src[c];
            }
        }
    }
    if (dwpe) {
        // each position is its own row: parallel over t, sum over the batch in order
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK)
        for (int t = 0; t < T; t++) {
            real *dst = dwpe + (size_t)(pos0 + t) * C;
            for (int b = 0; b < B; b++) {
                const real *src = dout + ((size_t)b * T + t) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) dst[c] += src[c];
            }
        }
    }
}
