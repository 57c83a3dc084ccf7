/* kv_cache.c: cached key/value tensors of decoding, per head or packed, with the packed
 * layout's float stage (layout and byte accounting in kv_cache.h). */
#include "infer/kv_cache.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t gcd_size(size_t a, size_t b) {
    while (b) {
        size_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* Values a row of the tensor holds: W = n_heads * head_dim. */
static size_t width_of(const cb_kv_tensor *t) { return (size_t)t->n_heads * (size_t)t->head_dim; }

/* Tokens the stage keeps (whole groups, at least one beyond the open one). */
static int stage_keep(const cb_kv_tensor *t) {
    int keep = (CB_KV_STAGE_KEEP + t->group - 1) / t->group * t->group;
    return keep > t->group ? keep : t->group;
}

int cb_kv_tensor_init_layout(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim, int cap0,
                             cb_kv_layout layout, cb_error *e) {
    memset(t, 0, sizeof *t);
    if (!cb_kv_kind_valid((int)kind))
        return cb_fail(e, CB_E_INVALID, "", "kv cache: unknown storage kind %d", (int)kind);
    if (n_heads < 0 || head_dim < 0 || (n_heads > 0 && head_dim == 0) || cap0 < 0 ||
        (long long)n_heads * head_dim > INT_MAX / 64)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: bad shape: %d heads of %d values, capacity %d",
                       n_heads, head_dim, cap0);
    t->kind = kind;
    t->n_heads = n_heads;
    t->head_dim = head_dim;
    t->group = 1;
    if (n_heads == 0) return CB_OK;
    const size_t B = (size_t)cb_kv_kind_block_values(kind), W = width_of(t);
    if (layout == CB_KV_LAYOUT_HEADS || (size_t)head_dim % B == 0) {
        t->head_bytes = cb_kv_kind_bytes(kind, (size_t)head_dim);
        t->row_bytes = (size_t)n_heads * t->head_bytes;
    } else {
        // a stored row: the fewest whole tokens that fill whole blocks, lcm(W, B) values
        const size_t lcm = W / gcd_size(W, B) * B;
        t->packed = 1;
        t->group = (int)(lcm / W);
        t->row_bytes = cb_kv_kind_bytes(kind, lcm);
        if (t->group > 1) {
            t->stage_cap = stage_keep(t) + t->group;
            t->stage = cb_malloc((size_t)t->stage_cap * W, sizeof *t->stage, e);
            if (!t->stage) return e ? e->code : CB_E_RUNTIME;
        }
    }
    if (cap0 == 0) return CB_OK;
    // the first allocation is what the caller asked for (e.g. prompt + max new tokens), in whole groups
    const size_t rows = ((size_t)cap0 + (size_t)t->group - 1) / (size_t)t->group;
    if (rows * (size_t)t->group > INT_MAX) {
        cb_kv_tensor_free(t);
        return cb_fail(e, CB_E_INVALID, "", "kv cache: capacity %d overflows", cap0);
    }
    t->data = cb_malloc(rows, t->row_bytes, e);
    if (!t->data) {
        cb_kv_tensor_free(t);
        return e ? e->code : CB_E_RUNTIME;
    }
    t->cap = (int)rows * t->group;
    return CB_OK;
}

int cb_kv_tensor_init(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim, int cap0,
                      cb_error *e) {
    return cb_kv_tensor_init_layout(t, kind, n_heads, head_dim, cap0, CB_KV_LAYOUT_PACKED, e);
}

void cb_kv_tensor_free(cb_kv_tensor *t) {
    free(t->data);
    free(t->stage);
    t->data = NULL;
    t->stage = NULL;
    t->len = t->cap = t->stage0 = 0;
}

/* The stage's first token once whole groups older than the stage keeps have left it. */
static int stage_first(const cb_kv_tensor *t) {
    const int keep = stage_keep(t);
    const int first = t->len > keep ? (t->len - keep) / t->group * t->group : 0;
    return first > t->stage0 ? first : t->stage0;
}

