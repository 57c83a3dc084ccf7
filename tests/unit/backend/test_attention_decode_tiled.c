/* test_attention_decode_tiled.c: decode attention for standard attention with head widths
 * of whole 16-value units (64 and 128, the shapes of real models, which take the tiled
 * kernels where the build has AVX-512) against a double reference over the dequantised
 * cache (taking the query as int16 blocks where the keys are q8_0 or q4_0, as their integer
 * scores do, and checking that rounding against its derived bound), for every cache kind and a mixed set, over key counts that leave partial 8-key
 * tiles and odd value pairs, token by token, as a prefill, with a window. */
#include "test.h"

#include <stdlib.h>

#include "backend/cpu/attention_decode.h"
#include "backend/cpu/quant_act.h"

/* Builds with AVX-512 VNNI take q8_0 and q4_0 keys' scores in integers. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)
#define AD_EXPECT_INT16 1
#else
#define AD_EXPECT_INT16 0
#endif

static unsigned long long rng_state = 0x8C3F1A2B4D5E6F70ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static cb_attention_config standard(int H, int Hkv, int hd) {
    cb_attention_config c = {0};
    c.mode = Hkv == H ? CB_ATTENTION_STANDARD : CB_ATTENTION_GQA;
    c.d_model = H * hd;
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.head_dim = hd;
    c.rope_enabled = true;
    c.is_causal = true;
    return c;
}

/* out (n, H*hd) in double for queries q (n, H*hd) at pos0.. over the dequantised cache of
 * Hkv heads (query head h reads kv head h / (H / Hkv)).
 * int_query: the scaled query q / sqrt(hd) taken as its int16 blocks (cb_act_quantize_i16),
 * as the integer scores of q8_0 and q4_0 keys take it (attention_decode.c); then bound (n, H)
 * gets what that may move each output value by: d = amax / 32767 per block of 32 moves
 * score j by at most delta_j = sum_t |k_jt| d(block of t) / 2, scores moved by at most
 * delta move each softmax weight by at most a factor e^(+-2 delta), so an output by at most
 * max_j |v_j| (e^(2 delta) - 1). */
static void reference(double *out, double *bound, const float *q, const cb_layer_cache *c, int H, int Hkv, int hd,
                      int pos0, int n, int window, int int_query) {
    const int len = c->len;
    float *k = malloc(sizeof(float) * len * Hkv * hd), *v = malloc(sizeof(float) * len * Hkv * hd);
    double *s = malloc(sizeof(double) * len);
    cb_kv_tensor_read(&c->k, k, 0, len);
    cb_kv_tensor_read(&c->v, v, 0, len);
    for (int i = 0; i < n; i++) {
        const int hi = pos0 + i, lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
        for (int h = 0; h < H; h++) {
            const float *qh = q + ((size_t)i * H + h) * hd;
            double mx = -1e300, sum = 0, qs[128], delta = 0, vmax = 0;
            int16_t qi[128];
            float qf[128], dq[4];
            for (int t = 0; t < hd; t++) qf[t] = (1.0f / sqrtf((float)hd)) * qh[t]; // as the kernel scales it
            cb_act_quantize_i16(qi, dq, qf, (size_t)hd);
            for (int t = 0; t < hd; t++) qs[t] = int_query ? (double)qi[t] * dq[t / 32] : qh[t] / sqrt((double)hd);
            for (int j = lo; j <= hi; j++) {
                double a = 0, dj = 0;
                for (int t = 0; t < hd; t++) {
                    a += qs[t] * k[((size_t)j * Hkv + h / (H / Hkv)) * hd + t];
                    dj += fabs(k[((size_t)j * Hkv + h / (H / Hkv)) * hd + t]) * dq[t / 32] / 2;
                    vmax = cb_test_worst(vmax, fabs(v[((size_t)j * Hkv + h / (H / Hkv)) * hd + t]));
                }
                s[j] = a;
                mx = cb_test_worst(mx, s[j]);
                delta = cb_test_worst(delta, dj);
            }
            if (bound) bound[(size_t)i * H + h] = vmax * expm1(2 * delta);
            for (int j = lo; j <= hi; j++) sum += (s[j] = exp(s[j] - mx));
            double *o = out + ((size_t)i * H + h) * hd;
            for (int t = 0; t < hd; t++) o[t] = 0;
            for (int j = lo; j <= hi; j++)
                for (int t = 0; t < hd; t++) o[t] += s[j] / sum * v[((size_t)j * Hkv + h / (H / Hkv)) * hd + t];
        }
    }
    free(k);
    free(v);
    free(s);
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
        cb_attention_config cfg = standard(H, H, hd);
        float *k = malloc(sizeof(float) * T * W), *v = malloc(sizeof(float) * T * W);
        float *q = malloc(sizeof(float) * T * W), *got = malloc(sizeof(float) * T * W);
        double *ref = malloc(sizeof(double) * T * W), *exact = malloc(sizeof(double) * T * W);
        double *bound = malloc(sizeof(double) * T * H);
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
            const int int_query = cb_attention_decode_int16_query(&c, &cfg);
            if (int_query != (AD_EXPECT_INT16 && (kinds.k == CB_KV_Q8_0 || kinds.k == CB_KV_Q4_0)))
                FAILF("%s: int16 query %d where the build expects otherwise", what, int_query);
            double worst = 0, moved = 0; // moved: the int16 query's share of its bound
            for (int pi = 0; pi < 2; pi++) {
                const int window = plans[pi] ? plans[pi]->local_window : 0;
                float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(&cfg, &c, T, T, plans[pi]));
                // queries one at a time (the cache holds all T: causal limits what each sees)
                for (int t = 0; t < T; t++)
                    cb_attention_decode(got + (size_t)t * W, q + (size_t)t * W, NULL, NULL, &c, &cfg, t, 1,
                                        plans[pi], scratch);
                reference(ref, bound, q, &c, H, H, hd, 0, T, window, int_query);
                if (int_query) { // the query's rounding stays within the bound the kernel's comment gives
                    reference(exact, NULL, q, &c, H, H, hd, 0, T, window, 0);
                    for (int i = 0; i < T * W; i++) moved = cb_test_worst(moved, fabs(ref[i] - exact[i]) / bound[i / hd]);
                }
                worst = cb_test_worst(worst, cb_test_rel_diff(got, ref, (size_t)T * W));
                // all at once
                cb_attention_decode(got, q, NULL, NULL, &c, &cfg, 0, T, plans[pi], scratch);
                worst = cb_test_worst(worst, cb_test_rel_diff(got, ref, (size_t)T * W));
                free(scratch);
            }
            if (int_query) {
                REPORT_DIFF("  int16 query moves outputs by (share of its bound)", moved, 1.0);
                if (!(moved <= 1.0)) FAILF("%s: the int16 query moved an output past its bound", what);
            }
            REPORT_DIFF(what, worst, 1e-5);
            if (!(worst <= 1e-5)) FAILF("%s: %.3g from the dequantised reference", what, worst);
            cb_layer_cache_free(&c);
        }
        free(k);
        free(v);
        free(q);
        free(got);
        free(ref);
        free(exact);
        free(bound);
    }
}

