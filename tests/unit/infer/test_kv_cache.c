/* test_kv_cache.c: cached tensors and layer caches: append, read back, geometric growth,
 * truncate and re-append (speculative rollback), byte accounting with block padding
 * (DBA's 4-wide semantic heads), errors, and the whole-model cache. */
#include "test.h"

#include <stdlib.h>

#include "infer/kv_cache.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = urandf();
}

/* Tolerance of one stored value of a kind, relative to the head segment's absmax. */
static double kind_tol(cb_kv_kind k) {
    switch (k) {
    case CB_KV_F32: return 0;
    case CB_KV_F16: return 0x1p-11;
    case CB_KV_BF16: return 0x1p-8;
    case CB_KV_Q8_0: return 1.0 / 254 + 0x1p-11;
    case CB_KV_Q4_0: return 1.0 / 8 + 0x1p-11;
    default: return 0.1519036 * (1 + 0x1p-11) + 0x1p-11;
    }
}

TEST(kv_tensor_append_read_grow) {
    enum { HKV = 3, HD = 20, TOK = 100 };
    float *rows = malloc(sizeof(float) * TOK * HKV * HD), *back = malloc(sizeof(float) * TOK * HKV * HD);
    fill(rows, (size_t)TOK * HKV * HD);
    for (int k = 0; k < CB_KV_COUNT; k++) {
        cb_kv_tensor t;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, (cb_kv_kind)k, HKV, HD, 0, &e));
        EXPECT_EQ_INT(0, t.cap);
        EXPECT_EQ_INT(cb_kv_kind_bytes((cb_kv_kind)k, HD), t.head_bytes);
        int grows = 0, last_cap = 0;
        for (int i = 0; i < TOK; i++) { // one token at a time, as decoding does
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, rows + (size_t)i * HKV * HD, 1, &e));
            if (t.cap != last_cap) {
                grows++;
                if (last_cap && t.cap < 2 * last_cap) FAILF("capacity grew %d -> %d", last_cap, t.cap);
                last_cap = t.cap;
            }
        }
        EXPECT_EQ_INT(TOK, t.len);
        EXPECT(grows <= 4); // 16, 32, 64, 128
        cb_kv_tensor_read(&t, back, 0, TOK);
        double worst = 0;
        for (int i = 0; i < TOK * HKV; i++) {
            float amax = 0;
            for (int j = 0; j < HD; j++) amax = fmaxf(amax, fabsf(rows[i * HD + j]));
            for (int j = 0; j < HD; j++) {
                double err = fabs(back[i * HD + j] - rows[i * HD + j]) / amax;
                worst = cb_test_worst(worst, err);
            }
        }
        char what[64];
        snprintf(what, sizeof what, "%s cache read / absmax", cb_kv_kind_name((cb_kv_kind)k));
        REPORT_DIFF(what, worst, kind_tol((cb_kv_kind)k));
        if (!(worst <= kind_tol((cb_kv_kind)k))) FAILF("%s: read back error %.3g", cb_kv_kind_name((cb_kv_kind)k), worst);
        cb_kv_bytes b = cb_kv_tensor_bytes(&t);
        EXPECT_EQ_INT((size_t)TOK * t.row_bytes, b.payload);
        EXPECT_EQ_INT((size_t)t.cap * t.row_bytes, b.allocated);
        EXPECT_EQ_INT(TOK * HKV * HD, b.values);
        cb_kv_tensor_free(&t);
        EXPECT(t.data == NULL);
    }
    free(rows);
    free(back);
}

/* Speculative rollback: truncate, append other tokens, read: earlier tokens intact, later
 * ones the new data; truncate past len does nothing; reserve keeps the contents. */
