/* test_dropout.c: cb_dropout's counter-based mask: backward reuses forward's mask, the keep rate
 * is 1-p, chunks with offsets equal one call, thread count and precision do not change it; its
 * gradient against central differences (double) and the fixture written by a Python copy of the
 * hash (tests/reference/layers/dropout.safetensors). */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/dropout.h"

typedef struct {
    size_t n;
    double p;
    uint64_t seed, offset;
    double *in, *R, *out;
} dropout_case;

static double dropout_loss(void *ctx) {
    dropout_case *c = ctx;
    cb_dropout_forward_f64(c->out, c->in, c->n, c->p, c->seed, c->offset);
    return lc_dot(c->out, c->R, c->n);
}

TEST(dropout_gradients_match_finite_differences) {
    lc_seed(71);
    dropout_case c = {.n = 40, .p = 0.3, .seed = 99, .offset = 17};
    c.in = lc_rand(c.n, 1), c.R = lc_rand(c.n, 1), c.out = lc_zeros(c.n);
    double *din = lc_zeros(c.n);
    dropout_loss(&c);
    cb_dropout_backward_f64(din, c.R, c.n, c.p, c.seed, c.offset);
    LC_CHECK_GRAD("dropout din", dropout_loss, &c, c.in, din, c.n);
    double *din1 = lc_copy(din, c.n);
    cb_dropout_backward_f64(din, c.R, c.n, c.p, c.seed, c.offset);
    LC_EXPECT_DIFF("dropout accumulate din", lc_diff_doubled(din, din1, c.n), LC_ACCUM_TOL);
    lc_free_all();
}

TEST(dropout_mask_is_shared_scaled_and_at_rate) {
    lc_seed(72);
    const size_t n = 100000;
    const float p = 0.25f, scale = 1.0f / (1.0f - p);
    float *in = lc_to_float(lc_rand(n, 1), n), *out = lc_zeros_f(n), *din = lc_zeros_f(n), *ones = lc_zeros_f(n);
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    cb_dropout_forward(out, in, n, p, 5, 0);
    cb_dropout_backward(din, ones, n, p, 5, 0);
    size_t kept = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        int keep = cb_dropout_keep(5, i, p);
        kept += keep;
        if (out[i] != (keep ? in[i] * scale : 0.0f) || din[i] != (keep ? scale : 0.0f)) bad++;
    }
    EXPECT_EQ_INT(0, bad);
    // 100000 draws at keep rate 0.75: standard deviation 0.0014, the tolerance is 7 of them
    double rate = (double)kept / n;
    LC_EXPECT_DIFF("dropout keep rate - 0.75", fabs(rate - 0.75), 0.01);

    // another seed draws another mask
    float *out2 = lc_zeros_f(n);
    cb_dropout_forward(out2, in, n, p, 6, 0);
    EXPECT(!lc_same_bits(out, out2, n));
    lc_free_all();
}

TEST(dropout_offsets_chunks_threads_and_precision_agree) {
    lc_seed(73);
    const size_t n = 70000, half = 30001;
    const float p = 0.25f;
    double *ind = lc_rand(n, 1);
    float *in = lc_to_float(ind, n), *whole = lc_zeros_f(n), *chunked = lc_zeros_f(n), *single = lc_zeros_f(n);
    cb_dropout_forward(whole, in, n, p, 1234, 1000);
    // the same stream in two calls, the second starting at its offset
    cb_dropout_forward(chunked, in, half, p, 1234, 1000);
    cb_dropout_forward(chunked + half, in + half, n - half, p, 1234, 1000 + half);
    EXPECT(lc_same_bits(whole, chunked, n));
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    cb_dropout_forward(single, in, n, p, 1234, 1000);
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(whole, single, n));
    // the double twin draws the same mask for p = 0.25 (exact in both precisions)
    double *outd = lc_zeros(n);
    cb_dropout_forward_f64(outd, ind, n, 0.25, 1234, 1000);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += (whole[i] != 0) != (outd[i] != 0);
    EXPECT_EQ_INT(0, differ);
    LC_EXPECT_DIFF("dropout out f32 vs f64", lc_diff_fd(whole, outd, n), LC_F32_TOL);
    lc_free_all();
}

TEST(dropout_p0_is_identity_and_p1_drops_all) {
    lc_seed(74);
    const size_t n = 1000;
    float *in = lc_to_float(lc_rand(n, 1), n), *out = lc_zeros_f(n), *din = lc_zeros_f(n);
    cb_dropout_forward(out, in, n, 0.0f, 3, 0);
    cb_dropout_backward(din, in, n, 0.0f, 3, 0);
    EXPECT(lc_same_bits(out, in, n));
    EXPECT(lc_same_bits(din, in, n));
    cb_dropout_forward(out, in, n, 1.0f, 3, 0);
    float *zeros = lc_zeros_f(n), *din1 = lc_zeros_f(n);
    cb_dropout_backward(din1, in, n, 1.0f, 3, 0);
    EXPECT(lc_same_bits(out, zeros, n));
    EXPECT(lc_same_bits(din1, zeros, n));
    lc_free_all();
}

TEST(dropout_matches_python_reference) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/dropout.safetensors");
    const size_t n = 6 * 8;
    int64_t *seed = fx_tensor(&f, "seed", "I64", 1, NULL), *offset = fx_tensor(&f, "offset", "I64", 1, NULL);
    if (!seed || !offset) {
        FAILF("%.900s", f.why);
        fx_close(&f);
        return;
    }
    LC_FIXTURE_F32(in, &f, "in", n);
    LC_FIXTURE_F32(p, &f, "p", 1);
    LC_FIXTURE_F32(want_out, &f, "out", n);
    LC_FIXTURE_F32(dout, &f, "dout", n);
    LC_FIXTURE_F32(want_din, &f, "din", n);
    float *out = lc_zeros_f(n), *din = lc_zeros_f(n);
    cb_dropout_forward(out, in, n, p[0], (uint64_t)seed[0], (uint64_t)offset[0]);
    cb_dropout_backward(din, dout, n, p[0], (uint64_t)seed[0], (uint64_t)offset[0]);
    LC_EXPECT_DIFF("dropout out vs python", lc_diff_ff(out, want_out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("dropout din vs python", lc_diff_ff(din, want_din, n), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}
