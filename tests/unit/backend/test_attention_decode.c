/* test_attention_decode.c: decode attention against the training-time forward
 * (cb_attention_forward's att rows) for every mode on an fp32 cache, token by token, as one
 * prefill and in mixed chunks; on quantized caches against a double reference over the
 * dequantised cache; local window and q_chunk. */
#include "test.h"

#include <stdlib.h>

#include "backend/cpu/attention_decode.h"
#include "layers/attention.h"
#include "layers/rope.h"

static unsigned long long rng_state = 0xD1B54A32D192ED03ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static float *rand_buf(size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = urandf() * scale;
    return p;
}

/* One training-time forward (B = 1) whose acts provide q, k, v, gate and the expected att. */
typedef struct fwd {
    cb_attention_config cfg;
    int T, H, Hkv, ds, dr, dv;
    cb_attention_weights w;
    float *params[16];
    int n_params;
    float *acts_buf, *in, *out, *scratch, *cos_t, *sin_t;
    cb_attention_acts acts;
} fwd;

static float *param(fwd *f, size_t n, float scale) {
    float *p = rand_buf(n, scale);
    f->params[f->n_params++] = p;
    return p;
}

static void fwd_run(fwd *f, cb_attention_config cfg, int T) {
    memset(f, 0, sizeof *f);
    f->cfg = cfg;
    f->T = T;
    const int d = cfg.d_model, H = cfg.n_heads, Hkv = cfg.n_kv_heads;
    const int dec = cfg.mode == CB_ATTENTION_DECOUPLED;
    f->H = H;
    f->Hkv = Hkv;
    f->ds = dec ? cfg.sem_dim / H : 0;
    f->dr = dec ? cfg.geo_dim / H : cfg.head_dim;
    f->dv = dec ? cfg.v_dim / H : cfg.head_dim;
    const float s = 1.0f / sqrtf((float)d) * 2.0f; // scores of order 1, softmax not flat
    if (dec) {
        f->w.q_sem_weight = param(f, (size_t)H * f->ds * d, s);
        f->w.k_sem_weight = param(f, (size_t)Hkv * f->ds * d, s);
        f->w.q_geo_weight = param(f, (size_t)H * f->dr * d, s);
        f->w.k_geo_weight = param(f, (size_t)Hkv * f->dr * d, s);
        if (cfg.bias) {
            f->w.q_sem_bias = param(f, (size_t)H * f->ds, 0.1f);
            f->w.k_sem_bias = param(f, (size_t)Hkv * f->ds, 0.1f);
            f->w.q_geo_bias = param(f, (size_t)H * f->dr, 0.1f);
            f->w.k_geo_bias = param(f, (size_t)Hkv * f->dr, 0.1f);
        }
        if (cfg.decoupled_gate) f->w.gate = param(f, (size_t)H, 1.0f);
        if (cfg.decoupled_gate_dynamic) f->w.gate_proj_weight = param(f, (size_t)H * d, s);
    } else {
        f->w.q_weight = param(f, (size_t)H * f->dr * d, s);
        f->w.k_weight = param(f, (size_t)Hkv * f->dr * d, s);
        if (cfg.bias) {
            f->w.q_bias = param(f, (size_t)H * f->dr, 0.1f);
            f->w.k_bias = param(f, (size_t)Hkv * f->dr, 0.1f);
        }
    }
    f->w.v_weight = param(f, (size_t)Hkv * f->dv * d, s);
    f->w.o_weight = param(f, (size_t)d * H * f->dv, s);
    if (cfg.bias) {
        f->w.v_bias = param(f, (size_t)Hkv * f->dv, 0.1f);
        f->w.o_bias = param(f, (size_t)d, 0.1f);
    }
    f->in = rand_buf((size_t)T * d, 1.0f);
    f->out = malloc(sizeof(float) * T * d);
    f->acts_buf = malloc(sizeof(float) * cb_attention_acts_size(&cfg, 1, T));
    f->scratch = malloc(sizeof(float) * cb_attention_scratch_size(&cfg, 1, T));
    const int D = cb_attention_rope_dim(&cfg);
    f->cos_t = malloc(sizeof(float) * T * (D / 2 + 1));
    f->sin_t = malloc(sizeof(float) * T * (D / 2 + 1));
    cb_rope_tables(f->cos_t, f->sin_t, T, D, 10000.0, NULL);
    cb_attention_acts_layout(&f->acts, f->acts_buf, &cfg, 1, T);
    cb_attention_forward(f->out, &f->acts, f->in, &f->w, &cfg, f->cos_t, f->sin_t, f->scratch, 1, T);
}

