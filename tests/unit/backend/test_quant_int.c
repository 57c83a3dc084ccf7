/* test_quant_int.c: the integer kernels of backend/cpu/quant_int.h on every path this CPU
 * can run (each forced in turn): int8 activation blocks within half a step, and the row
 * products of q8_0, q4_0 and nf4 weights for 1..8 tokens against an fp64 sum over the stored
 * weights, within the bound quant_int.h derives (activation rounding, nf4's integer levels,
 * f32 additions). The row checks run twice: activations as quantised, and with the q4_0
 * three-block layout (cb_act_q8_layout_q4), which one token's q4_0 rows take where it is laid. */
#include "test.h"
#include "guard_page.h"

#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/quant_int.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

static unsigned long long rng_state = 0xD1B54A32D192ED03ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static void *act_buf(cb_act_q8 *a, size_t n) {
    void *buf = aligned_alloc(64, (cb_act_q8_bytes(n) + 63) / 64 * 64);
    cb_act_q8_init(a, buf, n);
    return buf;
}

/* a = x quantised; with layout, also the q4_0 layout, which every AVX-512 path must lay (a
 * check that would pass without ever reaching the three-block kernel is no check). */
static int g_layout;
static void act_quantize(cb_act_q8 *a, const float *x) {
    cb_act_q8_quantize(a, x);
    if (!g_layout) return;
    cb_act_q8_layout_q4(a);
    if ((a->g3 != NULL) != (cb_qi_path_current() >= CB_QI_AVX512BW))
        FAILF("%s path: q4_0 layout %s", cb_qi_path_name(cb_qi_path_current()), a->g3 ? "laid" : "not laid");
}

TEST(act_q8_quantize_bounds) {
    const size_t n = 100; // 3 whole blocks and a partial one of 4 values
    float x[100];
    cb_act_q8 a;
    void *buf = act_buf(&a, n);
    EXPECT_EQ_INT(4, (int)a.nb);
    for (size_t j = 0; j < n; j++) x[j] = urandf() * (j < 32 ? 1e-3f : j < 64 ? 0.0f : 50.0f);
    x[70] = -50.0f; // the block's extreme: exactly -127
    memset(a.q, 0x55, a.nb * 32);
    cb_act_q8_quantize(&a, x);
    EXPECT(a.d[1 * 8] == 0.0f);
    EXPECT_EQ_INT(-127, a.q[70]);
    double worst = 0;
    for (size_t b = 0; b < a.nb; b++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += a.q[b * 32 + j];
        for (int l = 0; l < 8; l++) {
            EXPECT_EQ_INT(-16 * sum, a.c128[b * 8 + l]);
            EXPECT_EQ_INT(-sum, a.c8[b * 8 + l]);
            EXPECT(a.d[b * 8 + l] == a.d[b * 8]);
        }
    }
    for (size_t j = 0; j < n; j++) {
        const double step = a.d[j / 32 * 8];
        const double err = fabs((double)a.q[j] * step - x[j]);
        if (step > 0) worst = cb_test_worst(worst, err / (step * (0.5 + 0x1p-12)));
        else EXPECT_EQ_INT(0, a.q[j]);
    }
    REPORT_DIFF("int8 activation error / (1/2 + 2^-12) step", worst, 1.0);
    EXPECT(worst <= 1.0);
    for (size_t j = n; j < a.nb * 32; j++) EXPECT_EQ_INT(0, a.q[j]);
    x[5] = NAN;
    cb_act_q8_quantize(&a, x);
    EXPECT(isnan(a.d[0]));
    free(buf);
}

/* Every path quantises to the same bytes as the portable loop (the AVX-512 one does the same
 * f32 operations 16 lanes at a time): whole and partial blocks, zeros, tiny and huge values,
 * values at half steps (ties), a NaN block and an infinite one. */
