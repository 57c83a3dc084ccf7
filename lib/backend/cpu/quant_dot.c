/* quant_dot.c: dot and axpy of stored rows (every cb_kv_kind) against f32 vectors.
 *
 * With AVX2 and FMA (the default build uses -march=native), each 8 values of a block are
 * widened in registers: int8 -> int32 -> f32 (q8_0), nibbles masked and shifted (q4_0),
 * nibbles looked up in the 16 levels held in two registers by permutevar8x32 and a blend
 * on bit 3 (nf4), vcvtph2ps (fp16, with F16C), a 16-bit shift (bf16). A q8_0/q4_0/nf4
 * block's products are summed unscaled and multiplied by the block's scale once. Without
 * AVX2 the same arithmetic runs as plain C loops. The _m variants dequantise each 8 values
 * once and use them for all m vectors (up to 8 accumulators in registers; without AVX2,
 * through a 64-value tile in L1). */
#include "backend/cpu/quant_dot.h"

#include <string.h>

#include "tensor/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#define QD_AVX2 1
#include <immintrin.h>
#else
#define QD_AVX2 0
#endif
/* AVX-512 (F and BW, with F16C): 16 values per instruction in the single-vector dot, which
 * decides matvec speed; everything else stays on the AVX2 path. */
#if QD_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__)
#define QD_AVX512 1
#else
#define QD_AVX512 0
#endif

#define TILE 64 /* values per tile of the _m kernels: a whole number of blocks of every kind */

/* cb_kv_kind_block_values and _bytes, inlined: called out of line for every row, they
 * took a tenth of a q8_0 matvec's time (the kernels' dispatch runs once per 768-value row). */
static inline int block_values(cb_kv_kind k) {
    return k == CB_KV_Q8_0 ? CB_QK8_0 : k == CB_KV_Q4_0 ? CB_QK4_0 : k == CB_KV_NF4 ? CB_QKNF4 : 1;
}
static inline size_t block_bytes(cb_kv_kind k) {
    switch (k) {
    case CB_KV_F32: return 4;
    case CB_KV_F16:
    case CB_KV_BF16: return 2;
    case CB_KV_Q8_0: return sizeof(cb_block_q8_0);
    case CB_KV_Q4_0: return sizeof(cb_block_q4_0);
    case CB_KV_NF4: return sizeof(cb_block_nf4);
    default: return 0;
    }
}

/* Value j of a block-kind row (scalar, for partial blocks and the portable path). */
static float block_value(cb_kv_kind k, const void *row, size_t j) {
    switch (k) {
    case CB_KV_Q8_0: {
        const cb_block_q8_0 *b = (const cb_block_q8_0 *)row + j / CB_QK8_0;
        return (float)b->qs[j % CB_QK8_0] * cb_f16_to_f32(b->d);
    }
    case CB_KV_Q4_0: {
        const cb_block_q4_0 *b = (const cb_block_q4_0 *)row + j / CB_QK4_0;
        size_t i = j % CB_QK4_0;
        int q = i < CB_QK4_0 / 2 ? (b->qs[i] & 0x0f) : (b->qs[i - CB_QK4_0 / 2] >> 4);
        return (float)(q - 8) * cb_f16_to_f32(b->d);
    }
    case CB_KV_NF4: {
        const cb_block_nf4 *b = (const cb_block_nf4 *)row + j / CB_QKNF4;
        size_t i = j % CB_QKNF4;
        int q = i < CB_QKNF4 / 2 ? (b->qs[i] & 0x0f) : (b->qs[i - CB_QKNF4 / 2] >> 4);
        return cb_nf4_levels[q] * cb_f16_to_f32(b->d);
    }
    case CB_KV_F32: return ((const float *)row)[j];
    case CB_KV_F16: return cb_f16_to_f32(((const uint16_t *)row)[j]);
    case CB_KV_BF16: return cb_bf16_to_f32(((const uint16_t *)row)[j]);
    default: return 0.0f;
    }
}

