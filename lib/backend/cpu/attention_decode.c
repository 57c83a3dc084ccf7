/* attention_decode.c: attention of new query tokens against a layer's KV cache.
 *
 * One work item is (query token i, kv head kh) with the `group` query heads that share kh
 * (GQA; group = 1 for standard attention). The item scales its queries the way
 * cb_attention_forward does (c_sem = 2g/sqrt(d_sem), c_rot = (2-2g)/sqrt(d_rot)), then walks
 * the visible keys once: for each key it reads the cached head segment (whole blocks of the
 * cache's kind) and takes its dot product with all group queries at once (cb_kv_dot_m),
 * so a key is dequantised once per group, in registers. Scores are kept per head,
 * S (group, keys), so each head's softmax runs over contiguous memory; the second pass
 * reads each cached value once for the group, out[group heads] += S[:, key] v[key]
 * (cb_kv_axpy_m).
 *
 * Standard attention and GQA with head widths of whole 16-value units (64 and 128) take
 * tiled AVX-512 kernels instead, one query head at a time (under GQA the heads of a group
 * read their kv head's segment again, from L1), and a single query (a decode step) is split
 * over keys rather than heads, reading the cache in its own row order (below). A decode
 * step of DBA with small keys (rotary and semantic parts of at most 16 values a head) and
 * values of 64 or 128 takes the same pieces, its scores from one masked 16-lane unit per
 * part (scores_small_rows), the gate folded into the queries.
 *
 * All of the above read per-head tensors, whose head segments are whole blocks. A packed
 * tensor (infer/kv_cache.h: heads narrower than a block, blocks spanning heads and tokens)
 * is read once per call into an fp32 view of the visible tokens, as each query's decode
 * step would read it, and the float kernels run over the view (cb_attention_decode). */
#include "backend/cpu/attention_decode.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/parallel.h"
#include "backend/cpu/quant_act.h"
#include "backend/cpu/quant_dot.h"

/* The tiled path (standard attention and GQA, heads of 64 or 128) needs AVX-512; without
 * it every item takes the general path. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__) && defined(__FMA__)
#define AD_TILED 1
#include <immintrin.h>
#else
#define AD_TILED 0
#endif

typedef struct decode_dims {
    int H, Hkv, group;
    int ds, dr, dv; /* semantic (0 unless decoupled), rotary (hd or d_geo), value widths */
} decode_dims;

static decode_dims dims_of(const cb_attention_config *cfg) {
    decode_dims m;
    m.H = cfg->n_heads;
    m.Hkv = cfg->n_kv_heads;
    m.group = m.H / m.Hkv;
    if (cfg->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = cfg->sem_dim / m.H;
        m.dr = cfg->geo_dim / m.H;
        m.dv = cfg->v_dim / m.H;
    } else {
        m.ds = 0;
        m.dr = cfg->head_dim;
        m.dv = cfg->head_dim;
    }
    return m;
}

static int chunk_of(const cb_decode_plan *plan, int n) {
    return plan && plan->q_chunk > 0 && plan->q_chunk < n ? plan->q_chunk : n;
}

/* Most keys one query can see. */
static int keys_max(const cb_decode_plan *plan, int kv_len) {
    return plan && plan->local_window > 0 && plan->local_window < kv_len ? plan->local_window : kv_len;
}

/* Floats of one item: S (group, L), the scaled queries (group, ds) and (group, dr), and
 * three (group) vectors: one key's scores, its semantic scores, one value's weights. */
static size_t item_floats(const decode_dims *m, int L) {
    return (size_t)m->group * ((size_t)L + m->ds + m->dr + 3);
}

/* One query on the tiled path is split over keys rather than heads: pieces of KEY_PIECE
 * keys, each a work item over a group of heads (all of them once there are MIN_ITEMS
 * pieces), with its own softmax statistics (max, sum) and unnormalised output per head,
 * merged at the end as flash-decoding does. A piece reads whole cache rows (every head of
 * a key), the layout's contiguous order, and a long context gives many items however few
 * the heads. The split over keys depends on the shape only, never on the thread count, so
 * the result does not either.
 *
 * A context of one piece (up to KEY_PIECE keys) is split over heads alone, into one group
 * per thread, and each item writes its heads' normalised output itself (no merge: the
 * merge of one piece multiplies by e^0 = 1, so the result is the same). Items of 2 heads,
 * as MIN_ITEMS made them, read a quarter of each 1.5 KB row at a time, and the 110M model
 * spent 30% longer in attention at context 64 (q4_0, 1 and 2 threads); the merge, a
 * scalar pass over scratch the other core had written, was another 2% of a 2-thread token. */
#define KEY_PIECE 256
#define MIN_ITEMS 8 /* heads are split as well until a query of several pieces has this many items */
#define TMP_FLOATS (8 * 16) /* a head's partial scores of 8 keys (float kinds) */
#define SMALL_UNIT 16 /* small keys: rotary and semantic widths of at most one 16-value unit */

typedef struct piece_split { int pieces, heads_per, groups; } piece_split;

static piece_split split_of(int H, int nk) {
    piece_split p;
    p.pieces = (nk + KEY_PIECE - 1) / KEY_PIECE;
    p.groups = p.pieces == 1 ? cb_parallel_threads() : p.pieces >= MIN_ITEMS ? 1 : (MIN_ITEMS + p.pieces - 1) / p.pieces;
    if (p.groups > H) p.groups = H;
    p.heads_per = (H + p.groups - 1) / p.groups;
    p.groups = (H + p.heads_per - 1) / p.heads_per;
    return p;
}

/* Floats of one piece item: scores (hp, KEY_PIECE), output (hp, dv), max and sum (hp
 * each), partial scores (hp, TMP_FLOATS). */
static size_t piece_floats(const decode_dims *m, int hp) {
    return (size_t)hp * ((size_t)KEY_PIECE + m->dv + 2 + TMP_FLOATS);
}

/* Floats of the query as all pieces read it, before the pieces: scaled (H, dr), then as
 * integer blocks (H, QUERY_INT_FLOATS, an int_query each). */
#define QUERY_INT_FLOATS 104 /* = sizeof(int_query) / sizeof(float), checked there */
static size_t query_floats(const decode_dims *m) {
    return (size_t)m->H * ((size_t)m->dr + QUERY_INT_FLOATS + 2 * SMALL_UNIT);
}

static size_t body_scratch(const cb_attention_config *cfg, int n, int kv_len, const cb_decode_plan *plan) {
    decode_dims m = dims_of(cfg);
    size_t general = (size_t)chunk_of(plan, n) * m.Hkv * item_floats(&m, keys_max(plan, kv_len));
    if (n != 1) return general;
    // one query may go the tiled way, split over keys
    piece_split sp = split_of(m.H, keys_max(plan, kv_len));
    size_t pieces = query_floats(&m) + (size_t)sp.pieces * sp.groups * piece_floats(&m, sp.heads_per);
    return pieces > general ? pieces : general;
}

/* Tokens of a packed cache one call dequantizes: those its queries can see. */
static int view_tokens(int n, int kv_len, const cb_decode_plan *plan) {
    const int w = plan ? plan->local_window : 0;
    return w > 0 && (long long)w + n - 1 < kv_len ? w + n - 1 : kv_len;
}

static size_t view_floats(const cb_kv_tensor *t, int tokens) {
    return t->packed ? (size_t)tokens * t->n_heads * t->head_dim : 0;
}

size_t cb_attention_decode_scratch_size(const cb_attention_config *cfg, const cb_layer_cache *c, int n, int kv_len,
                                        const cb_decode_plan *plan) {
    size_t s = body_scratch(cfg, n, kv_len, plan);
    if (c && cb_layer_cache_packed(c)) {
        const int nt = view_tokens(n, kv_len, plan);
        s += view_floats(&c->k, nt) + view_floats(&c->k_sem, nt) + view_floats(&c->v, nt);
    }
    return s;
}

/* The softmax's exp: the same branch-free polynomial as cb_attention_forward (Cephes
 * style, within 1.4 ulp of exp; arguments below -87 taken as -87), so that decoding and the
 * training-time forward agree to rounding, and so that the loops vectorise; NaN in, NaN
 * out. */
static inline float softmax_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* a NaN score (a model with NaN weights) stays NaN through p, so the exponent is taken
     * from 0 instead: converting NaN to an integer is undefined */
    const int32_t ki = k == k ? (int32_t)k : 0;
    union { uint32_t i; float f; } two_k = {(uint32_t)(ki + 127) << 23};
    return p * two_k.f;
}

/* s (nk) <- e^(s - max s) in place; returns the sum, and the max in *max. */
static float softmax_unnormalised(float *s, int nk, float *max) {
    float m = s[0], sum = 0.0f;
    #pragma omp simd reduction(max : m)
    for (int j = 1; j < nk; j++) m = s[j] > m ? s[j] : m;
    #pragma omp simd reduction(+ : sum)
    for (int j = 0; j < nk; j++) {
        s[j] = softmax_exp(s[j] - m);
        sum += s[j];
    }
    *max = m;
    return sum;
}

/* Softmax of one row of scores s (nk), in place. */
static void softmax_row(float *s, int nk) {
    float m;
    const float inv = 1.0f / softmax_unnormalised(s, nk, &m);
    #pragma omp simd
    for (int j = 0; j < nk; j++) s[j] *= inv;
}