/* Room on the stage for the tokens up to cap once the old groups have left it: an append
 * keeps every token it brings on the stage (the attention of its chunk reads the tokens of
 * each query's open group from there), so a chunk of n needs stage_keep + group + n rows. */
static int stage_reserve(cb_kv_tensor *t, int cap, cb_error *e) {
    const long long need = (long long)cap - stage_first(t);
    if (t->group == 1 || need <= t->stage_cap) return CB_OK;
    const long long want = need > 2LL * t->stage_cap ? need : 2LL * t->stage_cap;
    const size_t W = width_of(t);
    if (want > INT_MAX || (size_t)want > SIZE_MAX / sizeof(float) / W)
        return cb_fail(e, CB_E_RUNTIME, "", "kv cache: a stage of %lld tokens overflows", want);
    float *p = realloc(t->stage, (size_t)want * W * sizeof(float));
    if (!p) return cb_fail(e, CB_E_RUNTIME, "", "kv cache: out of memory growing the stage to %lld tokens", want);
    t->stage = p;
    t->stage_cap = (int)want;
    return CB_OK;
}

int cb_kv_tensor_reserve(cb_kv_tensor *t, int cap, cb_error *e) {
    if (t->row_bytes == 0) return CB_OK;
    CB_TRY(stage_reserve(t, cap, e));
    if (cap <= t->cap) return CB_OK;
    // geometric growth: appends of one token cost amortised O(1) copies
    const long long G = t->group;
    long long grown = t->cap > 0 ? 2LL * t->cap : 16;
    long long want = cap > grown ? cap : grown;
    want = (want + G - 1) / G * G;
    if (want > INT_MAX) want = ((long long)cap + G - 1) / G * G;
    if (want > INT_MAX || (size_t)(want / G) > SIZE_MAX / t->row_bytes)
        return cb_fail(e, CB_E_RUNTIME, "", "kv cache: %lld tokens of %zu bytes a row of %lld overflow", want,
                       t->row_bytes, G);
    const size_t bytes = (size_t)(want / G) * t->row_bytes;
    unsigned char *p = realloc(t->data, bytes);
    if (!p)
        return cb_fail(e, CB_E_RUNTIME, "", "kv cache: out of memory growing to %lld tokens (%zu bytes)", want, bytes);
    t->data = p;
    t->cap = (int)want;
    return CB_OK;
}

/* Packed, group > 1: token len from the stage's rows (reserved); a group complete is
 * quantized as one stream of whole blocks. */
static void append_staged(cb_kv_tensor *t, const float *row) {
    const size_t W = width_of(t);
    const int G = t->group;
    memcpy(t->stage + (size_t)(t->len - t->stage0) * W, row, sizeof(float) * W);
    t->len++;
    if (t->len % G == 0) {
        const int g = t->len / G - 1;
        cb_kv_quantize_row(t->kind, t->data + (size_t)g * t->row_bytes,
                           t->stage + (size_t)(g * G - t->stage0) * W, (size_t)G * W);
    }
}

int cb_kv_tensor_append(cb_kv_tensor *t, const float *rows, int n, cb_error *e) {
    if (n < 0 || (long long)t->len + n > INT_MAX)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: cannot append %d tokens to %d", n, t->len);
    if (t->n_heads == 0 || n == 0) {
        t->len += n;
        return CB_OK;
    }
    CB_TRY(cb_kv_tensor_reserve(t, t->len + n, e));
    const size_t width = width_of(t);
    if (t->group > 1) {
        // whole groups older than the stage keeps leave it first (before, not after, the
        // append: every token appended stays on the stage until the next append)
        const int first = stage_first(t);
        if (first > t->stage0) {
            memmove(t->stage, t->stage + (size_t)(first - t->stage0) * width,
                    sizeof(float) * (size_t)(t->len - first) * width);
            t->stage0 = first;
        }
        for (int i = 0; i < n; i++) append_staged(t, rows + (size_t)i * width);
        return CB_OK;
    }
    for (int i = 0; i < n; i++) {
        unsigned char *row = t->data + (size_t)(t->len + i) * t->row_bytes;
        if (t->packed) { // one token is whole blocks spanning its heads
            cb_kv_quantize_row(t->kind, row, rows + i * width, width);
            continue;
        }
        for (int h = 0; h < t->n_heads; h++)
            cb_kv_quantize_row(t->kind, row + (size_t)h * t->head_bytes, rows + i * width + (size_t)h * t->head_dim,
                               (size_t)t->head_dim);
    }
    t->len += n;
    return CB_OK;
}

