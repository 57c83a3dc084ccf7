/* test_quant_act.c: int16 activation blocks (each value within half a step of its block's
 * amax / 32767, zero blocks, zeroed padding, no wrap at the extremes) and the q8_0 x int16
 * dot products against the exact integer sums computed here in double. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "backend/cpu/quant_act.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

TEST(act_quantize_bounds) {
    const size_t n = 100; // 3 whole blocks and a partial one of 4 values
    float x[100];
    int16_t q[128];
    float d[4];
    for (size_t j = 0; j < n; j++) x[j] = urandf() * (j < 32 ? 1e-3f : j < 64 ? 0.0f : 50.0f);
    x[70] = -50.0f; // the block's extreme: exactly -32767
    memset(q, 0x55, sizeof q);
    cb_act_quantize_i16(q, d, x, n);
    EXPECT_EQ_INT(4, (int)cb_act_blocks(n));
    EXPECT(d[1] == 0.0f);
    EXPECT_EQ_INT(-32767, q[70]);
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        const double step = d[j / 32];
        const double err = fabs((double)q[j] * step - x[j]);
        if (step > 0) worst = cb_test_worst(worst, err / (step / 2 * (1 + 1e-6) + 1e-12));
        else EXPECT_EQ_INT(0, q[j]);
    }
    REPORT_DIFF("int16 value error / half step", worst, 1.0);
    EXPECT(worst <= 1.0);
    for (size_t j = n; j < 128; j++) EXPECT_EQ_INT(0, q[j]);
}

TEST(q8_0_dot_i16_exact_blocks) {
    const int cols = 200, nb = 7, m = 5; // a partial last block
    float w[200], x[5][200];
    cb_block_q8_0 row[7];
    int16_t q[5][224];
    float d[5][7];
    for (int j = 0; j < cols; j++) w[j] = urandf();
    cb_kv_quantize_row(CB_KV_Q8_0, row, w, cols);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < cols; j++) x[i][j] = urandf() * (i + 1);
        cb_act_quantize_i16(q[i], d[i], x[i], cols);
    }
    float out[5];
    cb_q8_0_dot_i16_m(out, row, &q[0][0], 224, &d[0][0], 7, nb, m);
    double worst = 0;
    for (int i = 0; i < m; i++) {
        double ref = 0, mag = 0;
        for (int b = 0; b < nb; b++) {
            long long s = 0; // the exact integer sum the kernels must reproduce
            for (int j = 0; j < 32; j++) s += (long long)row[b].qs[j] * q[i][b * 32 + j];
            const double term = (double)s * ((double)cb_f16_to_f32(row[b].d) * d[i][b]);
            ref += term;
            mag += fabs(term);
        }
        const float one = cb_q8_0_dot_i16(row, q[i], d[i], nb);
        worst = cb_test_worst(worst, fabs(one - ref) / mag);
        worst = cb_test_worst(worst, fabs(out[i] - ref) / mag);
    }
    REPORT_DIFF("q8_0 x int16 dot vs exact block sums / sum |terms|", worst, 1e-6);
    EXPECT(worst <= 1e-6); // f32 rounding of the scales and of the adds only
}

/* A NaN or an infinity in the input makes its block's products NaN (as an f32 dot would be
 * NaN or infinite), never an integer cast of a NaN. */
TEST(act_quantize_non_finite) {
    float x[64], w[64];
    int16_t q[64];
    float d[2];
    cb_block_q8_0 row[2];
    for (int j = 0; j < 64; j++) x[j] = w[j] = 0.25f;
    x[5] = NAN;
    x[40] = INFINITY;
    cb_act_quantize_i16(q, d, x, 64);
    EXPECT(isnan(d[0]) && isnan(d[1]));
    for (int j = 0; j < 64; j++) EXPECT_EQ_INT(0, q[j]);
    cb_kv_quantize_row(CB_KV_Q8_0, row, w, 64);
    EXPECT(isnan(cb_q8_0_dot_i16(row, q, d, 2)));
}