#if AD_TILED
/* The tiled kernels (one query head at a time, any group), in 16-value units
 * of a stored head segment: a unit is 16 values of a float kind, or a part of a block
 * (q8_0 and q4_0 blocks hold 2 units, nf4 blocks 4) sharing the block's scale.
 *  - scores: 8 keys at a time, each with its own 16-lane partial sum, reduced together to 8
 *    scores in one vector, so no key pays a horizontal sum of its own;
 *  - values: two keys per load and store of the output row (dv of 64 or 128);
 *  - rows read 8 KB ahead are prefetched.
 * The sums are the general path's up to rounding (another order of the same products). */
#define AD_INLINE static inline __attribute__((always_inline))

AD_INLINE int units_per_block(const cb_kv_kind K) {
    return K == CB_KV_Q8_0 || K == CB_KV_Q4_0 ? 2 : K == CB_KV_NF4 ? 4 : 1;
}
/* Bytes of a block (float kinds: 16 values). */
AD_INLINE size_t block_stride(const cb_kv_kind K) {
    return K == CB_KV_F32 ? 64 : K == CB_KV_F16 || K == CB_KV_BF16 ? 32 : K == CB_KV_Q8_0 ? sizeof(cb_block_q8_0)
           : K == CB_KV_Q4_0 ? sizeof(cb_block_q4_0) : sizeof(cb_block_nf4);
}
/* The scale of the block at blk (1 for float kinds). */
AD_INLINE float block_scale(const cb_kv_kind K, const unsigned char *blk) {
    if (K == CB_KV_F32 || K == CB_KV_F16 || K == CB_KV_BF16) return 1.0f;
    return _cvtsh_ss(*(const uint16_t *)blk);
}
/* Unit p of the block at blk, unscaled (q4_0 q - 8, nf4 the level). */
AD_INLINE __m512 unit_raw(const cb_kv_kind K, const unsigned char *blk, int p) {
    switch (K) {
    case CB_KV_F32: return _mm512_loadu_ps((const float *)blk);
    case CB_KV_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
    case CB_KV_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)blk)), 16));
    case CB_KV_Q8_0:
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(((const cb_block_q8_0 *)blk)->qs + 16 * p))));
    case CB_KV_Q4_0: { // byte j: value j in its low nibble, value j + 16 in its high one
        // nibble -> q - 8 as a float by one permute of the 16 values (not subtract, convert)
        const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const cb_block_q4_0 *)blk)->qs));
        w = p ? _mm512_srli_epi32(w, 4) : _mm512_and_si512(w, _mm512_set1_epi32(0x0f));
        return _mm512_permutexvar_ps(w, levels);
    }
    default: { // nf4, byte j: value j in its low nibble, value j + 32 in its high one
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(((const cb_block_nf4 *)blk)->qs + 16 * (p & 1))));
        w = p >= 2 ? _mm512_srli_epi32(w, 4) : _mm512_and_si512(w, _mm512_set1_epi32(0x0f));
        return _mm512_permutexvar_ps(w, _mm512_loadu_ps(cb_nf4_levels));
    }
    }
}

/* 8 vectors -> their 8 horizontal sums, in order. */
AD_INLINE __m256 hsum8x8(const __m512 *a) {
    __m256 h[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) h[i] = _mm256_add_ps(_mm512_castps512_ps256(a[i]), _mm512_extractf32x8_ps(a[i], 1));
    const __m256 h01 = _mm256_hadd_ps(h[0], h[1]), h23 = _mm256_hadd_ps(h[2], h[3]);
    const __m256 h45 = _mm256_hadd_ps(h[4], h[5]), h67 = _mm256_hadd_ps(h[6], h[7]);
    const __m256 l = _mm256_hadd_ps(h01, h23), r = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(l, r, 0x20), _mm256_permute2f128_ps(l, r, 0x31));
}

/* The block's products with q (UPB units), unscaled, added into acc (float kinds) or
 * scaled by the block's scale into it. */
AD_INLINE __m512 block_dot(const cb_kv_kind K, const unsigned char *blk, const float *q, __m512 acc) {
    const int UPB = units_per_block(K);
    if (UPB == 1) return _mm512_fmadd_ps(unit_raw(K, blk, 0), _mm512_loadu_ps(q), acc);
    __m512 p = _mm512_mul_ps(unit_raw(K, blk, 0), _mm512_loadu_ps(q));
    #pragma GCC unroll 4
    for (int u = 1; u < UPB; u++) p = _mm512_fmadd_ps(unit_raw(K, blk, u), _mm512_loadu_ps(q + 16 * u), p);
    return _mm512_fmadd_ps(_mm512_set1_ps(block_scale(K, blk)), p, acc);
}

/* The products of q (dr = nb blocks' values, scaled) with one key's segment at k, summed
 * down to 16 lanes. */
AD_INLINE __m512 key_partial(const cb_kv_kind K, const float *q, const unsigned char *k, int nb) {
    const int BV = 16 * units_per_block(K);
    // two chains of multiply-adds: one bound a 64-value fp16 key by the adds' latency (perf:
    // the loop waited on each vcvtph2ps/vfmadd pair in turn)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        a0 = block_dot(K, k + (size_t)b * block_stride(K), q + (size_t)b * BV, a0);
        a1 = block_dot(K, k + (size_t)(b + 1) * block_stride(K), q + (size_t)(b + 1) * BV, a1);
    }
    if (b < nb) a0 = block_dot(K, k + (size_t)b * block_stride(K), q + (size_t)b * BV, a0);
    return _mm512_add_ps(a0, a1);
}

/* Rows this far ahead are prefetched: the hardware prefetchers alone gave one thread about
 * half of its streaming bandwidth here (and prefetch_row must be inlined: GCC drops the
 * calls of a function that only prefetches as having no effect). */
#define PREFETCH_BYTES 8192
/* Bytes from a row to the one prefetched: whole rows, at least PREFETCH_BYTES. */
static inline size_t prefetch_ahead(size_t row_stride) {
    return (PREFETCH_BYTES + row_stride - 1) / row_stride * row_stride;
}
AD_INLINE void prefetch_row(const unsigned char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

/* Where consecutive query heads find their kv head's segment in a row: the first head reads
 * the first segment, and every group heads (the first time after group - phase) the next
 * one, stride bytes on; span: the bytes from the first segment to the end of the last one
 * read (what a row's prefetch covers). Standard attention: group 1, each head its own
 * segment; GQA: the query heads of a group share theirs, read once from memory and again
 * from L1. */
typedef struct head_map {
    size_t stride, span;
    int group, phase;
} head_map;

/* for each of nh query heads h (size_t), with off the bytes of its segment from the first:
 * a running offset, not a division or a table per head (a table cost standard attention
 * 9%). */
#define FOR_HEADS(hm, nh, h, off)                                                          \
    for (size_t h = 0, off = 0, ph_ = (size_t)(hm).phase; h < (size_t)(nh);                  \
         h++, ph_ + 1 == (size_t)(hm).group ? (ph_ = 0, off += (hm).stride) : ph_++)

/* Scores of nh heads over nk keys: S (nh, ldS), S[h][j] = q_h . key j of head h; q (nh,
 * dr) scaled; k0 the first segment read of the first key; keys row_stride bytes apart,
 * heads where hm puts them. The cache is read in its own order, row after row (a key's heads side
 * by side; walking one head down 8 rows instead halved the read bandwidth): each (key,
 * head) leaves a 16-lane partial in tmp (nh, 8, 16), and every 8 keys each head's 8
 * partials are reduced together to 8 scores. */
AD_INLINE void scores_rows(const cb_kv_kind K, float *S, size_t ldS, const float *q, int dr, const unsigned char *k0,
                           size_t row_stride, head_map hm, int nh, int nk, float *tmp) {
    const int nb = dr / (16 * units_per_block(K));
    const size_t ahead = prefetch_ahead(row_stride);
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        for (int t = 0; t < 8; t++) {
            const unsigned char *row = k0 + (size_t)(j + t) * row_stride;
            prefetch_row(row + ahead, hm.span);
            FOR_HEADS(hm, nh, h, off)
                _mm512_storeu_ps(tmp + (h * 8 + t) * 16, key_partial(K, q + h * dr, row + off, nb));
        }
        for (int h = 0; h < nh; h++) {
            __m512 a[8];
            #pragma GCC unroll 8
            for (int t = 0; t < 8; t++) a[t] = _mm512_loadu_ps(tmp + ((size_t)h * 8 + t) * 16);
            _mm256_storeu_ps(S + (size_t)h * ldS + j, hsum8x8(a));
        }
    }
    for (; j < nk; j++)
        FOR_HEADS(hm, nh, h, off)
            S[h * ldS + j] = _mm512_reduce_add_ps(key_partial(K, q + h * dr, k0 + (size_t)j * row_stride + off, nb));
}

/* o (NU * 16) += w0 * value at r0 + w1 * value at r1. */
AD_INLINE void value_pair(const cb_kv_kind K, const int NU, float *o, float w0, const unsigned char *r0, float w1,
                          const unsigned char *r1) {
    const int UPB = units_per_block(K);
    const size_t bs = block_stride(K);
    #pragma GCC unroll 8
    for (int b = 0; b < NU / UPB; b++) {
        const __m512 s0 = _mm512_set1_ps(w0 * block_scale(K, r0 + (size_t)b * bs));
        const __m512 s1 = _mm512_set1_ps(w1 * block_scale(K, r1 + (size_t)b * bs));
        #pragma GCC unroll 4
        for (int u = 0; u < UPB; u++) {
            __m512 a = _mm512_fmadd_ps(s0, unit_raw(K, r0 + (size_t)b * bs, u), _mm512_loadu_ps(o + 16 * (b * UPB + u)));
            a = _mm512_fmadd_ps(s1, unit_raw(K, r1 + (size_t)b * bs, u), a);
            _mm512_storeu_ps(o + 16 * (b * UPB + u), a);
        }
    }
}

