/* attention_decode.h: the attention of new tokens against a layer's KV cache (decoding,
 * prefill chunks, speculative verification), for standard, GQA and DBA, reading per-head
 * cached blocks in their own kind (dequantised inside the dot and axpy kernels) and packed
 * tensors (blocks spanning heads and tokens) through one fp32 view of their visible tokens. */
#ifndef CB_INFER_ATTENTION_DECODE_H
#define CB_INFER_ATTENTION_DECODE_H

#include <stddef.h>

#include "infer/kv_cache.h"
#include "layers/attention.h"

/* The decode-plan knobs of the seed (decode_local_window, decode_q_chunk). */
typedef struct cb_decode_plan {
    int local_window; /* W > 0: query at position p sees only keys max(0, p-W+1) .. p
                         (causal); 0: all */
    int q_chunk;      /* > 0: process at most q_chunk queries at a time (bounds the scratch);
                         0: all n at once. The result does not depend on it. */
} cb_decode_plan;

/* Floats of scratch cb_attention_decode needs for n queries against the layer cache c of up
 * to kv_len tokens (plan NULL: no window, no chunking). With packed tensors in c (c NULL:
 * none), the visible tokens of those dequantized to fp32 (infer/kv_cache.h) as well. */
size_t cb_attention_decode_scratch_size(const cb_attention_config *cfg, const cb_layer_cache *c, int n,
                                        int kv_len, const cb_decode_plan *plan);

/* Attention of the n new query tokens at positions pos0 .. pos0+n-1, whose keys and values
 * the cache already holds (c->len >= pos0 + n; cb_layer_cache_append first).
 *   out   (n, H*d_v)    softmax(scores) v per head: the output projection's input
 *                       (cb_attention_acts.att for these rows)
 *   q     (n, H*d_rot)  queries after RoPE at their positions, unscaled: q (standard/gqa)
 *                       or q_geo (decoupled)
 *   q_sem (n, H*d_sem)  decoupled: semantic queries, unscaled; NULL otherwise
 *   gate  (n, H)        decoupled with a gate: g = sigmoid(a_h + x . gate_proj_h) per token
 *                       and head, as cb_attention_acts.gate; NULL: no gate (g = 1/2)
 * Scores, as docs/DESIGN.md section 5 and cb_attention_forward: standard/gqa q.k / sqrt(hd);
 * decoupled 2g q_sem.k_sem / sqrt(d_sem) + (2-2g) q_geo.k_geo / sqrt(d_geo). Query head h
 * reads kv head h / (H / H_kv). Causal (cfg->is_causal): query p sees keys 0 .. p; not
 * causal: keys 0 .. c->len-1; a local window keeps the last W of those. scratch
 * (cb_attention_decode_scratch_size(cfg, c, n, c->len, plan)). Parallel over queries x heads. */
void cb_attention_decode(float *out, const float *q, const float *q_sem, const float *gate,
                         const cb_layer_cache *c, const cb_attention_config *cfg, int pos0,
                         int n, const cb_decode_plan *plan, float *scratch);

/* 1 when this layer's decode attention takes the scaled query q / sqrt(hd) as int16 blocks
 * (cb_act_quantize_i16) for its scores: standard attention or GQA with heads of 64 or 128
 * over q8_0 or q4_0 keys, in a build with AVX-512 VNNI. A score then moves by at most
 * sum_t |k_t| d(block of t) / 2, d = amax / 32767 of the scaled query's block of 32, some
 * 2^-16 of the query's magnitude: far below the keys' own rounding. */
int cb_attention_decode_int16_query(const cb_layer_cache *c, const cb_attention_config *cfg);

#endif
