/* quant_dot.c: dot and axpy of stored rows (every cb_kv_kind) against f32 vectors.
 *
 * With AVX2 and FMA (the default build uses -march=native), each 8 values of a block are
 * widened in registers: int8 -> int32 -> f32 (q8_0), nibbles masked and shifted (q4_0),
 * nibbles looked up in the 16 levels held in two registers by permutevar8x32 and a blend
 * on bit 3 (nf4), vcvtph2ps (fp16, with F16C), a 16-bit shift (bf16). A q8_0/q4_0/nf4
 * block's products are summed unscaled and multiplied by the block's scale once. Without
 * AVX2 the same arithmetic runs as plain C loops. The _m variants dequantise a tile of 64
 * values into an L1 buffer once and use it for every one of the m vectors. */
#include "tensor/quant_dot.h"

#include <string.h>

#include "tensor/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#define QD_AVX2 1
#include <immintrin.h>
#else
#define QD_AVX2 0
#endif

#define TILE 64 /* values per tile of the _m kernels: a whole number of blocks of every kind */

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

/* ---- dot ---- */

static float dot_float_kind(cb_kv_kind k, const void *row, const float *x, size_t n) {
    size_t j = 0;
    float s = 0.0f;
#if QD_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
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
    const size_t bv = (size_t)cb_kv_kind_block_values(k), nb = n / bv;
    float s = 0.0f;
#if QD_AVX2
    __m256 acc = _mm256_setzero_ps();
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = row;
        for (size_t i = 0; i < nb; i++, x += CB_QK8_0) {
            __m256 p = _mm256_mul_ps(load8_q8_0(b + i, 0), _mm256_loadu_ps(x));
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 1), _mm256_loadu_ps(x + 8), p);
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 2), _mm256_loadu_ps(x + 16), p);
            p = _mm256_fmadd_ps(load8_q8_0(b + i, 3), _mm256_loadu_ps(x + 24), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(cb_f16_to_f32(b[i].d)), p, acc);
        }
    } else if (k == CB_KV_Q4_0) {
        const cb_block_q4_0 *b = row;
        for (size_t i = 0; i < nb; i++, x += CB_QK4_0) {
            __m256 p = _mm256_mul_ps(load8_q4_0(b + i, 0), _mm256_loadu_ps(x));
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 1), _mm256_loadu_ps(x + 8), p);
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 2), _mm256_loadu_ps(x + 16), p);
            p = _mm256_fmadd_ps(load8_q4_0(b + i, 3), _mm256_loadu_ps(x + 24), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(cb_f16_to_f32(b[i].d)), p, acc);
        }
    } else {
        const cb_block_nf4 *b = row;
        const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
        for (size_t i = 0; i < nb; i++, x += CB_QKNF4) {
            __m256 p = _mm256_mul_ps(load8_nf4(b + i, 0, lo, hi), _mm256_loadu_ps(x));
            for (int part = 1; part < 8; part++)
                p = _mm256_fmadd_ps(load8_nf4(b + i, part, lo, hi), _mm256_loadu_ps(x + 8 * part), p);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(cb_f16_to_f32(b[i].d)), p, acc);
        }
    }
    s = hsum8(acc);
#else
    for (size_t i = 0; i < nb; i++, x += bv) {
        const void *blk = (const unsigned char *)row + i * cb_kv_kind_block_bytes(k);
        float p = 0.0f;
        for (size_t j = 0; j < bv; j++) p += block_value(k, blk, j) * x[j];
        s += p;
    }