static void fwd_free(fwd *f) {
    for (int i = 0; i < f->n_params; i++) free(f->params[i]);
    free(f->in); free(f->out); free(f->acts_buf); free(f->scratch); free(f->cos_t); free(f->sin_t);
}

/* Rows t0 .. t0+n-1 of the acts. */
static const float *rows_of(const float *base, int t0, int width) {
    return base ? base + (size_t)t0 * width : NULL;
}

static int append_rows(cb_layer_cache *c, const fwd *f, int t0, int n) {
    cb_error e;
    return cb_layer_cache_append(c, rows_of(f->acts.k, t0, f->Hkv * f->dr),
                                 rows_of(f->acts.k_sem, t0, f->Hkv * f->ds),
                                 rows_of(f->acts.v, t0, f->Hkv * f->dv), n, &e);
}

/* Decode rows pos0 .. pos0+n-1 into out (n, H*dv). */
static void decode(float *out, const cb_layer_cache *c, const fwd *f, int pos0, int n,
                   const cb_decode_plan *plan) {
    float *scratch = malloc(sizeof(float) * (cb_attention_decode_scratch_size(&f->cfg, c, n, c->len, plan) + 1));
    cb_attention_decode(out, rows_of(f->acts.q, pos0, f->H * f->dr),
                        rows_of(f->acts.q_sem, pos0, f->H * f->ds),
                        rows_of(f->acts.gate, pos0, f->H), c, &f->cfg, pos0, n, plan, scratch);
    free(scratch);
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = cb_test_worst(m, fabs(x[i]));
    return m;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = cb_test_worst(m, fabs((double)a[i] - b[i]));
    return m / fmax(max_abs(b, n), 1e-30);
}

typedef struct named_cfg {
    const char *name;
    cb_attention_config cfg;
} named_cfg;

static cb_attention_config std_cfg(cb_attention_mode mode, int d, int H, int Hkv) {
    cb_attention_config c = {0};
    c.mode = mode;
    c.d_model = d;
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.head_dim = d / H;
    c.rope_enabled = true;
    c.is_causal = true;
    return c;
}

static cb_attention_config dba_cfg(int d, int H, int Hkv, int sem, int geo, int v, int gate, int dyn) {
    cb_attention_config c = {0};
    c.mode = CB_ATTENTION_DECOUPLED;
    c.d_model = d;
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.sem_dim = sem;
    c.geo_dim = geo;
    c.v_dim = v;
    c.rope_enabled = true;
    c.is_causal = true;
    c.decoupled_gate = gate;
    c.decoupled_gate_dynamic = dyn;
    return c;
}

static int mode_configs(named_cfg *out) {
    int n = 0;
    out[n++] = (named_cfg){"standard H4 hd8", std_cfg(CB_ATTENTION_STANDARD, 32, 4, 4)};
    out[n++] = (named_cfg){"gqa H6/2 hd16", std_cfg(CB_ATTENTION_GQA, 96, 6, 2)};
    out[n++] = (named_cfg){"gqa H12/1 hd8 (group 12)", std_cfg(CB_ATTENTION_GQA, 96, 12, 1)};
    cb_attention_config b = std_cfg(CB_ATTENTION_GQA, 64, 4, 2);
    b.bias = true;
    out[n++] = (named_cfg){"gqa H4/2 bias", b};
    b = std_cfg(CB_ATTENTION_STANDARD, 32, 2, 2);
    b.rope_enabled = false;
    out[n++] = (named_cfg){"standard no rope", b};
    out[n++] = (named_cfg){"dba H4 sem4 geo8 v8", dba_cfg(32, 4, 4, 16, 32, 32, 0, 0)};
    out[n++] = (named_cfg){"dba H4/2 gate", dba_cfg(48, 4, 2, 16, 32, 48, 1, 0)};
    out[n++] = (named_cfg){"dba H4/2 gate+dynamic", dba_cfg(48, 4, 2, 32, 64, 48, 1, 1)};
    b = dba_cfg(64, 8, 2, 32, 64, 64, 0, 1);
    b.bias = true;
    out[n++] = (named_cfg){"dba H8/2 dynamic bias", b};
    return n;
}