/* o (nh, NU*16) += sum_j W[h][j] value j of head h, W (nh, ldW); the layout of scores_rows,
 * read two rows at a time, heads side by side. */
AD_INLINE void values_rows(const cb_kv_kind K, const int NU, float *o, const float *W, size_t ldW,
                           const unsigned char *v0, size_t row_stride, head_map hm, int nh, int nk) {
    const size_t ahead = prefetch_ahead(row_stride);
    int j = 0;
    for (; j + 2 <= nk; j += 2) {
        const unsigned char *r0 = v0 + (size_t)j * row_stride, *r1 = r0 + row_stride;
        prefetch_row(r0 + ahead, hm.span);
        prefetch_row(r1 + ahead, hm.span);
        FOR_HEADS(hm, nh, h, off)
            value_pair(K, NU, o + h * NU * 16, W[h * ldW + j], r0 + off, W[h * ldW + j + 1], r1 + off);
    }
    if (j < nk) // the last key alone: paired with itself at weight 0
        FOR_HEADS(hm, nh, h, off) {
            const unsigned char *r = v0 + (size_t)j * row_stride + off;
            value_pair(K, NU, o + h * NU * 16, W[h * ldW + j], r, 0.0f, r);
        }
}

#if defined(__AVX512VNNI__)
#define AD_INT_SCORES 1
#else
#define AD_INT_SCORES 0
#endif

#if AD_INT_SCORES
/* Integer scores for q8_0 and q4_0 keys. Widening each stored byte to f32 (sign-extend or
 * nibble lookup, convert, multiply-add) made these kernels compute-bound at about 20 cycles
 * a key and head of 64, below what the memory feeds. Here the query is quantised once per
 * call to int16 blocks (cb_act_quantize_i16: d = amax / 32767, so a score moves by at most
 * sum_j |k_j| d(block of j) / 2) and split into a signed high byte and an unsigned low byte,
 * v = 256 hi + lo, and a key's bytes go straight into vpdpbusd (unsigned x signed bytes, four
 * products summed into each int32 lane): 256 (k_u . hi) + (lo . k_s), with k_u the key as
 * unsigned bytes (q8_0: k + 128; q4_0: the nibble itself, k + 8), so the sum is k . v plus
 * a per-block constant of the query (corr) taken off after the reduction. A unit is 64
 * values, two blocks, one zmm of key bytes; 8 units' int32 lanes are reduced together to
 * their 16 block sums, scaled by the key scales (staged as fp16 through the stack: a
 * vpgatherdd cost more) and the query's. The sums are
 * exact in int32: |k . v| <= 32 * 128 * 32767 per block, corr <= 32768 * 32 * 128. */
typedef struct int_query {
    int8_t hi[128]; /* dr <= 128 */
    uint8_t lo[128];
    float dq[16];    /* per lane of a reduced tile: the query block's scale */
    int32_t corr[16]; /* per lane: the block's constant, sum_j k_u,j v_j - k_j v_j */
    float dq_block[4];
    int32_t corr_block[4];
} int_query;
#define INT_QUERY_FLOATS (sizeof(int_query) / sizeof(float))
static_assert(INT_QUERY_FLOATS == QUERY_INT_FLOATS, "query_floats keeps an int_query a head");

/* Lane l of a tile reduced by reduce_units holds block (l / 4) % 2 of unit (l / 8) * 4 + l % 4. */
AD_INLINE int lane_unit(int l) { return (l / 8) * 4 + l % 4; }
AD_INLINE int lane_block(int l) { return (l / 4) % 2; }

/* q (dr, scaled) of one head -> iq, for keys of kind K, heads of dr = 64 U values. */
static void int_query_init(int_query *iq, const float *q, int dr, cb_kv_kind K) {
    int16_t v[128];
    float d[4];
    cb_act_quantize_i16(v, d, q, (size_t)dr);
    int32_t sum_hi[4] = {0}, sum_v[4] = {0};
    for (int t = 0; t < dr; t++) {
        const int lo = (uint16_t)v[t] & 0xff, hi = (v[t] - lo) / 256;
        iq->hi[t] = (int8_t)hi;
        iq->lo[t] = (uint8_t)lo;
        sum_hi[t / 32] += hi;
        sum_v[t / 32] += v[t];
    }
    const int U = dr / 64;
    for (int b = 0; b < dr / 32; b++) {
        iq->dq_block[b] = d[b];
        iq->corr_block[b] = K == CB_KV_Q8_0 ? 32768 * sum_hi[b] : 8 * sum_v[b];
    }
    for (int l = 0; l < 16; l++) {
        const int qb = 2 * (lane_unit(l) % U) + lane_block(l);
        iq->dq[l] = iq->dq_block[qb];
        iq->corr[l] = iq->corr_block[qb];
    }
}

/* The int32 lanes of one unit (two blocks at kp) against the query's bytes hi, lo: lanes
 * 0-7 sum to block 0's 256 (k_u . hi) + (lo . k), lanes 8-15 to block 1's. */
AD_INLINE __m512i unit_int(const cb_kv_kind K, const unsigned char *kp, __m512i hi, __m512i lo) {
    __m512i ku, ks;
    if (K == CB_KV_Q8_0) { // [qs of block 0, qs of block 1], 34-byte blocks
        ks = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(kp + 2))),
                                _mm256_loadu_si256((const __m256i *)(kp + 36)), 1);
        ku = _mm512_xor_si512(ks, _mm512_set1_epi8((char)0x80));
    } else { // q4_0, 18-byte blocks: [block 0 low nibbles, high ones, block 1 low, high]
        __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(kp + 2)));
        x = _mm512_mask_broadcast_i32x4(x, 0xFF00, _mm_loadu_si128((const __m128i *)(kp + 20)));
        x = _mm512_mask_srli_epi16(x, 0xFF00FF00u, x, 4);
        ku = ks = _mm512_and_si512(x, _mm512_set1_epi8(0x0f));
    }
    const __m512i a = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ku, hi), 8);
    return _mm512_dpbusd_epi32(a, lo, ks);
}

/* 8 units' lanes (u[0..7]) -> one vector: lane l the sum of block lane_block(l) of unit
 * lane_unit(l). */
AD_INLINE __m512i reduce_units(const __m512i *u) {
    __m512i c[4], d[2];
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(u[2 * i], u[2 * i + 1]),
                                _mm512_unpackhi_epi32(u[2 * i], u[2 * i + 1]));
    #pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        d[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(c[2 * i], c[2 * i + 1]),
                                _mm512_unpackhi_epi64(c[2 * i], c[2 * i + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x88), _mm512_shuffle_i32x4(d[0], d[1], 0xDD));
}

/* Scores of nh heads over nk keys of kind K (q8_0 or q4_0), heads of 64 U values, the
 * queries as int_query (nh). One head at a time down a tile of 8 / U keys, its 8 units'
 * lanes in registers (the tile's rows are prefetched first, so the walk down rows reads
 * L1). */
AD_INLINE void scores_rows_int(const cb_kv_kind K, const int U, float *S, size_t ldS, const int_query *iq,
                               const unsigned char *k0, size_t row_stride, head_map hm, int nh, int nk) {
    const int KT = 8 / U; // keys per tile
    const size_t bb = K == CB_KV_Q8_0 ? sizeof(cb_block_q8_0) : sizeof(cb_block_q4_0);
    const size_t ahead = prefetch_ahead(row_stride);
    int j = 0;
    for (; j + KT <= nk; j += KT) {
        for (int t = 0; t < KT; t++) prefetch_row(k0 + (size_t)(j + t) * row_stride + ahead, hm.span);
        FOR_HEADS(hm, nh, h, off) {
            const unsigned char *base = k0 + (size_t)j * row_stride + off;
            __m512i u[8], hi[2], lo[2];
            uint16_t scales[16]; // each lane's key block scale, where reduce_units puts its sum
            #pragma GCC unroll 2
            for (int uu = 0; uu < U; uu++) {
                hi[uu] = _mm512_loadu_si512(iq[h].hi + 64 * uu);
                lo[uu] = _mm512_loadu_si512(iq[h].lo + 64 * uu);
            }
            #pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const unsigned char *kp = base + (size_t)(i / U) * row_stride + (size_t)(i % U) * 2 * bb;
                u[i] = unit_int(K, kp, hi[i % U], lo[i % U]);
                const int l = (i / 4) * 8 + i % 4;
                memcpy(scales + l, kp, 2);
                memcpy(scales + l + 4, kp + bb, 2);
            }
            const __m512i r = _mm512_sub_epi32(reduce_units(u), _mm512_loadu_si512(iq[h].corr));
            const __m512 scale = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales)),
                                               _mm512_loadu_ps(iq[h].dq));
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(r), scale);
            // 128-bit lanes: [units 0-3 block 0, block 1, units 4-7 block 0, block 1]
            const __m512 g = _mm512_add_ps(_mm512_shuffle_f32x4(f, f, 0x88), _mm512_shuffle_f32x4(f, f, 0xDD));
            float *s = S + (size_t)h * ldS + j;
            if (U == 1) _mm256_storeu_ps(s, _mm512_castps512_ps256(g)); // unit t = key t
            else { // units 2t, 2t + 1 = key t
                const __m256 g8 = _mm512_castps512_ps256(g);
                _mm_storeu_ps(s, _mm_hadd_ps(_mm256_castps256_ps128(g8), _mm256_extractf128_ps(g8, 1)));
            }
        }
    }
    for (; j < nk; j++) // the last keys one at a time
        FOR_HEADS(hm, nh, h, off) {
            const unsigned char *kp = k0 + (size_t)j * row_stride + off;
            float score = 0.0f;
            for (int uu = 0; uu < U; uu++) {
                int32_t lanes[16];
                _mm512_storeu_si512(lanes, unit_int(K, kp + (size_t)uu * 2 * bb, _mm512_loadu_si512(iq[h].hi + 64 * uu),
                                                    _mm512_loadu_si512(iq[h].lo + 64 * uu)));
                for (int b = 0; b < 2; b++) {
                    int32_t sum = -iq[h].corr_block[2 * uu + b];
                    for (int l = 0; l < 8; l++) sum += lanes[8 * b + l];
                    score += (float)sum * (block_scale(K, kp + (size_t)(2 * uu + b) * bb) * iq[h].dq_block[2 * uu + b]);
                }
            }
            S[(size_t)h * ldS + j] = score;
        }
}
#endif

