/* test_attention.c: attention in every mode: backward against central finite differences
 * in double, gradient accumulation, causality, config checks, and float32 forward and
 * backward against the PyTorch fixtures of tests/reference/make_attention_fixtures.py. */
#include "test.h"

#include <stddef.h>
#include <stdlib.h>

#include "fixture_read_attn.h"
#include "layers/attention.h"
#include "layers/rope.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static double urand(void) { // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* One parameter tensor: its CONTRACTS.md name, where its pointer sits in the float and
 * the double weights struct, and its element count. */
typedef struct tspec {
    const char *name;
    size_t field32, field64;
    size_t n;
} tspec;

#define MAX_SPECS 20

static int attn_specs(const cb_attention_config *c, tspec *s) {
    int n = 0;
    const size_t d = (size_t)c->d_model, H = (size_t)c->n_heads, Hkv = (size_t)c->n_kv_heads;
#define ADD(nm, f, count) \
    s[n++] = (tspec){nm, offsetof(cb_attention_weights, f), offsetof(cb_attention_weights_f64, f), (size_t)(count)}
    if (c->mode != CB_ATTENTION_DECOUPLED) {
        size_t hd = (size_t)c->head_dim;
        ADD("q.weight", q_weight, H * hd * d);
        ADD("k.weight", k_weight, Hkv * hd * d);
        ADD("v.weight", v_weight, Hkv * hd * d);
        ADD("o.weight", o_weight, d * H * hd);
        if (c->bias) {
            ADD("q.bias", q_bias, H * hd);
            ADD("k.bias", k_bias, Hkv * hd);
            ADD("v.bias", v_bias, Hkv * hd);
            ADD("o.bias", o_bias, d);
        }
    } else {
        size_t sem = (size_t)c->sem_dim, geo = (size_t)c->geo_dim, vd = (size_t)c->v_dim;
        ADD("q_sem.weight", q_sem_weight, sem * d);
        ADD("k_sem.weight", k_sem_weight, Hkv * sem / H * d);
        ADD("q_geo.weight", q_geo_weight, geo * d);
        ADD("k_geo.weight", k_geo_weight, Hkv * geo / H * d);
        ADD("v.weight", v_weight, Hkv * vd / H * d);
        ADD("o.weight", o_weight, d * vd);
        if (c->bias) {
            ADD("q_sem.bias", q_sem_bias, sem);
            ADD("k_sem.bias", k_sem_bias, Hkv * sem / H);
            ADD("q_geo.bias", q_geo_bias, geo);
            ADD("k_geo.bias", k_geo_bias, Hkv * geo / H);
            ADD("v.bias", v_bias, Hkv * vd / H);
            ADD("o.bias", o_bias, d);
        }
        if (c->decoupled_gate) ADD("gate", gate, H);
        if (c->decoupled_gate_dynamic) ADD("gate_proj.weight", gate_proj_weight, H * d);
    }
#undef ADD
    return n;
}

static double **field64(cb_attention_weights_f64 *w, const tspec *s) {
    return (double **)((char *)w + s->field64);
}
static float **field32(cb_attention_weights *w, const tspec *s) {
    return (float **)((char *)w + s->field32);
}

static cb_attention_config make_cfg(cb_attention_mode mode, int d, int H, int Hkv, int sem,
                                    int geo, int v, int rope, int bias, int gate, int dynamic,
                                    int causal) {
    cb_attention_config c = {0};
    c.mode = mode;
    c.d_model = d;
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.head_dim = d / H;
    c.sem_dim = sem;
    c.geo_dim = geo;
    c.v_dim = v;
    c.rope_enabled = rope;
    c.bias = bias;
    c.decoupled_gate = gate;
    c.decoupled_gate_dynamic = dynamic;
    c.is_causal = causal;
    return c;
}

/* A double-precision attention layer with its inputs, gradients and buffers. */
typedef struct h64 {
    cb_attention_config cfg;
    int B, T, N, n_specs;
    tspec specs[MAX_SPECS];
    double *params, *grads;
    size_t n_params;
    cb_attention_weights_f64 w, gw;
    cb_attention_acts_f64 acts;
    double *x, *dx, *dout, *out, *acts_buf, *scratch, *cos_t, *sin_t;
} h64;