static const cb_kv_kinds f32_kinds = {CB_KV_F32, CB_KV_F32, CB_KV_F32};

/* fp32 cache: decoding token by token, as one prefill, and in mixed chunks gives the
 * training-time forward's att rows, within 1e-5 of their largest magnitude. */
TEST(decode_matches_training_forward) {
    named_cfg cfgs[16];
    const int ncfg = mode_configs(cfgs);
    enum { T = 23 };
    double worst = 0;
    for (int ci = 0; ci < ncfg; ci++) {
        fwd f;
        fwd_run(&f, cfgs[ci].cfg, T);
        const int W = f.H * f.dv;
        float *got = malloc(sizeof(float) * T * W);
        cb_layer_cache c;
        cb_error e;
        // token by token
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &f.cfg, &f32_kinds, 0, &e));
        for (int t = 0; t < T; t++) {
            EXPECT_EQ_INT(CB_OK, append_rows(&c, &f, t, 1));
            decode(got + (size_t)t * W, &c, &f, t, 1, NULL);
        }
        double d1 = rel_diff(got, f.acts.att, (size_t)T * W);
        // one prefill of all T
        cb_layer_cache_reset(&c);
        append_rows(&c, &f, 0, T);
        decode(got, &c, &f, 0, T, NULL);
        double d2 = rel_diff(got, f.acts.att, (size_t)T * W);
        // chunks 7, 5, 1 x 3, 8 (pos0 > 0 with n > 1)
        cb_layer_cache_reset(&c);
        const int chunks[] = {7, 5, 1, 1, 1, 8};
        for (int i = 0, t0 = 0; i < 6; t0 += chunks[i], i++) {
            append_rows(&c, &f, t0, chunks[i]);
            decode(got + (size_t)t0 * W, &c, &f, t0, chunks[i], NULL);
        }
        double d3 = rel_diff(got, f.acts.att, (size_t)T * W);
        double dm = fmax(d1, fmax(d2, d3));
        char what[96];
        snprintf(what, sizeof what, "%s (tok/prefill/chunks)", cfgs[ci].name);
        REPORT_DIFF(what, dm, 1e-5);
        if (!(dm <= 1e-5)) FAILF("%s: decode differs from forward: %.3g %.3g %.3g", cfgs[ci].name, d1, d2, d3);
        worst = cb_test_worst(worst, dm);
        cb_layer_cache_free(&c);
        free(got);
        fwd_free(&f);
    }
}

/* Not causal: every query sees the whole cache, as the forward with is_causal false. */
TEST(decode_not_causal) {
    cb_attention_config cfgs[2] = {std_cfg(CB_ATTENTION_GQA, 64, 4, 2), dba_cfg(48, 4, 2, 16, 32, 48, 1, 0)};
    for (int ci = 0; ci < 2; ci++) {
        cfgs[ci].is_causal = false;
        fwd f;
        fwd_run(&f, cfgs[ci], 17);
        const int W = f.H * f.dv;
        float *got = malloc(sizeof(float) * 17 * W);
        cb_layer_cache c;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &f.cfg, &f32_kinds, 17, &e));
        append_rows(&c, &f, 0, 17);
        decode(got, &c, &f, 0, 17, NULL);
        double d = rel_diff(got, f.acts.att, (size_t)17 * W);
        REPORT_DIFF(ci ? "dba not causal" : "gqa not causal", d, 1e-5);
        EXPECT(d <= 1e-5);
        cb_layer_cache_free(&c);
        free(got);
        fwd_free(&f);
    }
}

