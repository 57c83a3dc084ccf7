/* test_matmul_float.c: the packed tiles of backend/cpu/matmul_float.h on every path this CPU
 * can run (each forced in turn; the AVX-512 paths both by row tiles and by panels), fp32, fp16
 * and bf16 weights, shapes with partial token tiles and blocks, partial row panels and row
 * groups, odd columns, with and without bias, against an fp64 sum over the stored weights,
 * within the bound matmul_float.h derives. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/matmul_float.h"
#include "tensor/dtype.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

TEST(matmul_float_every_path) {
    // rows x cols x tokens: n past 64 takes several token blocks of the row tiles (130: the
    // last of 2 tokens), rows not a multiple of 6 or 48 partial row groups and items
    const int shapes[][3] = {{37, 33, 17}, {100, 160, 23}, {129, 64, 40}, {48, 255, 64},
                             {200, 768, 19}, {61, 96, 130}, {13, 51, 100}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const cb_kv_kind kinds[] = {CB_KV_F32, CB_KV_F16, CB_KV_BF16};
    const cb_mf_path best = cb_mf_path_current();
    int paths_run = 0;
    for (int pp = 2 * CB_MF_AVX2; pp < 2 * CB_MF_PATH_COUNT; pp++) {
        const int path = pp / 2, panels = pp % 2;
        if (path < CB_MF_AVX512 && panels) continue; // AVX2 has the panels only
        if (!cb_mf_path_force((cb_mf_path)path)) continue;
        cb_mf_panels_force(panels);
        paths_run++;
        for (int si = 0; si < n_shapes; si++) {
            const int rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
            float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
            float *wq = malloc(sizeof(float) * rows * cols), *bias = malloc(sizeof(float) * rows);
            float *y = malloc(sizeof(float) * n * rows);
            for (int i = 0; i < rows * cols; i++) w[i] = urandf() * (i % 7 == 0 ? 3.0f : 0.5f);
            for (int i = 0; i < n * cols; i++) x[i] = urandf() * (i % 5 == 0 ? 4.0f : 1.0f);
            for (int r = 0; r < rows; r++) bias[r] = urandf();
            for (int ki = 0; ki < 3; ki++) {
                const cb_kv_kind k = kinds[ki];
                cb_weight_matrix m;
                cb_error e;
                EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, k, w, rows, cols, &e));
                for (int r = 0; r < rows; r++) // the stored weights, exactly
                    cb_kv_dequantize_row(k, wq + (size_t)r * cols, (const unsigned char *)m.data + r * m.row_bytes,
                                         (size_t)cols);
                const int with_bias = (si + ki) % 2;
                for (int i = 0; i < n * rows; i++) y[i] = NAN;
                EXPECT(cb_mf_takes(&m, n));
                EXPECT_EQ_INT(1, cb_mf_matmul(y, &m, x, with_bias ? bias : NULL, n));
                const int bf = path == CB_MF_AVX512BF16 && k == CB_KV_BF16;
                double worst = 0;
                for (int i = 0; i < n; i++)
                    for (int r = 0; r < rows; r++) {
                        double ref = with_bias ? bias[r] : 0, mag = 0, magq = 0, wmax = 0;
                        for (int j = 0; j < cols; j++) {
                            const double wj = wq[(size_t)r * cols + j], xj = x[(size_t)i * cols + j];
                            ref += wj * xj;
                            mag += fabs(wj * xj);
                            magq += fabs(wj * cb_bf16_to_f32(cb_f32_to_bf16((float)xj)));
                            wmax = cb_test_worst(wmax, fabs(wj));
                        }
                        // matmul_float.h: f32 panels cols 2^-24 sum|w x|; bf16 2^-8 sum|w x|
                        // + (cols + 2) 2^-24 sum|w x'| + cols 2^-126 max|w|; the bias adds one
                        // rounding of the result (2^-24 |y|, |y| <= |bias| + sum|w x|)
                        double bound = bf ? 0x1p-8 * mag + (cols + 2) * 0x1p-24 * magq + cols * 0x1p-126 * wmax
                                          : cols * 0x1p-24 * mag;
                        if (with_bias) bound += 0x1p-24 * (fabs(bias[r]) + mag + bound);
                        const double err = fabs(y[(size_t)i * rows + r] - ref);
                        worst = cb_test_worst(worst, bound > 0 ? err / bound : err);
                    }
                char what[96];
                snprintf(what, sizeof what, "%s%s %s %dx%d n=%d err / bound", cb_mf_path_name((cb_mf_path)path),
                         path >= CB_MF_AVX512 ? (panels ? " panels" : " rows") : "",
                         k == CB_KV_F32 ? "fp32" : k == CB_KV_F16 ? "fp16" : "bf16", rows, cols, n);
                REPORT_DIFF(what, worst, 1.0);
                EXPECT(worst <= 1.0);
                cb_weight_matrix_free(&m);
            }
            free(w); free(x); free(wq); free(bias); free(y);
        }
    }
    cb_mf_path_force(best);
    cb_mf_panels_force(0);
    if (!paths_run) SKIP("no AVX2 or AVX-512 on this CPU: only the caller's BLAS route runs");
}

/* The row tiles and the panels of an AVX-512 path form every output the same way (one lane
 * sums its products in column order, or bf16 pairs in pair order, by FMA / vdpbf16ps, the
 * multiply commutative): the same bits. */