TEST(kv_tensor_truncate_reappend) {
    enum { W = 64 };
    float a[40 * W], b2[10 * W], back[40 * W];
    fill(a, sizeof a / sizeof a[0]);
    fill(b2, sizeof b2 / sizeof b2[0]);
    cb_kv_tensor t;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, CB_KV_F32, 2, 32, 4, &e));
    EXPECT_EQ_INT(4, t.cap);
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, a, 40, &e));
    int cap = t.cap;
    cb_kv_tensor_truncate(&t, 35);
    EXPECT_EQ_INT(35, t.len);
    cb_kv_tensor_truncate(&t, 99);
    EXPECT_EQ_INT(35, t.len);
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, b2, 10, &e));
    EXPECT_EQ_INT(45, t.len);
    EXPECT(t.cap >= 45 && t.cap >= cap);
    cb_kv_tensor_read(&t, back, 0, 35);
    EXPECT(memcmp(back, a, sizeof(float) * 35 * W) == 0);
    cb_kv_tensor_read(&t, back, 35, 10);
    EXPECT(memcmp(back, b2, sizeof(float) * 10 * W) == 0);
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_reserve(&t, 1000, &e));
    EXPECT(t.cap >= 1000);
    cb_kv_tensor_read(&t, back, 0, 35);
    EXPECT(memcmp(back, a, sizeof(float) * 35 * W) == 0);
    cb_kv_tensor_truncate(&t, 0);
    EXPECT_EQ_INT(0, cb_kv_tensor_bytes(&t).payload);
    EXPECT_EQ_INT((size_t)t.cap * t.row_bytes, cb_kv_tensor_bytes(&t).allocated);
    cb_kv_tensor_free(&t);
}

/* Padding: a head of 4 values in q4_0 is one 18-byte block (32 slots); values of one head
 * never leak into the next head's blocks. */
TEST(kv_tensor_head_padding) {
    cb_kv_tensor t;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, CB_KV_Q4_0, 2, 4, 0, &e));
    EXPECT_EQ_INT(18, t.head_bytes);
    EXPECT_EQ_INT(36, t.row_bytes);
    // each head gets its own scale: head 0 m = -8 (d = 1), head 1 m = 0.5 (d = -0.0625);
    // every value is a multiple of its d within -8d .. 7d, so it reads back exactly
    float row[8] = {-8, 1, 2, 3, 0.5f, 0.25f, -0.25f, 0.125f}, back[8];
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, row, 1, &e));
    const cb_block_q4_0 *h0 = cb_kv_tensor_head(&t, 0, 0), *h1 = cb_kv_tensor_head(&t, 0, 1);
    EXPECT_EQ_INT(0x3C00, h0->d);  // -8 / -8 = 1
    EXPECT_EQ_INT(0xAC00, h1->d);  // 0.5 / -8 = -2^-4
    for (int j = 4; j < 16; j++) EXPECT_EQ_INT(0x88, h0->qs[j]); // padding zeros: q = 8
    cb_kv_tensor_read(&t, back, 0, 1);
    for (int j = 0; j < 8; j++) EXPECT_NEAR(row[j], back[j], 0);
    cb_kv_bytes b = cb_kv_tensor_bytes(&t);
    EXPECT_EQ_INT(36, b.payload);
    EXPECT_EQ_INT(8, b.values);
    EXPECT_EQ_INT(64, b.slots);
    cb_kv_tensor_free(&t);
}

static cb_attention_config dba_config(void) {
    cb_attention_config c = {0};
    c.mode = CB_ATTENTION_DECOUPLED;
    c.d_model = 64;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.sem_dim = 16; // d_sem 4
    c.geo_dim = 32; // d_geo 8
    c.v_dim = 64;   // d_v 16
    c.rope_enabled = true;
    c.is_causal = true;
    return c;
}

static cb_attention_config gqa_config(void) {
    cb_attention_config c = {0};
    c.mode = CB_ATTENTION_GQA;
    c.d_model = 256;
    c.n_heads = 8;
    c.n_kv_heads = 2;
    c.head_dim = 32;
    c.rope_enabled = true;
    c.is_causal = true;
    return c;
}