/* GQA on the tiled kernels: 6 query heads over 3 kv heads (hd 64) and 8 over 2 (hd 128),
 * 1800 cached keys, so one decode step splits into 8 pieces whose head groups span several
 * kv heads; the last 3 positions one at a time (also with a window of 600), then the last
 * 24 as one prefill (each query head of a group alone over its kv head); every kind, and
 * q8_0 keys with fp16 values. */
TEST(tiled_decode_gqa) {
    const int Hs[2] = {6, 8}, Hkvs[2] = {3, 2}, hds[2] = {64, 128};
    enum { T = 1800, NQ = 3, NP = 24 };
    for (int ci = 0; ci < 2; ci++) {
        const int H = Hs[ci], Hkv = Hkvs[ci], hd = hds[ci], W = H * hd, Wkv = Hkv * hd;
        cb_attention_config cfg = standard(H, Hkv, hd);
        float *k = malloc(sizeof(float) * T * Wkv), *v = malloc(sizeof(float) * T * Wkv);
        float *q = malloc(sizeof(float) * NP * W), *got = malloc(sizeof(float) * NP * W);
        double *ref = malloc(sizeof(double) * NP * W), *bound = malloc(sizeof(double) * NP * H);
        for (int i = 0; i < T * Wkv; i++) {
            k[i] = urandf();
            v[i] = urandf();
        }
        for (int i = 0; i < NP * W; i++) q[i] = 2.0f * urandf();
        for (int kk = 0; kk <= CB_KV_COUNT; kk++) {
            cb_kv_kinds kinds = {(cb_kv_kind)kk, (cb_kv_kind)kk, (cb_kv_kind)kk};
            if (kk == CB_KV_COUNT) kinds = (cb_kv_kinds){CB_KV_Q8_0, CB_KV_Q8_0, CB_KV_F16};
            char what[96];
            snprintf(what, sizeof what, "gqa %d/%d hd %d k %s v %s", H, Hkv, hd, cb_kv_kind_name(kinds.k),
                     cb_kv_kind_name(kinds.v));
            cb_layer_cache c;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &cfg, &kinds, T, &e));
            EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, NULL, v, T, &e));
            const int int_query = cb_attention_decode_int16_query(&c, &cfg);
            if (int_query != (AD_EXPECT_INT16 && (kinds.k == CB_KV_Q8_0 || kinds.k == CB_KV_Q4_0)))
                FAILF("%s: int16 query %d where the build expects otherwise", what, int_query);
            const cb_decode_plan windowed = {600, 0};
            double worst = 0;
            for (int pi = 0; pi < 2; pi++) { // the last NQ queries one at a time
                const cb_decode_plan *plan = pi ? &windowed : NULL;
                float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(&cfg, &c, 1, T, plan));
                const float *qn = q + (size_t)(NP - NQ) * W;
                for (int t = 0; t < NQ; t++)
                    cb_attention_decode(got + (size_t)t * W, qn + (size_t)t * W, NULL, NULL, &c, &cfg, T - NQ + t, 1,
                                        plan, scratch);
                reference(ref, bound, qn, &c, H, Hkv, hd, T - NQ, NQ, plan ? plan->local_window : 0, int_query);
                worst = cb_test_worst(worst, cb_test_rel_diff(got, ref, (size_t)NQ * W));
                free(scratch);
            }
            float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(&cfg, &c, NP, T, NULL));
            cb_attention_decode(got, q, NULL, NULL, &c, &cfg, T - NP, NP, NULL, scratch); // a prefill of NP
            reference(ref, bound, q, &c, H, Hkv, hd, T - NP, NP, 0, int_query);
            worst = cb_test_worst(worst, cb_test_rel_diff(got, ref, (size_t)NP * W));
            free(scratch);
            REPORT_DIFF(what, worst, 1e-5);
            if (!(worst <= 1e-5)) FAILF("%s: %.3g from the dequantised reference", what, worst);
            cb_layer_cache_free(&c);
        }
        free(k);
        free(v);
        free(q);
        free(got);
        free(ref);
        free(bound);
    }
}