/* Packed: values v0 .. v1 - 1 of the stream of whole blocks, dequantized into out: the
 * whole blocks inside the range in one call, a block cut by either end through a copy. */
static void read_stream(const cb_kv_tensor *t, float *out, size_t v0, size_t v1) {
    const size_t B = (size_t)cb_kv_kind_block_values(t->kind), bb = cb_kv_kind_block_bytes(t->kind);
    const size_t k0 = (v0 + B - 1) / B, k1 = v1 / B; // whole blocks k0 .. k1 - 1
    if (k0 < k1) cb_kv_dequantize_row(t->kind, out + (k0 * B - v0), t->data + k0 * bb, (k1 - k0) * B);
    float block[CB_QKNF4];
    for (size_t k = v0 / B; k * B < v1; k++) {
        if (k >= k0 && k < k1) continue;
        cb_kv_dequantize_row(t->kind, block, t->data + k * bb, B);
        const size_t a = v0 > k * B ? v0 : k * B, b = v1 < (k + 1) * B ? v1 : (k + 1) * B;
        memcpy(out + (a - v0), block + (a - k * B), sizeof(float) * (b - a));
    }
}

void cb_kv_tensor_truncate(cb_kv_tensor *t, int len) {
    if (len < 0) len = 0;
    if (len >= t->len) return;
    if (t->group > 1 && len < t->stage0) {
        // deeper than the stage keeps: the kept tokens of len's group back on the stage,
        // dequantized from its blocks (complete: it ends at or before stage0)
        const size_t W = width_of(t);
        const int first = len / t->group * t->group;
        read_stream(t, t->stage, (size_t)first * W, (size_t)len * W);
        t->stage0 = first;
    }
    t->len = len;
}

int cb_kv_tensor_float_from(const cb_kv_tensor *t, int at) {
    if (t->group == 1) return t->len; // nothing staged
    // the groups complete at length at + 1 (at < len: no later than the cache's complete ones)
    const int f = (at + 1) / t->group * t->group;
    return f > t->stage0 ? f : t->stage0;
}

void cb_kv_tensor_read_at(const cb_kv_tensor *t, float *out, int pos0, int n, int at) {
    const size_t width = width_of(t);
    if (!t->packed) {
        for (int i = 0; i < n; i++)
            for (int h = 0; h < t->n_heads; h++)
                cb_kv_dequantize_row(t->kind, out + i * width + (size_t)h * t->head_dim,
                                     cb_kv_tensor_head(t, pos0 + i, h), (size_t)t->head_dim);
        return;
    }
    // tokens before f from their blocks, the others from the stage
    const int f = cb_kv_tensor_float_from(t, at), end = pos0 + n;
    const int q1 = end < f ? end : f;
    if (pos0 < q1) read_stream(t, out, (size_t)pos0 * width, (size_t)q1 * width);
    const int s0 = pos0 > f ? pos0 : f;
    if (s0 < end)
        memcpy(out + (size_t)(s0 - pos0) * width, t->stage + (size_t)(s0 - t->stage0) * width,
               sizeof(float) * (size_t)(end - s0) * width);
}

void cb_kv_tensor_read(const cb_kv_tensor *t, float *out, int pos0, int n) {
    cb_kv_tensor_read_at(t, out, pos0, n, t->len - 1);
}

