/* test_kv_cache.c: cached tensors and layer caches: append, read back, geometric growth,
 * truncate and re-append (speculative rollback), the packed layout of small rows (blocks
 * spanning heads and tokens, a float stage) byte for byte and across rollbacks, byte
 * accounting (DBA's 4-wide semantic heads, the students), errors, and the
 * whole-model cache. */
#include "test.h"

#include <stdlib.h>

#include "infer/kv_cache.h"

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float urandf(void) { return cb_test_urandf(&rng_state); } // uniform in [-1, 1)

static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = urandf();
}

/* Tolerance of one stored value of a kind, relative to the head segment's absmax. */
static float max_abs_f(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

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

/* Values each stored value shares its scale with: the absmax of the scale's span. Per head:
 * the token's head segment; packed: the block of the stream (token t's row at t*W), so
 * spans cross heads and tokens. amax (tok * W) out. */
static void scale_span_amax(const cb_kv_tensor *t, const float *rows, int tok, float *amax) {
    const size_t W = (size_t)t->n_heads * t->head_dim;
    const size_t span = t->packed ? (size_t)cb_kv_kind_block_values(t->kind) : (size_t)t->head_dim;
    for (size_t i0 = 0; i0 < (size_t)tok * W; i0 += span) {
        const size_t i1 = i0 + span < (size_t)tok * W ? i0 + span : (size_t)tok * W;
        float m = 0;
        for (size_t i = i0; i < i1; i++) m = fmaxf(m, fabsf(rows[i]));
        for (size_t i = i0; i < i1; i++) amax[i] = m;
    }
}

TEST(kv_tensor_append_read_grow) {
    enum { HKV = 3, HD = 20, TOK = 100, W = HKV * HD };
    float *rows = malloc(sizeof(float) * TOK * W), *back = malloc(sizeof(float) * TOK * W);
    float *amax = malloc(sizeof(float) * TOK * W);
    fill(rows, (size_t)TOK * W);
    for (int k = 0; k < CB_KV_COUNT; k++) {
        cb_kv_tensor t;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, (cb_kv_kind)k, HKV, HD, 0, &e));
        EXPECT_EQ_INT(0, t.cap);
        // heads of 20 values: per head in the float kinds, packed in the block kinds, W = 60
        // values a token: q8_0/q4_0 lcm(60, 32) = 480 = 8 tokens in 15 blocks; nf4 lcm(60,
        // 64) = 960 = 16 tokens in 15 blocks
        const int B = cb_kv_kind_block_values((cb_kv_kind)k);
        EXPECT_EQ_INT(B > 1, t.packed);
        EXPECT_EQ_INT(B == 1 ? 1 : B == 32 ? 8 : 16, t.group);
        EXPECT_EQ_INT(B == 1 ? cb_kv_kind_bytes((cb_kv_kind)k, HD) : 0, t.head_bytes);
        EXPECT_EQ_INT(B == 1 ? W * cb_kv_kind_block_bytes((cb_kv_kind)k) : 15 * cb_kv_kind_block_bytes((cb_kv_kind)k),
                      t.row_bytes);
        int grows = 0, last_cap = 0;
        for (int i = 0; i < TOK; i++) { // one token at a time, as decoding does
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, rows + (size_t)i * W, 1, &e));
            if (t.cap != last_cap) {
                grows++;
                if (last_cap && t.cap < 2 * last_cap) FAILF("capacity grew %d -> %d", last_cap, t.cap);
                last_cap = t.cap;
            }
        }
        EXPECT_EQ_INT(TOK, t.len);
        EXPECT(grows <= 4); // 16, 32, 64, 128
        cb_kv_tensor_read(&t, back, 0, TOK);
        scale_span_amax(&t, rows, TOK, amax);
        // tokens of the open group (100 % 8 = 4, 100 % 16 = 4) read back as given (the stage)
        const int full = TOK / t.group * t.group;
        double worst = 0;
        for (size_t i = 0; i < (size_t)full * W; i++)
            worst = cb_test_worst(worst, fabs(back[i] - rows[i]) / amax[i]);
        EXPECT(memcmp(back + (size_t)full * W, rows + (size_t)full * W, sizeof(float) * (TOK - full) * W) == 0);
        char what[64];
        snprintf(what, sizeof what, "%s cache read / absmax", cb_kv_kind_name((cb_kv_kind)k));
        REPORT_DIFF(what, worst, kind_tol((cb_kv_kind)k));
        if (!(worst <= kind_tol((cb_kv_kind)k))) FAILF("%s: read back error %.3g", cb_kv_kind_name((cb_kv_kind)k), worst);
        cb_kv_bytes b = cb_kv_tensor_bytes(&t);
        EXPECT_EQ_INT((size_t)full / t.group * t.row_bytes + (size_t)(TOK - full) * W * sizeof(float), b.payload);
        EXPECT_EQ_INT((size_t)t.cap / t.group * t.row_bytes + (size_t)t.stage_cap * W * sizeof(float), b.allocated);
        EXPECT_EQ_INT(TOK * W, b.values);
        cb_kv_tensor_free(&t);
        EXPECT(t.data == NULL);
    }
    free(rows);
    free(back);
    free(amax);
}