/* 16 lanes: the first n <= 16 values of a stored segment of kind K, zero beyond (float kinds
 * by a masked load; block kinds store zeros past a head's values in its last block). */
AD_INLINE __m512 segment16(const cb_kv_kind K, const unsigned char *seg, int n) {
    const __mmask16 mk = (__mmask16)((1u << n) - 1);
    switch (K) {
    case CB_KV_F32: return _mm512_maskz_loadu_ps(mk, seg);
    case CB_KV_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, seg));
    case CB_KV_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, seg)), 16));
    case CB_KV_Q8_0: return _mm512_mul_ps(unit_raw(CB_KV_Q8_0, seg, 0), _mm512_set1_ps(block_scale(CB_KV_Q8_0, seg)));
    case CB_KV_Q4_0: return _mm512_mul_ps(unit_raw(CB_KV_Q4_0, seg, 0), _mm512_set1_ps(block_scale(CB_KV_Q4_0, seg)));
    default: return _mm512_mul_ps(unit_raw(CB_KV_NF4, seg, 0), _mm512_set1_ps(block_scale(CB_KV_NF4, seg)));
    }
}

/* Scores of nh query heads over nk small keys: S (nh, ldS); q (nh, 2 units): each head's
 * rotary query (dr values) then its semantic one (ds, 0 for none), scaled and zero-padded
 * to 16 lanes each; kg0, ks0 the first segments read of the first key (rotary, semantic);
 * hm: which kv head each query head reads (stride 1: kv heads from the first, times each
 * tensor's head bytes). The traversal and the 8-key reduction of scores_rows. */
static void scores_small_rows(float *S, size_t ldS, const float *q, const cb_layer_cache *c, const decode_dims *m,
                              const unsigned char *kg0, const unsigned char *ks0, head_map hm, int nh, int nk,
                              float *tmp) {
    const cb_kv_kind Kg = c->k.kind, Ks = c->k_sem.kind;
    const size_t rg = c->k.row_bytes, rs = m->ds ? c->k_sem.row_bytes : 0, hg = c->k.head_bytes;
    const size_t hs = m->ds ? c->k_sem.head_bytes : 0, ag = prefetch_ahead(rg), as = m->ds ? prefetch_ahead(rs) : 0;
    const int dr = m->dr, ds = m->ds;
    int j = 0;
    for (; j < nk; j += 8) {
        const int nt = nk - j < 8 ? nk - j : 8;
        for (int t = 0; t < nt; t++) {
            const unsigned char *rowg = kg0 + (size_t)(j + t) * rg, *rows = ds ? ks0 + (size_t)(j + t) * rs : NULL;
            prefetch_row(rowg + ag, hm.span * hg);
            if (ds) prefetch_row(rows + as, hm.span * hs);
            FOR_HEADS(hm, nh, h, kv) {
                __m512 p = _mm512_mul_ps(segment16(Kg, rowg + kv * hg, dr), _mm512_loadu_ps(q + h * 2 * SMALL_UNIT));
                if (ds)
                    p = _mm512_fmadd_ps(segment16(Ks, rows + kv * hs, ds), _mm512_loadu_ps(q + h * 2 * SMALL_UNIT + SMALL_UNIT), p);
                _mm512_storeu_ps(tmp + (h * 8 + t) * 16, p);
            }
        }
        for (int h = 0; h < nh; h++) {
            if (nt < 8) { // the last keys: a sum each
                for (int t = 0; t < nt; t++) S[(size_t)h * ldS + j + t] = _mm512_reduce_add_ps(_mm512_loadu_ps(tmp + ((size_t)h * 8 + t) * 16));
                continue;
            }
            __m512 a[8];
            #pragma GCC unroll 8
            for (int t = 0; t < 8; t++) a[t] = _mm512_loadu_ps(tmp + ((size_t)h * 8 + t) * 16);
            _mm256_storeu_ps(S + (size_t)h * ldS + j, hsum8x8(a));
        }
    }
}

#define AD_KIND_CASES(CALL)                                \
    switch (kind) {                                        \
    case CB_KV_F32: CALL(CB_KV_F32); break;                \
    case CB_KV_F16: CALL(CB_KV_F16); break;                \
    case CB_KV_BF16: CALL(CB_KV_BF16); break;              \
    case CB_KV_Q8_0: CALL(CB_KV_Q8_0); break;              \
    case CB_KV_Q4_0: CALL(CB_KV_Q4_0); break;              \
    default: CALL(CB_KV_NF4); break;                       \
    }

/* 1 when keys of this kind take the integer scores. */
static int int_scores(cb_kv_kind kind) { return AD_INT_SCORES && (kind == CB_KV_Q8_0 || kind == CB_KV_Q4_0); }

/* The queries q (nh, dr, scaled) as int_query (nh, QUERY_INT_FLOATS floats apart) for keys
 * of this kind, where it takes the integer scores. */
static void queries_int(cb_kv_kind kind, float *iq, const float *q, int dr, int nh) {
#if AD_INT_SCORES
    if (int_scores(kind))
        for (int h = 0; h < nh; h++)
            int_query_init((int_query *)(iq + (size_t)h * QUERY_INT_FLOATS), q + (size_t)h * dr, dr, kind);
#else
    (void)kind, (void)iq, (void)q, (void)dr, (void)nh;
#endif
}

/* Scores of nh heads over nk keys of any kind: q (nh, dr) scaled, or iq from queries_int
 * where the kind takes integer scores; tmp (nh, TMP_FLOATS). */
AD_INLINE void scores_kinds(cb_kv_kind kind, float *S, size_t ldS, const float *q, const float *iq, int dr,
                             const unsigned char *k0, size_t row_stride, head_map hm, int nh, int nk, float *tmp) {
#if AD_INT_SCORES
    if (int_scores(kind)) {
        const int_query *qi = (const int_query *)iq;
        if (kind == CB_KV_Q8_0 && dr == 64) scores_rows_int(CB_KV_Q8_0, 1, S, ldS, qi, k0, row_stride, hm, nh, nk);
        else if (kind == CB_KV_Q8_0) scores_rows_int(CB_KV_Q8_0, 2, S, ldS, qi, k0, row_stride, hm, nh, nk);
        else if (dr == 64) scores_rows_int(CB_KV_Q4_0, 1, S, ldS, qi, k0, row_stride, hm, nh, nk);
        else scores_rows_int(CB_KV_Q4_0, 2, S, ldS, qi, k0, row_stride, hm, nh, nk);
        return;
    }
#else
    (void)iq;
#endif
// heads of 64 (most models) with the width a constant, so that a key's blocks unroll
#define SCORES_CALL(K)                                                                 \
    if (dr == 64) scores_rows(K, S, ldS, q, 64, k0, row_stride, hm, nh, nk, tmp);     \
    else scores_rows(K, S, ldS, q, dr, k0, row_stride, hm, nh, nk, tmp)
    AD_KIND_CASES(SCORES_CALL)
#undef SCORES_CALL
}

/* Heads of one segment each (standard attention) get their own copy of the kernels, with
 * the group a constant: a running offset with a runtime group cost them 5-10%. */
static void scores_any(cb_kv_kind kind, float *S, size_t ldS, const float *q, const float *iq, int dr,
                       const unsigned char *k0, size_t row_stride, head_map hm, int nh, int nk, float *tmp) {
    if (hm.group == 1)
        scores_kinds(kind, S, ldS, q, iq, dr, k0, row_stride, (head_map){hm.stride, hm.span, 1, 0}, nh, nk, tmp);
    else
        scores_kinds(kind, S, ldS, q, iq, dr, k0, row_stride, hm, nh, nk, tmp);
}



/* values_rows for NH <= 4 heads of NU units (NH * NU <= 16): the heads' outputs held in
 * registers over all nk keys and added into o once, instead of o loaded and stored for each
 * pair of keys (a store-to-load round trip in every unit's chain; values took a third of a
 * short context's attention). The same products, added in the same order. */
