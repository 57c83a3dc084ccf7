/* quant_act.c: int16 activation blocks and the q8_0 x int16 dot products (see quant_act.h
 * for why and the error bound). AVX-512 BW when compiled for it, plain C otherwise; both
 * compute the same integer block sums, so they differ only in the order of the f32 adds. */
#include "backend/cpu/quant_act.h"

#include <math.h>
#include <string.h>

#include "tensor/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__F16C__)
#define QA_AVX512 1
#include <immintrin.h>
#else
#define QA_AVX512 0
#endif

void cb_act_quantize_i16(int16_t *q, float *d, const float *x, size_t n) {
    const size_t nb = cb_act_blocks(n);
    for (size_t b = 0; b < nb; b++) {
        const size_t j0 = b * CB_ACT_BLOCK, cnt = n - j0 < CB_ACT_BLOCK ? n - j0 : CB_ACT_BLOCK;
        float amax = 0.0f;
        int finite = 1;
        for (size_t j = 0; j < cnt; j++) {
            const float a = fabsf(x[j0 + j]);
            amax = a > amax ? a : amax; // not fmaxf: a library call here (NaN is caught below)
            finite &= isfinite(x[j0 + j]) != 0;
        }
        if (!finite) { // NaN or infinity: a NaN scale, so the products come out NaN as in f32
            d[b] = NAN;
            memset(q + j0, 0, CB_ACT_BLOCK * sizeof *q);
            continue;
        }
        const float id = amax > 0.0f ? 32767.0f / amax : 0.0f;
        d[b] = amax / 32767.0f;
        // |x * id| <= 32767 up to rounding of id: clamp so it can never wrap
        for (size_t j = 0; j < cnt; j++) {
            float v = nearbyintf(x[j0 + j] * id);
            q[j0 + j] = (int16_t)(v > 32767.0f ? 32767.0f : v < -32767.0f ? -32767.0f : v);
        }
        for (size_t j = cnt; j < CB_ACT_BLOCK; j++) q[j0 + j] = 0;
    }
}

#if QA_AVX512
/* The 16 int32 pair sums of one block: qs sign-extended to int16 times q. */
static inline __m512i block_pairs(const cb_block_q8_0 *b, const int16_t *q) {
    const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)b->qs));
    return _mm512_madd_epi16(w, _mm512_loadu_si512((const void *)q));
}

static inline float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

float cb_q8_0_dot_i16(const cb_block_q8_0 *row, const int16_t *q, const float *d, size_t nb) {
    // two accumulators: one chain of dependent multiply-adds bounds a short row
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i p0 = block_pairs(row + b, q + b * CB_ACT_BLOCK);
        const __m512i p1 = block_pairs(row + b + 1, q + (b + 1) * CB_ACT_BLOCK);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_set1_ps(_cvtsh_ss(row[b].d) * d[b]), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_set1_ps(_cvtsh_ss(row[b + 1].d) * d[b + 1]), acc1);
    }
    if (b < nb)
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_pairs(row + b, q + b * CB_ACT_BLOCK)),
                               _mm512_set1_ps(_cvtsh_ss(row[b].d) * d[b]), acc0);
    return hsum16(_mm512_add_ps(acc0, acc1));
}

/* M vectors against one row, M a compile-time constant at each call so that the M
 * accumulators stay in registers (a loop over a runtime m kept them in memory: a 2-token
 * pass took 3x one token's). */
static inline __attribute__((always_inline)) void dot_i16_m_kernel(const int M, float *out, const cb_block_q8_0 *row,
                                                                   const int16_t *q, size_t ldq, const float *d,
                                                                   size_t ldd, size_t nb) {
    __m512 acc[8];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)row[b].qs));
        const float dw = _cvtsh_ss(row[b].d);
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) {
            const __m512i p = _mm512_madd_epi16(w, _mm512_loadu_si512((const void *)(q + i * ldq + b * CB_ACT_BLOCK)));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(dw * d[i * ldd + b]), acc[i]);
        }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) out[i] = hsum16(acc[i]);
}

void cb_q8_0_dot_i16_m(float *out, const cb_block_q8_0 *row, const int16_t *q, size_t ldq,
                       const float *d, size_t ldd, size_t nb, int m) {
    switch (m) {
    case 1: out[0] = cb_q8_0_dot_i16(row, q, d, nb); break;
    case 2: dot_i16_m_kernel(2, out, row, q, ldq, d, ldd, nb); break;
    case 3: dot_i16_m_kernel(3, out, row, q, ldq, d, ldd, nb); break;
    case 4: dot_i16_m_kernel(4, out, row, q, ldq, d, ldd, nb); break;
    case 5: dot_i16_m_kernel(5, out, row, q, ldq, d, ldd, nb); break;
    case 6: dot_i16_m_kernel(6, out, row, q, ldq, d, ldd, nb); break;
    case 7: dot_i16_m_kernel(7, out, row, q, ldq, d, ldd, nb); break;
    default: dot_i16_m_kernel(8, out, row, q, ldq, d, ldd, nb); break;
    }
}
#else
/* The exact integer sum of one block's products. */
static int32_t block_sum(const cb_block_q8_0 *b, const int16_t *q) {
    int32_t s = 0;
    for (int j = 0; j < CB_ACT_BLOCK; j++) s += (int32_t)b->qs[j] * q[j];
    return s;
}

float cb_q8_0_dot_i16(const cb_block_q8_0 *row, const int16_t *q, const float *d, size_t nb) {
    float s = 0.0f;
    for (size_t b = 0; b < nb; b++)
        s += (float)block_sum(row + b, q + b * CB_ACT_BLOCK) * (cb_f16_to_f32(row[b].d) * d[b]);
    return s;
}

void cb_q8_0_dot_i16_m(float *out, const cb_block_q8_0 *row, const int16_t *q, size_t ldq,
                       const float *d, size_t ldd, size_t nb, int m) {
    for (int i = 0; i < m; i++) out[i] = cb_q8_0_dot_i16(row, q + i * ldq, d + i * ldd, nb);
}
#endif