#if QD_AVX2
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A block's fp16 scale as f32 (one vcvtph2ps with F16C). */
static inline float scale_f32(uint16_t d) {
#if defined(__F16C__)
    return _cvtsh_ss(d);
#else
    return cb_f16_to_f32(d);
#endif
}

/* 8 values of a float kind starting at element j. */
static inline __m256 load8_f16(const uint16_t *p) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#else
    float t[8];
    for (int i = 0; i < 8; i++) t[i] = cb_f16_to_f32(p[i]);
    return _mm256_loadu_ps(t);
#endif
}
static inline __m256 load8_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
/* Values 8*part .. 8*part+7 of a block, unscaled: q8_0 q; q4_0 q - 8; nf4 level. */
static inline __m256 load8_q8_0(const cb_block_q8_0 *b, int part) {
    __m128i q = _mm_loadl_epi64((const __m128i *)(b->qs + 8 * part));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
}
static inline __m256 load8_q4_0(const cb_block_q4_0 *b, int part) {
    // parts 0, 1: low nibbles of bytes 0-7, 8-15; parts 2, 3: their high nibbles
    __m128i q = _mm_loadl_epi64((const __m128i *)(b->qs + 8 * (part & 1)));
    if (part >= 2) q = _mm_srli_epi16(q, 4);
    q = _mm_and_si128(q, _mm_set1_epi8(0x0f));
    __m256i w = _mm256_sub_epi32(_mm256_cvtepu8_epi32(q), _mm256_set1_epi32(8));
    return _mm256_cvtepi32_ps(w);
}
static inline __m256 load8_nf4(const cb_block_nf4 *b, int part, __m256 lo, __m256 hi) {
    // parts 0-3: low nibbles of bytes 0-31; parts 4-7: their high nibbles
    __m128i q = _mm_loadl_epi64((const __m128i *)(b->qs + 8 * (part & 3)));
    if (part >= 4) q = _mm_srli_epi16(q, 4);
    q = _mm_and_si128(q, _mm_set1_epi8(0x0f));
    __m256i idx = _mm256_cvtepu8_epi32(q);
    __m256 vlo = _mm256_permutevar8x32_ps(lo, idx), vhi = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(vlo, vhi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}
#endif

#if QD_AVX512
/* 16 values of a float kind from element j. */
static inline __m512 load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline __m512 load16_bf16(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline float hsum16(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
/* The products of one block (q8_0, q4_0 or nf4; its scale d at offset 0) with x, unscaled,
 * summed down to 16 lanes. */
static inline __attribute__((always_inline)) __m512 block_products16(cb_kv_kind k, const unsigned char *blk, const float *x) {
    if (k == CB_KV_Q8_0) {
        const int8_t *qs = ((const cb_block_q8_0 *)blk)->qs;
        const __m512 v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)qs)));
        const __m512 v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qs + 16))));
        return _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(v0, _mm512_loadu_ps(x)));
    }
    const __m512i low = _mm512_set1_epi32(0x0f);
    if (k == CB_KV_Q4_0) { // byte j: value j in its low nibble, value j + 16 in its high one
        // nibble -> q - 8 as a float by one permute of the 16 values (not subtract, convert)
        const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const cb_block_q4_0 *)blk)->qs));
        const __m512 v0 = _mm512_permutexvar_ps(_mm512_and_si512(w, low), levels);
        const __m512 v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(w, 4), levels);
        return _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(v0, _mm512_loadu_ps(x)));
    }
    // nf4, byte j: value j in its low nibble, value j + 32 in its high one
    const __m512 levels = _mm512_loadu_ps(cb_nf4_levels);
    const uint8_t *qs = ((const cb_block_nf4 *)blk)->qs;
    const __m512i w0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    const __m512i w1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qs + 16)));
    __m512 p = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(w0, low), levels), _mm512_loadu_ps(x));
    p = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_and_si512(w1, low), levels), _mm512_loadu_ps(x + 16), p);
    p = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(w0, 4), levels), _mm512_loadu_ps(x + 32), p);
    return _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(w1, 4), levels), _mm512_loadu_ps(x + 48), p);
}
/* sum over nb whole blocks of kind K of d * (the block's products with x): two blocks in
 * flight. K a compile-time constant at each call. */