AD_INLINE void values_rows_held(const cb_kv_kind K, const int NU, const int NH, float *o, const float *W, size_t ldW,
                                const unsigned char *v0, size_t row_stride, head_map hm, int nk) {
    const int UPB = units_per_block(K);
    const size_t bs = block_stride(K), ahead = prefetch_ahead(row_stride);
    __m512 acc[16];
    #pragma GCC unroll 16
    for (int i = 0; i < NH * NU; i++) acc[i] = _mm512_setzero_ps();
    for (int j = 0; j < nk; j++) {
        const unsigned char *r = v0 + (size_t)j * row_stride;
        prefetch_row(r + ahead, hm.span);
        #pragma GCC unroll 4
        FOR_HEADS(hm, NH, h, off) {
            const float w = W[h * ldW + j];
            #pragma GCC unroll 8
            for (int b = 0; b < NU / UPB; b++) {
                const __m512 sc = _mm512_set1_ps(w * block_scale(K, r + off + (size_t)b * bs));
                #pragma GCC unroll 4
                for (int u = 0; u < UPB; u++)
                    acc[h * NU + b * UPB + u] = _mm512_fmadd_ps(sc, unit_raw(K, r + off + (size_t)b * bs, u), acc[h * NU + b * UPB + u]);
            }
        }
    }
    #pragma GCC unroll 16
    for (int i = 0; i < NH * NU; i++) _mm512_storeu_ps(o + 16 * i, _mm512_add_ps(_mm512_loadu_ps(o + 16 * i), acc[i]));
}

AD_INLINE void values_kinds(cb_kv_kind kind, int dv, float *o, const float *W, size_t ldW, const unsigned char *v0,
                             size_t row_stride, head_map hm, int nh, int nk) {
#define VALUES_CALL(K)                                                                            \
    if (dv == 64 && nh == 1) values_rows_held(K, 4, 1, o, W, ldW, v0, row_stride, hm, nk);             \
    else if (dv == 64 && nh == 2) values_rows_held(K, 4, 2, o, W, ldW, v0, row_stride, hm, nk);        \
    else if (dv == 64 && nh == 3) values_rows_held(K, 4, 3, o, W, ldW, v0, row_stride, hm, nk);        \
    else if (dv == 64 && nh == 4) values_rows_held(K, 4, 4, o, W, ldW, v0, row_stride, hm, nk);        \
    else if (dv == 64) values_rows(K, 4, o, W, ldW, v0, row_stride, hm, nh, nk);                       \
    else values_rows(K, 8, o, W, ldW, v0, row_stride, hm, nh, nk)
    AD_KIND_CASES(VALUES_CALL)
#undef VALUES_CALL
}

static void values_any(cb_kv_kind kind, int dv, float *o, const float *W, size_t ldW, const unsigned char *v0,
                       size_t row_stride, head_map hm, int nh, int nk) {
    if (hm.group == 1) // as scores_any
        values_kinds(kind, dv, o, W, ldW, v0, row_stride, (head_map){hm.stride, hm.span, 1, 0}, nh, nk);
    else
        values_kinds(kind, dv, o, W, ldW, v0, row_stride, hm, nh, nk);
}

/* Values per tiled block of kind k: the tiled path needs whole blocks of it. */
static int tiled_block_values(cb_kv_kind k) {
    return k == CB_KV_F32 || k == CB_KV_F16 || k == CB_KV_BF16 ? 16 : cb_kv_kind_block_values(k);
}

/* Small heads (DBA students: a few values a head) for one query against kv head kh, the
 * group's heads together: keys through scores_small_rows, values of at most one 16-value
 * unit with an accumulator a head. Per key and head the general path paid a dequantise
 * call or an axpy call for a handful of values (80% of a 1/4 student's decode at 4k). */
#define SMALL_GROUP 16
static int small_heads_ok(const decode_dims *m) {
    return m->dr <= SMALL_UNIT && m->ds <= SMALL_UNIT && m->dv <= SMALL_UNIT && m->group <= SMALL_GROUP;
}
static void small_heads_item(float *out, const float *qr, const float *qs, const cb_layer_cache *c,
                             const decode_dims *m, int lo, int nk, int kh, float *S, int L) {
    const int group = m->group, dr = m->dr, ds = m->ds, dv = m->dv;
    float qp[SMALL_GROUP * 2 * SMALL_UNIT], tmp[SMALL_GROUP * 8 * 16];
    memset(qp, 0, sizeof(float) * (size_t)group * 2 * SMALL_UNIT);
    for (int g = 0; g < group; g++) {
        memcpy(qp + (size_t)g * 2 * SMALL_UNIT, qr + (size_t)g * dr, sizeof(float) * (size_t)dr);
        if (ds) memcpy(qp + (size_t)g * 2 * SMALL_UNIT + SMALL_UNIT, qs + (size_t)g * ds, sizeof(float) * (size_t)ds);
    }
    scores_small_rows(S, (size_t)L, qp, c, m, cb_kv_tensor_head(&c->k, lo, kh),
                      ds ? cb_kv_tensor_head(&c->k_sem, lo, kh) : NULL, (head_map){1, 1, group, 0}, group, nk, tmp);
    for (int g = 0; g < group; g++) softmax_row(S + (size_t)g * L, nk);
    const cb_kv_kind Kv = c->v.kind;
    const unsigned char *v0 = cb_kv_tensor_head(&c->v, lo, kh);
    const size_t rv = c->v.row_bytes, av = prefetch_ahead(rv);
    __m512 acc[SMALL_GROUP];
    for (int g = 0; g < group; g++) acc[g] = _mm512_setzero_ps();
    for (int j = 0; j < nk; j++) {
        const unsigned char *row = v0 + (size_t)j * rv;
        prefetch_row(row + av, c->v.head_bytes);
        const __m512 v = segment16(Kv, row, dv);
        for (int g = 0; g < group; g++) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(S[(size_t)g * L + j]), v, acc[g]);
    }
    for (int g = 0; g < group; g++) _mm512_mask_storeu_ps(out + (size_t)g * dv, (__mmask16)((1u << dv) - 1), acc[g]);
}
#endif

/* 1 when this layer's items take the tiled kernels: standard attention or GQA (no semantic
 * part), head widths of whole tiled blocks, dv of 64 or 128. */
#if AD_TILED
static int values_tiled(const cb_layer_cache *c, const decode_dims *m) {
    return (m->dv == 64 || m->dv == 128) && m->dv % tiled_block_values(c->v.kind) == 0;
}
static int tiled_ok(const cb_layer_cache *c, const decode_dims *m) {
    return m->ds == 0 && m->dr % tiled_block_values(c->k.kind) == 0 && values_tiled(c, m);
}
/* Small keys (DBA's bottleneck: 4 + 8 values a head in the 1B preset; or heads of at most
 * 16 values): one 16-lane unit each for the rotary and the semantic part. */
static int keys_small(const decode_dims *m) { return m->dr <= SMALL_UNIT && m->ds <= SMALL_UNIT; }
/* 1 when one query takes the pieces: tiled values, and keys tiled or small. */
static int pieces_ok(const cb_layer_cache *c, const decode_dims *m) {
    return values_tiled(c, m) && (tiled_ok(c, m) || keys_small(m));
}
#endif

/* Key widths (semantic + rotary values a head) up to SMALL_KEY take their scores KEY_TILE
 * keys at a time (DBA's bottleneck keys: 4 + 8 values a head in the 1B preset): each key's
 * segments dequantised into a transposed tile, then each query head's scores for the tile
 * as multiply-adds across keys, which vectorise. One dot product a key and head spent its
 * time on the call and a partial block for a handful of values (95 ns a key and kv head). */
#define SMALL_KEY 64
#define KEY_TILE 16

/* S (group, L) <- scores of the group's scaled queries qr (group, dr) and qs (group, ds)
 * against keys lo .. lo + nk - 1 of kv head kh. */
static void scores_small(float *S, int L, const float *qr, const float *qs, const cb_layer_cache *c,
                         const decode_dims *m, int lo, int nk, int kh) {
    const int dr = m->dr, ds = m->ds, w = dr + ds;
    float kt[SMALL_KEY * KEY_TILE], row[SMALL_KEY];
    for (int j0 = 0; j0 < nk; j0 += KEY_TILE) {
        const int nt = nk - j0 < KEY_TILE ? nk - j0 : KEY_TILE;
        for (int t = 0; t < KEY_TILE; t++) {
            if (t < nt) {
                cb_kv_dequantize_row(c->k.kind, row, cb_kv_tensor_head(&c->k, lo + j0 + t, kh), (size_t)dr);
                if (ds) cb_kv_dequantize_row(c->k_sem.kind, row + dr, cb_kv_tensor_head(&c->k_sem, lo + j0 + t, kh), (size_t)ds);
            } else
                memset(row, 0, sizeof(float) * (size_t)w); // a short last tile: zero keys
            for (int d = 0; d < w; d++) kt[d * KEY_TILE + t] = row[d];
        }
        for (int g = 0; g < m->group; g++) {
            float acc[KEY_TILE] = {0};
            for (int d = 0; d < w; d++) {
                const float qd = d < dr ? qr[(size_t)g * dr + d] : qs[(size_t)g * ds + d - dr];
                #pragma omp simd
                for (int t = 0; t < KEY_TILE; t++) acc[t] += qd * kt[d * KEY_TILE + t];
            }
            for (int t = 0; t < nt; t++) S[(size_t)g * L + j0 + t] = acc[t];
        }
    }
}