static void h64_init(h64 *h, const cb_attention_config *cfg, int B, int T,
                     const cb_rope_scaling *scaling) {
    cb_error e;
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    h->B = B;
    h->T = T;
    h->N = B * T;
    if (cb_attention_check(cfg, &e) != CB_OK) FAILF("config: %.900s", e.msg);
    h->n_specs = attn_specs(cfg, h->specs);
    for (int i = 0; i < h->n_specs; i++) h->n_params += h->specs[i].n;
    h->params = malloc(sizeof(double) * h->n_params);
    h->grads = calloc(h->n_params, sizeof(double));
    size_t off = 0;
    for (int i = 0; i < h->n_specs; i++) {
        const tspec *s = &h->specs[i];
        *field64(&h->w, s) = h->params + off;
        *field64(&h->gw, s) = h->grads + off;
        /* weights about 1/sqrt(fan-in); gate parameters clearly away from 0 */
        double scale = strcmp(s->name, "gate") == 0 ? 1.0 : 0.6;
        for (size_t j = 0; j < s->n; j++) h->params[off + j] = scale * urand();
        off += s->n;
    }
    size_t nx = (size_t)h->N * cfg->d_model;
    h->x = malloc(sizeof(double) * nx);
    h->dout = malloc(sizeof(double) * nx);
    h->out = malloc(sizeof(double) * nx);
    h->dx = calloc(nx, sizeof(double));
    for (size_t i = 0; i < nx; i++) {
        h->x[i] = urand();
        h->dout[i] = urand();
    }
    h->acts_buf = malloc(sizeof(double) * cb_attention_acts_size(cfg, B, T));
    h->scratch = malloc(sizeof(double) * cb_attention_scratch_size(cfg, B, T));
    cb_attention_acts_layout_f64(&h->acts, h->acts_buf, cfg, B, T);
    int D = cb_attention_rope_dim(cfg);
    h->cos_t = malloc(sizeof(double) * (size_t)T * (D / 2 + 1));
    h->sin_t = malloc(sizeof(double) * (size_t)T * (D / 2 + 1));
    cb_rope_tables_f64(h->cos_t, h->sin_t, T, D, 10000.0, scaling);
}

static void h64_free(h64 *h) {
    free(h->params);
    free(h->grads);
    free(h->x);
    free(h->dx);
    free(h->dout);
    free(h->out);
    free(h->acts_buf);
    free(h->scratch);
    free(h->cos_t);
    free(h->sin_t);
}

static void h64_forward(h64 *h) {
    cb_attention_forward_f64(h->out, &h->acts, h->x, &h->w, &h->cfg, h->cos_t, h->sin_t,
                             h->scratch, h->B, h->T);
}

static void h64_backward(h64 *h) {
    cb_attention_backward_f64(h->dx, &h->gw, h->dout, h->x, &h->acts, &h->w, &h->cfg, h->cos_t,
                              h->sin_t, h->scratch, h->B, h->T);
}

static double h64_loss(h64 *h) { // L = sum(out * dout)
    h64_forward(h);
    double l = 0;
    for (size_t i = 0; i < (size_t)h->N * h->cfg.d_model; i++) l += h->out[i] * h->dout[i];
    return l;
}

/* numeric (n) = dL/dvalues by central differences, h = 1e-6 */
static void fd_grad(h64 *hh, double *values, double *numeric, size_t n) {
    const double step = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = values[i];
        values[i] = keep + step;
        double lp = h64_loss(hh);
        values[i] = keep - step;
        double lm = h64_loss(hh);
        values[i] = keep;
        numeric[i] = (lp - lm) / (2 * step);
    }
}

static double max_abs(const double *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = cb_test_worst(m, fabs(v[i]));
    return m;
}

/* Relative error of a gradient: max|analytic - numeric| / max(max|numeric|, floor). The
 * floor, 1e-3 of the largest gradient of the case, serves tensors whose gradient is zero
 * (a key bias without RoPE shifts a whole score row, which softmax ignores). */
