/* test_quant_x16.c: q8_0 and q4_0 weights in 16-row groups (backend/cpu/quant_x16.h): the
 * grouping gives back every row's stored bytes; the products of 1..8 tokens on the
 * AVX512-VNNI kernel (where this CPU has it) and the portable loop against an fp64 sum over
 * the stored weights, within quant_int.h's bound; the f32 fallback; no read past the last
 * group; and cb_matvec / cb_matvec_n over a grouped matrix (one token, a few, a prefill
 * chunk) against the same weights stored row by row. */
#include "test.h"
#include "guard_page.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/cpu/matvec.h"
#include "backend/cpu/quant_int.h"
#include "backend/cpu/quant_x16.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

static unsigned long long rng_state = 0x8F1BBCDC6ED9EBA1ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static const cb_kv_kind KINDS[2] = {CB_KV_Q8_0, CB_KV_Q4_0};

/* rows x cols weights of kind, row by row (rows_out) and grouped (returned, 64-byte aligned). */
static unsigned char *make_grouped(cb_kv_kind k, int rows, int cols, unsigned char **rows_out, int extreme) {
    const size_t rb = cb_kv_kind_bytes(k, (size_t)cols);
    unsigned char *w = malloc(rb * rows), *g = aligned_alloc(64, (rb * rows + 63) / 64 * 64);
    float *wf = malloc(sizeof(float) * cols);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < cols; j++)
            wf[j] = extreme ? ((j + r) % 2 ? 1.0f : -1.0f) : urandf() * (j % 5 == 0 ? 2.0f : 0.3f);
        cb_kv_quantize_row(k, w + (size_t)r * rb, wf, (size_t)cols);
    }
    for (int gi = 0; gi < rows / CB_X16_ROWS; gi++)
        cb_x16_pack_group(g + (size_t)gi * CB_X16_ROWS * rb, w + (size_t)gi * CB_X16_ROWS * rb, k, cols);
    free(wf);
    *rows_out = w;
    return g;
}

static double stored_value(cb_kv_kind k, const void *row, size_t j, double *scale) {
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = (const cb_block_q8_0 *)row + j / 32;
        *scale = cb_f16_to_f32(b->d);
        return b->qs[j % 32] * *scale;
    }
    const cb_block_q4_0 *b = (const cb_block_q4_0 *)row + j / 32;
    const int i = (int)(j % 32), nib = i < 16 ? b->qs[i] & 15 : b->qs[i - 16] >> 4;
    *scale = cb_f16_to_f32(b->d);
    return (nib - 8) * *scale;
}

TEST(x16_groups_give_back_every_row) {
    const int shapes[][2] = {{16, 32}, {32, 40}, {48, 100}, {16, 768}};
    for (int ki = 0; ki < 2; ki++)
        for (int s = 0; s < 4; s++) {
            const cb_kv_kind k = KINDS[ki];
            const int rows = shapes[s][0], cols = shapes[s][1];
            const size_t rb = cb_kv_kind_bytes(k, (size_t)cols);
            unsigned char *w, *g = make_grouped(k, rows, cols, &w, 0), *row = malloc(rb);
            for (int r = 0; r < rows; r++) {
                cb_x16_get_row(row, g, k, cols, r);
                if (memcmp(row, w + (size_t)r * rb, rb) != 0)
                    FAILF("%s %dx%d: row %d differs after grouping", cb_kv_kind_name(k), rows, cols, r);
            }
            free(row);
            free(w);
            free(g);
        }
}

/* Worst error / bound of cb_x16_dot over a rows x cols matrix and m tokens. */
static double dot_check(cb_kv_kind k, int rows, int cols, int m, int extreme) {
    unsigned char *w, *g = make_grouped(k, rows, cols, &w, extreme);
    const size_t rb = cb_kv_kind_bytes(k, (size_t)cols);
    float *x = malloc(sizeof(float) * cols * m), *y = malloc(sizeof(float) * (rows * m + 1));
    cb_act_q8 a[CB_QI_MAX_M];
    void *bufs[CB_QI_MAX_M];
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < cols; j++)
            x[(size_t)i * cols + j] = extreme ? ((j + i) % 2 ? -3.0f : 3.0f)
                                              : urandf() * (i % 2 ? 1.0f : 1e-3f) * (j % 3 == 0 ? 4.0f : 1.0f);
        bufs[i] = aligned_alloc(64, (cb_act_q8_bytes((size_t)cols) + 63) / 64 * 64);
        cb_act_q8_init(&a[i], bufs[i], (size_t)cols);
        cb_act_q8_quantize(&a[i], x + (size_t)i * cols);
    }
    for (int i = 0; i <= rows * m; i++) y[i] = NAN;
    // the groups after the first, then the first: g0 and the output offset both move
    cb_x16_dot(k, y + CB_X16_ROWS, (size_t)rows, g, cols, 1, rows / CB_X16_ROWS - 1, a, m);
    cb_x16_dot(k, y, (size_t)rows, g, cols, 0, 1, a, m);
    if (!isnan(y[rows * m])) FAILF("%s %dx%d m %d: wrote past the output", cb_kv_kind_name(k), rows, cols, m);
    const double nb = (double)((cols + 31) / 32);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows; r++) {
            const unsigned char *row = w + (size_t)r * rb;
            double ref = 0, bound = 0, mag = 0;
            for (int j = 0; j < cols; j++) {
                double scale;
                const double v = stored_value(k, row, (size_t)j, &scale);
                const double xj = x[(size_t)i * cols + j], d = a[i].d[(size_t)j / 32 * 8];
                ref += v * xj;
                bound += fabs(v) * d * (0.5 + 0x1p-12);
                mag += fabs(v * a[i].q[j] * d);
            }
            bound += (nb + 8) * 0x1p-24 * mag; // quant_int.h's bound
            worst = cb_test_worst(worst, fabs(y[(size_t)i * rows + r] - ref) / (bound + 1e-30));
        }
    for (int i = 0; i < m; i++) free(bufs[i]);
    free(x);
    free(y);
    free(w);
    free(g);
    return worst;
}