/* Bytes per token of a layer, by hand:
 *  GQA Hkv 2, hd 32: fp16 k and v 2 * 2 * 32 * 2 = 256; q8_0 2 * 2 * 34 = 136;
 *    q4_0 2 * 2 * 18 = 72; nf4 (a 64-value block padded from 32) 2 * 2 * 34 = 136.
 *  DBA Hkv 2, d_sem 4, d_geo 8, d_v 16: all fp16 2 * (4 + 8 + 16) * 2 = 112 (docs/DESIGN.md's
 *    H_kv (d_sem + d_geo + d_v) values); k_sem q4_0, k_geo q8_0, v q8_0: 2 * (18 + 34 + 34)
 *    = 172 -- more than fp16, because every 4-value semantic head pays for a whole block. */
TEST(kv_layer_cache_bytes) {
    cb_error e;
    cb_layer_cache c;
    cb_attention_config g = gqa_config();
    const struct { cb_kv_kind k; size_t want; } gqa_cases[] = {
        {CB_KV_F32, 512}, {CB_KV_F16, 256}, {CB_KV_BF16, 256},
        {CB_KV_Q8_0, 136}, {CB_KV_Q4_0, 72}, {CB_KV_NF4, 136},
    };
    for (int i = 0; i < 6; i++) {
        cb_kv_kinds kinds = {gqa_cases[i].k, CB_KV_F32, gqa_cases[i].k};
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &g, &kinds, 8, &e));
        EXPECT_EQ_INT(gqa_cases[i].want, cb_layer_cache_bytes_per_token(&c));
        EXPECT_EQ_INT(0, c.k_sem.n_heads);
        float k[3 * 64], v[3 * 64];
        fill(k, 3 * 64);
        fill(v, 3 * 64);
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, NULL, v, 3, &e));
        cb_kv_bytes b = cb_layer_cache_bytes(&c);
        EXPECT_EQ_INT(3 * gqa_cases[i].want, b.payload);
        EXPECT_EQ_INT(8 * gqa_cases[i].want, b.allocated);
        EXPECT_EQ_INT(3 * 2 * 2 * 32, b.values);
        EXPECT_EQ_INT(gqa_cases[i].k == CB_KV_NF4 ? 3 * 2 * 2 * 64 : 3 * 2 * 2 * 32, b.slots);
        cb_layer_cache_free(&c);
    }
    cb_attention_config d = dba_config();
    cb_kv_kinds all16 = {CB_KV_F16, CB_KV_F16, CB_KV_F16};
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &all16, 0, &e));
    EXPECT_EQ_INT(112, cb_layer_cache_bytes_per_token(&c));
    EXPECT_EQ_INT(2 * 4, c.k_sem.n_heads * c.k_sem.head_dim);
    EXPECT_EQ_INT(2 * 8, c.k.n_heads * c.k.head_dim);
    EXPECT_EQ_INT(2 * 16, c.v.n_heads * c.v.head_dim);
    cb_layer_cache_free(&c);
    cb_kv_kinds mixed = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_Q8_0};
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &mixed, 0, &e));
    EXPECT_EQ_INT(172, cb_layer_cache_bytes_per_token(&c));
    float k[5 * 16], ks[5 * 8], v[5 * 32], back[5 * 32];
    fill(k, 5 * 16);
    fill(ks, 5 * 8);
    fill(v, 5 * 32);
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, ks, v, 5, &e));
    EXPECT_EQ_INT(5, c.len);
    EXPECT_EQ_INT(5, c.k_sem.len);
    cb_kv_bytes b = cb_layer_cache_bytes(&c);
    EXPECT_EQ_INT(5 * 172, b.payload);
    EXPECT_EQ_INT(5 * 2 * (4 + 8 + 16), b.values);
    EXPECT_EQ_INT(5 * 2 * (32 + 32 + 32), b.slots);
    cb_kv_tensor_read(&c.k_sem, back, 0, 5);
    double worst = 0;
    for (int i = 0; i < 5 * 2; i++) {
        float amax = 0;
        for (int j = 0; j < 4; j++) amax = fmaxf(amax, fabsf(ks[i * 4 + j]));
        for (int j = 0; j < 4; j++) worst = cb_test_worst(worst, fabs(back[i * 4 + j] - ks[i * 4 + j]) / amax);
    }
    REPORT_DIFF("DBA k_sem q4_0 read / absmax", worst, kind_tol(CB_KV_Q4_0));
    EXPECT(worst <= kind_tol(CB_KV_Q4_0));
    // rollback keeps the three tensors in step
    cb_layer_cache_truncate(&c, 2);
    EXPECT_EQ_INT(2, c.len);
    EXPECT_EQ_INT(2, c.k.len);
    EXPECT_EQ_INT(2, c.k_sem.len);
    EXPECT_EQ_INT(2, c.v.len);
    cb_layer_cache_reset(&c);
    EXPECT_EQ_INT(0, c.len);
    EXPECT_EQ_INT(0, cb_layer_cache_bytes(&c).payload);
    cb_layer_cache_free(&c);
}