TEST(matmul_float_rows_equal_panels) {
    const cb_mf_path best = cb_mf_path_current();
    const int shapes[][3] = {{61, 96, 130}, {13, 51, 100}, {50, 768, 64}};
    const cb_kv_kind kinds[] = {CB_KV_F32, CB_KV_F16, CB_KV_BF16};
    int runs = 0;
    for (int path = CB_MF_AVX512; path < CB_MF_PATH_COUNT; path++) {
        if (!cb_mf_path_force((cb_mf_path)path)) continue;
        for (int si = 0; si < 3; si++) {
            const int rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
            float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
            float *bias = malloc(sizeof(float) * rows), *y0 = malloc(sizeof(float) * n * rows);
            float *y1 = malloc(sizeof(float) * n * rows);
            for (int i = 0; i < rows * cols; i++) w[i] = urandf();
            for (int i = 0; i < n * cols; i++) x[i] = urandf() * 3.0f;
            for (int r = 0; r < rows; r++) bias[r] = urandf();
            for (int ki = 0; ki < 3; ki++) {
                cb_weight_matrix m;
                cb_error e;
                EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, kinds[ki], w, rows, cols, &e));
                cb_mf_panels_force(0);
                EXPECT_EQ_INT(1, cb_mf_matmul(y0, &m, x, si == 1 ? bias : NULL, n));
                cb_mf_panels_force(1);
                EXPECT_EQ_INT(1, cb_mf_matmul(y1, &m, x, si == 1 ? bias : NULL, n));
                if (memcmp(y0, y1, sizeof(float) * n * rows) != 0)
                    FAILF("%s %s %dx%d n=%d: row tiles and panels differ", cb_mf_path_name((cb_mf_path)path),
                          cb_kv_kind_name(kinds[ki]), rows, cols, n);
                runs++;
                cb_weight_matrix_free(&m);
            }
            free(w); free(x); free(bias); free(y0); free(y1);
        }
    }
    cb_mf_panels_force(0);
    cb_mf_path_force(best);
    if (!runs) SKIP("no AVX-512 on this CPU: the panels only");
}

/* What the tiles do not take: few tokens, block kinds, the caller's route (path none). */
TEST(matmul_float_refuses) {
    const cb_mf_path best = cb_mf_path_current();
    float w[64 * 32] = {0}, x[17 * 32] = {0}, y[17 * 64];
    cb_weight_matrix m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, CB_KV_Q8_0, w, 64, 32, &e));
    EXPECT_EQ_INT(0, cb_mf_matmul(y, &m, x, NULL, 17));
    cb_weight_matrix_free(&m);
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, CB_KV_F32, w, 64, 32, &e));
    EXPECT_EQ_INT(0, cb_mf_takes(&m, 16));
    EXPECT(cb_mf_path_force(CB_MF_NONE));
    EXPECT_EQ_INT(0, cb_mf_matmul(y, &m, x, NULL, 17));
    cb_mf_path_force(best);
    cb_weight_matrix_free(&m);
}