TEST(act_q8_quantize_paths_agree) {
    const size_t sizes[] = {1, 17, 32, 100, 768, 2049};
    const cb_qi_path best = cb_qi_path_current();
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const size_t n = sizes[si];
        float *x = malloc(sizeof(float) * n);
        for (size_t j = 0; j < n; j++) {
            const size_t blk = j / 32;
            x[j] = urandf() * (blk % 5 == 0 ? 1e-30f : blk % 5 == 1 ? 0.0f : blk % 5 == 2 ? 3e30f : 1.0f);
            if (blk % 5 == 4 && j % 7 == 0) x[j] = (float)(j % 32) * 0.5f - 8.0f; // ties after scaling by 127/amax?
        }
        if (n > 200) {
            x[130] = NAN;
            x[170] = -INFINITY;
        }
        cb_act_q8 ref, a;
        void *rb = act_buf(&ref, n), *ab = act_buf(&a, n);
        EXPECT(cb_qi_path_force(CB_QI_PORTABLE));
        memset(ref.q, 0x55, cb_act_q8_bytes(n));
        cb_act_q8_quantize(&ref, x);
        for (int p = 1; p < CB_QI_PATH_COUNT; p++) {
            if (!cb_qi_path_force((cb_qi_path)p)) continue;
            memset(a.q, 0x33, cb_act_q8_bytes(n));
            cb_act_q8_quantize(&a, x);
            const size_t B = a.nb * CB_QI_BLOCK;
            int same = memcmp(a.q, ref.q, B) == 0 && memcmp(a.c128, ref.c128, B) == 0 && memcmp(a.c8, ref.c8, B) == 0;
            for (size_t l = 0; l < a.nb * 8; l++)
                same &= a.d[l] == ref.d[l] || (isnan(a.d[l]) && isnan(ref.d[l]));
            if (!same) FAILF("%s: quantised %zu values differently from portable", cb_qi_path_name((cb_qi_path)p), n);
        }
        free(rb);
        free(ab);
        free(x);
    }
    EXPECT(cb_qi_path_force(best));
}

TEST(nf4_integer_levels) {
    double worst = 0;
    for (int i = 0; i < 16; i++) {
        EXPECT_EQ_INT((int)lrint(127.0 * cb_nf4_levels[i]), cb_nf4_levels_i8[i]);
        worst = cb_test_worst(worst, fabs(cb_nf4_levels_i8[i] / 127.0 - cb_nf4_levels[i]));
    }
    REPORT_DIFF("nf4 integer level error", worst, CB_NF4_I8_LEVEL_ERR);
    EXPECT(worst <= CB_NF4_I8_LEVEL_ERR);
}

/* The stored value j of a row of kind (double), its block scale, and for nf4 the gap between
 * the level and the kernels' integer level (0 for the exact formats). */
static double stored_value(cb_kv_kind k, const void *row, size_t j, double *scale, double *level_err) {
    *level_err = 0;
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = (const cb_block_q8_0 *)row + j / 32;
        *scale = cb_f16_to_f32(b->d);
        return b->qs[j % 32] * *scale;
    }
    if (k == CB_KV_Q4_0) {
        const cb_block_q4_0 *b = (const cb_block_q4_0 *)row + j / 32;
        const int i = (int)(j % 32), nib = i < 16 ? b->qs[i] & 15 : b->qs[i - 16] >> 4;
        *scale = cb_f16_to_f32(b->d);
        return (nib - 8) * *scale;
    }
    const cb_block_nf4 *b = (const cb_block_nf4 *)row + j / 64;
    const int i = (int)(j % 64), idx = i < 32 ? b->qs[i] & 15 : b->qs[i - 32] >> 4;
    *scale = cb_f16_to_f32(b->d);
    *level_err = fabs(cb_nf4_levels_i8[idx] / 127.0 - cb_nf4_levels[idx]);
    return (double)cb_nf4_levels[idx] * *scale;
}

/* Worst error / bound of cb_qi_rows_dot over rows x cols weights of kind and m tokens. */
static double rows_check(cb_kv_kind k, int rows, int cols, int m, float xscale) {
    const size_t row_bytes = cb_kv_kind_bytes(k, (size_t)cols);
    unsigned char *w = malloc(row_bytes * rows);
    float *wf = malloc(sizeof(float) * cols), *x = malloc(sizeof(float) * cols * m);
    float *y = malloc(sizeof(float) * rows * m);
    cb_act_q8 a[CB_QI_MAX_M];
    void *bufs[CB_QI_MAX_M];
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < cols; j++) wf[j] = urandf() * (j % 5 == 0 ? 2.0f : 0.3f);
        cb_kv_quantize_row(k, w + (size_t)r * row_bytes, wf, (size_t)cols);
    }
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < cols; j++) x[(size_t)i * cols + j] = urandf() * xscale * (j % 3 == 0 ? 4.0f : 1.0f);
        bufs[i] = act_buf(&a[i], (size_t)cols);
        act_quantize(&a[i], x + (size_t)i * cols);
    }
    cb_qi_rows_dot(k, y, (size_t)rows, w, row_bytes, rows, a, m);
    const double nb = (double)((cols + 31) / 32);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows; r++) {
            const void *row = w + (size_t)r * row_bytes;
            double ref = 0, bound = 0, mag = 0;
            for (int j = 0; j < cols; j++) {
                double scale, lerr;
                const double v = stored_value(k, row, (size_t)j, &scale, &lerr);
                const double xj = x[(size_t)i * cols + j], d = a[i].d[(size_t)j / 32 * 8];
                ref += v * xj;
                bound += fabs(v) * d * (0.5 + 0x1p-12) + (fabs(xj) + d) * fabs(scale) * lerr;
                mag += fabs(v * a[i].q[j] * d);
            }
            bound += (nb + 8) * 0x1p-24 * mag;
            worst = cb_test_worst(worst, fabs(y[(size_t)i * rows + r] - ref) / (bound + 1e-30));
        }
    for (int i = 0; i < m; i++) free(bufs[i]);
    free(w); free(wf); free(x); free(y);
    return worst;
}

