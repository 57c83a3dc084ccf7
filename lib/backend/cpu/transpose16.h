/* transpose16.h: a 16 x 16 transpose of 32-bit values in AVX-512 registers, for the panel
 * packing of matmul_float.c and quant_mm.c (16 weight rows' next 16 words in, 16 columns of
 * 16 rows out). Callers are functions with an AVX-512F target (or built with it). */
#ifndef CB_BACKEND_CPU_TRANSPOSE16_H
#define CB_BACKEND_CPU_TRANSPOSE16_H

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* r (16 registers of 16 lanes): lane j of r[i] goes to lane i of r[j]. */
static inline __attribute__((always_inline, target("avx512f"))) void cb_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) { // pairs of rows interleaved by 1 lane
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { // then by 2 lanes
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int h = 0; h < 2; h++) // then 128-bit quarters
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0xDD);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    }
}
#endif

#endif