/* The packed layout, byte for byte: for shapes whose rows are shorter than a block (W = 8:
 * 4 tokens a q4_0 block), cross blocks (W = 12, 48: a group of 8 and 2 tokens) or fill
 * whole blocks (W = 64 of heads of 16: no stage), appended in chunks of every size, the
 * complete groups' bytes equal the stream of every token's row quantized as one row
 * (cb_kv_quantize_row of T * W values, so a block holds values of consecutive heads and
 * tokens); the open group reads back exactly; payload as kv_cache.h counts it. */
TEST(kv_tensor_packed_stream) {
    const struct { int heads, hd; } shapes[] = {{4, 2}, {2, 4}, {4, 3}, {4, 12}, {4, 16}, {1, 5}};
    enum { TOK = 77 };
    const cb_kv_kind kinds[] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    for (int si = 0; si < 6; si++)
        for (int ki = 0; ki < 3; ki++) {
            const int H = shapes[si].heads, hd = shapes[si].hd, W = H * hd;
            const cb_kv_kind k = kinds[ki];
            float *rows = malloc(sizeof(float) * TOK * W), *back = malloc(sizeof(float) * TOK * W);
            fill(rows, (size_t)TOK * W);
            cb_kv_tensor t;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, k, H, hd, 5, &e));
            EXPECT_EQ_INT(1, t.packed);
            const int B = cb_kv_kind_block_values(k);
            int l = W, g = B; // lcm by hand
            while (l % B) l += W;
            g = l / W;
            EXPECT_EQ_INT(g, t.group);
            EXPECT_EQ_INT(cb_kv_kind_bytes(k, (size_t)l), t.row_bytes);
            for (int i = 0, n = 1; i < TOK; i += n, n = n % 6 + 1) { // chunks 1, 2, .. 6, 1, ..
                const int m = TOK - i < n ? TOK - i : n;
                EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, rows + (size_t)i * W, m, &e));
            }
            const int full = TOK / g * g;
            unsigned char *want = malloc(cb_kv_kind_bytes(k, (size_t)full * W) + 1);
            cb_kv_quantize_row(k, want, rows, (size_t)full * W);
            char what[64];
            snprintf(what, sizeof what, "%s, %d heads of %d", cb_kv_kind_name(k), H, hd);
            if (memcmp(want, t.data, cb_kv_kind_bytes(k, (size_t)full * W)) != 0) FAILF("%s: blocks differ", what);
            float *deq = malloc(sizeof(float) * ((size_t)full * W + 1));
            cb_kv_dequantize_row(k, deq, want, (size_t)full * W);
            cb_kv_tensor_read(&t, back, 0, TOK);
            if (memcmp(back, deq, sizeof(float) * full * W) != 0) FAILF("%s: complete groups read wrong", what);
            if (memcmp(back + (size_t)full * W, rows + (size_t)full * W, sizeof(float) * (TOK - full) * W) != 0)
                FAILF("%s: staged tokens read wrong", what);
            cb_kv_tensor_read(&t, back, 3, 40); // a range starting and ending inside blocks
            if (memcmp(back, deq + 3 * W, sizeof(float) * 40 * W) != 0) FAILF("%s: read of 3 .. 42 wrong", what);
            EXPECT_EQ_INT((size_t)full / g * t.row_bytes + (size_t)(TOK - full) * W * 4, cb_kv_tensor_bytes(&t).payload);
            EXPECT_NEAR((double)t.row_bytes / g, cb_kv_tensor_bytes_per_token(&t), 0);
            free(want);
            free(deq);
            free(rows);
            free(back);
            cb_kv_tensor_free(&t);
        }
}