/* Double reference over the dequantised cache: out (n, H*dv) for queries pos0.., with a
 * window W (0: none). The cached rows come from cb_kv_tensor_read_at, as a decode step at
 * the query's position reads them (packed tensors: the query's open group from the float
 * stage; per head: every token from its blocks). */
static void reference(double *out, const fwd *f, const cb_layer_cache *c, int pos0, int n, int window) {
    const int len = c->len, H = f->H, Hkv = f->Hkv, group = H / Hkv;
    const int ds = f->ds, dr = f->dr, dv = f->dv;
    float *k = malloc(sizeof(float) * len * Hkv * dr), *v = malloc(sizeof(float) * len * Hkv * dv);
    float *ks = malloc(sizeof(float) * (len * Hkv * ds + 1));
    double *s = malloc(sizeof(double) * len);
    for (int i = 0; i < n; i++) {
        const int p = pos0 + i, hi = f->cfg.is_causal ? p : len - 1;
        cb_kv_tensor_read_at(&c->k, k, 0, len, hi);
        cb_kv_tensor_read_at(&c->v, v, 0, len, hi);
        if (ds) cb_kv_tensor_read_at(&c->k_sem, ks, 0, len, hi);
        const int lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
        for (int h = 0; h < H; h++) {
            const int kh = h / group;
            double g = f->acts.gate ? f->acts.gate[(size_t)p * H + h] : 0.5;
            double cs = ds ? 2 * g / sqrt((double)ds) : 0;
            double cr = ds ? (2 - 2 * g) / sqrt((double)dr) : 1 / sqrt((double)dr);
            const float *q = f->acts.q + ((size_t)p * H + h) * dr;
            const float *qs = ds ? f->acts.q_sem + ((size_t)p * H + h) * ds : NULL;
            double mx = -1e300, sum = 0;
            for (int j = lo; j <= hi; j++) {
                double a = 0, b = 0;
                for (int t = 0; t < dr; t++) a += (double)q[t] * k[((size_t)j * Hkv + kh) * dr + t];
                for (int t = 0; t < ds; t++) b += (double)qs[t] * ks[((size_t)j * Hkv + kh) * ds + t];
                s[j] = cr * a + cs * b;
                mx = cb_test_worst(mx, s[j]);
            }
            for (int j = lo; j <= hi; j++) sum += (s[j] = exp(s[j] - mx));
            double *o = out + ((size_t)i * H + h) * dv;
            for (int t = 0; t < dv; t++) o[t] = 0;
            for (int j = lo; j <= hi; j++)
                for (int t = 0; t < dv; t++) o[t] += s[j] / sum * v[((size_t)j * Hkv + kh) * dv + t];
        }
    }
    free(k); free(v); free(ks); free(s);
}

/* Quantized caches (one kind for all tensors, and a mixed DBA set): decoding equals the
 * double reference over the dequantised cache within 1e-5 (the kernels add no error of
 * their own); the deviation from the fp32 cache's result is measured and bounded loosely
 * per kind (it depends on the data; see test_quant.c for the per-value bounds). */
