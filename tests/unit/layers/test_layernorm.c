/* test_layernorm.c: cb_layernorm against central differences (double), its float twin, PyTorch's
 * F.layer_norm (tests/reference/layers/layernorm.safetensors), and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/layernorm.h"

typedef struct {
    int N, C;
    double eps;
    double *in, *weight, *bias, *R, *out, *mean, *rstd;
} layernorm_case;

static double layernorm_loss(void *ctx) {
    layernorm_case *c = ctx;
    cb_layernorm_forward_f64(c->out, c->mean, c->rstd, c->in, c->weight, c->bias, c->N, c->C, c->eps);
    return lc_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void layernorm_case_init(layernorm_case *c, int N, int C) {
    c->N = N, c->C = C, c->eps = 1e-5;
    c->in = lc_rand((size_t)N * C, 2);
    c->weight = lc_rand(C, 1);
    c->bias = lc_rand(C, 1);
    c->R = lc_rand((size_t)N * C, 1);
    c->out = lc_zeros((size_t)N * C);
    c->mean = lc_zeros(N);
    c->rstd = lc_zeros(N);
}

TEST(layernorm_gradients_match_finite_differences) {
    lc_seed(31);
    layernorm_case c;
    layernorm_case_init(&c, 6, 8);
    size_t n = (size_t)c.N * c.C;
    double *din = lc_zeros(n), *dw = lc_zeros(c.C), *db = lc_zeros(c.C);
    layernorm_loss(&c);
    cb_layernorm_backward_f64(din, dw, db, c.R, c.in, c.weight, c.mean, c.rstd, c.N, c.C);
    LC_CHECK_GRAD("layernorm din", layernorm_loss, &c, c.in, din, n);
    LC_CHECK_GRAD("layernorm dweight", layernorm_loss, &c, c.weight, dw, c.C);
    LC_CHECK_GRAD("layernorm dbias", layernorm_loss, &c, c.bias, db, c.C);
    double *din1 = lc_copy(din, n), *dw1 = lc_copy(dw, c.C), *db1 = lc_copy(db, c.C);
    layernorm_loss(&c); // the checks above left mean and rstd at perturbed inputs
    cb_layernorm_backward_f64(din, dw, db, c.R, c.in, c.weight, c.mean, c.rstd, c.N, c.C);
    LC_EXPECT_DIFF("layernorm accumulate din", lc_diff_doubled(din, din1, n), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("layernorm accumulate dweight", lc_diff_doubled(dw, dw1, c.C), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("layernorm accumulate dbias", lc_diff_doubled(db, db1, c.C), LC_ACCUM_TOL);

    // without bias (LayerNormLayer bias: false)
    c.bias = NULL;
    double *din_nb = lc_zeros(n), *dw_nb = lc_zeros(c.C);
    layernorm_loss(&c);
    cb_layernorm_backward_f64(din_nb, dw_nb, NULL, c.R, c.in, c.weight, c.mean, c.rstd, c.N, c.C);
    LC_CHECK_GRAD("layernorm (no bias) din", layernorm_loss, &c, c.in, din_nb, n);
    LC_CHECK_GRAD("layernorm (no bias) dweight", layernorm_loss, &c, c.weight, dw_nb, c.C);
    lc_free_all();
}

TEST(layernorm_float_matches_double) {
    lc_seed(32);
    layernorm_case c;
    layernorm_case_init(&c, 64, 768); // above the OpenMP threshold
    size_t n = (size_t)c.N * c.C;
    double *din = lc_zeros(n), *dw = lc_zeros(c.C), *db = lc_zeros(c.C);
    layernorm_loss(&c);
    cb_layernorm_backward_f64(din, dw, db, c.R, c.in, c.weight, c.mean, c.rstd, c.N, c.C);
    float *in = lc_to_float(c.in, n), *w = lc_to_float(c.weight, c.C), *b = lc_to_float(c.bias, c.C);
    float *R = lc_to_float(c.R, n), *out = lc_zeros_f(n), *mean = lc_zeros_f(c.N), *rstd = lc_zeros_f(c.N);
    float *dinf = lc_zeros_f(n), *dwf = lc_zeros_f(c.C), *dbf = lc_zeros_f(c.C);
    cb_layernorm_forward(out, mean, rstd, in, w, b, c.N, c.C, (float)c.eps);
    cb_layernorm_backward(dinf, dwf, dbf, R, in, w, mean, rstd, c.N, c.C);
    LC_EXPECT_DIFF("layernorm out f32 vs f64", lc_diff_fd(out, c.out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm mean f32 vs f64", lc_diff_fd(mean, c.mean, c.N), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm rstd f32 vs f64", lc_diff_fd(rstd, c.rstd, c.N), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm din f32 vs f64", lc_diff_fd(dinf, din, n), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("layernorm dweight f32 vs f64", lc_diff_fd(dwf, dw, c.C), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("layernorm dbias f32 vs f64", lc_diff_fd(dbf, db, c.C), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(layernorm_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/layernorm.safetensors");
    const int N = 6, C = 8;
    const size_t n = (size_t)N * C;
    LC_FIXTURE_F32(in, &f, "in", n);
    LC_FIXTURE_F32(w, &f, "weight", C);
    LC_FIXTURE_F32(b, &f, "bias", C);
    LC_FIXTURE_F32(eps, &f, "eps", 1);
    LC_FIXTURE_F32(want_out, &f, "out", n);
    LC_FIXTURE_F32(want_mean, &f, "mean", N);
    LC_FIXTURE_F32(want_rstd, &f, "rstd", N);
    LC_FIXTURE_F32(dout, &f, "dout", n);
    LC_FIXTURE_F32(want_din, &f, "din", n);
    LC_FIXTURE_F32(want_dw, &f, "dweight", C);
    LC_FIXTURE_F32(want_db, &f, "dbias", C);
    float *out = lc_zeros_f(n), *mean = lc_zeros_f(N), *rstd = lc_zeros_f(N);
    float *din = lc_zeros_f(n), *dw = lc_zeros_f(C), *db = lc_zeros_f(C);
    cb_layernorm_forward(out, mean, rstd, in, w, b, N, C, eps[0]);
    cb_layernorm_backward(din, dw, db, dout, in, w, mean, rstd, N, C);
    LC_EXPECT_DIFF("layernorm out vs torch", lc_diff_ff(out, want_out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm mean vs torch", lc_diff_ff(mean, want_mean, N), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm rstd vs torch", lc_diff_ff(rstd, want_rstd, N), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm din vs torch", lc_diff_ff(din, want_din, n), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm dweight vs torch", lc_diff_ff(dw, want_dw, C), LC_F32_TOL);
    LC_EXPECT_DIFF("layernorm dbias vs torch", lc_diff_ff(db, want_db, C), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(layernorm_same_bits_on_any_thread_count) {
    lc_seed(33);
    const int N = 64, C = 768;
    const size_t n = (size_t)N * C;
    float *in = lc_to_float(lc_rand(n, 2), n), *w = lc_to_float(lc_rand(C, 1), C);
    float *b = lc_to_float(lc_rand(C, 1), C), *dout = lc_to_float(lc_rand(n, 1), n);
    float *out[2], *mean[2], *rstd[2], *din[2], *dw[2], *db[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        out[k] = lc_zeros_f(n), mean[k] = lc_zeros_f(N), rstd[k] = lc_zeros_f(N);
        din[k] = lc_zeros_f(n), dw[k] = lc_zeros_f(C), db[k] = lc_zeros_f(C);
        cb_layernorm_forward(out[k], mean[k], rstd[k], in, w, b, N, C, 1e-5f);
        cb_layernorm_backward(din[k], dw[k], db[k], dout, in, w, mean[k], rstd[k], N, C);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], n));
    EXPECT(lc_same_bits(din[0], din[1], n));
    EXPECT(lc_same_bits(dw[0], dw[1], C));
    EXPECT(lc_same_bits(db[0], db[1], C));
    lc_free_all();
}