static double rel_error(const double *analytic, const double *numeric, size_t n, double floor) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = cb_test_worst(worst, fabs(analytic[i] - numeric[i]));
    double scale = max_abs(numeric, n);
    return worst / (scale > floor || isnan(scale) ? scale : floor); // NaN stays NaN
}

#define FD_TOL 1e-6
#define ZERO_FLOOR 1e-3

/* Every gradient against finite differences, then += accumulation: a second backward onto
 * random starting gradients must add exactly the first backward's result (to 1e-12). */
static void fd_check(const char *label, cb_attention_config cfg, int B, int T,
                     const cb_rope_scaling *scaling) {
    h64 h;
    h64_init(&h, &cfg, B, T, scaling);
    if (cb_test_failed) return;
    h64_forward(&h);
    h64_backward(&h);
    size_t nx = (size_t)h.N * cfg.d_model;
    double *numeric = malloc(sizeof(double) * (h.n_params + nx));
    fd_grad(&h, h.params, numeric, h.n_params);
    fd_grad(&h, h.x, numeric + h.n_params, nx);
    double floor = ZERO_FLOOR * max_abs(numeric, h.n_params + nx);
    char what[128];
    size_t off = 0;
    for (int i = 0; i <= h.n_specs; i++) {
        int is_x = i == h.n_specs;
        size_t n = is_x ? nx : h.specs[i].n;
        double rel = rel_error(is_x ? h.dx : h.grads + off, numeric + off, n, floor);
        snprintf(what, sizeof what, "%s fd: %s", label, is_x ? "x" : h.specs[i].name);
        REPORT_DIFF(what, rel, FD_TOL);
        if (!(rel <= FD_TOL)) FAILF("%s: %.3e above %.1e", what, rel, FD_TOL);
        off += n;
    }
    free(numeric);

    double *g1 = malloc(sizeof(double) * (h.n_params + nx));
    double *start = malloc(sizeof(double) * (h.n_params + nx));
    memcpy(g1, h.grads, sizeof(double) * h.n_params);
    memcpy(g1 + h.n_params, h.dx, sizeof(double) * nx);
    for (size_t i = 0; i < h.n_params + nx; i++) start[i] = urand();
    memcpy(h.grads, start, sizeof(double) * h.n_params);
    memcpy(h.dx, start + h.n_params, sizeof(double) * nx);
    h64_forward(&h);
    h64_backward(&h);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < h.n_params + nx; i++) {
        double got = i < h.n_params ? h.grads[i] : h.dx[i - h.n_params];
        worst = cb_test_worst(worst, fabs(got - start[i] - g1[i]));
        scale = cb_test_worst(scale, fabs(g1[i]));
    }
    snprintf(what, sizeof what, "%s: += accumulation", label);
    REPORT_DIFF(what, worst / scale, 1e-12);
    if (!(worst / scale <= 1e-12)) FAILF("%s: %.3e", what, worst / scale);
    free(g1);
    free(start);
    h64_free(&h);
}

static const cb_rope_scaling small_llama3 = {CB_ROPE_SCALING_LLAMA3, 8.0, 1.0, 4.0, 16};

// B2 T5 d16 H4 unless said otherwise; relative error per tensor <= 1e-6
TEST(fd_standard) {
    fd_check("standard bias rope", make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 1, 0, 0, 1), 2, 5, NULL);
    fd_check("standard plain", make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 0, 0, 0, 0, 1), 2, 5, NULL);
    fd_check("standard noncausal", make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 0, 0, 0, 0), 2, 5, NULL);
}

TEST(fd_gqa) {
    fd_check("gqa H4/2 bias rope llama3", make_cfg(CB_ATTENTION_GQA, 16, 4, 2, 0, 0, 0, 1, 1, 0, 0, 1), 2, 5, &small_llama3);
    fd_check("gqa H4/1 plain", make_cfg(CB_ATTENTION_GQA, 16, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1), 2, 5, NULL);
}

TEST(fd_decoupled) {
    fd_check("dba", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 4, 8, 16, 16, 1, 0, 0, 0, 1), 2, 5, NULL);
    fd_check("dba H4/2 bias", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 2, 8, 8, 12, 1, 1, 0, 0, 1), 2, 5, NULL);
    fd_check("dba norope", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 4, 8, 16, 16, 0, 0, 0, 0, 1), 2, 5, NULL);
}

