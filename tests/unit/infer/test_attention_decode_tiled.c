/* test_attention_decode_tiled.c: decode attention for standard attention with head widths
 * of whole 16-value units (64 and 128, the shapes of real models, which take the tiled
 * kernels where the build has AVX-512) against a double reference over the dequantised
 * cache, for every cache kind and a mixed set, over key counts that leave partial 8-key
 * tiles and odd value pairs, token by token, as a prefill, with a window. */
#include "test.h"

#include <stdlib.h>

#include "infer/attention_decode.h"

static unsigned long long rng_state = 0x8C3F1A2B4D5E6F70ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static cb_attention_config standard(int H, int hd) {
    cb_attention_config c = {0};
    c.mode = CB_ATTENTION_STANDARD;
    c.d_model = H * hd;
    c.n_heads = c.n_kv_heads = H;
    c.head_dim = hd;
    c.rope_enabled = true;
    c.is_causal = true;
    return c;
}

/* out (n, H*hd) in double for queries q (n, H*hd) at pos0.. over the dequantised cache. */
static void reference(double *out, const float *q, const cb_layer_cache *c, int H, int hd, int pos0, int n,
                      int window) {
    const int len = c->len;
    float *k = malloc(sizeof(float) * len * H * hd), *v = malloc(sizeof(float) * len * H * hd);
    double *s = malloc(sizeof(double) * len);
    cb_kv_tensor_read(&c->k, k, 0, len);
    cb_kv_tensor_read(&c->v, v, 0, len);
    for (int i = 0; i < n; i++) {
        const int hi = pos0 + i, lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
        for (int h = 0; h < H; h++) {
            const float *qh = q + ((size_t)i * H + h) * hd;
            double mx = -1e300, sum = 0;
            for (int j = lo; j <= hi; j++) {
                double a = 0;
                for (int t = 0; t < hd; t++) a += (double)qh[t] * k[((size_t)j * H + h) * hd + t];
                s[j] = a / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = lo; j <= hi; j++) sum += (s[j] = exp(s[j] - mx));
            double *o = out + ((size_t)i * H + h) * hd;
            for (int t = 0; t < hd; t++) o[t] = 0;
            for (int j = lo; j <= hi; j++)
                for (int t = 0; t < hd; t++) o[t] += s[j] / sum * v[((size_t)j * H + h) * hd + t];
        }
    }
    free(k);
    free(v);
    free(s);
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const double *b, size_t n) {
    double m = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs(a[i] - b[i]));
        mb = fmax(mb, fabs(b[i]));
    }
    return m / fmax(mb, 1e-30);
}

/* Every kind for k and v alike, then k q8_0 with v fp16 and k q4_0 with v nf4; heads of 64
 * and 128; 61 keys: seven whole 8-key tiles and a tail of 5, odd counts for the value pairs.
 * Queries at every position one at a time, then positions 0..60 as one prefill, then
 * with a window of 19. */
TEST(tiled_decode_every_kind) {
    const int hds[2] = {64, 128};
    enum { T = 61, H = 3 };
    for (int hi = 0; hi < 2; hi++) {
        const int hd = hds[hi], W = H * hd;
        cb_attention_config cfg = standard(H, hd);
        float *k = malloc(sizeof(float) * T * W), *v = malloc(sizeof(float) * T * W);
        float *q = malloc(sizeof(float) * T * W), *got = malloc(sizeof(float) * T * W);
        double *ref = malloc(sizeof(double) * T * W);
        for (int i = 0; i < T * W; i++) {
            k[i] = urandf();
            v[i] = urandf();
            q[i] = 2.0f * urandf(); // scores of order 1: the softmax is far from flat
        }
        for (int kk = 0; kk < CB_KV_COUNT + 2; kk++) {
            cb_kv_kinds kinds = {(cb_kv_kind)kk, (cb_kv_kind)kk, (cb_kv_kind)kk};
            if (kk == CB_KV_COUNT) kinds = (cb_kv_kinds){CB_KV_Q8_0, CB_KV_Q8_0, CB_KV_F16};
            if (kk == CB_KV_COUNT + 1) kinds = (cb_kv_kinds){CB_KV_Q4_0, CB_KV_Q4_0, CB_KV_NF4};
            char what[96];
            snprintf(what, sizeof what, "hd %d k %s v %s", hd, cb_kv_kind_name(kinds.k), cb_kv_kind_name(kinds.v));
            cb_layer_cache c;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &cfg, &kinds, T, &e));
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, NULL, v, T, &e));
            const cb_decode_plan windowed = {19, 0};
            const cb_decode_plan *plans[2] = {NULL, &windowed};
            double worst = 0;
            for (int pi = 0; pi < 2; pi++) {
                const int window = plans[pi] ? plans[pi]->local_window : 0;
                float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(&cfg, T, T, plans[pi]));
                // queries one at a time (the cache holds all T: causal limits what each sees)
                for (int t = 0; t < T; t++)
                    cb_attention_decode(got + (size_t)t * W, q + (size_t)t * W, NULL, NULL, &c, &cfg, t, 1,
                                        plans[pi], scratch);
                reference(ref, q, &c, H, hd, 0, T, window);
                worst = fmax(worst, rel_diff(got, ref, (size_t)T * W));
                // all at once
                cb_attention_decode(got, q, NULL, NULL, &c, &cfg, 0, T, plans[pi], scratch);
                worst = fmax(worst, rel_diff(got, ref, (size_t)T * W));
                free(scratch);
            }
            REPORT_DIFF(what, worst, 1e-5);
            if (worst > 1e-5) FAILF("%s: %.3g from the dequantised reference", what, worst);
            cb_layer_cache_free(&c);
        }
        free(k);
        free(v);
        free(q);
        free(got);
        free(ref);
    }
}
