/* bench/matmul_prefill.c: the many-token products of a prefill chunk (cb_matvec_n, 512 tokens
 * by default) over the 110M Llama shape's matrices, per weight kind, by the route chosen now
 * and by the route before the matrix-matrix kernels (fp32 through one BLAS sgemm, fp16/bf16
 * through f32 panels and sgemm, q8_0/q4_0 through the decode kernel's 8-token tiles),
 * alternating in one process so that both see the same machine load.
 *   build/rel/bench/matmul_prefill [TOKENS [ROUNDS [panels]]]   (default 512 5)
 * Runs on OMP_NUM_THREADS threads (the pool's). Prints per kind and shape the best of ROUNDS
 * calls of each route: ms, GMAC/s, and new / old speed. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/matmul_float.h"
#include "backend/cpu/matvec.h"
#include "backend/cpu/quant_int.h"
#include "backend/cpu/quant_mm.h"
#include "bandwidth.h"

/* The route before this work: no packed float tiles, the quantised products' 8-token tiles;
 * with `panels`, the float products' panels packed per product (the AVX-512 tiles before the
 * row tiles) against the row tiles, the quantised products the same both ways. */
static int g_panels;
static void route(int old, cb_mf_path best_mf) {
    if (g_panels) {
        cb_mf_panels_force(old);
        return;
    }
    cb_mf_path_force(old ? CB_MF_NONE : best_mf);
    cb_qmm_enable(!old);
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 512, rounds = argc > 2 ? atoi(argv[2]) : 5;
    g_panels = argc > 3 && strcmp(argv[3], "panels") == 0;
    const int shapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}};
    const cb_kv_kind kinds[] = {CB_KV_F32, CB_KV_F16, CB_KV_BF16, CB_KV_Q8_0, CB_KV_Q4_0};
    const char *names[] = {"fp32", "fp16", "bf16", "q8_0", "q4_0"};
    const cb_mf_path best_mf = cb_mf_path_current();
    printf("tokens %d, threads %d, float path %s, integer path %s; best of %d\n", n, omp_get_max_threads(),
           cb_mf_path_name(best_mf), cb_qi_path_name(cb_qi_path_current()), rounds);
    printf("%-5s %-10s %10s %8s %10s %8s %7s\n", "kind", "rows x cols", "old ms", "GMAC/s", "new ms", "GMAC/s", "new/old");
    unsigned long long s = 0x2545F4914F6CDD1DULL;
    for (int si = 0; si < 3; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1];
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
        float *y = malloc(sizeof(float) * n * rows);
        for (int i = 0; i < rows * cols; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            w[i] = (float)((s >> 40) / 16777216.0 - 0.5) * 0.1f;
        }
        for (int i = 0; i < n * cols; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            x[i] = (float)((s >> 40) / 16777216.0 - 0.5);
        }
        for (int ki = 0; ki < 5; ki++) {
            cb_weight_matrix m;
            cb_error e;
            if (cb_weight_matrix_from_f32(&m, kinds[ki], w, rows, cols, &e) != CB_OK) return 1;
            double best[2] = {1e30, 1e30};
            for (int r = 0; r < rounds; r++)
                for (int old = 1; old >= 0; old--) {
                    route(old, best_mf);
                    const double t0 = cb_clock_s();
                    cb_matvec_n(y, &m, x, NULL, n);
                    const double t = cb_clock_s() - t0;
                    if (t < best[old]) best[old] = t;
                }
            const double macs = (double)n * rows * cols;
            printf("%-5s %4d x %-4d %10.2f %8.1f %10.2f %8.1f %7.2f\n", names[ki], rows, cols, best[1] * 1e3,
                   macs / best[1] / 1e9, best[0] * 1e3, macs / best[0] / 1e9, best[1] / best[0]);
            cb_weight_matrix_free(&m);
        }
        free(w); free(x); free(y);
    }
    route(0, best_mf);
    cb_mf_panels_force(0);
    return 0;
}