static inline __attribute__((always_inline)) float dot_blocks16(const cb_kv_kind K, const void *row,
                                                                const float *x, size_t nb) {
    const size_t bb = block_bytes(K), bv = (size_t)block_values(K);
    const unsigned char *blk = row;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 2 <= nb; i += 2, blk += 2 * bb, x += 2 * bv) {
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(scale_f32(*(const uint16_t *)blk)), block_products16(K, blk, x), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_set1_ps(scale_f32(*(const uint16_t *)(blk + bb))),
                               block_products16(K, blk + bb, x + bv), acc1);
    }
    if (i < nb)
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(scale_f32(*(const uint16_t *)blk)), block_products16(K, blk, x), acc0);
    return hsum16(_mm512_add_ps(acc0, acc1));
}
#endif

/* ---- dot ---- */

static float dot_float_kind(cb_kv_kind k, const void *row, const float *x, size_t n) {
    size_t j = 0;
    float s = 0.0f;
#if QD_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
#if QD_AVX512
    // fp16 and bf16 only: an fp32 row streams faster with 256-bit loads (measured on Zen 5)
    __m512 z0 = _mm512_setzero_ps(), z1 = _mm512_setzero_ps();
    for (; k != CB_KV_F32 && j + 32 <= n; j += 32) {
        __m512 v0, v1;
        if (k == CB_KV_F16) {
            v0 = load16_f16((const uint16_t *)row + j);
            v1 = load16_f16((const uint16_t *)row + j + 16);
        } else {
            v0 = load16_bf16((const uint16_t *)row + j);
            v1 = load16_bf16((const uint16_t *)row + j + 16);
        }
        z0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + j), z0);
        z1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + j + 16), z1);
    }
    z0 = _mm512_add_ps(z0, z1);
    a0 = _mm512_castps512_ps256(z0);
    a1 = _mm512_extractf32x8_ps(z0, 1);
#endif
    for (; j + 16 <= n; j += 16) {
        __m256 v0, v1;
        if (k == CB_KV_F32) {
            v0 = _mm256_loadu_ps((const float *)row + j);
            v1 = _mm256_loadu_ps((const float *)row + j + 8);
        } else if (k == CB_KV_F16) {
            v0 = load8_f16((const uint16_t *)row + j);
            v1 = load8_f16((const uint16_t *)row + j + 8);
        } else {
            v0 = load8_bf16((const uint16_t *)row + j);
            v1 = load8_bf16((const uint16_t *)row + j + 8);
        }
        a0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + j + 8), a1);
    }
    s = hsum8(_mm256_add_ps(a0, a1));
#else
    if (k == CB_KV_F32) {
        const float *r = row;
        #pragma omp simd reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += r[i] * x[i];
        return s;
    }
#endif
    for (; j < n; j++) s += block_value(k, row, j) * x[j];
    return s;
}