#endif
    // the partial last block: only its first n % bv values count
    const void *last = (const unsigned char *)row + nb * cb_kv_kind_block_bytes(k);
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
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(cb_f16_to_f32(b->d)));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(y + j + 8 * part, _mm256_fmadd_ps(s, load8_q8_0(b, part),
                                                                   _mm256_loadu_ps(y + j + 8 * part)));
        }
        break;
    }
    case CB_KV_Q4_0: {
        const cb_block_q4_0 *b = row;
        for (; j + CB_QK4_0 <= n; j += CB_QK4_0, b++) {
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(cb_f16_to_f32(b->d)));
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
            __m256 s = _mm256_mul_ps(va, _mm256_set1_ps(cb_f16_to_f32(b->d)));
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

/* buf[0 .. cnt) = values v0 .. v0+cnt-1 of the row; v0 a multiple of TILE, cnt <= TILE.
 * May write up to the end of the last block touched (buf holds TILE floats). */
static void dequant_tile(cb_kv_kind k, float *buf, const void *row, size_t v0, size_t cnt) {
    switch (k) {
    case CB_KV_F32: memcpy(buf, (const float *)row + v0, cnt * sizeof(float)); return;
    case CB_KV_F16: cb_f16_to_f32_n(buf, (const uint16_t *)row + v0, cnt); return;
    case CB_KV_BF16: cb_bf16_to_f32_n(buf, (const uint16_t *)row + v0, cnt); return;
    default: break;
    }
    const size_t bv = (size_t)cb_kv_kind_block_values(k);
    const size_t nblk = (cnt + bv - 1) / bv;
    const unsigned char *blk = (const unsigned char *)row + v0 / bv * cb_kv_kind_block_bytes(k);
#if QD_AVX2
    if (k == CB_KV_Q8_0) {
        const cb_block_q8_0 *b = (const cb_block_q8_0 *)blk;
        for (size_t i = 0; i < nblk; i++) {
            __m256 d = _mm256_set1_ps(cb_f16_to_f32(b[i].d));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(buf + i * CB_QK8_0 + 8 * part, _mm256_mul_ps(d, load8_q8_0(b + i, part)));
        }
        return;
    }
    if (k == CB_KV_Q4_0) {
        const cb_block_q4_0 *b = (const cb_block_q4_0 *)blk;
        for (size_t i = 0; i < nblk; i++) {
            __m256 d = _mm256_set1_ps(cb_f16_to_f32(b[i].d));
            for (int part = 0; part < 4; part++)
                _mm256_storeu_ps(buf + i * CB_QK4_0 + 8 * part, _mm256_mul_ps(d, load8_q4_0(b + i, part)));
        }
        return;
    }
    if (k == CB_KV_NF4) {
        const cb_block_nf4 *b = (const cb_block_nf4 *)blk;
        const __m256 lo = _mm256_loadu_ps(cb_nf4_levels), hi = _mm256_loadu_ps(cb_nf4_levels + 8);
        __m256 d = _mm256_set1_ps(cb_f16_to_f32(b->d)); // TILE holds one nf4 block
        for (int part = 0; part < 8; part++)
            _mm256_storeu_ps(buf + 8 * part, _mm256_mul_ps(d, load8_nf4(b, part, lo, hi)));
        return;
    }
#endif
    switch (k) {
    case CB_KV_Q8_0: cb_dequantize_row_q8_0(buf, (const cb_block_q8_0 *)blk, nblk * bv); break;
    case CB_KV_Q4_0: cb_dequantize_row_q4_0(buf, (const cb_block_q4_0 *)blk, nblk * bv); break;
    case CB_KV_NF4: cb_dequantize_row_nf4(buf, (const cb_block_nf4 *)blk, nblk * bv); break;
    default: break;
    }
}

void cb_kv_dot_m(cb_kv_kind k, float *out, const void *row, const float *x, size_t ldx,
                 size_t n, int m) {
    if (m == 1) {
        out[0] = cb_kv_dot(k, row, x, n);
        return;
    }
    float buf[TILE] __attribute__((aligned(32)));
    for (int i0 = 0; i0 < m; i0 += 8) { // up to 8 vectors' accumulators in registers
        const int mi = m - i0 < 8 ? m - i0 : 8;
#if QD_AVX2
        __m256 acc[8];
        for (int i = 0; i < mi; i++) acc[i] = _mm256_setzero_ps();
#endif
        float tail[8] = {0};
        for (size_t v0 = 0; v0 < n; v0 += TILE) {
            const size_t cnt = n - v0 < TILE ? n - v0 : TILE;
            dequant_tile(k, buf, row, v0, cnt);
            size_t j = 0;
#if QD_AVX2
            for (; j + 8 <= cnt; j += 8) {
                __m256 v = _mm256_load_ps(buf + j);
                for (int i = 0; i < mi; i++)
                    acc[i] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + (size_t)(i0 + i) * ldx + v0 + j), acc[i]);
            }
#endif
            for (int i = 0; i < mi; i++) {
                const float *xi = x + (size_t)(i0 + i) * ldx + v0;
                float s = 0.0f;
                for (size_t jj = j; jj < cnt; jj++) s += buf[jj] * xi[jj];
                tail[i] += s;
            }
        }
        for (int i = 0; i < mi; i++) {
#if QD_AVX2
            out[i0 + i] = hsum8(acc[i]) + tail[i];
#else
            out[i0 + i] = tail[i];
#endif
        }
    }
}

void cb_kv_axpy_m(cb_kv_kind k, float *y, size_t ldy, const float *a, const void *row, size_t n,
                  int m) {
    if (m == 1) {
        cb_kv_axpy(k, y, a[0], row, n);
        return;
    }
    float buf[TILE] __attribute__((aligned(32)));
    for (size_t v0 = 0; v0 < n; v0 += TILE) {
        const size_t cnt = n - v0 < TILE ? n - v0 : TILE;
        dequant_tile(k, buf, row, v0, cnt);
        for (int i = 0; i < m; i++) {
            float *yi = y + (size_t)i * ldy + v0;
            const float ai = a[i];
            #pragma omp simd
            for (size_t j = 0; j < cnt; j++) yi[j] += ai * buf[j];
        }
    }
}