cb_kv_bytes cb_kv_tensor_bytes(const cb_kv_tensor *t) {
    cb_kv_bytes b;
    const size_t W = width_of(t), len = t->n_heads ? (size_t)t->len : 0;
    if (t->packed) {
        const size_t G = (size_t)t->group, staged = len % G;
        b.payload = len / G * t->row_bytes + staged * W * sizeof(float);
        b.allocated = (size_t)t->cap / G * t->row_bytes + (size_t)t->stage_cap * W * sizeof(float);
        b.values = b.slots = len * W;
        return b;
    }
    size_t bv = (size_t)cb_kv_kind_block_values(t->kind);
    size_t padded_dim = ((size_t)t->head_dim + bv - 1) / bv * bv;
    b.payload = len * t->row_bytes;
    b.allocated = (size_t)t->cap * t->row_bytes;
    b.values = len * W;
    b.slots = len * (size_t)t->n_heads * padded_dim;
    return b;
}

double cb_kv_tensor_bytes_per_token(const cb_kv_tensor *t) {
    return t->n_heads ? (double)t->row_bytes / t->group : 0.0;
}

static void bytes_add(cb_kv_bytes *a, cb_kv_bytes b) {
    a->payload += b.payload;
    a->allocated += b.allocated;
    a->values += b.values;
    a->slots += b.slots;
}

/* ---- one layer ---- */

int cb_layer_cache_init(cb_layer_cache *c, const cb_attention_config *cfg,
                        const cb_kv_kinds *kinds, int cap0, cb_error *e) {
    return cb_layer_cache_init_layout(c, cfg, kinds, cap0, CB_KV_LAYOUT_PACKED, e);
}

int cb_layer_cache_packed(const cb_layer_cache *c) { return c->k.packed || c->k_sem.packed || c->v.packed; }

int cb_layer_cache_init_layout(cb_layer_cache *c, const cb_attention_config *cfg,
                               const cb_kv_kinds *kinds, int cap0, cb_kv_layout layout, cb_error *e) {
    memset(c, 0, sizeof *c);
    CB_TRY(cb_attention_check(cfg, e));
    const int H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const int decoupled = cfg->mode == CB_ATTENTION_DECOUPLED;
    const int d_rot = decoupled ? cfg->geo_dim / H : cfg->head_dim;
    const int d_sem = decoupled ? cfg->sem_dim / H : 0;
    const int d_v = decoupled ? cfg->v_dim / H : cfg->head_dim;
    c->mode = cfg->mode;
    int rc = cb_kv_tensor_init_layout(&c->k, kinds->k, Hkv, d_rot, cap0, layout, e);
    if (rc == CB_OK) rc = cb_kv_tensor_init_layout(&c->k_sem, decoupled ? kinds->k_sem : CB_KV_F32,
                                                   decoupled ? Hkv : 0, d_sem, cap0, layout, e);
    if (rc == CB_OK) rc = cb_kv_tensor_init_layout(&c->v, kinds->v, Hkv, d_v, cap0, layout, e);
    if (rc != CB_OK) cb_layer_cache_free(c);
    return rc;
}

void cb_layer_cache_free(cb_layer_cache *c) {
    cb_kv_tensor_free(&c->k);
    cb_kv_tensor_free(&c->k_sem);
    cb_kv_tensor_free(&c->v);
    c->len = 0;
}

int cb_layer_cache_reserve(cb_layer_cache *c, int cap, cb_error *e) {
    CB_TRY(cb_kv_tensor_reserve(&c->k, cap, e));
    CB_TRY(cb_kv_tensor_reserve(&c->k_sem, cap, e));
    return cb_kv_tensor_reserve(&c->v, cap, e);
}

