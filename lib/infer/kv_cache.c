/* kv_cache.c: cached key/value tensors of decoding, one head segment = whole blocks
 * (layout and byte accounting in kv_cache.h). */
#include "infer/kv_cache.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int cb_kv_tensor_init(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim, int cap0,
                      cb_error *e) {
    memset(t, 0, sizeof *t);
    if (!cb_kv_kind_valid((int)kind))
        return cb_fail(e, CB_E_INVALID, "", "kv cache: unknown storage kind %d", (int)kind);
    if (n_heads < 0 || head_dim < 0 || (n_heads > 0 && head_dim == 0) || cap0 < 0)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: bad shape: %d heads of %d values, capacity %d",
                       n_heads, head_dim, cap0);
    t->kind = kind;
    t->n_heads = n_heads;
    t->head_dim = head_dim;
    t->head_bytes = n_heads ? cb_kv_kind_bytes(kind, (size_t)head_dim) : 0;
    t->row_bytes = (size_t)n_heads * t->head_bytes;
    if (cap0 == 0 || t->row_bytes == 0) return CB_OK;
    // the first allocation is exactly what the caller asked for (e.g. prompt + max new tokens)
    t->data = cb_malloc((size_t)cap0, t->row_bytes, e);
    if (!t->data) return e ? e->code : CB_E_RUNTIME;
    t->cap = cap0;
    return CB_OK;
}

void cb_kv_tensor_free(cb_kv_tensor *t) {
    free(t->data);
    t->data = NULL;
    t->len = t->cap = 0;
}

int cb_kv_tensor_reserve(cb_kv_tensor *t, int cap, cb_error *e) {
    if (cap <= t->cap || t->row_bytes == 0) return CB_OK;
    // geometric growth: appends of one token cost amortised O(1) copies
    long long grown = t->cap > 0 ? 2LL * t->cap : 16;
    long long want = cap > grown ? cap : grown;
    if (want > INT_MAX) want = cap;
    if ((size_t)want > SIZE_MAX / t->row_bytes)
        return cb_fail(e, CB_E_RUNTIME, "", "kv cache: %lld tokens of %zu bytes overflow", want, t->row_bytes);
    unsigned char *p = realloc(t->data, (size_t)want * t->row_bytes);
    if (!p)
        return cb_fail(e, CB_E_RUNTIME, "", "kv cache: out of memory growing to %lld tokens (%zu bytes)",
                       want, (size_t)want * t->row_bytes);
    t->data = p;
    t->cap = (int)want;
    return CB_OK;
}

int cb_kv_tensor_append(cb_kv_tensor *t, const float *rows, int n, cb_error *e) {
    if (n < 0 || (long long)t->len + n > INT_MAX)
        return cb_fail(e, CB_E_INVALID, "", "kv cache: cannot append %d tokens to %d", n, t->len);
    if (t->n_heads == 0 || n == 0) {
        t->len += n;
        return CB_OK;
    }
    CB_TRY(cb_kv_tensor_reserve(t, t->len + n, e));
    const size_t width = (size_t)t->n_heads * t->head_dim;
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < t->n_heads; h++) {
            void *dst = t->data + (size_t)(t->len + i) * t->row_bytes + (size_t)h * t->head_bytes;
            cb_kv_quantize_row(t->kind, dst, rows + i * width + (size_t)h * t->head_dim,
                               (size_t)t->head_dim);
        }
    }
    t->len += n;
    return CB_OK;
}

void cb_kv_tensor_truncate(cb_kv_tensor *t, int len) {
    if (len < 0) len = 0;
    if (len < t->len) t->len = len;
}

void cb_kv_tensor_read(const cb_kv_tensor *t, float *out, int pos0, int n) {
    const size_t width = (size_t)t->n_heads * t->head_dim;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < t->n_heads; h++)
            cb_kv_dequantize_row(t->kind, out + i * width + (size_t)h * t->head_dim,
                                 cb_kv_tensor_head(t, pos0 + i, h), (size_t)t->head_dim);
}

cb_kv_bytes cb_kv_tensor_bytes(const cb_kv_tensor *t) {
    cb_kv_bytes b;
    size_t bv = (size_t)cb_kv_kind_block_values(t->kind);
    size_t padded_dim = ((size_t)t->head_dim + bv - 1) / bv * bv;
    size_t len = t->n_heads ? (size_t)t->len : 0;
    b.payload = len * t->row_bytes;
    b.allocated = (size_t)t->cap * t->row_bytes;
    b.values = len * (size_t)t->n_heads * t->head_dim;
    b.slots = len * (size_t)t->n_heads * padded_dim;
    return b;
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
    memset(c, 0, sizeof *c);
    CB_TRY(cb_attention_check(cfg, e));
    const int H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const int decoupled = cfg->mode == CB_ATTENTION_DECOUPLED;
    const int d_rot = decoupled ? cfg->geo_dim / H : cfg->head_dim;
    const int d_sem = decoupled ? cfg->sem_dim / H : 0;
    const int d_v = decoupled ? cfg->v_dim / H : cfg->head_dim;
    c->mode = cfg->mode;
    int rc = cb_kv_tensor_init(&c->k, kinds->k, Hkv, d_rot, cap0, e);
    if (rc == CB_OK) rc = cb_kv_tensor_init(&c->k_sem, decoupled ? kinds->k_sem : CB_KV_F32,
                                            decoupled ? Hkv : 0, d_sem, cap0, e);
    if (rc == CB_OK) rc = cb_kv_tensor_init(&c->v, kinds->v, Hkv, d_v, cap0, e);
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

size_t cb_layer_cache_bytes_per_token(const cb_layer_cache *c) {
    return c->k.row_bytes + c->k_sem.row_bytes + c->v.row_bytes;
}

/* ---- the whole model ---- */

int cb_kv_cache_init(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                     const cb_kv_kinds *kinds, int cap0, cb_error *e) {
    memset(kv, 0, sizeof *kv);
    if (n_layers < 0) return cb_fail(e, CB_E_INVALID, "", "kv cache: %d layers", n_layers);
    if (n_layers == 0) return CB_OK;
    kv->layers = cb_calloc((size_t)n_layers, sizeof *kv->layers, e);
    if (!kv->layers) return e ? e->code : CB_E_RUNTIME;
    for (int l = 0; l < n_layers; l++) {
        int rc = cb_layer_cache_init(&kv->layers[l], cfgs[l], kinds, cap0, e);
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

size_t cb_kv_cache_bytes_per_token(const cb_kv_cache *kv) {
    size_t n = 0;
    for (int l = 0; l < kv->n_layers; l++) n += cb_layer_cache_bytes_per_token(&kv->layers[l]);
    return n;
}