/* One item: query i (position p) against kv head kh; out rows of heads kh*group .. +group. */
static void decode_item(float *out, const float *q, const float *q_sem, const float *gate,
                        const cb_layer_cache *c, const decode_dims *m, int causal, int window,
                        int i, int p, int kh, float *scratch, int L) {
    const int group = m->group, h0 = kh * group, ds = m->ds, dr = m->dr, dv = m->dv;
    float *S = scratch; // (group, L): one row of scores per query head
    float *qs = S + (size_t)L * group, *qr = qs + (size_t)group * ds;
    float *sc = qr + (size_t)group * dr, *sc_sem = sc + group, *w = sc_sem + group;
    const float rs = ds ? 1.0f / sqrtf((float)ds) : 0.0f, rr = 1.0f / sqrtf((float)dr);
    for (int g = 0; g < group; g++) {
        const int h = h0 + g;
        float c_sem = rs, c_rot = rr;
        if (gate) {
            float gv = gate[(size_t)i * m->H + h];
            c_sem = 2 * gv * rs;
            c_rot = (2 - 2 * gv) * rr;
        }
        const float *src_r = q + ((size_t)i * m->H + h) * dr;
        for (int t = 0; t < dr; t++) qr[(size_t)g * dr + t] = c_rot * src_r[t];
        if (ds) {
            const float *src_s = q_sem + ((size_t)i * m->H + h) * ds;
            for (int t = 0; t < ds; t++) qs[(size_t)g * ds + t] = c_sem * src_s[t];
        }
    }
    const int hi = causal ? p : c->len - 1;
    const int lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
    const int nk = hi - lo + 1;
#if AD_TILED
    if (tiled_ok(c, m)) { // each query head of the group alone over kv head kh
        float tmp[TMP_FLOATS], iq[QUERY_INT_FLOATS];
        const head_map hk = {c->k.head_bytes, c->k.head_bytes, 1, 0}, hv = {c->v.head_bytes, c->v.head_bytes, 1, 0};
        for (int g = 0; g < group; g++) {
            float *Sg = S + (size_t)g * L, *o = out + ((size_t)i * m->H + h0 + g) * dv;
            queries_int(c->k.kind, iq, qr + (size_t)g * dr, dr, 1);
            scores_any(c->k.kind, Sg, (size_t)L, qr + (size_t)g * dr, iq, dr, cb_kv_tensor_head(&c->k, lo, kh),
                       c->k.row_bytes, hk, 1, nk, tmp);
            softmax_row(Sg, nk);
            memset(o, 0, sizeof(float) * (size_t)dv);
            values_any(c->v.kind, dv, o, Sg, (size_t)L, cb_kv_tensor_head(&c->v, lo, kh), c->v.row_bytes, hv, 1, nk);
        }
        return;
    }
#endif
#if AD_TILED
    if (small_heads_ok(m)) {
        small_heads_item(out + ((size_t)i * m->H + h0) * dv, qr, qs, c, m, lo, nk, kh, S, L);
        return;
    }
#endif
    if (ds + dr <= SMALL_KEY) scores_small(S, L, qr, qs, c, m, lo, nk, kh);
    else // scores: each key read once for the group's query heads
    for (int j = 0; j < nk; j++) {
        cb_kv_dot_m(c->k.kind, sc, cb_kv_tensor_head(&c->k, lo + j, kh), qr, (size_t)dr,
                    (size_t)dr, group);
        if (ds) {
            cb_kv_dot_m(c->k_sem.kind, sc_sem, cb_kv_tensor_head(&c->k_sem, lo + j, kh), qs,
                        (size_t)ds, (size_t)ds, group);
            for (int g = 0; g < group; g++) sc[g] += sc_sem[g];
        }
        for (int g = 0; g < group; g++) S[(size_t)g * L + j] = sc[g];
    }
    for (int g = 0; g < group; g++) softmax_row(S + (size_t)g * L, nk);
    // out (group, dv) of this query = sum over keys of w (group) x v[j] (dv)
    float *o = out + ((size_t)i * m->H + h0) * dv;
    memset(o, 0, sizeof(float) * (size_t)group * dv);
#if AD_TILED
    if (values_tiled(c, m)) { // DBA's values, tiled
        const head_map hv = {c->v.head_bytes, c->v.head_bytes, 1, 0};
        for (int g = 0; g < group; g++)
            values_any(c->v.kind, dv, o + (size_t)g * dv, S + (size_t)g * L, (size_t)L,
                       cb_kv_tensor_head(&c->v, lo, kh), c->v.row_bytes, hv, 1, nk);
        return;
    }
#endif
    for (int j = 0; j < nk; j++) {
        for (int g = 0; g < group; g++) w[g] = S[(size_t)g * L + j];
        cb_kv_axpy_m(c->v.kind, o, (size_t)dv, w, cb_kv_tensor_head(&c->v, lo + j, kh),
                     (size_t)dv, group);
    }
}

#if AD_TILED
/* Piece pi of head group g of one query at position p (the tiled path, split over keys):
 * its scores, softmax statistics and unnormalised output in its scratch (piece_floats);
 * the only piece: its heads' output, normalised, in out (H*dv). */
static void decode_piece(float *out, const float *qr, const float *iq, const float *qsm, const cb_layer_cache *c,
                         const decode_dims *m, const piece_split *sp, int lo, int hi, int pi, int g, float *scratch) {
    const int dr = m->dr, dv = m->dv, hp = sp->heads_per, h0 = g * hp;
    const int nh = m->H - h0 < hp ? m->H - h0 : hp;
    const int j0 = lo + pi * KEY_PIECE, cnt = hi + 1 - j0 < KEY_PIECE ? hi + 1 - j0 : KEY_PIECE;
    float *S = scratch, *mx = S + (size_t)hp * (KEY_PIECE + dv);
    float *o = sp->pieces == 1 ? out + (size_t)h0 * dv : S + (size_t)hp * KEY_PIECE;
    float *sum = mx + hp, *tmp = sum + hp;
    // query head h0 + h reads kv head (h0 + h) / group: its offset from the first one read
    const int kv0 = h0 / m->group, kv_last = (h0 + nh - 1) / m->group;
    const size_t span = (size_t)(kv_last - kv0 + 1);
    const head_map hk = {c->k.head_bytes, span * c->k.head_bytes, m->group, h0 % m->group};
    const head_map hv = {c->v.head_bytes, span * c->v.head_bytes, m->group, h0 % m->group};
    if (tiled_ok(c, m))
        scores_any(c->k.kind, S, KEY_PIECE, qr + (size_t)h0 * dr, iq + (size_t)h0 * QUERY_INT_FLOATS, dr,
                   cb_kv_tensor_head(&c->k, j0, kv0), c->k.row_bytes, hk, nh, cnt, tmp);
    else // small keys: kv heads counted from kv0 (stride 1)
        scores_small_rows(S, KEY_PIECE, qsm + (size_t)h0 * 2 * SMALL_UNIT, c, m, cb_kv_tensor_head(&c->k, j0, kv0),
                          m->ds ? cb_kv_tensor_head(&c->k_sem, j0, kv0) : NULL,
                          (head_map){1, span, m->group, h0 % m->group}, nh, cnt, tmp);
    for (int h = 0; h < nh; h++) sum[h] = softmax_unnormalised(S + (size_t)h * KEY_PIECE, cnt, &mx[h]);
    memset(o, 0, sizeof(float) * (size_t)nh * dv);
    values_any(c->v.kind, dv, o, S, KEY_PIECE, cb_kv_tensor_head(&c->v, j0, kv0), c->v.row_bytes, hv, nh, cnt);
    if (sp->pieces == 1)
        for (int h = 0; h < nh; h++) {
            const float inv = 1.0f / sum[h];
            #pragma omp simd
            for (int t = 0; t < dv; t++) o[(size_t)h * dv + t] *= inv;
        }
}

/* The pieces of one query: item it is piece it / groups of head group it % groups. */
typedef struct piece_job {
    float *out;           /* the query's output (H*dv): written by the items of a single piece */
    const float *qr, *iq; /* the query scaled (H, dr), and as integers (queries_int) */
    const float *qsm;     /* small keys: (H, 2 units) rotary and semantic queries, scaled */
    const cb_layer_cache *c;
    const decode_dims *m;
    const piece_split *sp;
    int lo, hi;
    float *scratch;
    size_t per;
} piece_job;

static void piece_item(void *ctx, int it) {
    const piece_job *j = ctx;
    decode_piece(j->out, j->qr, j->iq, j->qsm, j->c, j->m, j->sp, j->lo, j->hi, it / j->sp->groups, it % j->sp->groups,
                 j->scratch + (size_t)it * j->per);
}

/* out (H*dv) of one query from its pieces (more than one): per head, sum_p e^(max_p - M)
 * o_p / sum_p e^(max_p - M) sum_p, M the largest max. */