TEST(decode_quantized_caches) {
    named_cfg cfgs[4] = {
        {"gqa H8/2 hd32", std_cfg(CB_ATTENTION_GQA, 256, 8, 2)},
        {"dba H4/2 sem4 gate", dba_cfg(64, 4, 2, 16, 64, 64, 1, 1)},
        {"dba H4 sem16 geo16 v32", dba_cfg(128, 4, 4, 64, 64, 128, 0, 0)},
        // the 1B preset's head shape: 4 + 8 key values, values of 64 (the tiled values kernels)
        {"dba H4/2 sem4 geo8 v64 gate", dba_cfg(128, 4, 2, 16, 32, 256, 1, 0)},
    };
    const double dev_tol[CB_KV_COUNT] = {1e-5, 1e-3, 1e-2, 1.5e-2, 0.2, 0.2};
    enum { T = 40 };
    for (int ci = 0; ci < 4; ci++) {
        fwd f;
        fwd_run(&f, cfgs[ci].cfg, T);
        const int W = f.H * f.dv;
        float *got = malloc(sizeof(float) * T * W);
        double *ref = malloc(sizeof(double) * T * W);
        for (int kl = 0; kl < 2 * (CB_KV_COUNT + 1); kl++) {
            // both layouts: the default (DBA's small heads packed) and per head, padded (the
            // GPU's, which a CPU session takes as the GPU tests' reference)
            const int k = kl % (CB_KV_COUNT + 1);
            const cb_kv_layout layout = kl > CB_KV_COUNT ? CB_KV_LAYOUT_HEADS : CB_KV_LAYOUT_PACKED;
            cb_kv_kinds kinds = {(cb_kv_kind)k, (cb_kv_kind)k, (cb_kv_kind)k};
            if (k == CB_KV_COUNT) kinds = (cb_kv_kinds){CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
            cb_layer_cache c;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_init_layout(&c, &f.cfg, &kinds, 0, layout, &e));
            // the reference as each pass's queries read the cache (a packed cache's stage moves on)
            append_rows(&c, &f, 0, 25);     // a prefill
            decode(got, &c, &f, 0, 25, NULL);
            reference(ref, &f, &c, 0, 25, 0);
            double exact = cb_test_rel_diff(got, ref, (size_t)25 * W);
            for (int t = 25; t < T; t++) {  // then one token at a time
                append_rows(&c, &f, t, 1);
                decode(got + (size_t)t * W, &c, &f, t, 1, NULL);
                reference(ref, &f, &c, t, 1, 0);
                exact = cb_test_worst(exact, cb_test_rel_diff(got + (size_t)t * W, ref, (size_t)W));
            }
            double dev = rel_diff(got, f.acts.att, (size_t)T * W);
            char what[96];
            const char *kn0 = k < CB_KV_COUNT ? cb_kv_kind_name((cb_kv_kind)k) : "k q8_0 k_sem q4_0 v nf4";
            char kn[64];
            snprintf(kn, sizeof kn, "%s%s", kn0, layout == CB_KV_LAYOUT_HEADS ? " per head" : "");
            snprintf(what, sizeof what, "%s %s vs dequant ref", cfgs[ci].name, kn);
            REPORT_DIFF(what, exact, 1e-5);
            snprintf(what, sizeof what, "%s %s vs fp32", cfgs[ci].name, kn);
            double tol = k < CB_KV_COUNT ? dev_tol[k] : 0.2;
            REPORT_DIFF(what, dev, tol);
            if (!(exact <= 1e-5)) FAILF("%s %s: %.3g from the dequantised reference", cfgs[ci].name, kn, exact);
            if (!(dev <= tol)) FAILF("%s %s: %.3g from the fp32 result", cfgs[ci].name, kn, dev);
            cb_layer_cache_free(&c);
        }
        free(got);
        free(ref);
        fwd_free(&f);
    }
}

/* Packed caches (infer/kv_cache.h: DBA's small rows, blocks spanning heads and tokens, the
 * newest tokens on a float stage): d_sem 2 and 4, d_geo 2 and 4, d_v 4, rows of 6 to 16
 * values (so a q4_0 block holds 2 to 5 tokens, and with rows of 6 or 12 groups end inside
 * blocks), every kind and a mixed set, a prefill of 13 (a group left open), then steps.
 * Each result equals the double reference over the cache as its query reads it
 * (cb_kv_tensor_read_at) within 1e-5, and is within the kind's loose bound of the fp32
 * forward (the bounds of decode_quantized_caches); one prefill of all tokens gives the
 * steps' results. Then a speculative round's rollback: 6 wrong tokens appended,
 * decoded and truncated away (mid-group), the right ones appended again: the results are
 * the straight run's, bit for bit; and a rollback deeper than the stage keeps still meets
 * the reference. */
