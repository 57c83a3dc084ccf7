/* test_optimizer.c: AdamW, Lion and SGD steps against hand-computed values and against
 * torch.optim (fixtures of tests/reference/make_optimizer_fixtures.py); decay rules;
 * the state's save and load. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/atomic_dir.h"
#include "model/model.h"
#include "tensor/safetensors.h"
#include "test.h"
#include "train/optimizer.h"
#include "unit/train/train_util.h"

static cb_optimizer_config config(int kind) {
    cb_optimizer_config c = {.kind = kind, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .momentum = 0.9,
                             .weight_decay = 0.0, .decay_norms_and_biases = 0, .decay_embeddings = 1};
    return c;
}

/* one 2-D tensor of one element, so decay applies */
static void one_element(cb_param_table *t, cb_param *items) {
    static const char *const names[] = {"x.weight"};
    static const int ndims[] = {2};
    static const int64_t shapes[][2] = {{1, 1}};
    tu_table(t, items, 1, names, ndims, shapes);
}

TEST(adamw_by_hand) {
    cb_param items[1];
    cb_param_table t;
    one_element(&t, items);
    cb_optimizer_config c = config(CB_OPT_ADAMW);
    c.weight_decay = 0.01;
    cb_optimizer o;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&o, &c, &t, &e));
    float w[16] = {1.0f}, g[16] = {0.5f};
    /* p = 1 (1 - 0.1*0.01); m = 0.05; v = 0.00025; step lr/(1-0.9) m / (sqrt(v)/sqrt(1-0.999) + eps) */
    cb_optimizer_step(&o, w, g, 0.1);
    EXPECT_NEAR(0.899000002, w[0], 1e-7);
    EXPECT_NEAR(0.05, o.m[0], 1e-8);
    EXPECT_NEAR(0.00025, o.v[0], 1e-10);
    g[0] = -0.25f;
    cb_optimizer_step(&o, w, g, 0.1);
    EXPECT_NEAR(0.8714672987058463, w[0], 2e-7);
    EXPECT_NEAR(0.02, o.m[0], 1e-8);
    EXPECT_NEAR(0.00031225, o.v[0], 1e-10);
    EXPECT_EQ_INT(2, o.t);
    cb_optimizer_free(&o);
}

TEST(lion_by_formula) {
    cb_param items[1];
    cb_param_table t;
    one_element(&t, items);
    cb_optimizer_config c = config(CB_OPT_LION);
    c.beta2 = 0.99;
    c.weight_decay = 0.1;
    cb_optimizer o;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&o, &c, &t, &e));
    float w[16] = {0.5f}, g[16] = {0};
    /* p *= 1 - lr wd; p -= lr sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g */
    const float grads[3] = {0.2f, -0.3f, 0.0f};
    const double want_w[3] = {0.4895, 0.4990105, 0.5085114895}, want_m[3] = {0.002, -0.00102, -0.0010098};
    for (int k = 0; k < 3; k++) {
        g[0] = grads[k];
        cb_optimizer_step(&o, w, g, 0.01);
        EXPECT_NEAR(want_w[k], w[0], 1e-7);
        EXPECT_NEAR(want_m[k], o.m[0], 1e-9);
    }
    cb_optimizer_free(&o);
    /* sign(0) is 0: a zero gradient on a zero moment only decays */
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&o, &c, &t, &e));
    w[0] = 2.0f;
    g[0] = 0.0f;
    cb_optimizer_step(&o, w, g, 0.01);
    EXPECT_NEAR(2.0 * (1 - 0.01 * 0.1), w[0], 1e-7);
    cb_optimizer_free(&o);
}

TEST(sgd_momentum_decoupled_decay_by_hand) {
    cb_param items[1];
    cb_param_table t;
    one_element(&t, items);
    cb_optimizer_config c = config(CB_OPT_SGD);
    c.weight_decay = 0.5;
    cb_optimizer o;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&o, &c, &t, &e));
    float w[16] = {1.0f}, g[16] = {2.0f};
    cb_optimizer_step(&o, w, g, 0.1); /* w = 1*(1-0.05) - 0.1*2 = 0.75; buf 2 */
    EXPECT_NEAR(0.75, w[0], 1e-7);
    g[0] = 1.0f;
    cb_optimizer_step(&o, w, g, 0.1); /* buf = 0.9*2 + 1 = 2.8; w = 0.75*0.95 - 0.28 = 0.4325 */
    EXPECT_NEAR(0.4325, w[0], 1e-7);
    EXPECT_NEAR(2.8, o.m[0], 1e-7);
    cb_optimizer_free(&o);
}

TEST(decay_per_tensor) {
    cb_optimizer_config c = config(CB_OPT_ADAMW);
    c.weight_decay = 0.1;
    cb_param p = {.ndim = 2};
    snprintf(p.name, sizeof p.name, "blocks.0.res.attn.q.weight");
    EXPECT_EQ_INT(1, cb_optimizer_decays(&c, &p));
    snprintf(p.name, sizeof p.name, "embed.tok");
    EXPECT_EQ_INT(1, cb_optimizer_decays(&c, &p));
    c.decay_embeddings = 0;
    EXPECT_EQ_INT(0, cb_optimizer_decays(&c, &p));
    p.ndim = 1;
    snprintf(p.name, sizeof p.name, "norm.weight");
    EXPECT_EQ_INT(0, cb_optimizer_decays(&c, &p));
    c.decay_norms_and_biases = 1;
    EXPECT_EQ_INT(1, cb_optimizer_decays(&c, &p));
    c.weight_decay = 0;
    EXPECT_EQ_INT(0, cb_optimizer_decays(&c, &p));
}

