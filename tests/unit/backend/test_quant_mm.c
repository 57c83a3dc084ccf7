/* test_quant_mm.c: the integer matrix-matrix product of backend/cpu/quant_mm.h (q8_0, q4_0,
 * nf4 weights; more than 16 tokens) against an fp64 sum over the stored weights, within the
 * bound quant_int.h derives for its row kernels (activation rounding, nf4's integer levels,
 * f32 additions): partial row groups and token tiles, partial blocks, odd nf4 block counts,
 * bias, and weights and activations at full scale (every byte at its extreme). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/quant_mm.h"
#include "backend/cpu/quant_x16.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

static unsigned long long rng_state = 0x94D049BB133111EBULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

/* Stored value j of a row (double), its block scale, and nf4's integer level gap. */
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

/* Worst error / bound of cb_qmm over rows x cols weights of kind and n tokens. extreme: every
 * weight and activation at a block's largest magnitude, signs alternating. */
static double mm_check(cb_kv_kind k, int rows, int cols, int n, int with_bias, int extreme) {
    float *wf = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols * n);
    float *y = malloc(sizeof(float) * rows * n), *bias = malloc(sizeof(float) * rows);
    cb_act_q8 *a = malloc(sizeof *a * n);
    void **bufs = malloc(sizeof *bufs * n);
    for (int i = 0; i < rows * cols; i++)
        wf[i] = extreme ? (i % 2 ? 1.0f : -1.0f) : urandf() * (i % 5 == 0 ? 2.0f : 0.3f);
    for (int r = 0; r < rows; r++) bias[r] = urandf();
    cb_weight_matrix W;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&W, k, wf, rows, cols, &e));
    // 16-row groups (quant_x16.h) wherever they are wanted: q8_0/q4_0 of rows 16k here
    EXPECT_EQ_INT(cb_x16_wanted(k, rows), W.x16);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < cols; j++)
            x[(size_t)i * cols + j] = extreme ? (j % 2 ? -3.0f : 3.0f)
                                              : urandf() * (i % 2 ? 1.0f : 1e-3f) * (j % 3 == 0 ? 4.0f : 1.0f);
        bufs[i] = aligned_alloc(64, (cb_act_q8_bytes((size_t)cols) + 63) / 64 * 64);
        cb_act_q8_init(&a[i], bufs[i], (size_t)cols);
        cb_act_q8_quantize(&a[i], x + (size_t)i * cols);
    }
    for (int i = 0; i < rows * n; i++) y[i] = NAN;
    EXPECT(cb_qmm_takes(&W, n));
    EXPECT_EQ_INT(1, cb_qmm(y, &W, a, with_bias ? bias : NULL, n));
    const double nb = (double)((cols + 31) / 32);
    unsigned char *rowbuf = malloc(W.row_bytes);
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            const void *row = cb_weight_matrix_row(&W, r, rowbuf);
            double ref = with_bias ? bias[r] : 0, bound = 0, mag = 0;
            for (int j = 0; j < cols; j++) {
                double scale, lerr;
                const double v = stored_value(k, row, (size_t)j, &scale, &lerr);
                const double xj = x[(size_t)i * cols + j], d = a[i].d[(size_t)j / 32 * 8];
                ref += v * xj;
                bound += fabs(v) * d * (0.5 + 0x1p-12) + (fabs(xj) + d) * fabs(scale) * lerr;
                mag += fabs(v * a[i].q[j] * d);
            }
            bound += (nb + 8) * 0x1p-24 * mag; // quant_int.h's bound
            if (with_bias) bound += 0x1p-24 * (fabs(bias[r]) + mag + bound); // one more rounding
            worst = cb_test_worst(worst, fabs(y[(size_t)i * rows + r] - ref) / (bound + 1e-30));
        }
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(rowbuf);
    cb_weight_matrix_free(&W);
    free(wf); free(x); free(y); free(bias); free(a); free(bufs);
    return worst;
}

TEST(qmm_every_kind_and_shape) {
    if (cb_qi_path_current() != CB_QI_AVX512VNNI) SKIP("no AVX512-VNNI here: the row tiles do these products");
    const cb_kv_kind kinds[3] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    // rows of 16k: q8_0 and q4_0 in 16-row groups (quant_x16.h), the others row by row
    const int shapes[][3] = {{37, 32, 17}, {64, 100, 25}, {129, 768, 40}, {16, 2048, 19}, {70, 96, 24}, {5, 33, 30},
                             {48, 40, 18}};
    for (int ki = 0; ki < 3; ki++) {
        double worst = 0, worst_ext = 0;
        for (int s = 0; s < 7; s++)
            worst = cb_test_worst(worst, mm_check(kinds[ki], shapes[s][0], shapes[s][1], shapes[s][2], s % 2, 0));
        worst_ext = cb_test_worst(mm_check(kinds[ki], 33, 256, 20, 0, 1), mm_check(kinds[ki], 32, 256, 20, 1, 1));
        char what[96];
        snprintf(what, sizeof what, "%s rows x 17..40 tokens error / bound", cb_kv_kind_name(kinds[ki]));
        REPORT_DIFF(what, worst, 1.0);
        EXPECT(worst <= 1.0);
        snprintf(what, sizeof what, "%s at full scale error / bound", cb_kv_kind_name(kinds[ki]));
        REPORT_DIFF(what, worst_ext, 1.0);
        EXPECT(worst_ext <= 1.0);
    }
}

/* Few tokens, float kinds, another integer path, or disabled: not taken. */
TEST(qmm_refuses) {
    float w[64 * 32] = {0};
    cb_weight_matrix W;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&W, CB_KV_Q8_0, w, 64, 32, &e));
    EXPECT_EQ_INT(0, cb_qmm_takes(&W, 16));
    cb_qmm_enable(0);
    EXPECT_EQ_INT(0, cb_qmm_takes(&W, 100));
    cb_qmm_enable(1);
    const cb_qi_path best = cb_qi_path_current();
    if (cb_qi_path_force(CB_QI_AVX2)) EXPECT_EQ_INT(0, cb_qmm_takes(&W, 100));
    cb_qi_path_force(best);
    EXPECT_EQ_INT(best == CB_QI_AVX512VNNI, cb_qmm_takes(&W, 100));
    cb_weight_matrix_free(&W);
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&W, CB_KV_F32, w, 64, 32, &e));
    EXPECT_EQ_INT(0, cb_qmm_takes(&W, 100));
    cb_weight_matrix_free(&W);
}