TEST(decode_packed_caches) {
    named_cfg cfgs[4] = {
        {"dba H8/4 sem2 geo2 v4", dba_cfg(32, 8, 4, 16, 16, 32, 0, 0)},
        {"dba H4/2 sem4 geo4 v4 gate", dba_cfg(32, 4, 2, 16, 16, 16, 1, 0)},
        {"dba H4/4 sem2 geo4 v4 gate+dynamic", dba_cfg(32, 4, 4, 8, 16, 16, 1, 1)},
        {"dba H6/3 sem2 geo4 v4 (rows 6, 12)", dba_cfg(48, 6, 3, 12, 24, 24, 0, 0)},
    };
    const double dev_tol[CB_KV_COUNT] = {1e-5, 1e-3, 1e-2, 1.5e-2, 0.2, 0.2};
    enum { T = 70, P = 13 };
    for (int ci = 0; ci < 4; ci++) {
        fwd f;
        fwd_run(&f, cfgs[ci].cfg, T);
        const int W = f.H * f.dv;
        float *got = malloc(sizeof(float) * T * W), *again = malloc(sizeof(float) * T * W);
        double *ref = malloc(sizeof(double) * T * W);
        for (int k = 0; k <= CB_KV_COUNT; k++) {
            cb_kv_kinds kinds = {(cb_kv_kind)k, (cb_kv_kind)k, (cb_kv_kind)k};
            if (k == CB_KV_COUNT) kinds = (cb_kv_kinds){CB_KV_NF4, CB_KV_Q4_0, CB_KV_Q8_0};
            const char *kn = k < CB_KV_COUNT ? cb_kv_kind_name((cb_kv_kind)k) : "k nf4 k_sem q4_0 v q8_0";
            char what[128];
            cb_layer_cache c;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &f.cfg, &kinds, 0, &e));
            EXPECT_EQ_INT(cb_kv_kind_block_values(kinds.k) > 1, c.k.packed);
            // the reference at every step: as the cache reads then (open groups on the stage)
            double exact = 0;
            append_rows(&c, &f, 0, P);
            decode(got, &c, &f, 0, P, NULL);
            reference(ref, &f, &c, 0, P, 0);
            exact = cb_test_worst(exact, cb_test_rel_diff(got, ref, (size_t)P * W));
            for (int t = P; t < T; t++) {
                append_rows(&c, &f, t, 1);
                decode(got + (size_t)t * W, &c, &f, t, 1, NULL);
                reference(ref, &f, &c, t, 1, 0);
                exact = cb_test_worst(exact, cb_test_rel_diff(got + (size_t)t * W, ref, (size_t)W));
            }
            const double dev = rel_diff(got, f.acts.att, (size_t)T * W);
            const double tol = k < CB_KV_COUNT ? dev_tol[k] : 0.2;
            // one prefill of all T reads what the steps read: their results within 1e-5
            // (the same values, other kernels' summation orders), not the quantization's 1e-2
            {
                cb_layer_cache c2;
                EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c2, &f.cfg, &kinds, 0, &e));
                append_rows(&c2, &f, 0, T);
                decode(again, &c2, &f, 0, T, NULL);
                const double pd = rel_diff(again, got, (size_t)T * W);
                snprintf(what, sizeof what, "%s %s prefill vs steps", cfgs[ci].name, kn);
                REPORT_DIFF(what, pd, 1e-5);
                if (!(pd <= 1e-5)) FAILF("%s: %.3g", what, pd);
                cb_layer_cache_free(&c2);
            }
            snprintf(what, sizeof what, "%s %s vs dequant ref", cfgs[ci].name, kn);
            REPORT_DIFF(what, exact, 1e-5);
            if (!(exact <= 1e-5)) FAILF("%s: %.3g", what, exact);
            snprintf(what, sizeof what, "%s %s vs fp32", cfgs[ci].name, kn);
            REPORT_DIFF(what, dev, tol);
            if (!(dev <= tol)) FAILF("%s: %.3g", what, dev);
            // speculative rollback at 41 (mid-group for every row width here): 6 wrong tokens
            // (the rows of tokens 3..8) decoded and dropped, the right ones again
            cb_layer_cache_truncate(&c, 41);
            append_rows(&c, &f, 3, 6);
            decode(again, &c, &f, 41, 6, NULL);
            cb_layer_cache_truncate(&c, 41);
            for (int t = 41; t < T; t++) {
                append_rows(&c, &f, t, 1);
                decode(again + (size_t)t * W, &c, &f, t, 1, NULL);
            }
            if (memcmp(again + 41 * W, got + 41 * W, sizeof(float) * (T - 41) * W) != 0)
                FAILF("%s %s: rollback at 41 changes later results", cfgs[ci].name, kn);
            // deeper than the stage keeps (CB_KV_STAGE_KEEP): back to 9, then a prefill of the rest
            cb_layer_cache_truncate(&c, 9);
            append_rows(&c, &f, 9, T - 9);
            decode(again, &c, &f, 9, T - 9, NULL);
            reference(ref, &f, &c, 9, T - 9, 0);
            const double deep = cb_test_rel_diff(again, ref, (size_t)(T - 9) * W);
            snprintf(what, sizeof what, "%s %s after a deep rollback", cfgs[ci].name, kn);
            REPORT_DIFF(what, deep, 1e-5);
            if (!(deep <= 1e-5)) FAILF("%s: %.3g", what, deep);
            // a local window over the packed view (positions counted from its first token)
            const cb_decode_plan win = {11, 0};
            decode(again, &c, &f, 20, T - 20, &win);
            reference(ref, &f, &c, 20, T - 20, 11);
            const double wd = cb_test_rel_diff(again, ref, (size_t)(T - 20) * W);
            snprintf(what, sizeof what, "%s %s window 11", cfgs[ci].name, kn);
            REPORT_DIFF(what, wd, 1e-5);
            if (!(wd <= 1e-5)) FAILF("%s: %.3g", what, wd);
            cb_layer_cache_free(&c);
        }
        free(got);
        free(again);
        free(ref);
        fwd_free(&f);
    }
}