TEST(x16_products_within_bound_on_every_path) {
    const int shapes[][2] = {{16, 32}, {32, 40}, {48, 100}, {32, 768}, {64, 2048}};
    const cb_qi_path best = cb_qi_path_current();
    int paths = 0;
    for (int p = 0; p < CB_QI_PATH_COUNT; p++) {
        // the VNNI kernel, and the portable loop every other path falls back to
        if ((p != CB_QI_AVX512VNNI && p != CB_QI_PORTABLE) || !cb_qi_path_force((cb_qi_path)p)) continue;
        paths++;
        for (int ki = 0; ki < 2; ki++) {
            double worst = 0;
            for (int s = 0; s < 5; s++)
                for (int m = 1; m <= CB_QI_MAX_M; m++)
                    worst = cb_test_worst(worst, dot_check(KINDS[ki], shapes[s][0], shapes[s][1], m, 0));
            const double ext = dot_check(KINDS[ki], 32, 256, 3, 1);
            char what[96];
            snprintf(what, sizeof what, "%s %s 1..8 tokens error / bound", cb_qi_path_name((cb_qi_path)p),
                     cb_kv_kind_name(KINDS[ki]));
            REPORT_DIFF(what, worst, 1.0);
            EXPECT(worst <= 1.0);
            snprintf(what, sizeof what, "%s %s at full scale error / bound", cb_qi_path_name((cb_qi_path)p),
                     cb_kv_kind_name(KINDS[ki]));
            REPORT_DIFF(what, ext, 1.0);
            EXPECT(ext <= 1.0);
        }
    }
    EXPECT(paths >= 1);
    EXPECT(cb_qi_path_force(best));
}

TEST(x16_f32_fallback_matches_fp64) {
    for (int ki = 0; ki < 2; ki++) {
        const cb_kv_kind k = KINDS[ki];
        const int rows = 32, cols = 100, m = 3;
        unsigned char *w, *g = make_grouped(k, rows, cols, &w, 0);
        const size_t rb = cb_kv_kind_bytes(k, (size_t)cols);
        float x[3 * 100], y[3 * 32];
        for (int i = 0; i < m * cols; i++) x[i] = urandf();
        cb_x16_dot_f32(k, y, rows, g, cols, 0, rows / CB_X16_ROWS, x, cols, m);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int r = 0; r < rows; r++) {
                double ref = 0, mag = 0, scale;
                for (int j = 0; j < cols; j++) {
                    const double v = stored_value(k, w + (size_t)r * rb, (size_t)j, &scale);
                    ref += v * x[i * cols + j];
                    mag += fabs(v * x[i * cols + j]);
                }
                // f32: each term two roundings, cols additions
                worst = cb_test_worst(worst, fabs(y[i * rows + r] - ref) / ((cols + 2) * 0x1p-24 * mag + 1e-30));
            }
        REPORT_DIFF(cb_kv_kind_name(k), worst, 1.0);
        EXPECT(worst <= 1.0);
        free(w);
        free(g);
    }
}

TEST(x16_nan_activation_gives_nan) {
    for (int ki = 0; ki < 2; ki++) {
        unsigned char *w, *g = make_grouped(KINDS[ki], 16, 64, &w, 0);
        float x[64], y[16];
        for (int j = 0; j < 64; j++) x[j] = urandf();
        x[40] = NAN;
        cb_act_q8 a;
        void *buf = aligned_alloc(64, (cb_act_q8_bytes(64) + 63) / 64 * 64);
        cb_act_q8_init(&a, buf, 64);
        cb_act_q8_quantize(&a, x);
        cb_x16_dot(KINDS[ki], y, 16, g, 64, 0, 1, &a, 1);
        for (int r = 0; r < 16; r++)
            if (!isnan(y[r])) FAILF("%s row %d: %g, expected NaN", cb_kv_kind_name(KINDS[ki]), r, y[r]);
        free(buf);
        free(w);
        free(g);
    }
}