/* Rollback across partial groups (speculative decoding): appending, truncating into a group
 * (complete or open) within the stage's CB_KV_STAGE_KEEP tokens and appending other tokens
 * leaves the bytes and reads of a tensor that only ever saw the kept and the new tokens. A
 * deeper rollback keeps the tokens before its group as they were and the rest within the
 * kind's rounding of the original values (their second rounding counted: twice the bound). */
TEST(kv_tensor_packed_truncate) {
    enum { H = 4, HD = 2, W = H * HD, TOK = 120 };
    const cb_kv_kind kinds[] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    float *a = malloc(sizeof(float) * TOK * W), *b2 = malloc(sizeof(float) * TOK * W);
    float *got = malloc(sizeof(float) * TOK * W), *want = malloc(sizeof(float) * TOK * W);
    fill(a, (size_t)TOK * W);
    fill(b2, (size_t)TOK * W);
    for (int ki = 0; ki < 3; ki++) {
        const cb_kv_kind k = kinds[ki];
        // (tokens appended, kept): into the open group, into the group just completed, many
        // groups back, exactly on a group boundary, and to 0
        const int cases[][2] = {{30, 29}, {32, 30}, {40, 13}, {40, 16}, {25, 0}, {60, 60 - CB_KV_STAGE_KEEP}};
        for (int c = 0; c < 6; c++) {
            cb_kv_tensor t, r;
            cb_error e;
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, k, H, HD, 0, &e));
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&r, k, H, HD, 0, &e));
            const int n = cases[c][0], keep = cases[c][1];
            for (int i = 0; i < n; i++) cb_kv_tensor_append(&t, a + (size_t)i * W, 1, &e);
            cb_kv_tensor_truncate(&t, keep);
            EXPECT_EQ_INT(keep, t.len);
            EXPECT_EQ_INT(CB_OK, cb_kv_tensor_append(&t, b2, 50, &e));
            cb_kv_tensor_append(&r, a, keep, &e);
            cb_kv_tensor_append(&r, b2, 50, &e);
            const int len = keep + 50, full = len / t.group * t.group;
            char what[64];
            snprintf(what, sizeof what, "%s: %d tokens, kept %d", cb_kv_kind_name(k), n, keep);
            if (memcmp(t.data, r.data, (size_t)full / t.group * t.row_bytes) != 0) FAILF("%s: blocks differ", what);
            cb_kv_tensor_read(&t, got, 0, len);
            cb_kv_tensor_read(&r, want, 0, len);
            if (memcmp(got, want, sizeof(float) * len * W) != 0) FAILF("%s: reads differ", what);
            EXPECT_EQ_INT(cb_kv_tensor_bytes(&r).payload, cb_kv_tensor_bytes(&t).payload);
            cb_kv_tensor_free(&t);
            cb_kv_tensor_free(&r);
        }
        // deeper than the stage keeps: 120 tokens appended one at a time (the stage keeps
        // CB_KV_STAGE_KEEP before the last), back to 21
        cb_kv_tensor t;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, k, H, HD, 0, &e));
        for (int i = 0; i < TOK; i++) cb_kv_tensor_append(&t, a + (size_t)i * W, 1, &e);
        EXPECT(t.stage0 > 21);
        cb_kv_tensor_read(&t, want, 0, TOK);
        cb_kv_tensor_truncate(&t, 21);
        EXPECT(t.stage0 <= 21);
        cb_kv_tensor_read(&t, got, 0, 21);
        if (memcmp(got, want, sizeof(float) * 21 * W) != 0) FAILF("%s: deep rollback changed kept tokens", cb_kv_kind_name(k));
        cb_kv_tensor_append(&t, a + 21 * W, TOK - 21, &e); // the same tokens again
        cb_kv_tensor_read(&t, got, 0, TOK);
        const int first = 21 / t.group * t.group, last = (21 + t.group - 1) / t.group * t.group;
        EXPECT(memcmp(got, want, sizeof(float) * first * W) == 0);
        EXPECT(memcmp(got + (size_t)last * W, want + (size_t)last * W, sizeof(float) * (TOK - last) * W) == 0);
        double worst = 0;
        for (int i = first * W; i < last * W; i++) {
            float m = 0; // the block's absmax of the original values
            const int b0 = i / cb_kv_kind_block_values(k) * cb_kv_kind_block_values(k);
            for (int j = b0; j < b0 + cb_kv_kind_block_values(k); j++) m = fmaxf(m, fabsf(a[j]));
            worst = cb_test_worst(worst, fabs(got[i] - a[i]) / m);
        }
        char what[64];
        snprintf(what, sizeof what, "%s deep rollback, group of 21, twice rounded", cb_kv_kind_name(k));
        const double tol2 = (2 + kind_tol(k)) * kind_tol(k); // once, then once more from a scale <= (1 + tol) amax
        REPORT_DIFF(what, worst, tol2);
        EXPECT(worst <= tol2);
        cb_kv_tensor_free(&t);
    }
    free(a);
    free(b2);
    free(got);
    free(want);
}

