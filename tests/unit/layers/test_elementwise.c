/* test_elementwise.c: add, scale, concat/split, sum/mean combine, GELU and SiLU against central
 * differences (double), their float twins and PyTorch (tests/reference/layers/elementwise.safetensors). */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/activation.h"
#include "layers/elementwise.h"

enum { OP_ADD, OP_SCALE, OP_CONCAT, OP_SPLIT, OP_SUM, OP_MEAN, OP_GELU, OP_SILU, N_OPS };
static const char *op_names[N_OPS] = {"add", "scale", "concat", "split", "combine sum", "combine mean", "gelu",
                                      "silu"};
static const int op_inputs[N_OPS] = {2, 1, 2, 1, 3, 3, 1, 1}; // how many of a, b, c each op reads

// every op reads a, b, c (N,W) (concat/split use widths 3 and 5 of W = 8) and writes out (N,W)
enum { EW_N = 5, EW_W = 8, EW_W0 = 3, EW_W1 = 5 };
static const int ew_widths[2] = {EW_W0, EW_W1};

typedef struct {
    int op;
    double *a, *b, *c, *R, *out;
} ew_case;

static double ew_loss(void *ctx) {
    ew_case *e = ctx;
    const size_t n = (size_t)EW_N * EW_W;
    const double *ins[3] = {e->a, e->b, e->c};
    switch (e->op) {
    case OP_ADD: cb_add_forward_f64(e->out, e->a, e->b, n); break;
    case OP_SCALE: cb_scale_forward_f64(e->out, e->a, 0.37, n); break;
    case OP_CONCAT: cb_concat_forward_f64(e->out, ins, ew_widths, 2, EW_N); break;
    case OP_SPLIT: {
        double *parts[2] = {e->out, e->out + (size_t)EW_N * EW_W0};
        cb_split_forward_f64(parts, e->a, ew_widths, 2, EW_N);
        break;
    }
    case OP_SUM: cb_combine_forward_f64(e->out, ins, 3, n, 0); break;
    case OP_MEAN: cb_combine_forward_f64(e->out, ins, 3, n, 1); break;
    case OP_GELU: cb_gelu_forward_f64(e->out, e->a, n); break;
    case OP_SILU: cb_silu_forward_f64(e->out, e->a, n); break;
    }
    return lc_dot(e->out, e->R, n);
}

/* grads of a, b, c (each (N,W), zero where an op does not read that input) */
static void ew_backward(ew_case *e, double *da, double *db, double *dc) {
    const size_t n = (size_t)EW_N * EW_W;
    double *dins[3] = {da, db, dc};
    switch (e->op) {
    case OP_ADD: cb_add_backward_f64(da, db, e->R, n); break;
    case OP_SCALE: cb_scale_backward_f64(da, e->R, 0.37, n); break;
    case OP_CONCAT: cb_concat_backward_f64(dins, e->R, ew_widths, 2, EW_N); break;
    case OP_SPLIT: {
        const double *dparts[2] = {e->R, e->R + (size_t)EW_N * EW_W0};
        cb_split_backward_f64(da, dparts, ew_widths, 2, EW_N);
        break;
    }
    case OP_SUM: cb_combine_backward_f64(dins, e->R, 3, n, 0); break;
    case OP_MEAN: cb_combine_backward_f64(dins, e->R, 3, n, 1); break;
    case OP_GELU: cb_gelu_backward_f64(da, e->R, e->a, n); break;
    case OP_SILU: cb_silu_backward_f64(da, e->R, e->a, n); break;
    }
}

TEST(elementwise_gradients_match_finite_differences) {
    lc_seed(91);
    const size_t n = (size_t)EW_N * EW_W;
    for (int op = 0; op < N_OPS; op++) {
        ew_case e = {op, lc_rand(n, 3), lc_rand(n, 1), lc_rand(n, 1), lc_rand(n, 1), lc_zeros(n)};
        double *grads[3] = {lc_zeros(n), lc_zeros(n), lc_zeros(n)};
        double *inputs[3] = {e.a, e.b, e.c};
        ew_loss(&e);
        ew_backward(&e, grads[0], grads[1], grads[2]);
        double *once[3] = {lc_copy(grads[0], n), lc_copy(grads[1], n), lc_copy(grads[2], n)};
        for (int k = 0; k < op_inputs[op]; k++) {
            char what[96];
            snprintf(what, sizeof what, "fd %s d%c", op_names[op], 'a' + k);
            LC_EXPECT_DIFF(what, lc_fd_maxrel(ew_loss, &e, inputs[k], grads[k], n), LC_FD_TOL);
        }
        ew_loss(&e);
        ew_backward(&e, grads[0], grads[1], grads[2]);
        double worst = 0;
        for (int k = 0; k < op_inputs[op]; k++) worst = cb_test_worst(worst, lc_diff_doubled(grads[k], once[k], n));
        char what[96];
        snprintf(what, sizeof what, "%s accumulate", op_names[op]);
        LC_EXPECT_DIFF(what, worst, LC_ACCUM_TOL);
    }
    lc_free_all();
}