float cb_kv_dot(cb_kv_kind k, const void *row, const float *x, size_t n) {
    if (k == CB_KV_F32 || k == CB_KV_F16 || k == CB_KV_BF16) return dot_float_kind(k, row, x, n);
    const size_t bv = (size_t)block_values(k), nb = n / bv;
    float s = 0.0f;
#if QD_AVX512
    switch (k) {
    case CB_KV_Q8_0: s = dot_blocks16(CB_KV_Q8_0, row, x, nb); break;
    case CB_KV_Q4_0: s = dot_blocks16(CB_KV_Q4_0, row, x, nb); break;
    default: s = dot_blocks16(CB_KV_NF4, row, x, nb); break;
    }
    x += nb * bv;
#elif QD_AVX2
    __m256 acc = _mm256_setzero_ps();
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = row;
        for (size_t i = 0; i < nb; i++, x += CB_QK8_0) {
            __m256 p = _mm256_mul_ps(load8_q8_0(b + i, 0), _mm256_loadu_ps(x));
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 1), _mm256_loadu_ps(x + 8), p);
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 2), _mm256_loadu_ps(x + 16), p);
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 3), _mm256_loadu_ps(x + 24), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scale_f32(b[i].d)), p, acc);
        }
    } else if (k == CB_KV_Q4_0) {
        const cb_block_q4_0 *b = row;
        for (size_t i = 0; i < nb; i++, x += CB_QK4_0) {
            __m256 p = _mm256_mul_ps(load8_q4_0(b + i, 0), _mm256_loadu_ps(x));
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 1), _mm256_loadu_ps(x + 8), p);
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 2), _mm256_loadu_ps(x + 16), p);
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 3), _mm256_loadu_ps(x + 24), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scale_f32(b[i].d)), p, acc);
        }
    } else {
        const cb_block_nf4 *b = row;
        const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
        for (size_t i = 0; i < nb; i++, x += CB_QKNF4) {
            __m256 p = _mm256_mul_ps(load8_nf4(b + i, 0, lo, hi), _mm256_loadu_ps(x));
            for (int part = 1; part < 8; part++)
                p = _mm256_fmadd_ps(load8_nf4(b + i, part, lo, hi), _mm256_loadu_ps(x + 8 * part), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scale_f32(b[i].d)), p, acc);
        }
    }
    s = hsum8(acc);
#else
    for (size_t i = 0; i < nb; i++, x += bv) {
        const void *blk = (const unsigned char *)row + i * block_bytes(k);
        float p = 0.0f;
        for (size_t j = 0; j < bv; j++) p += block_value(k, blk, j) * x[j];
        s += p;
    }
#endif
    // the partial last block: only its first n % bv values count
    const void *last = (const unsigned char *)row + nb * block_bytes(k);
    for (size_t j = 0; j < n % bv; j++) s += block_value(k, last, j) * x[j];
    return s;
}

/* ---- axpy ---- */

void cb_kv_axpy(cb_kv_kind k, float *y, float a, const void *row, size_t n) {
    size_t j = 0;
#if QD_AVX2
    const __m256 va = _mm256_set1_ps(a);
    switch (k) {
    case CB_KV_F32:
    case CB_KV_F16:
    case CB_KV_BF16:
        for (; j + 8 <= n; j += 8) {
            __m256 v = k == CB_KV_F32   ? _mm256_loadu_ps((const float *)row + j)
                     : k == CB_KV_F16 ? load8_f16((const uint16_t *)row + j)
                                        : load8_bf16((const uint16_t *)row + j);
            _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, v, _mm256_loadu_ps(y + j)));
        }
        break;
    case CB_KV_Q8_0: {
        const cb_block_q8_0 *b = row;
        for (; j + CB_QK8_0 <= n; j += CB_QK8_0, b++) {
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(scale_f32(b->d)));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(y + j + 8 * part, _mm256_fmadd_ps(s, load8_q8_0(b, part),
                                                                   _mm256_loadu_ps(y + j + 8 * part)));
        }
        break;
    }
    case CB_KV_Q4_0: {
        const cb_block_q4_0 *b = row;
        for (; j + CB_QK4_0 <= n; j += CB_QK4_0, b++) {
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(scale_f32(b->d)));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(y + j + 8 * part, _mm256_fmadd_ps(s, load8_q4_0(b, part),
                                                                   _mm256_loadu_ps(y + j + 8 * part)));
        }
        break;
    }
    case CB_KV_NF4: {
        const cb_block_nf4 *b = row;
        const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
        for (; j + CB_QKNF4 <= n; j += CB_QKNF4, b++) {
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(scale_f32(b->d)));
            for (int part = 0; part < 8; part++)
                _mm256_storeu_ps(y + j + 8 * part,
                                 _mm256_fmadd_ps(s, load8_nf4(b, part, lo, hi), _mm256_loadu_ps(y + j + 8 * part)));
        }
        break;
    }
    default: return;
    }
#else
    if (k == CB_KV_F32) {
        const float *r = row;
        #pragma omp simd
        for (size_t i = 0; i < n; i++) y[i] += a * r[i];
        return;
    }
#endif
    for (; j < n; j++) y[j] += a * block_value(k, row, j);
}

