/* test_distill.c: the losses of distillation against central finite differences (the KL
 * to the teacher's logits, the attention-output L1 and MSE), hand-computed values, and
 * the one-layer optimizer, which moves that layer's tensors and nothing else. */
#include "test.h"

#include <stdlib.h>
#include "train/blockwise.h"
#include "train/distill.h"
#include "train/optimizer.h"

TEST(kl_gradient_matches_finite_differences) {
    enum { R = 3, V = 7 };
    unsigned long long st = 5;
    float s[R * V], t[R * V], ds[R * V];
    for (int i = 0; i < R * V; i++) {
        s[i] = 2 * cb_test_urandf(&st);
        t[i] = 2 * cb_test_urandf(&st);
        ds[i] = 0.25f; /* += : what was there stays */
    }
    const double temp = 2.0, scale = 0.7;
    cb_distill_kl(ds, s, t, R, V, temp, scale);
    double worst = 0;
    for (int i = 0; i < R * V; i++) {
        const float h = 1e-2f, x = s[i];
        s[i] = x + h;
        double up = cb_distill_kl(NULL, s, t, R, V, temp, scale);
        s[i] = x - h;
        double dn = cb_distill_kl(NULL, s, t, R, V, temp, scale);
        s[i] = x;
        double fd = scale * temp * temp * (up - dn) / (2.0 * h);
        worst = fmax(worst, fabs(fd - (ds[i] - 0.25)));
    }
    REPORT_DIFF("d(alpha T^2 KL)/ds against differences", worst, 1e-4);
    EXPECT(worst < 1e-4);
    /* equal logits: no divergence; the KL of a known pair by hand */
    EXPECT_NEAR(0.0, cb_distill_kl(NULL, t, t, R, V, 1.0, 1.0), 1e-12);
    float a[2] = {0, 0}, b[2] = {0, (float)log(3.0)}; /* p_t = (1/4, 3/4), p_s = (1/2, 1/2) */
    double want = 0.25 * log(0.5) + 0.75 * log(1.5);
    EXPECT_NEAR(want, cb_distill_kl(NULL, a, b, 1, 2, 1.0, 1.0), 1e-7);
}

TEST(blockwise_losses_and_gradients) {
    float s[4] = {1, -2, 0.5f, 3}, t[4] = {0, -2.5f, 1, 3}, ds[4];
    EXPECT_NEAR((1 + 0.5 + 0.5 + 0) / 4.0, cb_blockwise_loss(ds, s, t, 4, 0), 1e-12);
    EXPECT_NEAR(0.25, ds[0], 0);
    EXPECT_NEAR(0.25, ds[1], 0);
    EXPECT_NEAR(-0.25, ds[2], 0);
    EXPECT_NEAR(0, ds[3], 0);
    EXPECT_NEAR((1 + 0.25 + 0.25) / 4.0, cb_blockwise_loss(ds, s, t, 4, 1), 1e-12);
    EXPECT_NEAR(2 * 1 / 4.0, ds[0], 1e-7);
    EXPECT_NEAR(2 * -0.5 / 4.0, ds[2], 1e-7);
}

TEST(layer_optimizer_moves_only_its_layer) {
    cb_param items[3] = {{.name = "a.weight", .ndim = 1, .shape = {16}, .numel = 16, .offset = 0},
                         {.name = "b.q.weight", .ndim = 2, .shape = {4, 4}, .numel = 16, .offset = 16},
                         {.name = "c.weight", .ndim = 1, .shape = {16}, .numel = 16, .offset = 32}};
    cb_param_table table = {.items = items, .n = 3, .total_floats = 48};
    cb_optimizer_config cfg = {.kind = CB_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    cb_optimizer full;
    cb_error e;
    if (cb_optimizer_init(&full, &cfg, &table, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    cb_op op;
    memset(&op, 0, sizeof op);
    for (int i = 0; i < CB_OP_MAX_PARAMS; i++) op.p[i] = CB_NO_PARAM;
    op.p[0] = 16;
    cb_layer_optimizer lo;
    size_t a, b;
    if (cb_layer_optimizer_init(&lo, &full, &op, &a, &b, &e) != CB_OK) { FAILF("%s", e.msg); cb_optimizer_free(&full); return; }
    EXPECT_EQ_INT(16, a);
    EXPECT_EQ_INT(32, b);
    float w[48], g[48];
    for (int i = 0; i < 48; i++) w[i] = 1, g[i] = 0.5f;
    cb_optimizer_step_state(&lo.view, w, g, full.m, full.v, 0.01);
    for (int i = 0; i < 48; i++) {
        int inside = i >= 16 && i < 32;
        if (inside ? w[i] == 1 : w[i] != 1) FAILF("w[%d] = %g after the step of layer [16, 32)", i, w[i]);
    }
    EXPECT_EQ_INT(1, lo.view.t);
    EXPECT_EQ_INT(0, full.t);
    cb_layer_optimizer_free(&lo);
    cb_optimizer_free(&full);
}
