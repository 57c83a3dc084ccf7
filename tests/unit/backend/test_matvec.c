/* test_matvec.c: y = W x for every weight storage kind against a double reference over the
 * f32 weights, within a bound built from the per-value error of the kind; the n-token
 * variant against n single products; views of stored data. */
#include "test.h"
#include "guard_page.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul_float.h"
#include "backend/cpu/matvec.h"
#include "backend/cpu/quant_int.h"
#include "tensor/dtype.h"

static unsigned long long rng_state = 0xBF58476D1CE4E5B9ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

/* Largest error of a stored value of w[j], relative to the largest magnitude in its block
 * (test_quant.c derives these): fp16/bf16 relative to |w[j]| instead. */
static double value_bound(cb_kv_kind k, const float *row, int cols, int j) {
    switch (k) {
    case CB_KV_F32: return 0;
    case CB_KV_F16: return fabs(row[j]) * 0x1p-11 + 0x1p-25; // + half the smallest subnormal
    case CB_KV_BF16: return fabs(row[j]) * 0x1p-8;
    default: break;
    }
    int bv = cb_kv_kind_block_values(k), b0 = j / bv * bv;
    double amax = 0;
    for (int i = b0; i < b0 + bv && i < cols; i++) amax = cb_test_worst(amax, fabs(row[i]));
    double rel = k == CB_KV_Q8_0 ? 1.0 / 254 + 0x1p-11 : k == CB_KV_Q4_0 ? 1.0 / 8 + 0x1p-11
                                                      : 0.1519036 * (1 + 0x1p-11) + 0x1p-11;
    return amax * rel;
}

/* nf4's scale for w[j]: the largest |w| of its 64-value block, rounded to fp16 (up to 2^-11). */
static double nf4_scale(const float *row, int cols, int j) {
    double amax = 0;
    for (int i = j / 64 * 64; i < j / 64 * 64 + 64 && i < cols; i++) amax = cb_test_worst(amax, fabs(row[i]));
    return amax * (1 + 0x1p-11);
}

/* The largest |x| in the 32-value block of x[j]. */
static double block_amax(const float *x, int n, int j) {
    double amax = 0;
    for (int i = j / 32 * 32; i < j / 32 * 32 + 32 && i < n; i++) amax = cb_test_worst(amax, fabs(x[i]));
    return amax;
}

