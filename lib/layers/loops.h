/* loops.h: loop helpers shared by the layer files: when to start OpenMP threads, and
 * deterministic column sums (bias gradients) whose result does not depend on the thread count.
 * Written over `real`: each layer file includes it once, as float or as double. */
#ifndef CB_LAYERS_LOOPS_H
#define CB_LAYERS_LOOPS_H

#include <stddef.h>
#include "layers/real.h"

/* Below this many elements a loop runs on one thread: starting a team costs more than it saves.
 * Loops that run on one row while decoding test the size before the pragma instead of in an
 * if clause: libgomp builds and frees a team even for a region whose if clause is false,
 * 1.4 us a region on a Zen 5 core (a malloc, a free and a futex call each time), while
 * a 768-value norm or residual add takes 0.1 us; a 110M q4_0 token ran 74 of them. */
#define CB_OMP_MIN_WORK 32768

/* Columns per work unit of a column-parallel loop: threads own disjoint column blocks and
 * walk every row in order, so each sum is formed in the same order whatever the thread count. */
#define CB_COL_BLOCK 64

/* dst (C) += column sums of src (N,C) */
static inline void cb_colsum_acc(real *restrict dst, const real *restrict src, int N, int C) {
    int n_blocks = (C + CB_COL_BLOCK - 1) / CB_COL_BLOCK;
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK && n_blocks > 1)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * CB_COL_BLOCK;
        int c1 = c0 + CB_COL_BLOCK < C ? c0 + CB_COL_BLOCK : C;
        real acc[CB_COL_BLOCK];
        for (int c = c0; c < c1; c++) acc[c - c0] = 0;
        for (int n = 0; n < N; n++) {
            const real *row = src + (size_t)n * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dst[c] += acc[c - c0];
    }
}

#endif