TEST(fd_decoupled_gates) {
    fd_check("dba static gate", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 4, 8, 16, 16, 1, 0, 1, 0, 1), 2, 5, NULL);
    fd_check("dba dynamic gate H4/2 bias", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 2, 8, 8, 16, 1, 1, 0, 1, 1), 2, 5, NULL);
    fd_check("dba both gates norope", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 4, 16, 8, 8, 0, 0, 1, 1, 1), 2, 5, NULL);
}

/* T 67 crosses the 64-query row blocks of attention.c */
TEST(fd_long_sequences) {
    fd_check("standard T67", make_cfg(CB_ATTENTION_STANDARD, 8, 2, 2, 0, 0, 0, 1, 0, 0, 0, 1), 1, 67, NULL);
    fd_check("standard T67 noncausal", make_cfg(CB_ATTENTION_STANDARD, 8, 2, 2, 0, 0, 0, 1, 1, 0, 0, 0), 1, 67, NULL);
    fd_check("dba T67 H2/1 both gates", make_cfg(CB_ATTENTION_DECOUPLED, 8, 2, 1, 4, 4, 8, 1, 0, 1, 1, 1), 1, 67, NULL);
}

/* Changing the last token changes no earlier output (bit for bit); without the causal
 * mask it does change them, so the check can fail. */
static void causality_case(const char *label, cb_attention_config cfg) {
    const int B = 2, T = 9;
    h64 h;
    h64_init(&h, &cfg, B, T, NULL);
    if (cb_test_failed) return;
    const int d = cfg.d_model;
    h64_forward(&h);
    double *first = malloc(sizeof(double) * (size_t)h.N * d);
    memcpy(first, h.out, sizeof(double) * (size_t)h.N * d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < d; i++) h.x[((size_t)b * T + T - 1) * d + i] += 0.5 + urand();
    h64_forward(&h);
    double earlier = 0, last = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) {
                size_t k = ((size_t)b * T + t) * d + i;
                double diff = fabs(h.out[k] - first[k]);
                if (t < T - 1) earlier = cb_test_worst(earlier, diff);
                else last = cb_test_worst(last, diff);
            }
    char what[128];
    snprintf(what, sizeof what, "%s: earlier outputs moved", label);
    REPORT_DIFF(what, earlier, 0);
    if (cfg.is_causal) {
        EXPECT(earlier == 0);
    } else {
        EXPECT(earlier > 1e-3);
    }
    EXPECT(last > 1e-3);
    free(first);
    h64_free(&h);
}

TEST(causal_outputs_ignore_later_tokens) {
    causality_case("standard causal", make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 1, 0, 0, 1));
    causality_case("gqa causal", make_cfg(CB_ATTENTION_GQA, 16, 4, 2, 0, 0, 0, 1, 0, 0, 0, 1));
    causality_case("dba dynamic gate causal", make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 2, 8, 8, 16, 1, 1, 1, 1, 1));
    causality_case("standard noncausal", make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 1, 0, 0, 0));
}

TEST(config_check) {
    cb_error e;
    cb_attention_config c = make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 0, 0, 0, 1);
    EXPECT_EQ_INT(CB_OK, cb_attention_check(&c, &e));
    EXPECT_EQ_INT(4, cb_attention_rope_dim(&c));
    c.dropout = 0.1;
    EXPECT_EQ_INT(CB_E_INVALID, cb_attention_check(&c, &e));
    EXPECT(strstr(e.msg, "dropout") != NULL);
    c = make_cfg(CB_ATTENTION_GQA, 16, 4, 3, 0, 0, 0, 1, 0, 0, 0, 1);
    EXPECT_EQ_INT(CB_E_INVALID, cb_attention_check(&c, &e));
    c = make_cfg(CB_ATTENTION_STANDARD, 16, 4, 2, 0, 0, 0, 1, 0, 0, 0, 1);
    EXPECT_EQ_INT(CB_E_INVALID, cb_attention_check(&c, &e));
    c = make_cfg(CB_ATTENTION_DECOUPLED, 16, 4, 4, 8, 12, 16, 1, 0, 0, 0, 1); /* d_geo 3 */
    EXPECT_EQ_INT(CB_E_INVALID, cb_attention_check(&c, &e));
    c.rope_enabled = 0;
    EXPECT_EQ_INT(CB_OK, cb_attention_check(&c, &e));
    EXPECT_EQ_INT(3, cb_attention_rope_dim(&c));
    c = make_cfg(CB_ATTENTION_STANDARD, 16, 4, 4, 0, 0, 0, 1, 0, 1, 0, 1);
    EXPECT_EQ_INT(CB_E_INVALID, cb_attention_check(&c, &e));
}