/* ---- the _m variants, through a dequantised tile ---- */

/* Values v0 .. v0+cnt-1 of the row as floats: the row itself for fp32, else dequantised
 * into buf (TILE floats). v0 a multiple of the kind's block, cnt <= TILE, and the blocks
 * touched hold at most TILE values (buf is filled to the end of the last one). */
static const float *dequant_tile(cb_kv_kind k, float *buf, const void *row, size_t v0, size_t cnt) {
    if (k == CB_KV_F32) return (const float *)row + v0;
    if (k == CB_KV_F16 || k == CB_KV_BF16) {
        const uint16_t *h = (const uint16_t *)row + v0;
        size_t j = 0;
#if QD_AVX2
        for (; j + 8 <= cnt; j += 8)
            _mm256_storeu_ps(buf + j, k == CB_KV_F16 ? load8_f16(h + j) : load8_bf16(h + j));
#endif
        for (; j < cnt; j++) buf[j] = k == CB_KV_F16 ? cb_f16_to_f32(h[j]) : cb_bf16_to_f32(h[j]);
        return buf;
    }
    const size_t bv = (size_t)block_values(k);
    const size_t nblk = (cnt + bv - 1) / bv;
    const unsigned char *blk = (const unsigned char *)row + v0 / bv * block_bytes(k);
#if QD_AVX2
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = (const cb_block_q8_0 *)blk;
        for (size_t i = 0; i < nblk; i++) {
            __m256 d = _mm256_set1_ps(scale_f32(b[i].d));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(buf + i * CB_QK8_0 + 8 * part, _mm256_mul_ps(d, load8_q8_0(b + i, part)));
        }
        return buf;
    }
    if (k == CB_KV_Q4_0) {
        const cb_block_q4_0 *b = (const cb_block_q4_0 *)blk;
        for (size_t i = 0; i < nblk; i++) {
            __m256 d = _mm256_set1_ps(scale_f32(b[i].d));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(buf + i * CB_QK4_0 + 8 * part, _mm256_mul_ps(d, load8_q4_0(b + i, part)));
        }
        return buf;
    }
    if (k == CB_KV_NF4) {
        const cb_block_nf4 *b = (const cb_block_nf4 *)blk;
        const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
        __m256 d = _mm256_set1_ps(scale_f32(b->d)); // TILE holds one nf4 block
        for (int part = 0; part < 8; part++)
            _mm256_storeu_ps(buf + 8 * part, _mm256_mul_ps(d, load8_nf4(b, part, lo, hi)));
        return buf;
    }
#endif
    switch (k) {
    case CB_KV_Q8_0: cb_dequantize_row_q8_0(buf, (const cb_block_q8_0 *)blk, nblk * bv); break;
    case CB_KV_Q4_0: cb_dequantize_row_q4_0(buf, (const cb_block_q4_0 *)blk, nblk * bv); break;
    case CB_KV_NF4: cb_dequantize_row_nf4(buf, (const cb_block_nf4 *)blk, nblk * bv); break;
    default: break;
    }
    return buf;
}

#if QD_AVX2
/* The fused _m kernels, instantiated for each kind K and count M (1..8) as compile-time
 * constants, so that the M accumulators live in registers. Over `nunits` units: blocks of
 * the block kinds, groups of 8 values of the float kinds. Each unit's 8-value parts are
 * dequantised once, scaled, and used for all M vectors. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE int unit_values(const int K) {
    return K == CB_KV_Q8_0 ? CB_QK8_0 : K == CB_KV_Q4_0 ? CB_QK4_0 : K == CB_KV_NF4 ? CB_QKNF4 : 8;
}

/* Part p (8 values) of unit u, scaled. */
ALWAYS_INLINE __m256 unit_part(const int K, const void *row, size_t u, int p, __m256 d, __m256 lo,
                               __m256 hi) {
    switch (K) {
    case CB_KV_F32: return _mm256_loadu_ps((const float *)row + 8 * u);
    case CB_KV_F16: return load8_f16((const uint16_t *)row + 8 * u);
    case CB_KV_BF16: return load8_bf16((const uint16_t *)row + 8 * u);
    case CB_KV_Q8_0: return _mm256_mul_ps(d, load8_q8_0((const cb_block_q8_0 *)row + u, p));
    case CB_KV_Q4_0: return _mm256_mul_ps(d, load8_q4_0((const cb_block_q4_0 *)row + u, p));
    default: return _mm256_mul_ps(d, load8_nf4((const cb_block_nf4 *)row + u, p, lo, hi));
    }
}

