/* test_rmsnorm.c: cb_rmsnorm against central differences (double), its float twin, a PyTorch
 * RMSNorm (tests/reference/layers/rmsnorm.safetensors), and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/rmsnorm.h"

typedef struct {
    int N, C;
    double eps;
    double *in, *weight, *R, *out, *rstd;
} rmsnorm_case;

static double rmsnorm_loss(void *ctx) {
    rmsnorm_case *c = ctx;
    cb_rmsnorm_forward_f64(c->out, c->rstd, c->in, c->weight, c->N, c->C, c->eps);
    return lc_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void rmsnorm_case_init(rmsnorm_case *c, int N, int C) {
    c->N = N, c->C = C, c->eps = 1e-5;
    c->in = lc_rand((size_t)N * C, 2);
    c->weight = lc_rand(C, 1);
    c->R = lc_rand((size_t)N * C, 1);
    c->out = lc_zeros((size_t)N * C);
    c->rstd = lc_zeros(N);
}

TEST(rmsnorm_gradients_match_finite_differences) {
    lc_seed(21);
    rmsnorm_case c;
    rmsnorm_case_init(&c, 6, 8);
    size_t n = (size_t)c.N * c.C;
    double *din = lc_zeros(n), *dw = lc_zeros(c.C);
    rmsnorm_loss(&c);
    cb_rmsnorm_backward_f64(din, dw, c.R, c.in, c.weight, c.rstd, c.N, c.C);
    LC_CHECK_GRAD("rmsnorm din", rmsnorm_loss, &c, c.in, din, n);
    LC_CHECK_GRAD("rmsnorm dweight", rmsnorm_loss, &c, c.weight, dw, c.C);
    double *din1 = lc_copy(din, n), *dw1 = lc_copy(dw, c.C);
    rmsnorm_loss(&c); // the checks above left rstd at perturbed inputs
    cb_rmsnorm_backward_f64(din, dw, c.R, c.in, c.weight, c.rstd, c.N, c.C);
    LC_EXPECT_DIFF("rmsnorm accumulate din", lc_diff_doubled(din, din1, n), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("rmsnorm accumulate dweight", lc_diff_doubled(dw, dw1, c.C), LC_ACCUM_TOL);
    lc_free_all();
}

TEST(rmsnorm_float_matches_double) {
    lc_seed(22);
    rmsnorm_case c;
    rmsnorm_case_init(&c, 64, 768); // above the OpenMP threshold
    size_t n = (size_t)c.N * c.C;
    double *din = lc_zeros(n), *dw = lc_zeros(c.C);
    rmsnorm_loss(&c);
    cb_rmsnorm_backward_f64(din, dw, c.R, c.in, c.weight, c.rstd, c.N, c.C);
    float *in = lc_to_float(c.in, n), *w = lc_to_float(c.weight, c.C), *R = lc_to_float(c.R, n);
    float *out = lc_zeros_f(n), *rstd = lc_zeros_f(c.N), *dinf = lc_zeros_f(n), *dwf = lc_zeros_f(c.C);
    cb_rmsnorm_forward(out, rstd, in, w, c.N, c.C, (float)c.eps);
    cb_rmsnorm_backward(dinf, dwf, R, in, w, rstd, c.N, c.C);
    LC_EXPECT_DIFF("rmsnorm out f32 vs f64", lc_diff_fd(out, c.out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("rmsnorm rstd f32 vs f64", lc_diff_fd(rstd, c.rstd, c.N), LC_F32_TOL);
    LC_EXPECT_DIFF("rmsnorm din f32 vs f64", lc_diff_fd(dinf, din, n), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("rmsnorm dweight f32 vs f64", lc_diff_fd(dwf, dw, c.C), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(rmsnorm_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/rmsnorm.safetensors");
    const int N = 6, C = 8;
    const size_t n = (size_t)N * C;
    LC_FIXTURE_F32(in, &f, "in", n);
    LC_FIXTURE_F32(w, &f, "weight", C);
    LC_FIXTURE_F32(eps, &f, "eps", 1);
    LC_FIXTURE_F32(want_out, &f, "out", n);
    LC_FIXTURE_F32(want_rstd, &f, "rstd", N);
    LC_FIXTURE_F32(dout, &f, "dout", n);
    LC_FIXTURE_F32(want_din, &f, "din", n);
    LC_FIXTURE_F32(want_dw, &f, "dweight", C);
    float *out = lc_zeros_f(n), *rstd = lc_zeros_f(N), *din = lc_zeros_f(n), *dw = lc_zeros_f(C);
    cb_rmsnorm_forward(out, rstd, in, w, N, C, eps[0]);
    cb_rmsnorm_backward(din, dw, dout, in, w, rstd, N, C);
    LC_EXPECT_DIFF("rmsnorm out vs torch", lc_diff_ff(out, want_out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("rmsnorm rstd vs torch", lc_diff_ff(rstd, want_rstd, N), LC_F32_TOL);
    LC_EXPECT_DIFF("rmsnorm din vs torch", lc_diff_ff(din, want_din, n), LC_F32_TOL);
    LC_EXPECT_DIFF("rmsnorm dweight vs torch", lc_diff_ff(dw, want_dw, C), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(rmsnorm_same_bits_on_any_thread_count) {
    lc_seed(23);
    const int N = 64, C = 768;
    const size_t n = (size_t)N * C;
    float *in = lc_to_float(lc_rand(n, 2), n), *w = lc_to_float(lc_rand(C, 1), C);
    float *dout = lc_to_float(lc_rand(n, 1), n);
    float *out[2], *rstd[2], *din[2], *dw[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        out[k] = lc_zeros_f(n), rstd[k] = lc_zeros_f(N), din[k] = lc_zeros_f(n), dw[k] = lc_zeros_f(C);
        cb_rmsnorm_forward(out[k], rstd[k], in, w, N, C, 1e-5f);
        cb_rmsnorm_backward(din[k], dw[k], dout, in, w, rstd[k], N, C);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], n));
    EXPECT(lc_same_bits(din[0], din[1], n));
    EXPECT(lc_same_bits(dw[0], dw[1], C));
    lc_free_all();
}