TEST(qi_rows_every_path_kind_and_m) {
    const cb_kv_kind kinds[3] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    // (q4_0 rows of 1 to 96 blocks: three-block groups with 0, 1 and 2 blocks left over; one
    // token's 8-row groups, then 4, then single rows: 13 rows of 768 and 100 values)
    const int shapes[][2] = {{7, 32}, {5, 64}, {13, 100}, {4, 33}, {13, 768}, {3, 2048}, {5, 96}, {8, 160}, {9, 3072}};
    const cb_qi_path best = cb_qi_path_current();
    int tested = 0;
    for (int p = 0; p < CB_QI_PATH_COUNT; p++) {
        if (!cb_qi_path_force((cb_qi_path)p)) {
            printf("# path %s: not on this CPU\n", cb_qi_path_name((cb_qi_path)p));
            continue;
        }
        tested++;
        for (g_layout = 0; g_layout <= 1; g_layout++)
            for (int ki = 0; ki < 3; ki++) {
                double worst = 0;
                for (int s = 0; s < 9; s++)
                    for (int m = 1; m <= CB_QI_MAX_M; m++)
                        worst = cb_test_worst(worst,
                                              rows_check(kinds[ki], shapes[s][0], shapes[s][1], m, m % 2 ? 1.0f : 1e-3f));
                char what[112];
                snprintf(what, sizeof what, "%s %s rows x 1..8 tokens%s error / bound", cb_qi_path_name((cb_qi_path)p),
                         cb_kv_kind_name(kinds[ki]), g_layout ? " (q4_0 layout)" : "");
                REPORT_DIFF(what, worst, 1.0);
                if (!(worst <= 1.0)) FAILF("%s: error %.3g times its bound", what, worst);
            }
        g_layout = 0;
    }
    EXPECT(tested >= 1);
    EXPECT(cb_qi_path_force(best));
}

/* The extremes: weights and activations at full scale (int8 -127/127, nibbles 0 and 15,
 * nf4 levels +-1) so that a saturating int16 pair sum would show; 13 copies of the row, so
 * that q4_0's 8-row and 4-row one-token kernels and the one-row one after them see them. */
TEST(qi_rows_extremes_every_path) {
    const cb_kv_kind kinds[3] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    const int cols = 256;
    float wf[256], x[256];
    const cb_qi_path best = cb_qi_path_current();
    for (int p = 0; p < CB_QI_PATH_COUNT; p++) {
        if (!cb_qi_path_force((cb_qi_path)p)) continue;
        for (g_layout = 0; g_layout <= 1; g_layout++)
        for (int ki = 0; ki < 3; ki++) {
            for (int sign = -1; sign <= 1; sign += 2) {
                const cb_kv_kind k = kinds[ki];
                unsigned char row[13 * 512];
                for (int j = 0; j < cols; j++) {
                    wf[j] = (j % 2 ? 1.0f : -1.0f) * (k == CB_KV_Q4_0 ? (j % 4 < 2 ? 1.0f : -1.0f) : 1.0f);
                    x[j] = (float)sign * wf[j];
                }
                const size_t rb = cb_kv_kind_bytes(k, cols);
                for (int r = 0; r < 13; r++) cb_kv_quantize_row(k, row + r * rb, wf, cols);
                cb_act_q8 a;
                void *buf = act_buf(&a, cols);
                act_quantize(&a, x);
                float y[13];
                cb_qi_rows_dot(k, y, 13, row, rb, 13, &a, 1);
                double ref = 0, scale, lerr;
                for (int j = 0; j < cols; j++) ref += stored_value(k, row, (size_t)j, &scale, &lerr) * x[j];
                for (int r = 0; r < 13; r++)
                    if (!(fabs(y[r] - ref) <= 1e-3 * fabs(ref) + 1e-3))
                        FAILF("%s %s sign %d row %d: %g, expected %g", cb_qi_path_name((cb_qi_path)p), cb_kv_kind_name(k),
                              sign, r, y[r], ref);
                free(buf);
            }
        }
        g_layout = 0;
    }
    EXPECT(cb_qi_path_force(best));
}