/* The last group ends where the mapping does (a PROT_NONE page after it): a kernel loading
 * past the group's values or scales faults here. */
TEST(x16_never_reads_past_the_last_group) {
    const size_t span = 16 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *map = cb_test_guarded_span(span);
    if (!map) {
        FAILF("could not map %zu bytes with a guard page after them", span);
        return;
    }
    const int shapes[][2] = {{16, 32}, {16, 40}, {32, 100}, {16, 736}};
    for (int ki = 0; ki < 2; ki++)
        for (int s = 0; s < 4; s++) {
            const cb_kv_kind k = KINDS[ki];
            const int rows = shapes[s][0], cols = shapes[s][1];
            const size_t bytes = cb_kv_kind_bytes(k, (size_t)cols) * rows;
            unsigned char *w, *g = make_grouped(k, rows, cols, &w, 0);
            memcpy(map + span - bytes, g, bytes);
            float x[8 * 736], y[8 * 32];
            for (int i = 0; i < 8 * cols; i++) x[i] = urandf();
            cb_act_q8 a[8];
            void *bufs[8];
            for (int i = 0; i < 8; i++) {
                bufs[i] = aligned_alloc(64, (cb_act_q8_bytes((size_t)cols) + 63) / 64 * 64);
                cb_act_q8_init(&a[i], bufs[i], (size_t)cols);
                cb_act_q8_quantize(&a[i], x + (size_t)i * cols);
            }
            for (int m = 1; m <= 8; m++) cb_x16_dot(k, y, (size_t)rows, map + span - bytes, cols, 0, rows / 16, a, m);
            cb_x16_dot_f32(k, y, (size_t)rows, map + span - bytes, cols, 0, rows / 16, x, (size_t)cols, 2);
            for (int i = 0; i < 8; i++) free(bufs[i]);
            free(w);
            free(g);
        }
    cb_test_guarded_free(map, span);
}

/* cb_matvec and cb_matvec_n over a grouped matrix (as cb_weight_matrix_from_f32 makes it
 * where cb_x16_wanted) against the same stored rows viewed row by row: one token, a few
 * (speculative verification, a batch) and a prefill chunk. Both quantise the activations
 * alike and sum the same exact block sums, so they differ by f32 additions alone. */
TEST(x16_matvec_equals_row_layout) {
    const int shapes[][2] = {{32, 100}, {48, 768}, {256, 64}};
    for (int ki = 0; ki < 2; ki++)
        for (int s = 0; s < 3; s++) {
            const cb_kv_kind k = KINDS[ki];
            const int rows = shapes[s][0], cols = shapes[s][1], ns[4] = {1, 3, 9, 20};
            float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * 20 * cols);
            float *y0 = malloc(sizeof(float) * 20 * rows), *y1 = malloc(sizeof(float) * 20 * rows);
            float *bias = malloc(sizeof(float) * rows);
            for (int i = 0; i < rows * cols; i++) w[i] = urandf();
            for (int i = 0; i < 20 * cols; i++) x[i] = urandf();
            for (int r = 0; r < rows; r++) bias[r] = urandf();
            cb_weight_matrix own, view;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&own, k, w, rows, cols, &e));
            EXPECT_EQ_INT(cb_x16_wanted(k, rows), own.x16);
            unsigned char *rowsbuf = malloc(own.row_bytes * rows), *tmp = malloc(own.row_bytes);
            for (int r = 0; r < rows; r++)
                memcpy(rowsbuf + (size_t)r * own.row_bytes, cb_weight_matrix_row(&own, r, tmp), own.row_bytes);
            free(tmp);
            cb_weight_matrix_view(&view, k, rowsbuf, rows, cols);
            for (int ni = 0; ni < 4; ni++) {
                const int n = ns[ni];
                cb_matvec_n(y0, &own, x, bias, n);
                cb_matvec_n(y1, &view, x, bias, n);
                double worst = 0;
                for (int i = 0; i < n * rows; i++) worst = cb_test_worst(worst, fabs(y0[i] - y1[i]) / (fabs(y1[i]) + 1));
                if (!(worst <= 1e-5))
                    FAILF("%s %dx%d, %d tokens: grouped and row by row differ by %g", cb_kv_kind_name(k), rows, cols, n,
                          worst);
            }
            cb_weight_matrix_free(&own);
            free(rowsbuf);
            free(w);
            free(x);
            free(y0);
            free(y1);
            free(bias);
        }
}