TEST(buffer_sizes) {
    /* 110M-model layer, B 8, T 256: acts are q, k, v, att (4 x N x 768) plus lse (N x 12) */
    cb_attention_config c = make_cfg(CB_ATTENTION_STANDARD, 768, 12, 12, 0, 0, 0, 1, 1, 0, 0, 1);
    size_t N = 8 * 256;
    EXPECT_EQ_INT(N * (4 * 768 + 12), cb_attention_acts_size(&c, 8, 256));
    /* DBA with GQA and a dynamic gate: q 8x4, k 2x4, q_sem 8x2, k_sem 2x2, v 2x8, gate 8,
     * lse 8, att 8x8 per token */
    c = make_cfg(CB_ATTENTION_DECOUPLED, 64, 8, 2, 16, 32, 64, 1, 0, 1, 1, 1);
    EXPECT_EQ_INT(10 * (32 + 8 + 16 + 4 + 16 + 8 + 8 + 64), cb_attention_acts_size(&c, 2, 5));
    EXPECT(cb_attention_scratch_size(&c, 2, 5) > 0);
}

/* Float32 forward and backward against PyTorch (float64 autograd on the same float32
 * inputs); relative error per tensor <= 1e-5. */
#define FIXTURE_TOL 1e-5

static void fixture_case(const char *name) {
    cb_fixture fx;
    char why[256];
    if (cb_fixture_open(&fx, name, why, sizeof why) != 0) {
        FAILF("%s", why);
        cb_fixture_close(&fx);
        return;
    }
    const char *mode = cb_fixture_meta_str(&fx, "mode");
    cb_attention_mode m = !mode ? CB_ATTENTION_STANDARD
                          : strcmp(mode, "gqa") == 0 ? CB_ATTENTION_GQA
                          : strcmp(mode, "decoupled") == 0 ? CB_ATTENTION_DECOUPLED
                          : CB_ATTENTION_STANDARD;
    int B = (int)cb_fixture_meta_num(&fx, "B"), T = (int)cb_fixture_meta_num(&fx, "T");
    int d = (int)cb_fixture_meta_num(&fx, "d_model");
    cb_attention_config cfg = make_cfg(
        m, d, (int)cb_fixture_meta_num(&fx, "n_heads"), (int)cb_fixture_meta_num(&fx, "n_kv_heads"),
        (int)cb_fixture_meta_num(&fx, "sem_dim"), (int)cb_fixture_meta_num(&fx, "geo_dim"),
        (int)cb_fixture_meta_num(&fx, "v_dim"), (int)cb_fixture_meta_num(&fx, "rope_enabled"),
        (int)cb_fixture_meta_num(&fx, "bias"), (int)cb_fixture_meta_num(&fx, "decoupled_gate"),
        (int)cb_fixture_meta_num(&fx, "decoupled_gate_dynamic"),
        (int)cb_fixture_meta_num(&fx, "is_causal"));
    cb_rope_scaling sc = {CB_ROPE_SCALING_NONE, 0, 0, 0, 0};
    if (cb_fixture_meta_str(&fx, "llama3.factor")) {
        sc.type = CB_ROPE_SCALING_LLAMA3;
        sc.factor = cb_fixture_meta_num(&fx, "llama3.factor");
        sc.low_freq_factor = cb_fixture_meta_num(&fx, "llama3.low_freq_factor");
        sc.high_freq_factor = cb_fixture_meta_num(&fx, "llama3.high_freq_factor");
        sc.original_max_position_embeddings =
            (int)cb_fixture_meta_num(&fx, "llama3.original_max_position_embeddings");
    }
    cb_error e;
    if (cb_attention_check(&cfg, &e) != CB_OK) FAILF("%s: config: %.900s", name, e.msg);
    EXPECT_EQ_INT(cb_fixture_meta_num(&fx, "rope_dim"), cb_attention_rope_dim(&cfg));
    if (cb_test_failed) {
        cb_fixture_close(&fx);
        return;
    }
    tspec specs[MAX_SPECS];
    int n_specs = attn_specs(&cfg, specs);
    size_t n_params = 0, nx = (size_t)B * T * d;
    for (int i = 0; i < n_specs; i++) n_params += specs[i].n;
    float *params = malloc(sizeof(float) * n_params), *grads = calloc(n_params, sizeof(float));
    cb_attention_weights w = {0}, gw = {0};
    size_t off = 0;
    for (int i = 0; i < n_specs; i++) {
        const float *src = cb_fixture_tensor(&fx, specs[i].name, specs[i].n);
        if (src) memcpy(params + off, src, sizeof(float) * specs[i].n);
        *field32(&w, &specs[i]) = params + off;
        *field32(&gw, &specs[i]) = grads + off;
        off += specs[i].n;
    }
    const float *x = cb_fixture_tensor(&fx, "x", nx), *dout = cb_fixture_tensor(&fx, "dout", nx);
    float *out = malloc(sizeof(float) * nx), *dx = calloc(nx, sizeof(float));
    float *acts_buf = malloc(sizeof(float) * cb_attention_acts_size(&cfg, B, T));
    float *scratch = malloc(sizeof(float) * cb_attention_scratch_size(&cfg, B, T));
    int D = cb_attention_rope_dim(&cfg);
    float *cos_t = malloc(sizeof(float) * (size_t)T * (D / 2 + 1));
    float *sin_t = malloc(sizeof(float) * (size_t)T * (D / 2 + 1));
    cb_rope_tables(cos_t, sin_t, T, D, cb_fixture_meta_num(&fx, "theta"), &sc);
    cb_attention_acts acts;
    cb_attention_acts_layout(&acts, acts_buf, &cfg, B, T);
    /* A zero-gradient tensor (see rel_error) is a float32 sum of terms as large as the
     * other gradients that cancel: measure it against 1/10 of the largest gradient. In
     * these fixtures no other tensor's gradient is that small. */
    double largest = cb_fixture_max_abs(&fx, "grad.x");
    for (int i = 0; i < n_specs; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "grad.%s", specs[i].name);
        largest = cb_test_worst(largest, cb_fixture_max_abs(&fx, gname));
    }
    fx.floor = 0.1 * largest;
    if (x && dout && !cb_test_failed) {
        cb_attention_forward(out, &acts, x, &w, &cfg, cos_t, sin_t, scratch, B, T);
        cb_fixture_expect(&fx, "out", out, nx, FIXTURE_TOL, name);
        cb_attention_backward(dx, &gw, dout, x, &acts, &w, &cfg, cos_t, sin_t, scratch, B, T);
        cb_fixture_expect(&fx, "grad.x", dx, nx, FIXTURE_TOL, name);
        off = 0;
        for (int i = 0; i < n_specs; i++) {
            char gname[64];
            snprintf(gname, sizeof gname, "grad.%s", specs[i].name);
            cb_fixture_expect(&fx, gname, grads + off, specs[i].n, FIXTURE_TOL, name);
            off += specs[i].n;
        }
    }
    free(params);
    free(grads);
    free(out);
    free(dx);
    free(acts_buf);
    free(scratch);
    free(cos_t);
    free(sin_t);
    cb_fixture_close(&fx);
}

TEST(pytorch_standard) {
    fixture_case("standard");
    fixture_case("standard_norope_noncausal");
}
TEST(pytorch_gqa) { fixture_case("gqa"); }
TEST(pytorch_decoupled) {
    fixture_case("decoupled");
    fixture_case("decoupled_gate");
    fixture_case("decoupled_dynamic");
    fixture_case("decoupled_long");
}