TEST(matvec_every_kind) {
    const int shapes[][2] = {{37, 100}, {64, 256}, {300, 64}, {5, 33}, {129, 2048}};
    for (int si = 0; si < 5; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1];
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols);
        float *bias = malloc(sizeof(float) * rows), *y = malloc(sizeof(float) * rows);
        for (int i = 0; i < rows * cols; i++) w[i] = urandf() * (i % 7 == 0 ? 3.0f : 0.5f);
        for (int j = 0; j < cols; j++) x[j] = urandf();
        for (int r = 0; r < rows; r++) bias[r] = urandf();
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_weight_matrix m;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, (cb_kv_kind)k, w, rows, cols, &e));
            EXPECT_EQ_INT((size_t)rows * cb_kv_kind_bytes((cb_kv_kind)k, cols), cb_weight_matrix_bytes(&m));
            cb_matvec(y, &m, x, bias);
            double worst = 0; // error / (quantization bound + f32 summation allowance)
            for (int r = 0; r < rows; r++) {
                const float *wr = w + (size_t)r * cols;
                double ref = bias[r], bound = 0, mag = fabs(bias[r]);
                for (int j = 0; j < cols; j++) {
                    ref += (double)wr[j] * x[j];
                    bound += value_bound((cb_kv_kind)k, wr, cols, j) * fabs(x[j]);
                    // q8_0, q4_0, nf4: the input held as int8 blocks (quant_int.h), at most
                    // (1/2 + 2^-12) steps of amax / 127 per value, times the stored weight
                    // (<= |w| + its bound); nf4's levels held to the nearest 1/127, times
                    // its scale (<= the 64-value block's amax) and the held input
                    if (cb_qi_kind((cb_kv_kind)k)) {
                        const double step = block_amax(x, cols, j) / 127 * (1 + 0x1p-20);
                        bound += (fabs(wr[j]) + value_bound((cb_kv_kind)k, wr, cols, j)) * step * (0.5 + 0x1p-12);
                        if (k == CB_KV_NF4)
                            bound += (fabs(x[j]) + step) * nf4_scale(wr, cols, j) * CB_NF4_I8_LEVEL_ERR;
                    }
                    mag += fabs((double)wr[j] * x[j]);
                }
                // f32 additions: quant_int.h's (nb + 8) 2^-24 of the sum of held products
                // (each within 2% of |w x| here, and more where an input rounds up)
                const double f32 = cb_qi_kind((cb_kv_kind)k) ? ((cols + 31) / 32 + 8) * 0x1p-24 * 1.1 : 1e-6;
                double err = fabs(y[r] - ref), allow = bound + f32 * mag + (cb_qi_kind((cb_kv_kind)k) ? 1e-6 * mag : 0);
                worst = cb_test_worst(worst, err / allow);
            }
            char what[64];
            snprintf(what, sizeof what, "matvec %s %dx%d error / bound", cb_kv_kind_name((cb_kv_kind)k), rows, cols);
            REPORT_DIFF(what, worst, 1.0);
            if (!(worst <= 1.0)) FAILF("%s %dx%d: error %.3g times its bound", cb_kv_kind_name((cb_kv_kind)k), rows, cols, worst);
            cb_weight_matrix_free(&m);
        }
        free(w); free(x); free(bias); free(y);
    }
}

/* n tokens at once equals n single products (to f32 summation order, relative to the sum
 * of |w x|) for every kind. */
TEST(matvec_n_tokens) {
    const int rows = 70, cols = 160;
    const int ns[] = {2, 3, 8, 9, 16, 17, 40};
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * 40 * cols);
    float *y = malloc(sizeof(float) * 40 * rows), *y1 = malloc(sizeof(float) * rows), bias[70];
    for (int i = 0; i < rows * cols; i++) w[i] = urandf();
    for (int i = 0; i < 40 * cols; i++) x[i] = urandf();
    for (int r = 0; r < rows; r++) bias[r] = urandf();
    double worst = 0, worst_bf = 0;
    for (int k = 0; k < CB_KV_COUNT; k++) {
        cb_weight_matrix m;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&m, (cb_kv_kind)k, w, rows, cols, &e));
        for (int ni = 0; ni < 7; ni++) {
            const int n = ns[ni];
            // bf16 weights and a prefill chunk on the vdpbf16ps tiles: the tokens are rounded
            // to bf16 (matmul_float.h), 2^-8 of sum |w x| apart from one token's product
            const int bf = k == CB_KV_BF16 && cb_mf_takes(&m, n) && cb_mf_path_current() == CB_MF_AVX512BF16;
            cb_matvec_n(y, &m, x, ni % 2 ? bias : NULL, n);
            for (int i = 0; i < n; i++) {
                cb_matvec(y1, &m, x + (size_t)i * cols, ni % 2 ? bias : NULL);
                for (int r = 0; r < rows; r++) {
                    double mag = 1.0; // the bias's scale, then sum |w x|
                    for (int j = 0; j < cols; j++) mag += fabs((double)w[r * cols + j] * x[i * cols + j]);
                    const double d = fabs(y[(size_t)i * rows + r] - y1[r]) / mag;
                    if (bf) worst_bf = cb_test_worst(worst_bf, d);
                    else worst = cb_test_worst(worst, d);
                }
            }
        }
        cb_weight_matrix_free(&m);
    }
    REPORT_DIFF("matvec_n vs matvec / sum |w x|", worst, 1e-6);
    EXPECT(worst <= 1e-6);
    REPORT_DIFF("bf16 tiles (bf16 tokens) vs matvec / sum |w x|", worst_bf, 0x1p-8 + 1e-6);
    EXPECT(worst_bf <= 0x1p-8 + 1e-6);
    free(w); free(x); free(y); free(y1);
}