TEST(elementwise_activations_float_match_double) {
    lc_seed(92);
    const size_t n = 50000; // above the OpenMP threshold
    double *x = lc_rand(n, 6), *R = lc_rand(n, 1), *out = lc_zeros(n), *dx = lc_zeros(n);
    float *xf = lc_to_float(x, n), *Rf = lc_to_float(R, n), *outf = lc_zeros_f(n), *dxf = lc_zeros_f(n);
    cb_gelu_forward_f64(out, x, n);
    cb_gelu_backward_f64(dx, R, x, n);
    cb_gelu_forward(outf, xf, n);
    cb_gelu_backward(dxf, Rf, xf, n);
    LC_EXPECT_DIFF("gelu out f32 vs f64", lc_diff_fd(outf, out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("gelu din f32 vs f64", lc_diff_fd(dxf, dx, n), LC_F32_GRAD_TOL);
    memset(dx, 0, n * sizeof *dx), memset(dxf, 0, n * sizeof *dxf);
    cb_silu_forward_f64(out, x, n);
    cb_silu_backward_f64(dx, R, x, n);
    cb_silu_forward(outf, xf, n);
    cb_silu_backward(dxf, Rf, xf, n);
    LC_EXPECT_DIFF("silu out f32 vs f64", lc_diff_fd(outf, out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("silu din f32 vs f64", lc_diff_fd(dxf, dx, n), LC_F32_GRAD_TOL);
    // far tails: exp(100) overflows float, so silu(-100) = -100 / inf = -0 and its gradient 0; no NaN
    float tails[4] = {-100.0f, -30.0f, 30.0f, 100.0f}, y[4], dy[4] = {0}, ones[4] = {1, 1, 1, 1};
    cb_silu_forward(y, tails, 4);
    cb_silu_backward(dy, ones, tails, 4);
    for (int i = 0; i < 4; i++) EXPECT(isfinite(y[i]) && isfinite(dy[i]));
    EXPECT_NEAR(100.0, y[3], 1e-4);
    EXPECT_NEAR(1.0, dy[3], 1e-6);
    lc_free_all();
}

TEST(float_exp_is_within_2_ulp) {
    // the polynomial exp behind the float activations and cross-entropy, against libm in double
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.3f + (88.7f + 87.3f) * (float)i / 2000000.0f;
        double want = exp((double)x);
        double err = fabs((double)cb_exp(x) - want) / want;
        if (!(err <= worst)) worst = err;
    }
    LC_EXPECT_DIFF("cb_exp relative error on [-87.3, 88.7]", worst, 2.4e-7); // 2 ulp
    EXPECT(cb_exp(0.0f) == 1.0f);
    EXPECT(cb_exp(-88.0f) == 0.0f && cb_exp(-INFINITY) == 0.0f);
    EXPECT(isinf(cb_exp(89.0f)) && isinf(cb_exp(INFINITY)));
    EXPECT(isnan(cb_exp(NAN)));
}

TEST(elementwise_split_undoes_concat) {
    lc_seed(93);
    const int N = 300, widths[3] = {64, 1, 100};
    const size_t W = 165;
    float *p0 = lc_to_float(lc_rand((size_t)N * 64, 1), (size_t)N * 64);
    float *p1 = lc_to_float(lc_rand(N, 1), N);
    float *p2 = lc_to_float(lc_rand((size_t)N * 100, 1), (size_t)N * 100);
    const float *parts[3] = {p0, p1, p2};
    float *joined = lc_zeros_f(N * W);
    cb_concat_forward(joined, parts, widths, 3, N);
    EXPECT(joined[W + 64] == p1[1]); // row 1, first column of part 1
    float *q[3] = {lc_zeros_f((size_t)N * 64), lc_zeros_f(N), lc_zeros_f((size_t)N * 100)};
    cb_split_forward(q, joined, widths, 3, N);
    EXPECT(lc_same_bits(q[0], p0, (size_t)N * 64));
    EXPECT(lc_same_bits(q[1], p1, N));
    EXPECT(lc_same_bits(q[2], p2, (size_t)N * 100));
    lc_free_all();
}

TEST(elementwise_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/elementwise.safetensors");
    const int N = 6, C = 8;
    const size_t n = (size_t)N * C;
    static const char *acts[2] = {"gelu", "silu"};
    for (int k = 0; k < 2; k++) {
        char name[4][32];
        snprintf(name[0], 32, "%s.in", acts[k]), snprintf(name[1], 32, "%s.out", acts[k]);
        snprintf(name[2], 32, "%s.dout", acts[k]), snprintf(name[3], 32, "%s.din", acts[k]);
        LC_FIXTURE_F32(in, &f, name[0], n);
        LC_FIXTURE_F32(want_out, &f, name[1], n);
        LC_FIXTURE_F32(dout, &f, name[2], n);
        LC_FIXTURE_F32(want_din, &f, name[3], n);
        float *out = lc_zeros_f(n), *din = lc_zeros_f(n);
        if (k == 0) {
            cb_gelu_forward(out, in, n);
            cb_gelu_backward(din, dout, in, n);
        } else {
            cb_silu_forward(out, in, n);
            cb_silu_backward(din, dout, in, n);
        }
        char what[64];
        snprintf(what, sizeof what, "%s out vs torch", acts[k]);
        LC_EXPECT_DIFF(what, lc_diff_ff(out, want_out, n), LC_F32_TOL);
        snprintf(what, sizeof what, "%s din vs torch", acts[k]);
        LC_EXPECT_DIFF(what, lc_diff_ff(din, want_din, n), LC_F32_TOL);
    }
    LC_FIXTURE_F32(a, &f, "concat.a", (size_t)N * 3);
    LC_FIXTURE_F32(b, &f, "concat.b", (size_t)N * 5);
    LC_FIXTURE_F32(want_cat, &f, "concat.out", n);
    LC_FIXTURE_F32(dcat, &f, "concat.dout", n);
    LC_FIXTURE_F32(want_da, &f, "concat.da", (size_t)N * 3);
    LC_FIXTURE_F32(want_db, &f, "concat.db", (size_t)N * 5);
    const float *parts[2] = {a, b};
    const int widths[2] = {3, 5};
    float *cat = lc_zeros_f(n), *dparts[2] = {lc_zeros_f((size_t)N * 3), lc_zeros_f((size_t)N * 5)};
    cb_concat_forward(cat, parts, widths, 2, N);
    cb_concat_backward(dparts, dcat, widths, 2, N);
    LC_EXPECT_DIFF("concat out vs torch", lc_diff_ff(cat, want_cat, n), LC_F32_TOL);
    LC_EXPECT_DIFF("concat da vs torch", lc_diff_ff(dparts[0], want_da, (size_t)N * 3), LC_F32_TOL);
    LC_EXPECT_DIFF("concat db vs torch", lc_diff_ff(dparts[1], want_db, (size_t)N * 5), LC_F32_TOL);

    LC_FIXTURE_F32(in0, &f, "mean.in0", n);
    LC_FIXTURE_F32(in1, &f, "mean.in1", n);
    LC_FIXTURE_F32(in2, &f, "mean.in2", n);
    LC_FIXTURE_F32(want_mean, &f, "mean.out", n);
    LC_FIXTURE_F32(dmean, &f, "mean.dout", n);
    LC_FIXTURE_F32(want_din0, &f, "mean.din0", n);
    const float *ins[3] = {in0, in1, in2};
    float *mean = lc_zeros_f(n), *dins[3] = {lc_zeros_f(n), NULL, lc_zeros_f(n)};
    cb_combine_forward(mean, ins, 3, n, 1);
    cb_combine_backward(dins, dmean, 3, n, 1);
    LC_EXPECT_DIFF("combine mean out vs torch", lc_diff_ff(mean, want_mean, n), LC_F32_TOL);
    LC_EXPECT_DIFF("combine mean din0 vs torch", lc_diff_ff(dins[0], want_din0, n), LC_F32_TOL);
    EXPECT(lc_same_bits(dins[0], dins[2], n));
    fx_close(&f);
    lc_free_all();
}

TEST(elementwise_same_bits_on_any_thread_count) {
    lc_seed(94);
    const size_t n = 100000;
    float *x = lc_to_float(lc_rand(n, 5), n), *R = lc_to_float(lc_rand(n, 1), n);
    float *out[2], *dx[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        out[k] = lc_zeros_f(n), dx[k] = lc_zeros_f(n);
        cb_gelu_forward(out[k], x, n);
        cb_gelu_backward(dx[k], R, x, n);
        cb_silu_backward(dx[k], R, x, n);
        cb_add_backward(dx[k], NULL, out[k], n);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], n));
    EXPECT(lc_same_bits(dx[0], dx[1], n));
    lc_free_all();
}
