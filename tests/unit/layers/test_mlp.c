/* test_mlp.c: cb_mlp (GPT-2 feed-forward) against central differences (double), its float twin,
 * PyTorch (tests/reference/layers/mlp.safetensors), and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/mlp.h"

typedef struct {
    int N, C, F;
    double *in, *wfc, *bfc, *wproj, *bproj, *R, *out, *pre, *h;
} mlp_case;

static double mlp_loss(void *ctx) {
    mlp_case *c = ctx;
    cb_mlp_forward_f64(c->out, c->pre, c->h, c->in, c->wfc, c->bfc, c->wproj, c->bproj, c->N, c->C, c->F);
    return lc_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void mlp_case_init(mlp_case *c, int N, int C, int F) {
    c->N = N, c->C = C, c->F = F;
    size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    c->in = lc_rand(nc, 1);
    c->wfc = lc_rand(fc, 0.6), c->bfc = lc_rand(F, 0.5);
    c->wproj = lc_rand(fc, 0.4), c->bproj = lc_rand(C, 0.5);
    c->R = lc_rand(nc, 1);
    c->out = lc_zeros(nc), c->pre = lc_zeros(nf), c->h = lc_zeros(nf);
}

TEST(mlp_gradients_match_finite_differences) {
    lc_seed(51);
    mlp_case c;
    mlp_case_init(&c, 6, 8, 12);
    size_t nc = (size_t)c.N * c.C, fc = (size_t)c.F * c.C;
    double *din = lc_zeros(nc), *dwfc = lc_zeros(fc), *dbfc = lc_zeros(c.F), *dwproj = lc_zeros(fc);
    double *dbproj = lc_zeros(c.C), *scratch = lc_zeros((size_t)c.N * c.F);
    mlp_loss(&c);
    cb_mlp_backward_f64(din, dwfc, dbfc, dwproj, dbproj, scratch, c.R, c.in, c.pre, c.h, c.wfc, c.wproj, c.N, c.C,
                        c.F);
    LC_CHECK_GRAD("mlp din", mlp_loss, &c, c.in, din, nc);
    LC_CHECK_GRAD("mlp dwfc", mlp_loss, &c, c.wfc, dwfc, fc);
    LC_CHECK_GRAD("mlp dbfc", mlp_loss, &c, c.bfc, dbfc, c.F);
    LC_CHECK_GRAD("mlp dwproj", mlp_loss, &c, c.wproj, dwproj, fc);
    LC_CHECK_GRAD("mlp dbproj", mlp_loss, &c, c.bproj, dbproj, c.C);
    double *din1 = lc_copy(din, nc), *dwfc1 = lc_copy(dwfc, fc), *dbfc1 = lc_copy(dbfc, c.F);
    double *dwproj1 = lc_copy(dwproj, fc), *dbproj1 = lc_copy(dbproj, c.C);
    mlp_loss(&c);
    cb_mlp_backward_f64(din, dwfc, dbfc, dwproj, dbproj, scratch, c.R, c.in, c.pre, c.h, c.wfc, c.wproj, c.N, c.C,
                        c.F);
    LC_EXPECT_DIFF("mlp accumulate din", lc_diff_doubled(din, din1, nc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("mlp accumulate dwfc", lc_diff_doubled(dwfc, dwfc1, fc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("mlp accumulate dbfc", lc_diff_doubled(dbfc, dbfc1, c.F), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("mlp accumulate dwproj", lc_diff_doubled(dwproj, dwproj1, fc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("mlp accumulate dbproj", lc_diff_doubled(dbproj, dbproj1, c.C), LC_ACCUM_TOL);

    // without biases (MLPLayer bias: false)
    c.bfc = c.bproj = NULL;
    double *din_nb = lc_zeros(nc), *dwfc_nb = lc_zeros(fc);
    mlp_loss(&c);
    cb_mlp_backward_f64(din_nb, dwfc_nb, NULL, NULL, NULL, scratch, c.R, c.in, c.pre, c.h, c.wfc, c.wproj, c.N,
                        c.C, c.F);
    LC_CHECK_GRAD("mlp (no bias) din", mlp_loss, &c, c.in, din_nb, nc);
    LC_CHECK_GRAD("mlp (no bias) dwfc", mlp_loss, &c, c.wfc, dwfc_nb, fc);
    lc_free_all();
}

TEST(mlp_float_matches_double) {
    lc_seed(52);
    mlp_case c;
    mlp_case_init(&c, 64, 128, 512); // N*F above the OpenMP threshold
    size_t nc = (size_t)c.N * c.C, nf = (size_t)c.N * c.F, fc = (size_t)c.F * c.C;
    double *din = lc_zeros(nc), *dwfc = lc_zeros(fc), *dbfc = lc_zeros(c.F), *dwproj = lc_zeros(fc);
    double *dbproj = lc_zeros(c.C);
    mlp_loss(&c);
    cb_mlp_backward_f64(din, dwfc, dbfc, dwproj, dbproj, lc_zeros(nf), c.R, c.in, c.pre, c.h, c.wfc, c.wproj, c.N,
                        c.C, c.F);
    float *in = lc_to_float(c.in, nc), *wfc = lc_to_float(c.wfc, fc), *bfc = lc_to_float(c.bfc, c.F);
    float *wproj = lc_to_float(c.wproj, fc), *bproj = lc_to_float(c.bproj, c.C), *R = lc_to_float(c.R, nc);
    float *out = lc_zeros_f(nc), *pre = lc_zeros_f(nf), *h = lc_zeros_f(nf);
    float *dinf = lc_zeros_f(nc), *dwfcf = lc_zeros_f(fc), *dbfcf = lc_zeros_f(c.F);
    float *dwprojf = lc_zeros_f(fc), *dbprojf = lc_zeros_f(c.C);
    cb_mlp_forward(out, pre, h, in, wfc, bfc, wproj, bproj, c.N, c.C, c.F);
    cb_mlp_backward(dinf, dwfcf, dbfcf, dwprojf, dbprojf, lc_zeros_f(nf), R, in, pre, h, wfc, wproj, c.N, c.C, c.F);
    LC_EXPECT_DIFF("mlp out f32 vs f64", lc_diff_fd(out, c.out, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp h f32 vs f64", lc_diff_fd(h, c.h, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp din f32 vs f64", lc_diff_fd(dinf, din, nc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("mlp dwfc f32 vs f64", lc_diff_fd(dwfcf, dwfc, fc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("mlp dbfc f32 vs f64", lc_diff_fd(dbfcf, dbfc, c.F), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("mlp dwproj f32 vs f64", lc_diff_fd(dwprojf, dwproj, fc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("mlp dbproj f32 vs f64", lc_diff_fd(dbprojf, dbproj, c.C), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(mlp_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/mlp.safetensors");
    const int N = 6, C = 8, F = 12;
    const size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    LC_FIXTURE_F32(in, &f, "in", nc);
    LC_FIXTURE_F32(wfc, &f, "wfc", fc);
    LC_FIXTURE_F32(bfc, &f, "bfc", F);
    LC_FIXTURE_F32(wproj, &f, "wproj", fc);
    LC_FIXTURE_F32(bproj, &f, "bproj", C);
    LC_FIXTURE_F32(want_out, &f, "out", nc);
    LC_FIXTURE_F32(want_pre, &f, "pre", nf);
    LC_FIXTURE_F32(want_h, &f, "h", nf);
    LC_FIXTURE_F32(dout, &f, "dout", nc);
    LC_FIXTURE_F32(want_din, &f, "din", nc);
    LC_FIXTURE_F32(want_dwfc, &f, "dwfc", fc);
    LC_FIXTURE_F32(want_dbfc, &f, "dbfc", F);
    LC_FIXTURE_F32(want_dwproj, &f, "dwproj", fc);
    LC_FIXTURE_F32(want_dbproj, &f, "dbproj", C);
    float *out = lc_zeros_f(nc), *pre = lc_zeros_f(nf), *h = lc_zeros_f(nf);
    float *din = lc_zeros_f(nc), *dwfc = lc_zeros_f(fc), *dbfc = lc_zeros_f(F);
    float *dwproj = lc_zeros_f(fc), *dbproj = lc_zeros_f(C);
    cb_mlp_forward(out, pre, h, in, wfc, bfc, wproj, bproj, N, C, F);
    cb_mlp_backward(din, dwfc, dbfc, dwproj, dbproj, lc_zeros_f(nf), dout, in, pre, h, wfc, wproj, N, C, F);
    LC_EXPECT_DIFF("mlp out vs torch", lc_diff_ff(out, want_out, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp pre vs torch", lc_diff_ff(pre, want_pre, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp h vs torch", lc_diff_ff(h, want_h, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp din vs torch", lc_diff_ff(din, want_din, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp dwfc vs torch", lc_diff_ff(dwfc, want_dwfc, fc), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp dbfc vs torch", lc_diff_ff(dbfc, want_dbfc, F), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp dwproj vs torch", lc_diff_ff(dwproj, want_dwproj, fc), LC_F32_TOL);
    LC_EXPECT_DIFF("mlp dbproj vs torch", lc_diff_ff(dbproj, want_dbproj, C), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(mlp_same_bits_on_any_thread_count) {
    lc_seed(53);
    const int N = 64, C = 128, F = 512;
    const size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    float *in = lc_to_float(lc_rand(nc, 1), nc), *wfc = lc_to_float(lc_rand(fc, 0.5), fc);
    float *bfc = lc_to_float(lc_rand(F, 0.5), F), *wproj = lc_to_float(lc_rand(fc, 0.5), fc);
    float *bproj = lc_to_float(lc_rand(C, 0.5), C), *dout = lc_to_float(lc_rand(nc, 1), nc);
    float *out[2], *din[2], *dwfc[2], *dbfc[2], *dwproj[2], *dbproj[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        float *pre = lc_zeros_f(nf), *h = lc_zeros_f(nf);
        out[k] = lc_zeros_f(nc), din[k] = lc_zeros_f(nc), dwfc[k] = lc_zeros_f(fc), dbfc[k] = lc_zeros_f(F);
        dwproj[k] = lc_zeros_f(fc), dbproj[k] = lc_zeros_f(C);
        cb_mlp_forward(out[k], pre, h, in, wfc, bfc, wproj, bproj, N, C, F);
        cb_mlp_backward(din[k], dwfc[k], dbfc[k], dwproj[k], dbproj[k], lc_zeros_f(nf), dout, in, pre, h, wfc, wproj,
                        N, C, F);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], nc));
    EXPECT(lc_same_bits(din[0], din[1], nc));
    EXPECT(lc_same_bits(dwfc[0], dwfc[1], fc));
    EXPECT(lc_same_bits(dbfc[0], dbfc[1], F));
    EXPECT(lc_same_bits(dwproj[0], dwproj[1], fc));
    EXPECT(lc_same_bits(dbproj[0], dbproj[1], C));
    lc_free_all();
}