/* The per-head layout where it has no padding, and CB_KV_LAYOUT_HEADS (the CUDA caches):
 * heads of 64 stay per head in every kind (what the decode kernels of standard models read);
 * under CB_KV_LAYOUT_HEADS a head of 4 values is one whole, zero-padded block. */
TEST(kv_tensor_layouts) {
    cb_kv_tensor t;
    cb_error e;
    for (int k = 0; k < CB_KV_COUNT; k++) {
        EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init(&t, (cb_kv_kind)k, 2, 64, 0, &e));
        EXPECT_EQ_INT(0, t.packed);
        EXPECT_EQ_INT(1, t.group);
        EXPECT_EQ_INT(cb_kv_kind_bytes((cb_kv_kind)k, 64), t.head_bytes);
        cb_kv_tensor_free(&t);
    }
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init_layout(&t, CB_KV_Q4_0, 2, 4, 0, CB_KV_LAYOUT_HEADS, &e));
    EXPECT_EQ_INT(0, t.packed);
    EXPECT_EQ_INT(18, t.head_bytes);
    EXPECT_EQ_INT(36, t.row_bytes);
    cb_kv_tensor_free(&t);
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

/* Padding under CB_KV_LAYOUT_HEADS: a head of 4 values in q4_0 is one 18-byte block (32
 * slots); values of one head never leak into the next head's blocks. */
TEST(kv_tensor_head_padding) {
    cb_kv_tensor t;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_kv_tensor_init_layout(&t, CB_KV_Q4_0, 2, 4, 0, CB_KV_LAYOUT_HEADS, &e));
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
 *    q4_0 2 * 2 * 18 = 72 (heads of whole blocks: per head); nf4: a head of 32 is half a
 *    64-value block, so k and v are packed: a token's row of 64 values is one block, 2 * 34 = 68
 *    (per head, padded, it was 2 * 2 * 34 = 136).
 *  DBA Hkv 2, d_sem 4, d_geo 8, d_v 16: all fp16 2 * (4 + 8 + 16) * 2 = 112 (docs/DESIGN.md's
 *    H_kv (d_sem + d_geo + d_v) values); k_sem q4_0 (a row of 8 values: 4 tokens a block,
 *    18 / 4 = 4.5), k_geo q8_0 (16 values: 2 tokens a block, 34 / 2 = 17), v q8_0 (32: one
 *    block, 34): 55.5. Per head every head paid for a whole block: 2 * (18 + 34 + 34) = 172. */
