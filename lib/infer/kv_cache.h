/* kv_cache.h: the KV cache of decoding: per attention layer the keys (k, or k_sem and k_geo
 * under DBA) and values of every token so far, each tensor in its own storage kind
 * (lib/tensor/quant.h), grown geometrically, truncated on rollback.
 *
 * Layout of one cached tensor. A token's row is W = n_heads * head_dim values, stored in a
 * kind whose blocks hold B values (1 for fp32/fp16/bf16, 32 for q8_0/q4_0, 64 for nf4).
 *  - Per head, where head_dim is a multiple of B (every float kind; standard and GQA heads
 *    of 64 or 128 in every kind): a row is n_heads head segments of head_dim values, each
 *    whole blocks, so the decode kernels read one head of one token as whole blocks
 *    (cb_kv_tensor_head) and never straddle heads. CB_KV_LAYOUT_HEADS (the CUDA backend's
 *    caches) keeps this layout for every tensor, head_dim rounded UP to a multiple of B with
 *    zero padding, so a DBA head of 4 values pays for a whole block there.
 *      data (cap, n_heads, head_bytes), head_bytes = cb_kv_kind_bytes(kind, head_dim)
 *  - Packed, where head_dim is not a multiple of B (the default layout, CB_KV_LAYOUT_PACKED):
 *    the rows of consecutive tokens are one stream of values, token t's at t*W .. t*W+W-1,
 *    cut into blocks of B from the start, so a block may span heads and, when W is not a
 *    multiple of B, tokens. Nothing is padded: a stored row is a group of
 *    group = lcm(W, B) / W tokens in lcm(W, B) / B blocks (W = 8 in q4_0: 4 tokens a block,
 *    18 bytes; W = 48 in q8_0: 2 tokens in 3 blocks; W = 64 in q8_0: 1 token in 2 blocks,
 *    group 1). A block's scale is shared by the values of every head and token it holds.
 *      data (cap / group, row_bytes), row_bytes = lcm(W, B) / B * block bytes
 *    The tokens of a group not yet complete stay in float staging rows and are read from
 *    there in fp32 until the group's last token arrives and the group is quantized as one
 *    stream of whole blocks: the residual of KIVI (Liu et al., 2024, "KIVI: A Tuning-Free
 *    Asymmetric 2bit Quantization for KV Cache"), whose newest tokens stay in full precision
 *    until a block of them fills. So at most group - 1 tokens (the newest) are read unquantized.
 *    A decode step's query reads the tokens of its own open group from the stage; so that a
 *    prefill chunk's queries read exactly that too (not a block completed by later tokens of
 *    the chunk, whose scale would carry their values back), an append keeps every token it
 *    brings on the stage until the next append (cb_kv_tensor_read_at).
 *    The stage also keeps the float rows of the CB_KV_STAGE_KEEP tokens before the last
 *    append (whole groups, at least one), so a rollback (speculative decoding) to anywhere
 *    in the last append or up to that many tokens before it restores the kept tokens of a
 *    partial group exactly: truncate then append gives the bytes a cache that never saw the
 *    rejected tokens holds. A deeper rollback into a complete group puts its kept tokens
 *    back on the stage dequantized (rounded once more when the group completes again).
 *      stage (stage_cap, W) floats: tokens stage0 .. len - 1, stage_cap >= keep + group + the
 *      last append's tokens
 * Byte accounting (cb_kv_bytes): payload counts the blocks of the complete groups (their
 * scales, and the per-head layout's padding, included) plus the open group's staged tokens
 * at 4 bytes a value; allocated counts every allocated row and the whole stage. */
#ifndef CB_INFER_KV_CACHE_H
#define CB_INFER_KV_CACHE_H

#include <stddef.h>

#include "core/error.h"
#include "layers/attention.h"
#include "tensor/quant.h"

/* Rows of float kept on a packed tensor's stage for exact rollback (see above). */
#define CB_KV_STAGE_KEEP 32

/* Which layout a cache takes (above). */
typedef enum cb_kv_layout {
    CB_KV_LAYOUT_PACKED = 0, /* per head where head_dim is a multiple of the block, else packed */
    CB_KV_LAYOUT_HEADS       /* per head always, head_dim padded to whole blocks */
} cb_kv_layout;

/* One cached tensor, e.g. the keys of one layer. */
typedef struct cb_kv_tensor {
    cb_kv_kind kind;
    int n_heads;          /* H_kv; 0: tensor not used (e.g. k_sem outside DBA) */
    int head_dim;         /* values per head (hd, d_sem, d_geo or d_v) */
    int packed;           /* 1: the packed layout; cb_kv_tensor_head is for per-head tensors */
    int group;            /* tokens per stored row: 1 per head, lcm(W, B) / W packed */
    size_t head_bytes;    /* per head: bytes of one head segment, cb_kv_kind_bytes(kind,
                             head_dim); packed: 0 */
    size_t row_bytes;     /* bytes of one stored row (group tokens) */
    int len;              /* tokens held */
    int cap;              /* tokens allocated (a multiple of group) */
    unsigned char *data;  /* (cap / group, row_bytes) */
    float *stage;         /* packed with group > 1: (stage_cap, W) rows of tokens stage0 .. len-1 */
    int stage0, stage_cap;
} cb_kv_tensor;

