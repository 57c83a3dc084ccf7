/* test_crossentropy.c: cb_crossentropy (fused softmax + cross-entropy with ignored targets) against
 * central differences (double), its float twin, PyTorch's F.cross_entropy
 * (tests/reference/layers/crossentropy.safetensors), huge logits, and across thread counts. */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/crossentropy.h"

typedef struct {
    int N, V;
    double dloss;
    int32_t *targets;
    double *logits, *losses, *lse;
} ce_case;

static double ce_loss(void *ctx) {
    ce_case *c = ctx;
    return c->dloss * cb_crossentropy_forward_f64(c->losses, c->lse, c->logits, c->targets, c->N, c->V);
}

static void ce_case_init(ce_case *c, int N, int V, double scale) {
    c->N = N, c->V = V, c->dloss = 0.7;
    c->targets = lc_alloc((size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++) c->targets[n] = (int32_t)(lc_next() % (uint64_t)V);
    c->targets[N / 2] = -1; // one ignored position
    c->logits = lc_rand((size_t)N * V, scale);
    c->losses = lc_zeros(N), c->lse = lc_zeros(N);
}

TEST(crossentropy_gradients_match_finite_differences) {
    lc_seed(81);
    ce_case c;
    ce_case_init(&c, 6, 9, 3);
    size_t n = (size_t)c.N * c.V;
    double *dlogits = lc_zeros(n);
    ce_loss(&c);
    cb_crossentropy_backward_f64(dlogits, c.logits, c.lse, c.targets, c.N, c.V, c.dloss);
    LC_CHECK_GRAD("crossentropy dlogits", ce_loss, &c, c.logits, dlogits, n);
    int V = c.V, ignored = c.N / 2;
    double ignored_row = 0;
    for (int v = 0; v < V; v++) ignored_row = cb_test_worst(ignored_row, fabs(dlogits[(size_t)ignored * V + v]));
    EXPECT(ignored_row == 0);
    EXPECT(c.losses[ignored] == 0);
    double *d1 = lc_copy(dlogits, n);
    ce_loss(&c); // the checks above left lse at perturbed logits
    cb_crossentropy_backward_f64(dlogits, c.logits, c.lse, c.targets, c.N, c.V, c.dloss);
    LC_EXPECT_DIFF("crossentropy accumulate dlogits", lc_diff_doubled(dlogits, d1, n), LC_ACCUM_TOL);
    lc_free_all();
}

TEST(crossentropy_float_matches_double) {
    lc_seed(82);
    ce_case c;
    ce_case_init(&c, 64, 1024, 4); // N*V above the OpenMP threshold
    size_t n = (size_t)c.N * c.V;
    double *dlogits = lc_zeros(n);
    double mean = ce_loss(&c) / c.dloss;
    cb_crossentropy_backward_f64(dlogits, c.logits, c.lse, c.targets, c.N, c.V, c.dloss);
    float *logits = lc_to_float(c.logits, n), *losses = lc_zeros_f(c.N), *lse = lc_zeros_f(c.N);
    float *dlogitsf = lc_zeros_f(n);
    float meanf = cb_crossentropy_forward(losses, lse, logits, c.targets, c.N, c.V);
    cb_crossentropy_backward(dlogitsf, logits, lse, c.targets, c.N, c.V, (float)c.dloss);
    LC_EXPECT_DIFF("crossentropy mean f32 vs f64", fabs(meanf - mean) / fabs(mean), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy losses f32 vs f64", lc_diff_fd(losses, c.losses, c.N), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy lse f32 vs f64", lc_diff_fd(lse, c.lse, c.N), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy dlogits f32 vs f64", lc_diff_fd(dlogitsf, dlogits, n), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(crossentropy_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/crossentropy.safetensors");
    const int N = 6, V = 11;
    const size_t n = (size_t)N * V;
    int32_t *targets = fx_tensor(&f, "targets", "I32", N, NULL);
    if (!targets) {
        FAILF("%.900s", f.why);
        fx_close(&f);
        return;
    }
    LC_FIXTURE_F32(logits, &f, "logits", n);
    LC_FIXTURE_F32(want_losses, &f, "losses", N);
    LC_FIXTURE_F32(want_lse, &f, "lse", N);
    LC_FIXTURE_F32(want_loss, &f, "loss", 1);
    LC_FIXTURE_F32(dloss, &f, "dloss", 1);
    LC_FIXTURE_F32(want_dlogits, &f, "dlogits", n);
    float *losses = lc_zeros_f(N), *lse = lc_zeros_f(N), *dlogits = lc_zeros_f(n);
    float loss = cb_crossentropy_forward(losses, lse, logits, targets, N, V);
    cb_crossentropy_backward(dlogits, logits, lse, targets, N, V, dloss[0]);
    LC_EXPECT_DIFF("crossentropy loss vs torch", lc_diff_ff(&loss, want_loss, 1), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy losses vs torch", lc_diff_ff(losses, want_losses, N), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy lse vs torch", lc_diff_ff(lse, want_lse, N), LC_F32_TOL);
    LC_EXPECT_DIFF("crossentropy dlogits vs torch", lc_diff_ff(dlogits, want_dlogits, n), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(crossentropy_is_stable_for_huge_logits) {
    lc_seed(83);
    const int N = 4, V = 50;
    const size_t n = (size_t)N * V;
    int32_t targets[4] = {3, 49, 0, 17};
    float *logits = lc_to_float(lc_rand(n, 2), n), *shifted = lc_zeros_f(n);
    for (size_t i = 0; i < n; i++) shifted[i] = logits[i] + 1000.0f; // exp(1000) overflows float
    float *losses = lc_zeros_f(N), *lse = lc_zeros_f(N), *losses_s = lc_zeros_f(N), *lse_s = lc_zeros_f(N);
    float *d = lc_zeros_f(n), *d_s = lc_zeros_f(n);
    float mean = cb_crossentropy_forward(losses, lse, logits, targets, N, V);
    float mean_s = cb_crossentropy_forward(losses_s, lse_s, shifted, targets, N, V);
    cb_crossentropy_backward(d, logits, lse, targets, N, V, 1.0f);
    cb_crossentropy_backward(d_s, shifted, lse_s, targets, N, V, 1.0f);
    EXPECT(isfinite(mean_s));
    // the shift costs the float logits about 2^-14 of absolute precision each
    LC_EXPECT_DIFF("crossentropy losses shifted by 1000", lc_diff_ff(losses_s, losses, N), 1e-3);
    LC_EXPECT_DIFF("crossentropy mean shifted by 1000", fabs(mean_s - mean) / fabs(mean), 1e-3);
    LC_EXPECT_DIFF("crossentropy dlogits shifted by 1000", lc_diff_ff(d_s, d, n), 1e-3);
    lc_free_all();
}

TEST(crossentropy_all_ignored_is_zero) {
    const int N = 3, V = 4;
    float logits[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, losses[3], lse[3], d[12] = {0};
    int32_t targets[3] = {-1, -100, -1};
    EXPECT(cb_crossentropy_forward(losses, lse, logits, targets, N, V) == 0.0f);
    cb_crossentropy_backward(d, logits, lse, targets, N, V, 1.0f);
    for (int i = 0; i < N * V; i++) EXPECT(d[i] == 0.0f);
    for (int i = 0; i < N; i++) EXPECT(losses[i] == 0.0f);
    // the log-sum-exp is still there for every row: log(e^1 + e^2 + e^3 + e^4)
    EXPECT_NEAR(4.4401897, lse[0], 1e-5);
}

TEST(crossentropy_same_bits_on_any_thread_count) {
    lc_seed(84);
    ce_case c;
    ce_case_init(&c, 64, 1024, 4);
    size_t n = (size_t)c.N * c.V;
    float *logits = lc_to_float(c.logits, n), *losses[2], *lse[2], *d[2], mean[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        losses[k] = lc_zeros_f(c.N), lse[k] = lc_zeros_f(c.N), d[k] = lc_zeros_f(n);
        mean[k] = cb_crossentropy_forward(losses[k], lse[k], logits, c.targets, c.N, c.V);
        cb_crossentropy_backward(d[k], logits, lse[k], c.targets, c.N, c.V, 1.0f);
    }
    omp_set_num_threads(saved);
    EXPECT(mean[0] == mean[1]);
    EXPECT(lc_same_bits(losses[0], losses[1], c.N));
    EXPECT(lc_same_bits(d[0], d[1], n));
    lc_free_all();
}
