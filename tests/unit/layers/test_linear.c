/* test_linear.c: cb_linear against central differences (double), its float twin, PyTorch's
 * F.linear (tests/reference/layers/linear.safetensors), and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/linear.h"

typedef struct {
    int N, IC, OC;
    double *in, *weight, *bias, *R, *out;
} linear_case;

static double linear_loss(void *ctx) {
    linear_case *c = ctx;
    cb_linear_forward_f64(c->out, c->in, c->weight, c->bias, c->N, c->IC, c->OC);
    return lc_dot(c->out, c->R, (size_t)c->N * c->OC);
}

static void linear_case_init(linear_case *c, int N, int IC, int OC, int with_bias) {
    c->N = N, c->IC = IC, c->OC = OC;
    c->in = lc_rand((size_t)N * IC, 1);
    c->weight = lc_rand((size_t)OC * IC, 0.5);
    c->bias = with_bias ? lc_rand(OC, 1) : NULL;
    c->R = lc_rand((size_t)N * OC, 1);
    c->out = lc_zeros((size_t)N * OC);
}

TEST(linear_gradients_match_finite_differences) {
    lc_seed(11);
    linear_case c;
    linear_case_init(&c, 6, 7, 5, 1);
    size_t nin = (size_t)c.N * c.IC, nw = (size_t)c.OC * c.IC;
    double *din = lc_zeros(nin), *dw = lc_zeros(nw), *db = lc_zeros(c.OC);
    linear_loss(&c);
    cb_linear_backward_f64(din, dw, db, c.R, c.in, c.weight, c.N, c.IC, c.OC);
    LC_CHECK_GRAD("linear din", linear_loss, &c, c.in, din, nin);
    LC_CHECK_GRAD("linear dweight", linear_loss, &c, c.weight, dw, nw);
    LC_CHECK_GRAD("linear dbias", linear_loss, &c, c.bias, db, c.OC);

    double *din1 = lc_copy(din, nin), *dw1 = lc_copy(dw, nw), *db1 = lc_copy(db, c.OC);
    cb_linear_backward_f64(din, dw, db, c.R, c.in, c.weight, c.N, c.IC, c.OC);
    LC_EXPECT_DIFF("linear accumulate din", lc_diff_doubled(din, din1, nin), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("linear accumulate dweight", lc_diff_doubled(dw, dw1, nw), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("linear accumulate dbias", lc_diff_doubled(db, db1, c.OC), LC_ACCUM_TOL);

    // without bias, and with only the input gradient asked for
    c.bias = NULL;
    double *din_nb = lc_zeros(nin);
    linear_loss(&c);
    cb_linear_backward_f64(din_nb, NULL, NULL, c.R, c.in, c.weight, c.N, c.IC, c.OC);
    LC_CHECK_GRAD("linear (no bias) din", linear_loss, &c, c.in, din_nb, nin);
    lc_free_all();
}

TEST(linear_float_matches_double) {
    lc_seed(12);
    linear_case c;
    linear_case_init(&c, 128, 64, 384, 1); // N*OC above the OpenMP threshold
    size_t nin = (size_t)c.N * c.IC, nw = (size_t)c.OC * c.IC, nout = (size_t)c.N * c.OC;
    double *din = lc_zeros(nin), *dw = lc_zeros(nw), *db = lc_zeros(c.OC);
    linear_loss(&c);
    cb_linear_backward_f64(din, dw, db, c.R, c.in, c.weight, c.N, c.IC, c.OC);

    float *in = lc_to_float(c.in, nin), *w = lc_to_float(c.weight, nw), *b = lc_to_float(c.bias, c.OC);
    float *R = lc_to_float(c.R, nout), *out = lc_zeros_f(nout);
    float *dinf = lc_zeros_f(nin), *dwf = lc_zeros_f(nw), *dbf = lc_zeros_f(c.OC);
    cb_linear_forward(out, in, w, b, c.N, c.IC, c.OC);
    cb_linear_backward(dinf, dwf, dbf, R, in, w, c.N, c.IC, c.OC);
    LC_EXPECT_DIFF("linear out f32 vs f64", lc_diff_fd(out, c.out, nout), LC_F32_TOL);
    LC_EXPECT_DIFF("linear din f32 vs f64", lc_diff_fd(dinf, din, nin), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("linear dweight f32 vs f64", lc_diff_fd(dwf, dw, nw), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("linear dbias f32 vs f64", lc_diff_fd(dbf, db, c.OC), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(linear_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/linear.safetensors");
    const int N = 6, IC = 8, OC = 5;
    LC_FIXTURE_F32(in, &f, "in", (size_t)N * IC);
    LC_FIXTURE_F32(w, &f, "weight", (size_t)OC * IC);
    LC_FIXTURE_F32(b, &f, "bias", OC);
    LC_FIXTURE_F32(want_out, &f, "out", (size_t)N * OC);
    LC_FIXTURE_F32(dout, &f, "dout", (size_t)N * OC);
    LC_FIXTURE_F32(want_din, &f, "din", (size_t)N * IC);
    LC_FIXTURE_F32(want_dw, &f, "dweight", (size_t)OC * IC);
    LC_FIXTURE_F32(want_db, &f, "dbias", OC);
    float *out = lc_zeros_f((size_t)N * OC), *din = lc_zeros_f((size_t)N * IC);
    float *dw = lc_zeros_f((size_t)OC * IC), *db = lc_zeros_f(OC);
    cb_linear_forward(out, in, w, b, N, IC, OC);
    cb_linear_backward(din, dw, db, dout, in, w, N, IC, OC);
    LC_EXPECT_DIFF("linear out vs torch", lc_diff_ff(out, want_out, (size_t)N * OC), LC_F32_TOL);
    LC_EXPECT_DIFF("linear din vs torch", lc_diff_ff(din, want_din, (size_t)N * IC), LC_F32_TOL);
    LC_EXPECT_DIFF("linear dweight vs torch", lc_diff_ff(dw, want_dw, (size_t)OC * IC), LC_F32_TOL);
    LC_EXPECT_DIFF("linear dbias vs torch", lc_diff_ff(db, want_db, OC), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(linear_same_bits_on_any_thread_count) {
    lc_seed(13);
    const int N = 128, IC = 64, OC = 384;
    float *in = lc_to_float(lc_rand((size_t)N * IC, 1), (size_t)N * IC);
    float *w = lc_to_float(lc_rand((size_t)OC * IC, 1), (size_t)OC * IC);
    float *b = lc_to_float(lc_rand(OC, 1), OC);
    float *dout = lc_to_float(lc_rand((size_t)N * OC, 1), (size_t)N * OC);
    float *out[2], *din[2], *dw[2], *db[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        out[k] = lc_zeros_f((size_t)N * OC), din[k] = lc_zeros_f((size_t)N * IC);
        dw[k] = lc_zeros_f((size_t)OC * IC), db[k] = lc_zeros_f(OC);
        cb_linear_forward(out[k], in, w, b, N, IC, OC);
        cb_linear_backward(din[k], dw[k], db[k], dout, in, w, N, IC, OC);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], (size_t)N * OC));
    EXPECT(lc_same_bits(din[0], din[1], (size_t)N * IC));
    EXPECT(lc_same_bits(dw[0], dw[1], (size_t)OC * IC));
    EXPECT(lc_same_bits(db[0], db[1], OC));
    lc_free_all();
}