TEST(kv_cache_errors) {
    cb_error e;
    cb_kv_tensor t;
    EXPECT_EQ_INT(CB_E_INVALID, cb_kv_tensor_init(&t, (cb_kv_kind)CB_KV_COUNT, 2, 8, 0, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_kv_tensor_init(&t, CB_KV_F16, 2, 0, 0, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_kv_tensor_init(&t, CB_KV_F16, -1, 8, 0, &e));
    cb_layer_cache c;
    cb_attention_config d = dba_config();
    cb_kv_kinds kinds = {CB_KV_F32, CB_KV_F32, CB_KV_F32};
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &kinds, 0, &e));
    float k[16] = {0}, v[32] = {0};
    EXPECT_EQ_INT(CB_E_INVALID, cb_layer_cache_append(&c, k, NULL, v, 1, &e));
    EXPECT(strstr(e.msg, "k_sem") != NULL);
    EXPECT_EQ_INT(0, c.len);
    EXPECT_EQ_INT(CB_E_INVALID, cb_layer_cache_append(&c, k, k, v, -1, &e));
    cb_layer_cache_free(&c);
    d.n_kv_heads = 3; // does not divide 4 heads
    EXPECT_EQ_INT(CB_E_INVALID, cb_layer_cache_init(&c, &d, &kinds, 0, &e));
    EXPECT(c.k.data == NULL);
}

TEST(kv_cache_model) {
    cb_error e;
    cb_attention_config g = gqa_config(), d = dba_config();
    const cb_attention_config *cfgs[3] = {&g, &d, &g};
    cb_kv_kinds kinds = {CB_KV_Q8_0, CB_KV_F16, CB_KV_Q4_0};
    cb_kv_cache kv;
    EXPECT_EQ_INT(CB_OK, cb_kv_cache_init(&kv, 3, cfgs, &kinds, 4, &e));
    // GQA: 2*34 + 2*18 = 104; DBA: k_geo q8_0 2*34 + k_sem fp16 2*4*2 + v q4_0 2*18 = 120
    EXPECT_EQ_INT(104 + 120 + 104, cb_kv_cache_bytes_per_token(&kv));
    float k[64], ks[8], v[64];
    fill(k, 64);
    fill(ks, 8);
    fill(v, 64);
    for (int l = 0; l < 3; l++)
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&kv.layers[l], k, l == 1 ? ks : NULL, v, 1, &e));
    EXPECT_EQ_INT(328, cb_kv_cache_bytes(&kv).payload);
    cb_kv_cache_truncate(&kv, 0);
    EXPECT_EQ_INT(0, cb_kv_cache_bytes(&kv).payload);
    cb_kv_cache_free(&kv);
    EXPECT_EQ_INT(0, kv.n_layers);
    // a bad layer config names its layer and frees the others
    d.sem_dim = 6;
    EXPECT_EQ_INT(CB_E_INVALID, cb_kv_cache_init(&kv, 3, cfgs, &kinds, 4, &e));
    EXPECT(strstr(e.msg, "attention layer 1") != NULL);
    EXPECT(kv.layers == NULL);
}