int cb_layer_cache_append(cb_layer_cache *c, const float *k, const float *k_sem,
                          const float *v, int n, cb_error *e) {
    if (n < 0 || (long long)c->len + n > INT_MAX)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: cannot append %d tokens to %d", n, c->len);
    if (c->k_sem.n_heads && !k_sem)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: decoupled attention needs k_sem rows");
    // grow all three first, so that a failure leaves the tensors in step
    CB_TRY(cb_layer_cache_reserve(c, c->len + n, e));
    CB_TRY(cb_kv_tensor_append(&c->k, k, n, e));
    CB_TRY(cb_kv_tensor_append(&c->k_sem, k_sem, n, e));
    CB_TRY(cb_kv_tensor_append(&c->v, v, n, e));
    c->len += n;
    return CB_OK;
}

void cb_layer_cache_truncate(cb_layer_cache *c, int len) {
    cb_kv_tensor_truncate(&c->k, len);
    cb_kv_tensor_truncate(&c->k_sem, len);
    cb_kv_tensor_truncate(&c->v, len);
    if (len < 0) len = 0;
    if (len < c->len) c->len = len;
}

void cb_layer_cache_reset(cb_layer_cache *c) { cb_layer_cache_truncate(c, 0); }

cb_kv_bytes cb_layer_cache_bytes(const cb_layer_cache *c) {
    cb_kv_bytes b = {0, 0, 0, 0};
    bytes_add(&b, cb_kv_tensor_bytes(&c->k));
    bytes_add(&b, cb_kv_tensor_bytes(&c->k_sem));
    bytes_add(&b, cb_kv_tensor_bytes(&c->v));
    return b;
}

double cb_layer_cache_bytes_per_token(const cb_layer_cache *c) {
    return cb_kv_tensor_bytes_per_token(&c->k) + cb_kv_tensor_bytes_per_token(&c->k_sem) +
           cb_kv_tensor_bytes_per_token(&c->v);
}

/* ---- the whole model ---- */

int cb_kv_cache_init(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                     const cb_kv_kinds *kinds, int cap0, cb_error *e) {
    return cb_kv_cache_init_layout(kv, n_layers, cfgs, kinds, cap0, CB_KV_LAYOUT_PACKED, e);
}

int cb_kv_cache_init_layout(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                            const cb_kv_kinds *kinds, int cap0, cb_kv_layout layout, cb_error *e) {
    memset(kv, 0, sizeof *kv);
    if (n_layers < 0) return cb_fail(e, CB_E_INVALID, "", "kv cache: %d layers", n_layers);
    if (n_layers == 0) return CB_OK;
    kv->layers = cb_calloc((size_t)n_layers, sizeof *kv->layers, e);
    if (!kv->layers) return e ? e->code : CB_E_RUNTIME;
    for (int l = 0; l < n_layers; l++) {
        int rc = cb_layer_cache_init_layout(&kv->layers[l], cfgs[l], kinds, cap0, layout, e);
        if (rc != CB_OK) {
            kv->n_layers = l;
            cb_kv_cache_free(kv);
            if (e) cb_error_prefix(e, "attention layer %d", l);
            return rc;
        }
    }
    kv->n_layers = n_layers;
    return CB_OK;
}

void cb_kv_cache_free(cb_kv_cache *kv) {
    for (int l = 0; l < kv->n_layers; l++) cb_layer_cache_free(&kv->layers[l]);
    free(kv->layers);
    kv->layers = NULL;
    kv->n_layers = 0;
}

void cb_kv_cache_truncate(cb_kv_cache *kv, int len) {
    for (int l = 0; l < kv->n_layers; l++) cb_layer_cache_truncate(&kv->layers[l], len);
}

void cb_kv_cache_reset(cb_kv_cache *kv) { cb_kv_cache_truncate(kv, 0); }

cb_kv_bytes cb_kv_cache_bytes(const cb_kv_cache *kv) {
    cb_kv_bytes b = {0, 0, 0, 0};
    for (int l = 0; l < kv->n_layers; l++) bytes_add(&b, cb_layer_cache_bytes(&kv->layers[l]));
    return b;
}

double cb_kv_cache_bytes_per_token(const cb_kv_cache *kv) {
    double n = 0;
    for (int l = 0; l < kv->n_layers; l++) n += cb_layer_cache_bytes_per_token(&kv->layers[l]);
    return n;
}