/* What a cache holds, in bytes and values. */
typedef struct cb_kv_bytes {
    size_t payload;   /* bytes of the tokens held: complete groups' blocks (per head: len rows,
                         block padding included) + staged tokens at 4 bytes a value */
    size_t allocated; /* bytes allocated (cap tokens' rows, and the stage) */
    size_t values;    /* real values held: len * n_heads * head_dim */
    size_t slots;     /* value slots held, padding included: len * n_heads * padded head_dim
                         per head; packed: values (no padding) */
} cb_kv_bytes;

/* Empty tensor in the packed layout (CB_KV_LAYOUT_PACKED) with room for cap0 tokens
 * (cap0 >= 0, rounded up to whole groups; 0 allocates on the first append; growth after
 * that at least doubles, from 16 tokens).
 * n_heads 0 makes an unused tensor that holds nothing. CB_E_INVALID on a bad kind or size,
 * CB_E_RUNTIME when out of memory. */
int cb_kv_tensor_init(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim, int cap0,
                      cb_error *e);
int cb_kv_tensor_init_layout(cb_kv_tensor *t, cb_kv_kind kind, int n_heads, int head_dim,
                             int cap0, cb_kv_layout layout, cb_error *e);
void cb_kv_tensor_free(cb_kv_tensor *t);
/* Make room for cap tokens at least (geometric: at least doubles when it grows). */
int cb_kv_tensor_reserve(cb_kv_tensor *t, int cap, cb_error *e);
/* Append n tokens, quantizing: rows (n, n_heads * head_dim) floats. */
int cb_kv_tensor_append(cb_kv_tensor *t, const float *rows, int n, cb_error *e);
/* Keep the first len tokens (len <= t->len; larger is clamped). Memory is kept. */
void cb_kv_tensor_truncate(cb_kv_tensor *t, int len);
/* The stored segment of token pos, head h: head_bytes bytes, whole blocks. Per-head
 * tensors only (!t->packed). */
static inline const void *cb_kv_tensor_head(const cb_kv_tensor *t, int pos, int h) {
    return t->data + (size_t)pos * t->row_bytes + (size_t)h * t->head_bytes;
}
/* Dequantize tokens pos0 .. pos0+n-1 (within len) as the cache holds them: out (n, n_heads
 * * head_dim), tokens of complete groups from their blocks, the open group's from the stage.
 * Any layout. */
void cb_kv_tensor_read(const cb_kv_tensor *t, float *out, int pos0, int n);
/* The same tokens as a query at position at (< len) of a decode step reads them: tokens of
 * the groups complete at length at + 1 from their blocks, later ones from the stage (where
 * it still holds them; it holds every token of the last append, so a prefill chunk's
 * queries read what token-by-token decoding reads). The CPU decode reads packed tensors
 * through it; cb_kv_tensor_read is read_at(len - 1). */
void cb_kv_tensor_read_at(const cb_kv_tensor *t, float *out, int pos0, int n, int at);
/* The first token such a query reads from the stage (len when none). */
int cb_kv_tensor_float_from(const cb_kv_tensor *t, int at);
cb_kv_bytes cb_kv_tensor_bytes(const cb_kv_tensor *t);
/* Bytes one token takes, block scales and padding included: row_bytes / group (a fraction
 * where a block spans tokens: 4.5 for W = 8 in q4_0). */
double cb_kv_tensor_bytes_per_token(const cb_kv_tensor *t);

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
int cb_layer_cache_init_layout(cb_layer_cache *c, const cb_attention_config *cfg,
                               const cb_kv_kinds *kinds, int cap0, cb_kv_layout layout, cb_error *e);
/* 1 when a tensor of the layer is packed (its heads are not whole blocks). */
int cb_layer_cache_packed(const cb_layer_cache *c);
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
/* Bytes one token takes in this layer (the three tensors' cb_kv_tensor_bytes_per_token). */
double cb_layer_cache_bytes_per_token(const cb_layer_cache *c);

/* The caches of a whole model: one per attention layer, in model order. */
typedef struct cb_kv_cache {
    int n_layers;
    cb_layer_cache *layers; /* (n_layers) */
} cb_kv_cache;

/* cfgs (n_layers) pointers to each attention layer's config; one kinds for all layers.
 * The layout: CB_KV_LAYOUT_PACKED (the CPU's), or as given. */
int cb_kv_cache_init(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                     const cb_kv_kinds *kinds, int cap0, cb_error *e);
int cb_kv_cache_init_layout(cb_kv_cache *kv, int n_layers, const cb_attention_config *const *cfgs,
                            const cb_kv_kinds *kinds, int cap0, cb_kv_layout layout, cb_error *e);
void cb_kv_cache_free(cb_kv_cache *kv);
void cb_kv_cache_truncate(cb_kv_cache *kv, int len);
void cb_kv_cache_reset(cb_kv_cache *kv);
cb_kv_bytes cb_kv_cache_bytes(const cb_kv_cache *kv);
double cb_kv_cache_bytes_per_token(const cb_kv_cache *kv);

#endif