/* The last row of a matrix ends where the mapping does (a PROT_NONE page after it), in rows of
 * an odd number of blocks: a kernel that loads past a row's last block (q4_0's masked
 * two-block load without its mask, a two-block q8_0 load) faults here, where reading into the
 * next row or into padding goes unnoticed. Every path, kind, 1..13 rows (the 8-row and 4-row
 * one-token kernels and the rows after them), 1 and 3 tokens. */
TEST(qi_rows_never_read_past_the_last_block) {
    const cb_kv_kind kinds[3] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    // 1, 3, 5 and 23 blocks of 32 (nf4: 64 values a block); q4_0's three-block groups: 1, 1,
    // 2 (the second of 2 blocks) and 8 (the last of 2 blocks)
    const int cols_list[4] = {32, 96, 160, 736};
    const size_t span = 4 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *map = cb_test_guarded_span(span);
    if (!map) {
        FAILF("could not map %zu bytes with a guard page after them", span);
        return;
    }
    const cb_qi_path best = cb_qi_path_current();
    float wf[736], x[3 * 736], y[3 * 13];
    for (int j = 0; j < 3 * 736; j++) x[j] = urandf();
    for (int j = 0; j < 736; j++) wf[j] = urandf();
    int checked = 0;
    for (int p = 0; p < CB_QI_PATH_COUNT; p++) {
        if (!cb_qi_path_force((cb_qi_path)p)) continue;
        for (g_layout = 0; g_layout <= 1; g_layout++)
        for (int ki = 0; ki < 3; ki++)
            for (int ci = 0; ci < 4; ci++)
                for (int rows = 1; rows <= 13; rows++)
                    for (int m = 1; m <= 3; m += 2) {
                        const cb_kv_kind k = kinds[ki];
                        const int cols = cols_list[ci];
                        const size_t rb = cb_kv_kind_bytes(k, (size_t)cols);
                        unsigned char *w = map + span - rows * rb; // the last byte of the last row is span - 1
                        for (int r = 0; r < rows; r++) cb_kv_quantize_row(k, w + r * rb, wf, (size_t)cols);
                        cb_act_q8 a[3];
                        void *bufs[3];
                        for (int i = 0; i < m; i++) {
                            bufs[i] = act_buf(&a[i], (size_t)cols);
                            act_quantize(&a[i], x + i * cols);
                        }
                        cb_qi_rows_dot(k, y, (size_t)rows, w, rb, rows, a, m);
                        double ref = 0, scale, lerr;
                        for (int j = 0; j < cols; j++) ref += stored_value(k, w, (size_t)j, &scale, &lerr) * x[j];
                        for (int r = 0; r < rows; r++)
                            if (!(fabs(y[r] - ref) <= 0.05 * sqrt((double)cols)))
                                FAILF("%s %s %d cols row %d: %g, expected about %g", cb_qi_path_name((cb_qi_path)p),
                                      cb_kv_kind_name(k), cols, r, y[r], ref);
                        for (int i = 0; i < m; i++) free(bufs[i]);
                        checked++;
                    }
        g_layout = 0;
    }
    EXPECT(checked >= 2 * 3 * 4 * 13 * 2);
    EXPECT(cb_qi_path_force(best));
    cb_test_guarded_free(map, span);
}

TEST(qi_nan_activation_gives_nan) {
    const int cols = 64;
    float wf[64], x[64];
    for (int j = 0; j < cols; j++) wf[j] = x[j] = urandf();
    x[40] = NAN;
    cb_act_q8 a;
    void *buf = act_buf(&a, cols);
    cb_act_q8_quantize(&a, x);
    unsigned char row[2 * sizeof(cb_block_q8_0)]; // 64 values: two blocks
    cb_kv_quantize_row(CB_KV_Q8_0, row, wf, cols);
    float y = 0;
    cb_qi_rows_dot(CB_KV_Q8_0, &y, 1, row, cb_kv_kind_bytes(CB_KV_Q8_0, cols), 1, &a, 1);
    EXPECT(isnan(y));
    // q4_0, 4 rows, through the three-block layout where the path lays it
    unsigned char rows4[4 * 2 * sizeof(cb_block_q4_0)];
    const size_t rb = cb_kv_kind_bytes(CB_KV_Q4_0, cols);
    for (int r = 0; r < 4; r++) cb_kv_quantize_row(CB_KV_Q4_0, rows4 + r * rb, wf, cols);
    cb_act_q8_layout_q4(&a);
    float y4[4] = {0};
    cb_qi_rows_dot(CB_KV_Q4_0, y4, 4, rows4, rb, 4, &a, 1);
    for (int r = 0; r < 4; r++) EXPECT(isnan(y4[r]));
    free(buf);
}