/* DBA with the 1B preset's head shape (4 + 8 key values, values of 64) over a long cache:
 * 8 query heads over 2 kv heads and 600 keys, so a decode step splits into 3 pieces of 3
 * heads whose groups straddle a kv head; a dynamic gate; the last 10 tokens one at a time
 * after a prefill, against the double reference and the training-time forward. */
TEST(decode_dba_long) {
    enum { T = 600, P = 590 };
    fwd f;
    fwd_run(&f, dba_cfg(128, 8, 2, 32, 64, 512, 1, 1), T);
    const int W = f.H * f.dv;
    float *got = malloc(sizeof(float) * T * W);
    double *ref = malloc(sizeof(double) * T * W);
    const cb_kv_kind kinds_of[4] = {CB_KV_F32, CB_KV_F16, CB_KV_Q8_0, CB_KV_Q4_0};
    for (int ki = 0; ki < 4; ki++) {
        const cb_kv_kinds kinds = {kinds_of[ki], kinds_of[ki], kinds_of[ki]};
        cb_layer_cache c;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &f.cfg, &kinds, 0, &e));
        append_rows(&c, &f, 0, P);
        for (int t = P; t < T; t++) {
            append_rows(&c, &f, t, 1);
            decode(got + (size_t)(t - P) * W, &c, &f, t, 1, NULL);
        }
        reference(ref, &f, &c, P, T - P, 0);
        const double exact = cb_test_rel_diff(got, ref, (size_t)(T - P) * W);
        const double dev = rel_diff(got, rows_of(f.acts.att, P, W), (size_t)(T - P) * W);
        char what[96];
        snprintf(what, sizeof what, "dba 8/2 600 keys %s vs dequant ref", cb_kv_kind_name(kinds_of[ki]));
        REPORT_DIFF(what, exact, 1e-5);
        if (!(exact <= 1e-5)) FAILF("%s: %.3g", what, exact);
        if (ki == 0) { // fp32: the training-time forward too
            REPORT_DIFF("dba 8/2 600 keys fp32 vs forward", dev, 1e-5);
            if (!(dev <= 1e-5)) FAILF("dba 8/2 600 keys: %.3g from the forward", dev);
        }
        cb_layer_cache_free(&c);
    }
    free(got);
    free(ref);
    fwd_free(&f);
}

