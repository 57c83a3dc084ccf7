/* test_swiglu.c: cb_swiglu against central differences (double), its float twin, a PyTorch SwiGLU
 * (tests/reference/layers/swiglu.safetensors), and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/swiglu.h"

typedef struct {
    int N, C, F;
    double *in, *wg, *wu, *wd, *R, *out, *gate, *up, *h;
} swiglu_case;

static double swiglu_loss(void *ctx) {
    swiglu_case *c = ctx;
    cb_swiglu_forward_f64(c->out, c->gate, c->up, c->h, c->in, c->wg, c->wu, c->wd, c->N, c->C, c->F);
    return lc_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void swiglu_case_init(swiglu_case *c, int N, int C, int F) {
    c->N = N, c->C = C, c->F = F;
    size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    c->in = lc_rand(nc, 1);
    c->wg = lc_rand(fc, 0.6), c->wu = lc_rand(fc, 0.6), c->wd = lc_rand(fc, 0.4);
    c->R = lc_rand(nc, 1);
    c->out = lc_zeros(nc), c->gate = lc_zeros(nf), c->up = lc_zeros(nf), c->h = lc_zeros(nf);
}

TEST(swiglu_gradients_match_finite_differences) {
    lc_seed(41);
    swiglu_case c;
    swiglu_case_init(&c, 6, 8, 12);
    size_t nc = (size_t)c.N * c.C, fc = (size_t)c.F * c.C;
    double *din = lc_zeros(nc), *dwg = lc_zeros(fc), *dwu = lc_zeros(fc), *dwd = lc_zeros(fc);
    double *scratch = lc_zeros(2 * (size_t)c.N * c.F);
    swiglu_loss(&c);
    cb_swiglu_backward_f64(din, dwg, dwu, dwd, scratch, c.R, c.in, c.gate, c.up, c.h, c.wg, c.wu, c.wd, c.N, c.C,
                           c.F);
    LC_CHECK_GRAD("swiglu din", swiglu_loss, &c, c.in, din, nc);
    LC_CHECK_GRAD("swiglu dwg", swiglu_loss, &c, c.wg, dwg, fc);
    LC_CHECK_GRAD("swiglu dwu", swiglu_loss, &c, c.wu, dwu, fc);
    LC_CHECK_GRAD("swiglu dwd", swiglu_loss, &c, c.wd, dwd, fc);
    double *din1 = lc_copy(din, nc), *dwg1 = lc_copy(dwg, fc), *dwu1 = lc_copy(dwu, fc), *dwd1 = lc_copy(dwd, fc);
    swiglu_loss(&c);
    cb_swiglu_backward_f64(din, dwg, dwu, dwd, scratch, c.R, c.in, c.gate, c.up, c.h, c.wg, c.wu, c.wd, c.N, c.C,
                           c.F);
    LC_EXPECT_DIFF("swiglu accumulate din", lc_diff_doubled(din, din1, nc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("swiglu accumulate dwg", lc_diff_doubled(dwg, dwg1, fc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("swiglu accumulate dwu", lc_diff_doubled(dwu, dwu1, fc), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("swiglu accumulate dwd", lc_diff_doubled(dwd, dwd1, fc), LC_ACCUM_TOL);
    lc_free_all();
}

TEST(swiglu_float_matches_double) {
    lc_seed(42);
    swiglu_case c;
    swiglu_case_init(&c, 64, 128, 512); // N*F above the OpenMP threshold
    size_t nc = (size_t)c.N * c.C, nf = (size_t)c.N * c.F, fc = (size_t)c.F * c.C;
    double *din = lc_zeros(nc), *dwg = lc_zeros(fc), *dwu = lc_zeros(fc), *dwd = lc_zeros(fc);
    swiglu_loss(&c);
    cb_swiglu_backward_f64(din, dwg, dwu, dwd, lc_zeros(2 * nf), c.R, c.in, c.gate, c.up, c.h, c.wg, c.wu, c.wd,
                           c.N, c.C, c.F);
    float *in = lc_to_float(c.in, nc), *wg = lc_to_float(c.wg, fc), *wu = lc_to_float(c.wu, fc);
    float *wd = lc_to_float(c.wd, fc), *R = lc_to_float(c.R, nc), *out = lc_zeros_f(nc);
    float *gate = lc_zeros_f(nf), *up = lc_zeros_f(nf), *h = lc_zeros_f(nf);
    float *dinf = lc_zeros_f(nc), *dwgf = lc_zeros_f(fc), *dwuf = lc_zeros_f(fc), *dwdf = lc_zeros_f(fc);
    cb_swiglu_forward(out, gate, up, h, in, wg, wu, wd, c.N, c.C, c.F);
    cb_swiglu_backward(dinf, dwgf, dwuf, dwdf, lc_zeros_f(2 * nf), R, in, gate, up, h, wg, wu, wd, c.N, c.C, c.F);
    LC_EXPECT_DIFF("swiglu out f32 vs f64", lc_diff_fd(out, c.out, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu h f32 vs f64", lc_diff_fd(h, c.h, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu din f32 vs f64", lc_diff_fd(dinf, din, nc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("swiglu dwg f32 vs f64", lc_diff_fd(dwgf, dwg, fc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("swiglu dwu f32 vs f64", lc_diff_fd(dwuf, dwu, fc), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("swiglu dwd f32 vs f64", lc_diff_fd(dwdf, dwd, fc), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(swiglu_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/swiglu.safetensors");
    const int N = 6, C = 8, F = 12;
    const size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    LC_FIXTURE_F32(in, &f, "in", nc);
    LC_FIXTURE_F32(wg, &f, "wg", fc);
    LC_FIXTURE_F32(wu, &f, "wu", fc);
    LC_FIXTURE_F32(wd, &f, "wd", fc);
    LC_FIXTURE_F32(want_out, &f, "out", nc);
    LC_FIXTURE_F32(want_gate, &f, "gate", nf);
    LC_FIXTURE_F32(want_up, &f, "up", nf);
    LC_FIXTURE_F32(want_h, &f, "h", nf);
    LC_FIXTURE_F32(dout, &f, "dout", nc);
    LC_FIXTURE_F32(want_din, &f, "din", nc);
    LC_FIXTURE_F32(want_dwg, &f, "dwg", fc);
    LC_FIXTURE_F32(want_dwu, &f, "dwu", fc);
    LC_FIXTURE_F32(want_dwd, &f, "dwd", fc);
    float *out = lc_zeros_f(nc), *gate = lc_zeros_f(nf), *up = lc_zeros_f(nf), *h = lc_zeros_f(nf);
    float *din = lc_zeros_f(nc), *dwg = lc_zeros_f(fc), *dwu = lc_zeros_f(fc), *dwd = lc_zeros_f(fc);
    cb_swiglu_forward(out, gate, up, h, in, wg, wu, wd, N, C, F);
    cb_swiglu_backward(din, dwg, dwu, dwd, lc_zeros_f(2 * nf), dout, in, gate, up, h, wg, wu, wd, N, C, F);
    LC_EXPECT_DIFF("swiglu out vs torch", lc_diff_ff(out, want_out, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu gate vs torch", lc_diff_ff(gate, want_gate, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu up vs torch", lc_diff_ff(up, want_up, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu h vs torch", lc_diff_ff(h, want_h, nf), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu din vs torch", lc_diff_ff(din, want_din, nc), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu dwg vs torch", lc_diff_ff(dwg, want_dwg, fc), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu dwu vs torch", lc_diff_ff(dwu, want_dwu, fc), LC_F32_TOL);
    LC_EXPECT_DIFF("swiglu dwd vs torch", lc_diff_ff(dwd, want_dwd, fc), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(swiglu_same_bits_on_any_thread_count) {
    lc_seed(43);
    const int N = 64, C = 128, F = 512;
    const size_t nc = (size_t)N * C, nf = (size_t)N * F, fc = (size_t)F * C;
    float *in = lc_to_float(lc_rand(nc, 1), nc), *wg = lc_to_float(lc_rand(fc, 0.5), fc);
    float *wu = lc_to_float(lc_rand(fc, 0.5), fc), *wd = lc_to_float(lc_rand(fc, 0.5), fc);
    float *dout = lc_to_float(lc_rand(nc, 1), nc);
    float *out[2], *din[2], *dwg[2], *dwu[2], *dwd[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        float *gate = lc_zeros_f(nf), *up = lc_zeros_f(nf), *h = lc_zeros_f(nf);
        out[k] = lc_zeros_f(nc), din[k] = lc_zeros_f(nc);
        dwg[k] = lc_zeros_f(fc), dwu[k] = lc_zeros_f(fc), dwd[k] = lc_zeros_f(fc);
        cb_swiglu_forward(out[k], gate, up, h, in, wg, wu, wd, N, C, F);
        cb_swiglu_backward(din[k], dwg[k], dwu[k], dwd[k], lc_zeros_f(2 * nf), dout, in, gate, up, h, wg, wu, wd,
                           N, C, F);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], nc));
    EXPECT(lc_same_bits(din[0], din[1], nc));
    EXPECT(lc_same_bits(dwg[0], dwg[1], fc));
    EXPECT(lc_same_bits(dwu[0], dwu[1], fc));
    EXPECT(lc_same_bits(dwd[0], dwd[1], fc));
    lc_free_all();
}