/* A view over bf16 data laid out as the kind's rows (a memory-mapped checkpoint) gives the
 * same products as the converted copy; bad arguments are refused. */
TEST(matvec_view_and_errors) {
    const int rows = 10, cols = 48;
    float w[480], x[48], a[10], b[10];
    uint16_t raw[480];
    for (int i = 0; i < 480; i++) w[i] = urandf();
    for (int j = 0; j < 48; j++) x[j] = urandf();
    cb_f32_to_bf16_n(raw, w, 480);
    cb_weight_matrix conv, view;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&conv, CB_KV_BF16, w, rows, cols, &e));
    cb_weight_matrix_view(&view, CB_KV_BF16, raw, rows, cols);
    EXPECT(view.owned == NULL);
    EXPECT(memcmp(conv.data, raw, sizeof raw) == 0);
    cb_matvec(a, &conv, x, NULL);
    cb_matvec(b, &view, x, NULL);
    EXPECT(memcmp(a, b, sizeof a) == 0);
    cb_weight_matrix_free(&view);
    cb_weight_matrix_free(&conv);
    EXPECT_EQ_INT(CB_E_INVALID, cb_weight_matrix_from_f32(&conv, (cb_kv_kind)99, w, rows, cols, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_weight_matrix_from_f32(&conv, CB_KV_Q8_0, w, 0, cols, &e));
}

/* A matrix whose last row ends where its mapping does (a PROT_NONE page after it), viewed
 * in place as memory-mapped weights are: every kind, one token and three, gives what the same
 * rows give in an owned copy, and no kernel reads a byte past the last row (it would fault
 * here; past an owned copy it reads the allocator's slack unnoticed). */
TEST(matvec_never_reads_past_the_last_row) {
    const int shapes[][2] = {{1, 32}, {3, 33}, {5, 100}, {4, 768}, {7, 736}};
    const size_t span = 16 * (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *map = cb_test_guarded_span(span);
    if (!map) {
        FAILF("could not map %zu bytes with a guard page after them", span);
        return;
    }
    float w[7 * 768], x[3 * 768], y0[3 * 7], y1[3 * 7];
    for (int i = 0; i < 7 * 768; i++) w[i] = urandf();
    for (int i = 0; i < 3 * 768; i++) x[i] = urandf();
    for (int si = 0; si < 5; si++)
        for (int k = 0; k < CB_KV_COUNT; k++) {
            const int rows = shapes[si][0], cols = shapes[si][1];
            cb_weight_matrix own, view;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_weight_matrix_from_f32(&own, (cb_kv_kind)k, w, rows, cols, &e));
            const size_t bytes = cb_weight_matrix_bytes(&own);
            if (bytes > span) {
                FAILF("%zu bytes do not fit the mapping", bytes);
                cb_weight_matrix_free(&own);
                continue;
            }
            memcpy(map + span - bytes, own.data, bytes);
            cb_weight_matrix_view(&view, (cb_kv_kind)k, map + span - bytes, rows, cols);
            for (int n = 1; n <= 3; n += 2) {
                if (n == 1) {
                    cb_matvec(y0, &own, x, NULL);
                    cb_matvec(y1, &view, x, NULL);
                } else {
                    cb_matvec_n(y0, &own, x, NULL, n);
                    cb_matvec_n(y1, &view, x, NULL, n);
                }
                for (int i = 0; i < n * rows; i++)
                    if (!(fabs(y1[i] - y0[i]) <= 1e-5 * (fabs(y0[i]) + 1)))
                        FAILF("%s %dx%d, %d tokens, value %d: %g in place, %g in a copy", cb_kv_kind_name((cb_kv_kind)k),
                              rows, cols, n, i, y1[i], y0[i]);
            }
            cb_weight_matrix_free(&own);
        }
    cb_test_guarded_free(map, span);
}