TEST(kv_layer_cache_bytes) {
    cb_error e;
    cb_layer_cache c;
    cb_attention_config g = gqa_config();
    const struct { cb_kv_kind k; size_t want; } gqa_cases[] = {
        {CB_KV_F32, 512}, {CB_KV_F16, 256}, {CB_KV_BF16, 256},
        {CB_KV_Q8_0, 136}, {CB_KV_Q4_0, 72}, {CB_KV_NF4, 68},
    };
    for (int i = 0; i < 6; i++) {
        cb_kv_kinds kinds = {gqa_cases[i].k, CB_KV_F32, gqa_cases[i].k};
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &g, &kinds, 8, &e));
        EXPECT_NEAR((double)gqa_cases[i].want, cb_layer_cache_bytes_per_token(&c), 0);
        EXPECT_EQ_INT(0, c.k_sem.n_heads);
        EXPECT_EQ_INT(gqa_cases[i].k == CB_KV_NF4, cb_layer_cache_packed(&c));
        float k[3 * 64], v[3 * 64];
        fill(k, 3 * 64);
        fill(v, 3 * 64);
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, NULL, v, 3, &e));
        cb_kv_bytes b = cb_layer_cache_bytes(&c);
        EXPECT_EQ_INT(3 * gqa_cases[i].want, b.payload); // group 1 everywhere: no stage
        EXPECT_EQ_INT(8 * gqa_cases[i].want, b.allocated);
        EXPECT_EQ_INT(3 * 2 * 2 * 32, b.values);
        EXPECT_EQ_INT(3 * 2 * 2 * 32, b.slots); // nothing padded any more
        cb_layer_cache_free(&c);
    }
    cb_attention_config d = dba_config();
    cb_kv_kinds all16 = {CB_KV_F16, CB_KV_F16, CB_KV_F16};
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &all16, 0, &e));
    EXPECT_NEAR(112, cb_layer_cache_bytes_per_token(&c), 0);
    EXPECT_EQ_INT(2 * 4, c.k_sem.n_heads * c.k_sem.head_dim);
    EXPECT_EQ_INT(2 * 8, c.k.n_heads * c.k.head_dim);
    EXPECT_EQ_INT(2 * 16, c.v.n_heads * c.v.head_dim);
    cb_layer_cache_free(&c);
    cb_kv_kinds mixed = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_Q8_0};
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init_layout(&c, &d, &mixed, 0, CB_KV_LAYOUT_HEADS, &e));
    EXPECT_NEAR(172, cb_layer_cache_bytes_per_token(&c), 0);
    cb_layer_cache_free(&c);
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &mixed, 0, &e));
    EXPECT_NEAR(55.5, cb_layer_cache_bytes_per_token(&c), 0);
    float k[5 * 16], ks[5 * 8], v[5 * 32], back[5 * 32];
    fill(k, 5 * 16);
    fill(ks, 5 * 8);
    fill(v, 5 * 32);
    EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&c, k, ks, v, 5, &e));
    EXPECT_EQ_INT(5, c.len);
    EXPECT_EQ_INT(5, c.k_sem.len);
    cb_kv_bytes b = cb_layer_cache_bytes(&c);
    // 5 tokens: k_geo 2 blocks (4 tokens) + 1 staged row of 16 floats = 68 + 64; k_sem 1 block
    // + 1 staged row of 8 floats = 18 + 32; v 5 blocks = 170
    EXPECT_EQ_INT(68 + 64 + 18 + 32 + 170, b.payload);
    EXPECT_EQ_INT(5 * 2 * (4 + 8 + 16), b.values);
    EXPECT_EQ_INT(5 * 2 * (4 + 8 + 16), b.slots);
    cb_kv_tensor_read(&c.k_sem, back, 0, 5);
    double worst = 0;
    for (int i = 0; i < 4 * 8; i++) // the first block: 4 tokens' 8 values share one scale
        worst = cb_test_worst(worst, fabs(back[i] - ks[i]) / (double)max_abs_f(ks, 32));
    EXPECT(memcmp(back + 32, ks + 32, sizeof(float) * 8) == 0); // the fifth token: staged
    REPORT_DIFF("DBA k_sem q4_0 read / block absmax", worst, kind_tol(CB_KV_Q4_0));
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