static void merge_pieces(float *restrict out, const decode_dims *m, const piece_split *sp,
                         const float *restrict scratch) {
    const int dv = m->dv, hp = sp->heads_per;
    const size_t per = piece_floats(m, hp);
    for (int h = 0; h < m->H; h++) {
        const int g = h / hp, hh = h % hp;
        float M = -INFINITY;
        for (int pi = 0; pi < sp->pieces; pi++) {
            const float *mx = scratch + (size_t)(pi * sp->groups + g) * per + (size_t)hp * (KEY_PIECE + dv);
            M = mx[hh] > M ? mx[hh] : M;
        }
        float *o = out + (size_t)h * dv, den = 0.0f;
        memset(o, 0, sizeof(float) * (size_t)dv);
        for (int pi = 0; pi < sp->pieces; pi++) {
            const float *base = scratch + (size_t)(pi * sp->groups + g) * per;
            const float *po = base + (size_t)hp * KEY_PIECE + (size_t)hh * dv;
            const float *mx = base + (size_t)hp * (KEY_PIECE + dv);
            const float f = softmax_exp(mx[hh] - M);
            den += f * mx[hp + hh];
            #pragma omp simd
            for (int t = 0; t < dv; t++) o[t] += f * po[t];
        }
        const float inv = 1.0f / den;
        #pragma omp simd
        for (int t = 0; t < dv; t++) o[t] *= inv;
    }
}
#endif

/* The items of one query chunk: (query c0 + it / Hkv, kv head it % Hkv). */
typedef struct item_job {
    float *out;
    const float *q, *q_sem, *gate;
    const cb_layer_cache *c;
    const decode_dims *m;
    int causal, window, c0, pos0;
    float *scratch;
    size_t per_item;
    int L, c1; /* c1: the chunk's end */
} item_job;

static void item_of_chunk(void *ctx, int it) {
    const item_job *j = ctx;
    const int i = j->c0 + it / j->m->Hkv, kh = it % j->m->Hkv;
    decode_item(j->out, j->q, j->q_sem, j->gate, j->c, j->m, j->causal, j->window, i, j->pos0 + i, kh,
                j->scratch + (size_t)it * j->per_item, j->L);
}

#if AD_TILED
/* Standard attention over a chunk of queries (a prefill): QBLOCK consecutive queries of one
 * head are one item, and each key and value row is read once for all of them, as the query
 * heads of a GQA group share their kv head's segment (head_map group qn: every query reads
 * the same segment). A query per item read each row from L2 again, and the 512-token
 * prefill spent a fifth of its time there. The keys run to the block's last position; each
 * query's softmax covers its own (causal) keys and the keys past them get weight 0, so each
 * query's result is the per-query item's: the same kernels, and the extra keys add 0 x v. */
#define QBLOCK 8

/* Scores of qn queries sharing one head segment (q (qn, dr), scaled) over nk keys of a float
 * kind: each key's NB units converted to f32 once, in registers, for all qn queries (through
 * scores_any every query converted the key again); each query's 16-lane partial formed as
 * key_partial forms it (the same products in the same order, so the same scores), 8 keys'
 * partials reduced together as scores_rows does. tmp (qn, TMP_FLOATS). */
AD_INLINE void scores_block_f(const cb_kv_kind K, const int NB, float *S, size_t ldS, const float *q, int qn,
                              const unsigned char *k0, size_t row_stride, int nk, float *tmp) {
    const size_t ahead = prefetch_ahead(row_stride), bs = block_stride(K), dr = (size_t)NB * 16;
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        for (int t = 0; t < 8; t++) {
            const unsigned char *row = k0 + (size_t)(j + t) * row_stride;
            prefetch_row(row + ahead, (size_t)NB * bs);
            __m512 kv[8];
            #pragma GCC unroll 8
            for (int u = 0; u < NB; u++) kv[u] = unit_raw(K, row + (size_t)u * bs, 0);
            for (int h = 0; h < qn; h++) {
                __m512 acc = _mm512_setzero_ps();
                #pragma GCC unroll 8
                for (int u = 0; u < NB; u++) acc = _mm512_fmadd_ps(kv[u], _mm512_loadu_ps(q + h * dr + 16 * u), acc);
                _mm512_storeu_ps(tmp + ((size_t)h * 8 + t) * 16, acc);
            }
        }
        for (int h = 0; h < qn; h++) {
            __m512 a[8];
            #pragma GCC unroll 8
            for (int t = 0; t < 8; t++) a[t] = _mm512_loadu_ps(tmp + ((size_t)h * 8 + t) * 16);
            _mm256_storeu_ps(S + (size_t)h * ldS + j, hsum8x8(a));
        }
    }
    for (; j < nk; j++) {
        const unsigned char *row = k0 + (size_t)j * row_stride;
        __m512 kv[8];
        #pragma GCC unroll 8
        for (int u = 0; u < NB; u++) kv[u] = unit_raw(K, row + (size_t)u * bs, 0);
        for (int h = 0; h < qn; h++) {
            __m512 acc = _mm512_setzero_ps();
            #pragma GCC unroll 8
            for (int u = 0; u < NB; u++) acc = _mm512_fmadd_ps(kv[u], _mm512_loadu_ps(q + h * dr + 16 * u), acc);
            S[(size_t)h * ldS + j] = _mm512_reduce_add_ps(acc);
        }
    }
}

/* scores_block_f for the float kinds and heads of 64 or 128, else 0 (the caller takes
 * scores_any). */
static int scores_block(cb_kv_kind kind, float *S, size_t ldS, const float *q, int dr, int qn,
                        const unsigned char *k0, size_t row_stride, int nk, float *tmp) {
    if (dr != 64 && dr != 128) return 0;
#define BLOCK_CALL(K)                                                                                  \
    if (dr == 64) scores_block_f(K, 4, S, ldS, q, qn, k0, row_stride, nk, tmp);                        \
    else scores_block_f(K, 8, S, ldS, q, qn, k0, row_stride, nk, tmp)
    if (kind == CB_KV_F32) BLOCK_CALL(CB_KV_F32);
    else if (kind == CB_KV_F16) BLOCK_CALL(CB_KV_F16);
    else if (kind == CB_KV_BF16) BLOCK_CALL(CB_KV_BF16);
    else return 0;
#undef BLOCK_CALL
    return 1;
}

static int blocks_ok(const cb_layer_cache *c, const decode_dims *m, const float *q_sem, const float *gate, int causal,
                     int window) {
    return tiled_ok(c, m) && m->group == 1 && m->ds == 0 && !q_sem && !gate && causal && window == 0 &&
           m->dr <= 128;
}

static void block_item(void *ctx, int it) {
    const item_job *j = ctx;
    const decode_dims *m = j->m;
    const cb_layer_cache *c = j->c;
    const int H = m->H, dr = m->dr, dv = m->dv, L = j->L;
    const int b = it / H, h = it % H, i0 = j->c0 + b * QBLOCK;
    const int qn = j->c1 - i0 < QBLOCK ? j->c1 - i0 : QBLOCK;
    // the block's rows of scores in the scratch of its qn per-query items (block b of the
    // chunk holds rows i0 - c0 .. + qn, head h the h-th qn of them)
    float *S = j->scratch + ((size_t)(i0 - j->c0) * H + (size_t)h * qn) * j->per_item;
    float qr[QBLOCK * 128], iq[QBLOCK * QUERY_INT_FLOATS], tmp[QBLOCK * TMP_FLOATS], o[QBLOCK * 128];
    const float rr = 1.0f / sqrtf((float)dr);
    for (int i = 0; i < qn; i++) {
        const float *src = j->q + ((size_t)(i0 + i) * H + h) * dr;
        for (int t = 0; t < dr; t++) qr[i * dr + t] = rr * src[t];
    }
    queries_int(c->k.kind, iq, qr, dr, qn);
    const int nk = j->pos0 + i0 + qn; // keys 0 .. the last query's position
    const head_map hk = {c->k.head_bytes, c->k.head_bytes, qn, 0}, hv = {c->v.head_bytes, c->v.head_bytes, qn, 0};
    const unsigned char *k0 = cb_kv_tensor_head(&c->k, 0, h);
    if (!scores_block(c->k.kind, S, (size_t)L, qr, dr, qn, k0, c->k.row_bytes, nk, tmp))
        scores_any(c->k.kind, S, (size_t)L, qr, iq, dr, k0, c->k.row_bytes, hk, qn, nk, tmp);
    for (int i = 0; i < qn; i++) {
        const int vis = j->pos0 + i0 + i + 1;
        softmax_row(S + (size_t)i * L, vis);
        memset(S + (size_t)i * L + vis, 0, sizeof(float) * (size_t)(nk - vis));
    }
    memset(o, 0, sizeof(float) * (size_t)qn * dv);
    values_any(c->v.kind, dv, o, S, (size_t)L, cb_kv_tensor_head(&c->v, 0, h), c->v.row_bytes, hv, qn, nk);
    for (int i = 0; i < qn; i++) memcpy(j->out + ((size_t)(i0 + i) * H + h) * dv, o + (size_t)i * dv, sizeof(float) * dv);
}
#endif

