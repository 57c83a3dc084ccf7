/* kv_cache.h: the KV cache of decoding: per attention layer the keys (k, or k_sem and k_geo
 * under DBA) and values of every token so far, each tensor in its own storage kind
 * (lib/tensor/quant.h), grown geometrically, truncated on rollback.
 *
 * Layout of one cached tensor: token-major rows; a row is n_heads head segments; a head
 * segment is head_dim values stored as whole blocks of the kind, head_dim rounded UP to a
 * multiple of the block (32 for q8_0/q4_0, 64 for nf4; 1 for fp32/fp16/bf16) with zero
 * padding. So a head's segment of a token is always whole blocks and the decode kernels
 * never straddle heads; DBA's small semantic heads (d_sem = 4, say) pay for a full block
 * each, and the byte counts below include that padding (docs/DESIGN.md: benchmarks report what
 * the cache really holds).
 *   data (cap, n_heads, head_bytes), head_bytes = cb_kv_kind_bytes(kind, head_dim). */
#ifndef CB_INFER_KV_CACHE_H
#define CB_INFER_KV_CACHE_H

#include <stddef.h>

#include "core/error.h"
#include "layers/attention.h"
#include "tensor/quant.h"

/* One cached tensor, e.g. the keys of one layer. */
typedef struct cb_kv_tensor {
    cb_kv_kind kind;
    int n_heads;          /* H_kv; 0: tensor not used (e.g. k_sem outside DBA) */
    int head_dim;         /* values per head (hd, d_sem, d_geo or d_v) */
    size_t head_bytes;    /* bytes of one head segment: cb_kv_kind_bytes(kind, head_dim) */
    size_t row_bytes;     /* bytes per token: n_heads * head_bytes */
    int len;              /* tokens held */
    int cap;              /* tokens allocated */
    unsigned char *data;  /* (cap, n_heads, head_bytes) */
} cb_kv_tensor;

/* What a cache holds, in bytes and values. */
typedef struct cb_kv_bytes {
    size_t payload;   /* bytes of the tokens held (len rows), block padding included */
    size_t allocated; /* bytes allocated (cap rows) */
    size_t values;    /* real values held: len * n_heads * head_dim */
    size_t slots;     /* value slots held, padding included: len * n_heads * padded head_dim */
} cb_kv_bytes;

/* Empty tensor with room for exactly cap0 tokens (cap0 >= 0; 0 allocates on the first append;
 * growth after that at least doubles, from 16 tokens).
 * n_heads 0 makes an unused tensor that holds nothing. CB_E_INVALID on a bad kind or size,
 * CB_E_RUNTIME when out of memory. */
int cb_kv_tensor_init(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim, int cap0,
                      cb_error *e);
void cb_kv_tensor_free(cb_kv_tensor *t);
/* Make room for cap tokens at least (geometric: at least doubles when it grows). */
int cb_kv_tensor_reserve(cb_kv_tensor *t, int cap, cb_error *e);
/* Append n tokens, quantizing: rows (n, n_heads * head_dim) floats. */
int cb_kv_tensor_append(cb_kv_tensor *t, const float *rows, int n, cb_error *e);
/* Keep the first len tokens (len <= t->len; larger is clamped). Memory is kept. */
void cb_kv_tensor_truncate(cb_kv_tensor *t, int len);
/* The stored segment of token pos, head h: head_bytes bytes, whole blocks. */
static inline const void *cb_kv_tensor_head(const cb_kv_tensor *t, int pos, int h) {
    return t->data + (size_t)pos * t->row_bytes + (size_t)h * t->head_bytes;
}
/* Dequantize tokens pos0 .. pos0+n-1 (within len): out (n, n_heads * head_dim).
 * For tests and inspection; decoding reads the blocks directly. */
void cb_kv_tensor_read(const cb_kv_tensor *t, float *out, int pos0, int n);
cb_kv_bytes cb_kv_tensor_bytes(const cb_kv_tensor *t);

/* Storage kinds of one layer's tensors. k: standard/gqa keys, or DBA's geometric keys
 * k_geo (the RoPE path, like cb_attention_acts.k); k_sem: DBA's semantic keys (ignored
 * otherwise); v: values. */
typedef struct cb_kv_kinds {
    cb_kv_kind k;
    cb_kv_kind k_sem;
    cb_kv_kind v;
} cb_kv_kinds;

/* The cache of one attention layer. Its three tensors always hold the same tokens.
 *   k     (T, H_kv, d_rot) keys after RoPE: hd (standard/gqa) or d_geo (decoupled)
 *   k_sem (T, H_kv, d_sem) decoupled only, no RoPE; n_heads 0 otherwise
 *   v     (T, H_kv, d_v)   d_v = hd or v_dim / H */
typedef struct cb_layer_cache {
    cb_attention_mode mode;
    int len;              /* tokens held */
    cb_kv_tensor k;
    cb_kv_tensor k_sem;
    cb_kv_tensor v;
} cb_layer_cache;

/* For the AttentionLayer cfg (checked with cb_attention_check), room for cap0 tokens. */
int cb_layer_cache_init(cb_layer_cache *c, const cb_attention_config *cfg,
                        const cb_kv_kinds *kinds, int cap0, cb_error *e);
void cb_layer_cache_free(cb_layer_cache *c);
int cb_layer_cache_reserve(cb_layer_cache *c, int cap, cb_error *e);
/* Append n tokens of projected (and, for k, rotated) rows, in the shapes of
 * cb_attention_acts: k (n, H_kv*d_rot), k_sem (n, H_kv*d_sem) (decoupled; else NULL),
 * v (n, H_kv*d_v). On failure nothing is appended. */
int cb_layer_cache_append(cb_layer_cache *c, const float *k, const float *k_sem,
                          const float *v, int n, cb_error *e);
/* Keep the first len tokens (rollback of rejected speculative tokens). */
void cb_layer_cache_truncate(cb_layer_cache *c, int len);
void cb_layer_cache_reset(cb_layer_cache *c); /* truncate(0) */
/* Sum over the layer's tensors. */
cb_kv_bytes cb_layer_cache_bytes(const cb_layer_cache *c);
/* Bytes one token takes in this layer (the three row_bytes, padding included). */
size_t cb_layer_cache_bytes_per_token(const cb_layer_cache *c);

/* The caches of a whole model: one per attention layer, in model order. */
typedef struct cb_kv_cache {
    int n_layers;
    cb_layer_cache *layers; /* (n_layers) */
} cb_kv_cache;

/* cfgs (n_layers) pointers to each attention layer's config; one kinds for all layers. */
int cb_kv_cache_init(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                     const cb_kv_kinds *kinds, int cap0, cb_error *e);
void cb_kv_cache_free(cb_kv_cache *kv);
void cb_kv_cache_truncate(cb_kv_cache *kv, int len);
void cb_kv_cache_reset(cb_kv_cache *kv);
cb_kv_bytes cb_kv_cache_bytes(const cb_kv_cache *kv);
size_t cb_kv_cache_bytes_per_token(const cb_kv_cache *kv);

#endif