ALWAYS_INLINE __m256 unit_scale(const int K, const void *row, size_t u) {
    switch (K) {
    case CB_KV_Q8_0: return _mm256_set1_ps(scale_f32(((const cb_block_q8_0 *)row)[u].d));
    case CB_KV_Q4_0: return _mm256_set1_ps(scale_f32(((const cb_block_q4_0 *)row)[u].d));
    case CB_KV_NF4: return _mm256_set1_ps(scale_f32(((const cb_block_nf4 *)row)[u].d));
    default: return _mm256_set1_ps(1.0f);
    }
}

/* acc (M) += unit u's products with x, 8 lanes. */
ALWAYS_INLINE void unit_dot8(const int K, const int M, __m256 *acc, const void *row, const float *x, size_t ldx,
                             size_t u, __m256 lo, __m256 hi) {
    const int UV = unit_values(K);
    const __m256 d = unit_scale(K, row, u);
    #pragma GCC unroll 8
    for (int p = 0; p < UV / 8; p++) {
        const __m256 v = unit_part(K, row, u, p, d, lo, hi);
        const float *xp = x + u * UV + 8 * p;
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) acc[i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + i * ldx), acc[i]);
    }
}

/* Two sets of accumulators, for even and odd units (see dot_m_kernel16). */
ALWAYS_INLINE void dot_m_kernel(const int K, const int M, float *out, const void *row,
                                const float *x, size_t ldx, size_t nunits) {
    const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
    __m256 a0[8], a1[8];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) a0[i] = a1[i] = _mm256_setzero_ps();
    size_t u = 0;
    for (; u + 2 <= nunits; u += 2) {
        unit_dot8(K, M, a0, row, x, ldx, u, lo, hi);
        unit_dot8(K, M, a1, row, x, ldx, u + 1, lo, hi);
    }
    if (u < nunits) unit_dot8(K, M, a0, row, x, ldx, u, lo, hi);
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) out[i] = hsum8(_mm256_add_ps(a0[i], a1[i]));
}

ALWAYS_INLINE void axpy_m_kernel(const int K, const int M, float *y, size_t ldy, const float *a,
                                 const void *row, size_t nunits) {
    const int UV = unit_values(K);
    const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
    __m256 va[8];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) va[i] = _mm256_set1_ps(a[i]);
    for (size_t u = 0; u < nunits; u++) {
        const __m256 d = unit_scale(K, row, u);
        #pragma GCC unroll 8
        for (int p = 0; p < UV / 8; p++) {
            const __m256 v = unit_part(K, row, u, p, d, lo, hi);
            float *yp = y + u * UV + 8 * p;
            #pragma GCC unroll 8
            for (int i = 0; i < M; i++)
                _mm256_storeu_ps(yp + i * ldy, _mm256_fmadd_ps(va[i], v, _mm256_loadu_ps(yp + i * ldy)));
        }
    }
}

#define M_CASES(CALL, K)                                                         \
    switch (mi) {                                                                \
    case 1: CALL(K, 1); break;                                                   \
    case 2: CALL(K, 2); break;                                                   \
    case 3: CALL(K, 3); break;                                                   \
    case 4: CALL(K, 4); break;                                                   \
    case 5: CALL(K, 5); break;                                                   \
    case 6: CALL(K, 6); break;                                                   \
    case 7: CALL(K, 7); break;                                                   \
    default: CALL(K, 8); break;                                                  \
    }