/* local_window: against the reference with the same window; a window covering everything
 * and any q_chunk leave the result unchanged, bit for bit. */
TEST(decode_window_and_chunks) {
    cb_attention_config cfgs[2] = {std_cfg(CB_ATTENTION_GQA, 96, 6, 2), dba_cfg(48, 4, 2, 16, 32, 48, 1, 1)};
    enum { T = 30 };
    for (int ci = 0; ci < 2; ci++) {
        fwd f;
        fwd_run(&f, cfgs[ci], T);
        const int W = f.H * f.dv;
        float *full = malloc(sizeof(float) * T * W), *got = malloc(sizeof(float) * T * W);
        double *ref = malloc(sizeof(double) * T * W);
        cb_kv_kinds kinds = {CB_KV_Q8_0, CB_KV_F16, CB_KV_Q4_0};
        cb_layer_cache c;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &f.cfg, &kinds, 0, &e));
        append_rows(&c, &f, 0, T);
        decode(full, &c, &f, 0, T, NULL);
        const int windows[] = {1, 5, 13};
        for (int wi = 0; wi < 3; wi++) {
            cb_decode_plan plan = {windows[wi], 0};
            decode(got, &c, &f, 0, T, &plan);
            reference(ref, &f, &c, 0, T, windows[wi]);
            double d = cb_test_rel_diff(got, ref, (size_t)T * W);
            char what[64];
            snprintf(what, sizeof what, "%s window %d", ci ? "dba" : "gqa", windows[wi]);
            REPORT_DIFF(what, d, 1e-5);
            EXPECT(d <= 1e-5);
            // chunked queries with the window: same bits
            cb_decode_plan chunked = {windows[wi], 4};
            float *got2 = malloc(sizeof(float) * T * W);
            decode(got2, &c, &f, 0, T, &chunked);
            EXPECT(memcmp(got, got2, sizeof(float) * T * W) == 0);
            free(got2);
        }
        // window 1: each query sees only its own key, so out = v of that token
        {
            cb_decode_plan plan = {1, 0};
            decode(got, &c, &f, 0, T, &plan);
            float *v = malloc(sizeof(float) * T * f.Hkv * f.dv);
            for (int t = 0; t < T; t++) // as query t reads its own token (packed: from the stage)
                cb_kv_tensor_read_at(&c.v, v + (size_t)t * f.Hkv * f.dv, t, 1, t);
            int bad = 0;
            for (int t = 0; t < T; t++)
                for (int h = 0; h < f.H; h++)
                    for (int j = 0; j < f.dv; j++)
                        bad += fabsf(got[((size_t)t * f.H + h) * f.dv + j] -
                                     v[((size_t)t * f.Hkv + h / (f.H / f.Hkv)) * f.dv + j]) > 1e-6f;
            EXPECT_EQ_INT(0, bad);
            free(v);
        }
        const int qcs[] = {1, 3, 7, 29, 30, 100};
        for (int qi = 0; qi < 6; qi++) {
            cb_decode_plan plan = {0, qcs[qi]};
            decode(got, &c, &f, 0, T, &plan);
            if (memcmp(got, full, sizeof(float) * T * W) != 0) FAILF("q_chunk %d changes the result", qcs[qi]);
        }
        cb_decode_plan wide = {T + 5, 0};
        decode(got, &c, &f, 0, T, &wide);
        EXPECT(memcmp(got, full, sizeof(float) * T * W) == 0);
        // scratch: q_chunk and the window bound it
        cb_decode_plan small = {8, 4};
        EXPECT(cb_attention_decode_scratch_size(&f.cfg, &c, T, 1000, &small) * 10 <
               cb_attention_decode_scratch_size(&f.cfg, &c, T, 1000, NULL));
        cb_layer_cache_free(&c);
        free(full); free(got); free(ref);
        fwd_free(&f);
    }
}
