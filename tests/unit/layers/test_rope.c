/* test_rope.c: RoPE tables (plain and Llama 3 scaled), rotation, backward by finite
 * differences in double, and the PyTorch fixture tests/reference/attention/rope.safetensors. */
#include "test.h"

#include <stdlib.h>

#include "fixture_read_attn.h"
#include "layers/rope.h"

static unsigned long long rng_state = 88172645463325252ULL;
static double urand(void) { // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static const cb_rope_scaling llama3 = {CB_ROPE_SCALING_LLAMA3, 8.0, 1.0, 4.0, 64};

TEST(inv_freq_plain_and_llama3) {
    double plain[8], scaled[8];
    cb_rope_inv_freq(plain, 16, 10000.0, NULL);
    EXPECT_NEAR(1.0, plain[0], 0);
    EXPECT_NEAR(pow(10000.0, -2.0 / 16), plain[1], 1e-7 * plain[1]);
    EXPECT_NEAR(pow(10000.0, -14.0 / 16), plain[7], 1e-7 * plain[7]);
    /* original context 64, low 1, high 4: wavelengths under 16 keep their frequency,
     * above 64 are divided by 8, between are interpolated by 64/wavelen. */
    cb_rope_inv_freq(scaled, 16, 10000.0, &llama3);
    for (int i = 0; i < 8; i++) {
        double wl = 2 * M_PI / plain[i], want;
        if (wl < 16) want = plain[i];
        else if (wl > 64) want = plain[i] / 8;
        else {
            double s = (64 / wl - 1) / 3;
            want = (1 - s) * plain[i] / 8 + s * plain[i];
        }
        EXPECT_NEAR(want, scaled[i], 1e-6 * want);
    }
    EXPECT(scaled[7] < plain[7] / 7.9); /* the lowest frequency was scaled */
    EXPECT_NEAR(plain[0], scaled[0], 0);  /* the highest was not */
}

TEST(rotation_keeps_norm_and_unrotate_inverts) {
    enum { B = 2, T = 7, H = 3, D = 8, TMAX = 16 };
    double cos_t[TMAX * D / 2], sin_t[TMAX * D / 2];
    cb_rope_tables_f64(cos_t, sin_t, TMAX, D, 500000.0, &llama3);
    double x[B * T * H * D], y[B * T * H * D];
    for (int i = 0; i < B * T * H * D; i++) x[i] = urand();
    cb_rope_forward_f64(y, x, cos_t, sin_t, B, T, H, D, 4);
    double worst_norm = 0, worst_back = 0;
    for (int r = 0; r < B * T * H; r++) {
        double nx = 0, ny = 0;
        for (int i = 0; i < D; i++) {
            nx += x[r * D + i] * x[r * D + i];
            ny += y[r * D + i] * y[r * D + i];
        }
        worst_norm = cb_test_worst(worst_norm, fabs(nx - ny) / nx);
    }
    /* position 0 of the first row block is not rotated at pos0 = 0 */
    double y0[B * T * H * D];
    cb_rope_forward_f64(y0, x, cos_t, sin_t, B, T, H, D, 0);
    for (int i = 0; i < H * D; i++) EXPECT_NEAR(x[i], y0[i], 0);
    cb_rope_unrotate_f64(y, cos_t, sin_t, B, T, H, D, 4);
    for (int i = 0; i < B * T * H * D; i++) worst_back = cb_test_worst(worst_back, fabs(y[i] - x[i]));
    REPORT_DIFF("rope: |Rx|^2 vs |x|^2 (relative)", worst_norm, 1e-14);
    REPORT_DIFF("rope: R^T R x vs x", worst_back, 1e-14);
    EXPECT(worst_norm <= 1e-14);
    EXPECT(worst_back <= 1e-14);
}

TEST(rotate_half_pairs_i_with_i_plus_half) {
    /* D 4: pairs (0,2) and (1,3); one unit vector in dim 0 at position 1 goes to
     * (cos a, 0, sin a, 0) with a = inv_freq[0] = 1. */
    float cos_t[2 * 2], sin_t[2 * 2];
    cb_rope_tables(cos_t, sin_t, 2, 4, 10000.0, NULL);
    float x[4] = {1, 0, 0, 0}, y[4];
    cb_rope_forward(y, x, cos_t, sin_t, 1, 1, 1, 4, 1);
    EXPECT_NEAR(cos(1.0), y[0], 1e-7);
    EXPECT_NEAR(0, y[1], 0);
    EXPECT_NEAR(sin(1.0), y[2], 1e-7);
    EXPECT_NEAR(0, y[3], 0);
}

/* Finite differences: L = sum(g * rope(x)), dL/dx by cb_rope_backward_f64, which also
 * must add to what din holds. Central differences, h = 1e-6, relative error <= 1e-6. */
TEST(backward_matches_finite_differences) {
    enum { B = 2, T = 5, H = 2, D = 6, TMAX = 12, N = B * T * H * D };
    const cb_rope_scaling *cases[2] = {NULL, &llama3};
    for (int c = 0; c < 2; c++) {
        double cos_t[TMAX * D / 2], sin_t[TMAX * D / 2];
        cb_rope_tables_f64(cos_t, sin_t, TMAX, D, 100.0, cases[c]);
        double x[N], g[N], y[N], din[N], before[N];
        for (int i = 0; i < N; i++) {
            x[i] = urand();
            g[i] = urand();
            before[i] = din[i] = urand();
        }
        cb_rope_backward_f64(din, g, cos_t, sin_t, B, T, H, D, 3);
        double worst = 0, scale = 0;
        const double h = 1e-6;
        for (int i = 0; i < N; i++) {
            double keep = x[i], lp = 0, lm = 0;
            x[i] = keep + h;
            cb_rope_forward_f64(y, x, cos_t, sin_t, B, T, H, D, 3);
            for (int j = 0; j < N; j++) lp += g[j] * y[j];
            x[i] = keep - h;
            cb_rope_forward_f64(y, x, cos_t, sin_t, B, T, H, D, 3);
            for (int j = 0; j < N; j++) lm += g[j] * y[j];
            x[i] = keep;
            double num = (lp - lm) / (2 * h);
            worst = cb_test_worst(worst, fabs((din[i] - before[i]) - num));
            scale = cb_test_worst(scale, fabs(num));
        }
        double rel = worst / scale;
        REPORT_DIFF(c ? "rope llama3 fd: dx (relative)" : "rope fd: dx (relative)", rel, 1e-6);
        EXPECT(rel <= 1e-6);
    }
}

/* Against tests/reference/make_attention_fixtures.py: tables with and without Llama 3
 * scaling, and rope of a (B,T,H,D) tensor, float32, relative error <= 1e-5 per tensor. */
TEST(matches_pytorch_fixture) {
    cb_fixture fx;
    char why[256];
    if (cb_fixture_open(&fx, "rope", why, sizeof why) != 0) {
        FAILF("%s", why);
        return;
    }
    int D = (int)cb_fixture_meta_num(&fx, "D"), T_max = (int)cb_fixture_meta_num(&fx, "T_max");
    int B = (int)cb_fixture_meta_num(&fx, "B"), T = (int)cb_fixture_meta_num(&fx, "T");
    int H = (int)cb_fixture_meta_num(&fx, "H"), pos0 = (int)cb_fixture_meta_num(&fx, "pos0");
    double theta = cb_fixture_meta_num(&fx, "theta");
    cb_rope_scaling sc = {CB_ROPE_SCALING_LLAMA3, cb_fixture_meta_num(&fx, "factor"),
                          cb_fixture_meta_num(&fx, "low_freq_factor"),
                          cb_fixture_meta_num(&fx, "high_freq_factor"),
                          (int)cb_fixture_meta_num(&fx, "original_max_position_embeddings")};
    size_t nt = (size_t)T_max * D / 2, nx = (size_t)B * T * H * D;
    float *cos_t = malloc(sizeof(float) * nt), *sin_t = malloc(sizeof(float) * nt);
    float *y = malloc(sizeof(float) * nx), *dx = calloc(nx, sizeof(float));
    double inv[64];
    EXPECT(D / 2 <= 64);
    cb_rope_inv_freq(inv, D, theta, NULL);
    cb_fixture_expect_f64(&fx, "inv_freq", inv, (size_t)D / 2, 1e-6, "rope fixture");
    cb_rope_inv_freq(inv, D, theta, &sc);
    cb_fixture_expect_f64(&fx, "inv_freq_llama3", inv, (size_t)D / 2, 1e-6, "rope fixture");
    cb_rope_tables(cos_t, sin_t, T_max, D, theta, NULL);
    cb_fixture_expect(&fx, "cos", cos_t, nt, 1e-5, "rope fixture");
    cb_fixture_expect(&fx, "sin", sin_t, nt, 1e-5, "rope fixture");
    cb_rope_tables(cos_t, sin_t, T_max, D, theta, &sc);
    cb_fixture_expect(&fx, "cos_llama3", cos_t, nt, 1e-5, "rope fixture");
    cb_fixture_expect(&fx, "sin_llama3", sin_t, nt, 1e-5, "rope fixture");
    const float *x = cb_fixture_tensor(&fx, "x", nx), *dy = cb_fixture_tensor(&fx, "dy", nx);
    if (x && dy) {
        cb_rope_forward(y, x, cos_t, sin_t, B, T, H, D, pos0);
        cb_fixture_expect(&fx, "y", y, nx, 1e-5, "rope fixture");
        cb_rope_backward(dx, dy, cos_t, sin_t, B, T, H, D, pos0);
        cb_fixture_expect(&fx, "dx", dx, nx, 1e-5, "rope fixture");
    }
    /* Llama 3.2's numbers: head dim 64, theta 500000, factor 32, context 8192 */
    const cb_rope_scaling l32 = {CB_ROPE_SCALING_LLAMA3, 32.0, 1.0, 4.0, 8192};
    enum { ROWS = 6, T32 = 20001 };
    const int rows[ROWS] = {0, 1, 7, 4095, 8191, 20000};
    EXPECT_EQ_STR("0,1,7,4095,8191,20000", cb_fixture_meta_str(&fx, "rows_llama32"));
    cb_rope_inv_freq(inv, 64, 500000.0, &l32);
    cb_fixture_expect_f64(&fx, "inv_freq_llama32", inv, 32, 1e-6, "rope fixture");
    float *c32 = malloc(sizeof(float) * T32 * 32), *s32 = malloc(sizeof(float) * T32 * 32);
    float crow[ROWS * 32], srow[ROWS * 32];
    cb_rope_tables(c32, s32, T32, 64, 500000.0, &l32);
    for (int r = 0; r < ROWS; r++) {
        memcpy(crow + r * 32, c32 + (size_t)rows[r] * 32, sizeof(float) * 32);
        memcpy(srow + r * 32, s32 + (size_t)rows[r] * 32, sizeof(float) * 32);
    }
    cb_fixture_expect(&fx, "cos_llama32_rows", crow, ROWS * 32, 1e-5, "rope fixture");
    cb_fixture_expect(&fx, "sin_llama32_rows", srow, ROWS * 32, 1e-5, "rope fixture");
    free(c32);
    free(s32);
    free(cos_t);
    free(sin_t);
    free(y);
    free(dx);
    cb_fixture_close(&fx);
}