#define KIND_CASES(CALL)                                                         \
    switch (k) {                                                                 \
    case CB_KV_F32: M_CASES(CALL, CB_KV_F32); break;                             \
    case CB_KV_F16: M_CASES(CALL, CB_KV_F16); break;                             \
    case CB_KV_BF16: M_CASES(CALL, CB_KV_BF16); break;                           \
    case CB_KV_Q8_0: M_CASES(CALL, CB_KV_Q8_0); break;                           \
    case CB_KV_Q4_0: M_CASES(CALL, CB_KV_Q4_0); break;                           \
    case CB_KV_NF4: M_CASES(CALL, CB_KV_NF4); break;                             \
    default: break;                                                              \
    }

/* Whole units of n values: blocks, or groups of 8 for the float kinds. */
static size_t whole_units(cb_kv_kind k, size_t n) {
    int bv = block_values(k);
    return bv > 1 ? n / (size_t)bv : n / 8;
}
#endif

#if QD_AVX512
/* The dot _m kernel at 16 lanes: units are blocks, or groups of 16 values of the float
 * kinds; a q8_0 or q4_0 block is two 16-value parts, an nf4 block four. A small batch of
 * tokens (speculative verification, a draft's catch-up) then costs about what one token
 * does, the weights' bytes, instead of twice that at 8 lanes. */
ALWAYS_INLINE int unit_values16(const int K) {
    return K == CB_KV_Q8_0 ? CB_QK8_0 : K == CB_KV_Q4_0 ? CB_QK4_0 : K == CB_KV_NF4 ? CB_QKNF4 : 16;
}

/* Part p (16 values) of unit u, scaled by d (block kinds). */
ALWAYS_INLINE __m512 unit_part16(const int K, const void *row, size_t u, int p, __m512 d) {
    const __m512i low = _mm512_set1_epi32(0x0f);
    switch (K) {
    case CB_KV_F32: return _mm512_loadu_ps((const float *)row + 16 * u);
    case CB_KV_F16: return load16_f16((const uint16_t *)row + 16 * u);
    case CB_KV_BF16: return load16_bf16((const uint16_t *)row + 16 * u);
    case CB_KV_Q8_0: {
        const int8_t *qs = ((const cb_block_q8_0 *)row)[u].qs + 16 * p;
        return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)qs))));
    }
    case CB_KV_Q4_0: { // byte j: value j in its low nibble, value j + 16 in its high one
        const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const cb_block_q4_0 *)row)[u].qs));
        w = p ? _mm512_srli_epi32(w, 4) : _mm512_and_si512(w, low);
        return _mm512_mul_ps(d, _mm512_permutexvar_ps(w, levels));
    }
    default: { // nf4, byte j: value j in its low nibble, value j + 32 in its high one
        const uint8_t *qs = ((const cb_block_nf4 *)row)[u].qs + 16 * (p & 1);
        __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
        w = p >= 2 ? _mm512_srli_epi32(w, 4) : _mm512_and_si512(w, low);
        return _mm512_mul_ps(d, _mm512_permutexvar_ps(w, _mm512_loadu_ps(cb_nf4_levels)));
    }
    }
}

/* acc (M) += unit u's products with x, 16 lanes. */
ALWAYS_INLINE void unit_dot16(const int K, const int M, __m512 *acc, const void *row, const float *x, size_t ldx,
                              size_t u) {
    const int UV = unit_values16(K);
    const __m512 d = _mm512_broadcastss_ps(_mm256_castps256_ps128(unit_scale(K, row, u)));
    #pragma GCC unroll 4
    for (int p = 0; p < UV / 16; p++) {
        const __m512 v = unit_part16(K, row, u, p, d);
        const float *xp = x + u * UV + 16 * p;
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) acc[i] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp + i * ldx), acc[i]);
    }
}

/* Two sets of accumulators, for even and odd units: one set's chain of dependent
 * multiply-adds (4 cycles each) bounded a 5-token product well below the bandwidth. */
ALWAYS_INLINE void dot_m_kernel16(const int K, const int M, float *out, const void *row, const float *x,
                                  size_t ldx, size_t nunits) {
    __m512 a0[8], a1[8];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    size_t u = 0;
    for (; u + 2 <= nunits; u += 2) {
        unit_dot16(K, M, a0, row, x, ldx, u);
        unit_dot16(K, M, a1, row, x, ldx, u + 1);
    }
    if (u < nunits) unit_dot16(K, M, a0, row, x, ldx, u);
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) out[i] = hsum16(_mm512_add_ps(a0[i], a1[i]));
}
#endif