/* replay a fixture: "w" [3,4] (decayed) and "b" [4] (a 1-D tensor: not decayed) */
static void replay(const char *file, int kind, double weight_decay, const char *const *state, int n_state) {
    char path[1024];
    const char *root = getenv("CB_ROOT");
    snprintf(path, sizeof path, "%s/tests/reference/optimizer/%s", root ? root : ".", file);
    cb_safetensors st;
    cb_error e;
    if (cb_safetensors_open(&st, path, &e) != CB_OK) {
        FAILF("%s: %s", e.where, e.msg);
        return;
    }
    static const char *const names[] = {"w", "b"};
    static const int ndims[] = {2, 1};
    static const int64_t shapes[][2] = {{3, 4}, {4, 0}};
    cb_param items[2];
    cb_param_table t;
    tu_table(&t, items, 2, names, ndims, shapes);
    cb_optimizer_config c = config(kind);
    c.beta2 = 0.95;
    c.weight_decay = weight_decay;
    cb_optimizer o;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&o, &c, &t, &e));
    float w[32] = {0}, g[32] = {0}, want[32] = {0};
    double lrs[4];
    cb_tensor lt;
    EXPECT_EQ_INT(CB_OK, cb_safetensors_get(&st, "lrs", &lt, &e));
    memcpy(lrs, lt.data, sizeof lrs);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "w0", w, 12, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "b0", w + 16, 4, &e));
    double worst = 0;
    char key[32];
    for (int k = 0; k < 4; k++) {
        snprintf(key, sizeof key, "gw%d", k);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, g, 12, &e));
        snprintf(key, sizeof key, "gb%d", k);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, g + 16, 4, &e));
        cb_optimizer_step(&o, w, g, lrs[k]);
        snprintf(key, sizeof key, "w%d", k + 1);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, want, 12, &e));
        snprintf(key, sizeof key, "b%d", k + 1);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, want + 16, 4, &e));
        for (int i = 0; i < 20; i++) {
            if (i >= 12 && i < 16) continue;
            double d = fabs((double)w[i] - want[i]);
            worst = cb_test_worst(worst, d);
        }
    }
    REPORT_DIFF(file, worst, 1e-6);
    if (!(worst <= 1e-6)) FAILF("%s: weights differ from torch by %g", file, worst);
    double worst_state = 0;
    for (int s = 0; s < n_state; s++) {
        const float *mine = s == 0 ? o.m : o.v;
        snprintf(key, sizeof key, "w.%s", state[s]);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, want, 12, &e));
        snprintf(key, sizeof key, "b.%s", state[s]);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, key, want + 16, 4, &e));
        for (int i = 0; i < 20; i++) {
            if (i >= 12 && i < 16) continue;
            double d = fabs((double)mine[i] - want[i]) / (fabs(want[i]) + 1e-3);
            worst_state = cb_test_worst(worst_state, d);
        }
    }
    REPORT_DIFF("optimizer state (relative)", worst_state, 1e-5);
    if (!(worst_state <= 1e-5)) FAILF("%s: optimizer state differs from torch by %g", file, worst_state);
    cb_optimizer_free(&o);
    cb_safetensors_close(&st);
}

TEST(adamw_matches_torch) {
    static const char *const state[] = {"exp_avg", "exp_avg_sq"};
    replay("adamw.safetensors", CB_OPT_ADAMW, 0.1, state, 2);
}

TEST(sgd_matches_torch) {
    static const char *const state[] = {"momentum_buffer"};
    replay("sgd.safetensors", CB_OPT_SGD, 0.0, state, 1);
}

TEST(state_save_load_round_trip) {
    static const char *const names[] = {"w", "b"};
    static const int ndims[] = {2, 1};
    static const int64_t shapes[][2] = {{3, 4}, {4, 0}};
    cb_param items[2];
    cb_param_table t;
    tu_table(&t, items, 2, names, ndims, shapes);
    cb_optimizer_config c = config(CB_OPT_ADAMW);
    cb_optimizer a, b;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&a, &c, &t, &e));
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&b, &c, &t, &e));
    float w1[32], w2[32], g[32];
    for (int i = 0; i < 32; i++) w1[i] = w2[i] = (float)i * 0.01f, g[i] = (float)((i * 7) % 5) - 2.0f;
    cb_optimizer_step(&a, w1, g, 0.01);
    cb_optimizer_step(&a, w1, g, 0.02);
    char dir[512], path[600];
    tu_tempdir(dir, sizeof dir, "opt");
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    EXPECT_EQ_INT(CB_OK, cb_optimizer_save(&a, path, "abc", &e));
    EXPECT_EQ_INT(CB_OK, cb_optimizer_load(&b, path, &e));
    EXPECT_EQ_INT(2, b.t);
    EXPECT(memcmp(a.m, b.m, t.total_floats * sizeof(float)) == 0);
    EXPECT(memcmp(a.v, b.v, t.total_floats * sizeof(float)) == 0);
    memcpy(w2, w1, sizeof w1);
    cb_optimizer_step(&a, w1, g, 0.03);
    cb_optimizer_step(&b, w2, g, 0.03);
    EXPECT(memcmp(w1, w2, sizeof w1) == 0);
    /* the state of another optimizer is refused, naming the file */
    cb_optimizer_config lc = config(CB_OPT_LION);
    cb_optimizer l;
    EXPECT_EQ_INT(CB_OK, cb_optimizer_init(&l, &lc, &t, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_optimizer_load(&l, path, &e));
    EXPECT(strstr(e.msg, "adamw") != NULL && strstr(e.msg, "lion") != NULL);
    EXPECT_EQ_STR(path, e.where);
    cb_optimizer_free(&l);
    cb_optimizer_free(&a);
    cb_optimizer_free(&b);
    cb_remove_tree(dir);
}