static void decode_body(float *out, const float *q, const float *q_sem, const float *gate,
                        const cb_layer_cache *c, const cb_attention_config *cfg, int pos0,
                        int n, const cb_decode_plan *plan, float *scratch) {
    const decode_dims m = dims_of(cfg);
#if AD_TILED
    if (n == 1 && pieces_ok(c, &m)) { // one query: split over keys
        const int hi = cfg->is_causal ? pos0 : c->len - 1, window = plan ? plan->local_window : 0;
        const int lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
        const piece_split sp = split_of(m.H, hi - lo + 1);
        const int items = sp.pieces * sp.groups;
        const size_t per = piece_floats(&m, sp.heads_per);
        const long long work = (long long)(hi - lo + 1) * m.H * (m.dr + m.dv);
        // the query once for all pieces: scaled, and as integers where the keys take them
        float *qr = scratch, *iq = qr + (size_t)m.H * m.dr, *qsm = iq + (size_t)m.H * QUERY_INT_FLOATS;
        float *pieces = scratch + query_floats(&m);
        const float rr = 1.0f / sqrtf((float)m.dr), rs = m.ds ? 1.0f / sqrtf((float)m.ds) : 0.0f;
        if (tiled_ok(c, &m)) {
            for (int t = 0; t < m.H * m.dr; t++) qr[t] = rr * q[t];
            queries_int(c->k.kind, iq, qr, m.dr, m.H);
        } else // small keys: DBA's 2g / sqrt(ds) and (2 - 2g) / sqrt(dr) (g = 1/2 without a gate)
            for (int h = 0; h < m.H; h++) {
                const float gv = gate ? gate[h] : 0.5f, c_rot = (2 - 2 * gv) * rr, c_sem = 2 * gv * rs;
                float *qh = qsm + (size_t)h * 2 * SMALL_UNIT;
                for (int t = 0; t < SMALL_UNIT; t++) {
                    qh[t] = t < m.dr ? c_rot * q[(size_t)h * m.dr + t] : 0.0f;
                    qh[SMALL_UNIT + t] = t < m.ds ? c_sem * q_sem[(size_t)h * m.ds + t] : 0.0f;
                }
            }
        piece_job j = {out, qr, iq, qsm, c, &m, &sp, lo, hi, pieces, per};
        if (work >= (1 << 15)) cb_parallel_for(items, piece_item, &j);
        else
            for (int it = 0; it < items; it++) piece_item(&j, it);
        if (sp.pieces > 1) merge_pieces(out, &m, &sp, pieces);
        return;
    }
#endif
    const int qc = chunk_of(plan, n), L = keys_max(plan, c->len);
    const int window = plan ? plan->local_window : 0, causal = cfg->is_causal;
    const size_t per_item = item_floats(&m, L);
    // below about this many multiply-adds a parallel region costs more than it saves
    const long long work_min = 1 << 15;
    for (int c0 = 0; c0 < n; c0 += qc) {
        const int rows = n - c0 < qc ? n - c0 : qc, items = rows * m.Hkv;
        const long long work = (long long)items * m.group * L * (m.ds + m.dr + m.dv);
        item_job j = {out, q, q_sem, gate, c, &m, causal, window, c0, pos0, scratch, per_item, L, c0 + rows};
#if AD_TILED
        if (rows > 1 && blocks_ok(c, &m, q_sem, gate, causal, window)) {
            const int blocks = (rows + QBLOCK - 1) / QBLOCK * m.H;
            if (work >= work_min) cb_parallel_for(blocks, block_item, &j);
            else
                for (int it = 0; it < blocks; it++) block_item(&j, it);
            continue;
        }
#endif
        if (work >= work_min) cb_parallel_for(items, item_of_chunk, &j);
        else
            for (int it = 0; it < items; it++) item_of_chunk(&j, it);
    }
}

/* A packed tensor's tokens read into fp32 rows in pieces of VIEW_PIECE tokens, over the
 * pool when there are enough values (a piece whose ends cut blocks reads those twice). */
#define VIEW_PIECE 512
typedef struct view_job {
    const cb_kv_tensor *src;
    float *out;
    int lo, nt, at;
} view_job;

static void view_piece(void *ctx, int it) {
    const view_job *j = ctx;
    const int p0 = j->lo + it * VIEW_PIECE, n = j->lo + j->nt - p0 < VIEW_PIECE ? j->lo + j->nt - p0 : VIEW_PIECE;
    const size_t W = (size_t)j->src->n_heads * j->src->head_dim;
    cb_kv_tensor_read_at(j->src, j->out + (size_t)(p0 - j->lo) * W, p0, n, j->at);
}

static void view_read(const cb_kv_tensor *src, float *out, int lo, int nt, int at) {
    view_job j = {src, out, lo, nt, at};
    const int pieces = (nt + VIEW_PIECE - 1) / VIEW_PIECE;
    if ((long long)nt * src->n_heads * src->head_dim >= (1 << 15) && pieces > 1) cb_parallel_for(pieces, view_piece, &j);
    else
        for (int it = 0; it < pieces; it++) view_piece(&j, it);
}

/* Tokens lo .. lo + nt - 1 of src as a per-head tensor of nt tokens, as a query at position
 * at reads them: a packed one dequantized into *buf as fp32 rows (buf moves past them), a
 * per-head one in place. */
static void view_tensor(cb_kv_tensor *dst, const cb_kv_tensor *src, int lo, int nt, int at, float **buf) {
    *dst = *src;
    dst->len = nt;
    if (!src->n_heads) return;
    if (!src->packed) {
        dst->data = src->data + (size_t)lo * src->row_bytes;
        dst->cap = src->cap - lo;
        return;
    }
    const size_t W = (size_t)src->n_heads * src->head_dim;
    view_read(src, *buf, lo, nt, at);
    dst->kind = CB_KV_F32;
    dst->packed = 0;
    dst->group = 1;
    dst->head_bytes = sizeof(float) * (size_t)src->head_dim;
    dst->row_bytes = sizeof(float) * W;
    dst->data = (unsigned char *)*buf;
    dst->cap = nt;
    dst->stage = NULL;
    dst->stage0 = dst->stage_cap = 0;
    *buf += (size_t)nt * W;
}

/* 1 when queries at positions a and b read the packed tensors alike (the same tokens from
 * the stage). */
static int reads_alike(const cb_layer_cache *c, int a, int b) {
    const cb_kv_tensor *t[3] = {&c->k, &c->k_sem, &c->v};
    for (int i = 0; i < 3; i++)
        if (t[i]->packed && cb_kv_tensor_float_from(t[i], a) != cb_kv_tensor_float_from(t[i], b)) return 0;
    return 1;
}

/* A cache with packed tensors (blocks spanning heads and tokens, infer/kv_cache.h): the
 * tokens the queries can see, lo .. len - 1, are dequantized into fp32 rows at the end of
 * the scratch, and the float kernels run over that view with positions counted from lo.
 * Each query reads the cache as a decode step at its position would
 * (cb_kv_tensor_read_at: the tokens of its own open group from the float stage), so the
 * queries of a chunk go in runs that read alike, and between runs only the rows of the
 * groups that became complete are read again, from their blocks. The packed tensors are
 * DBA's small rows (a few values a head), so the view costs about what reading them costs;
 * per-head caches (standard attention, GQA) never take this way. */
void cb_attention_decode(float *out, const float *q, const float *q_sem, const float *gate,
                         const cb_layer_cache *c, const cb_attention_config *cfg, int pos0,
                         int n, const cb_decode_plan *plan, float *scratch) {
    if (!cb_layer_cache_packed(c)) {
        decode_body(out, q, q_sem, gate, c, cfg, pos0, n, plan, scratch);
        return;
    }
    const decode_dims m = dims_of(cfg);
    const int window = plan ? plan->local_window : 0, causal = cfg->is_causal;
    const int hi = causal ? pos0 : c->len - 1; // the first query's last key
    const int lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
    const int nt = c->len - lo;
    float *buf = scratch + body_scratch(cfg, n, c->len, plan);
    const cb_kv_tensor *src[3] = {&c->k, &c->k_sem, &c->v};
    cb_layer_cache v = *c;
    cb_kv_tensor *dst[3] = {&v.k, &v.k_sem, &v.v};
    v.len = nt;
    const int at0 = causal ? pos0 : c->len - 1; // not causal: every query reads all, as held
    int from[3];
    for (int i = 0; i < 3; i++) {
        view_tensor(dst[i], src[i], lo, nt, at0, &buf);
        from[i] = cb_kv_tensor_float_from(src[i], at0);
    }
    if (!causal) {
        decode_body(out, q, q_sem, gate, &v, cfg, pos0 - lo, n, plan, scratch);
        return;
    }
    for (int r0 = 0; r0 < n;) {
        const int p = pos0 + r0;
        int r1 = r0 + 1;
        while (r1 < n && reads_alike(c, p, pos0 + r1)) r1++;
        for (int i = 0; i < 3; i++) { // groups complete by p: their rows from the blocks now
            if (!src[i]->packed) continue;
            const int f = cb_kv_tensor_float_from(src[i], p), f0 = from[i] > lo ? from[i] : lo;
            if (f > f0) {
                const size_t W = (size_t)src[i]->n_heads * src[i]->head_dim;
                cb_kv_tensor_read_at(src[i], (float *)dst[i]->data + (size_t)(f0 - lo) * W, f0, f - f0, p);
            }
            from[i] = f;
        }
        decode_body(out + (size_t)r0 * m.H * m.dv, q + (size_t)r0 * m.H * m.dr,
                    q_sem ? q_sem + (size_t)r0 * m.H * m.ds : NULL, gate ? gate + (size_t)r0 * m.H : NULL, &v, cfg,
                    p - lo, r1 - r0, plan, scratch);
        r0 = r1;
    }
}

int cb_attention_decode_int16_query(const cb_layer_cache *c, const cb_attention_config *cfg) {
#if AD_TILED
    const decode_dims m = dims_of(cfg);
    return !c->k.packed && tiled_ok(c, &m) && int_scores(c->k.kind);
#else
    (void)c, (void)cfg;
    return 0;
#endif
}