/* The students, per token and layer against a teacher of 4 KV heads of 64 in fp16
 * (2 * 4 * 64 * 2 = 1024 bytes):
 *  - presets/upcycle_tiny.yml's (H 8 on 4 KV heads, d_sem 4, d_geo 4, d_v 8: rows of 16, 16,
 *    32): q8_0 17 + 17 + 34 = 68 (per head 12 blocks, 408); q4_0 9 + 9 + 18 = 36 (216); nf4
 *    (16 values: 4 tokens a block, 8.5; 32: 2 tokens, 17) 8.5 + 8.5 + 17 = 34 (408);
 *  - a 1/16 student (d_sem 2, d_geo 2, d_v 4: rows of 8, 8, 16): q4_0 4.5 + 4.5 + 9 = 18,
 *    1024 / 18 = 57x smaller than the teacher's fp16 (per head 12 blocks, 216: 4.7x); q8_0
 *    8.5 + 8.5 + 17 = 34; nf4 (8 tokens a block of 8 values) 4.25 + 4.25 + 8.5 = 17. */
TEST(kv_students_bytes) {
    cb_attention_config d = dba_config();
    d.d_model = 256;
    d.n_heads = 8;
    d.n_kv_heads = 4;
    const struct { int sem, geo, v; cb_kv_kind k; double want, heads; } cases[] = {
        {32, 32, 64, CB_KV_Q8_0, 68, 408}, {32, 32, 64, CB_KV_Q4_0, 36, 216}, {32, 32, 64, CB_KV_NF4, 34, 408},
        {16, 16, 32, CB_KV_Q4_0, 18, 216}, {16, 16, 32, CB_KV_Q8_0, 34, 408}, {16, 16, 32, CB_KV_NF4, 17, 408},
    };
    for (int i = 0; i < 6; i++) {
        d.sem_dim = cases[i].sem;
        d.geo_dim = cases[i].geo;
        d.v_dim = cases[i].v;
        cb_kv_kinds kinds = {cases[i].k, cases[i].k, cases[i].k};
        cb_layer_cache c;
        cb_error e;
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init(&c, &d, &kinds, 0, &e));
        EXPECT_NEAR(cases[i].want, cb_layer_cache_bytes_per_token(&c), 0);
        cb_layer_cache_free(&c);
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_init_layout(&c, &d, &kinds, 0, CB_KV_LAYOUT_HEADS, &e));
        EXPECT_NEAR(cases[i].heads, cb_layer_cache_bytes_per_token(&c), 0);
        cb_layer_cache_free(&c);
    }
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
    // GQA: 2*34 + 2*18 = 104; DBA: k_geo q8_0 (a row of 16: 2 tokens a block) 17 + k_sem fp16
    // 2*4*2 = 16 + v q4_0 (a row of 32: one block) 18 = 51
    EXPECT_NEAR(104 + 51 + 104, cb_kv_cache_bytes_per_token(&kv), 0);
    float k[64], ks[8], v[64];
    fill(k, 64);
    fill(ks, 8);
    fill(v, 64);
    for (int l = 0; l < 3; l++)
        EXPECT_EQ_INT(CB_OK, cb_layer_cache_append(&kv.layers[l], k, l == 1 ? ks : NULL, v, 1, &e));
    // one token: the DBA layer's k_geo is on the stage, 16 floats = 64 bytes: 104 + 64 + 16 + 18 + 104
    EXPECT_EQ_INT(306, cb_kv_cache_bytes(&kv).payload);
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