void cb_kv_dot_m(cb_kv_kind k, float *out, const void *row, const float *x, size_t ldx,
                 size_t n, int m) {
    if (m == 1) {
        out[0] = cb_kv_dot(k, row, x, n);
        return;
    }
    size_t done = 0; // values handled by the fused kernels
#if QD_AVX512
    { // 16 lanes for every kind here: with m >= 2 tokens the multiply-adds decide, not the
      // stream (fp32 keeps 8 lanes for one token, in cb_kv_dot); verify 5 tokens -7%
        const size_t bv16 = (size_t)(block_values(k) > 1 ? block_values(k) : 16);
        const size_t nunits = n / bv16;
        done = nunits * bv16;
        for (int i0 = 0; i0 < m; i0 += 8) {
            const int mi = m - i0 < 8 ? m - i0 : 8;
            float *o = out + i0;
            const float *xi = x + (size_t)i0 * ldx;
#define DOT_CALL(K, M) dot_m_kernel16(K, M, o, row, xi, ldx, nunits)
            KIND_CASES(DOT_CALL)
#undef DOT_CALL
        }
    }
#else
    {
#if QD_AVX2
        const size_t nunits = whole_units(k, n);
        done = nunits * (size_t)(block_values(k) > 1 ? block_values(k) : 8);
        for (int i0 = 0; i0 < m; i0 += 8) {
            const int mi = m - i0 < 8 ? m - i0 : 8;
            float *o = out + i0;
            const float *xi = x + (size_t)i0 * ldx;
#define DOT_CALL(K, M) dot_m_kernel(K, M, o, row, xi, ldx, nunits)
            KIND_CASES(DOT_CALL)
#undef DOT_CALL
        }
#else
        for (int i = 0; i < m; i++) out[i] = 0.0f;
#endif
    }
#endif
    if (done == n) return;
    // the rest (a partial block, or fewer than 8 float values) through a dequantised tile
    float buf[TILE] __attribute__((aligned(32)));
    for (size_t v0 = done; v0 < n; v0 += TILE) {
        const size_t cnt = n - v0 < TILE ? n - v0 : TILE;
        const float *t = dequant_tile(k, buf, row, v0, cnt);
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * ldx + v0;
            float s = 0.0f;
            #pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < cnt; j++) s += t[j] * xi[j];
            out[i] += s;
        }
    }
}

void cb_kv_axpy_m(cb_kv_kind k, float *y, size_t ldy, const float *a, const void *row, size_t n,
                  int m) {
    if (m == 1) {
        cb_kv_axpy(k, y, a[0], row, n);
        return;
    }
    size_t done = 0;
#if QD_AVX2
    const size_t nunits = whole_units(k, n);
    done = nunits * (size_t)(block_values(k) > 1 ? block_values(k) : 8);
    for (int i0 = 0; i0 < m; i0 += 8) {
        const int mi = m - i0 < 8 ? m - i0 : 8;
        float *yi = y + (size_t)i0 * ldy;
        const float *ai = a + i0;
#define AXPY_CALL(K, M) axpy_m_kernel(K, M, yi, ldy, ai, row, nunits)
        KIND_CASES(AXPY_CALL)
#undef AXPY_CALL
    }
#endif
    if (done == n) return;
    float buf[TILE] __attribute__((aligned(32)));
    for (size_t v0 = done; v0 < n; v0 += TILE) {
        const size_t cnt = n - v0 < TILE ? n - v0 : TILE;
        const float *t = dequant_tile(k, buf, row, v0, cnt);
        for (int i = 0; i < m; i++) {
            float *yi = y + (size_t)i * ldy + v0;
            const float ai = a[i];
            #pragma omp simd
            for (size_t j = 0; j < cnt; j++) yi[j] += ai * t[j];
        }
    }
}
