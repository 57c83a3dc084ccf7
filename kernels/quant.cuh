/* quant.cuh: the storage kinds of lib/tensor/quant.h in device code: reading 8 values (or
 * one) of a stored row (a weight row, a cached head segment: whole blocks of the kind, as
 * the CPU lays them out), and quantising one block exactly as lib/tensor/quant.c does, so
 * the bytes a GPU writes are the bytes the CPU would (kernels are built with -fmad=false,
 * IEEE division and no flush to zero: every float operation below rounds as the C code's).
 * Kinds are runtime values (CB_KV_*): the switch is uniform across a warp. */
#ifndef CB_KERNELS_QUANT_CUH
#define CB_KERNELS_QUANT_CUH

#include <stdint.h>
#include "common.cuh"

/* tensor/quant.h's kinds and block layouts (that header is C11 only: restrict); decode.c
 * asserts the values agree */
enum { CB_KV_F32 = 0, CB_KV_F16 = 1, CB_KV_BF16 = 2, CB_KV_Q8_0 = 3, CB_KV_Q4_0 = 4, CB_KV_NF4 = 5 };
#define CB_QK8_0 32
#define CB_QK4_0 32
#define CB_QKNF4 64
#define CBK_Q8_0_BYTES 34 /* fp16 scale, 32 int8 */
#define CBK_Q4_0_BYTES 18 /* fp16 scale, 16 bytes of nibbles */
#define CBK_NF4_BYTES 34  /* fp16 scale, 32 bytes of nibbles */

__constant__ static float cbk_nf4_levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

/* lib/tensor/dtype.h's conversions, bit for bit. */
__device__ __forceinline__ float cbk_bits_f(uint32_t u) { return __uint_as_float(u); }
__device__ __forceinline__ float cbk_bf16_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ float cbk_f16_f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t magnitude = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t exponent = magnitude & (0x1fu << 23);
    uint32_t normal = magnitude + ((127u - 15u) << 23);
    uint32_t infnan = magnitude + ((255u - 31u) << 23);
    if (exponent == (0x1fu << 23)) return __uint_as_float(sign | infnan);
    if (exponent == 0) { /* zero or subnormal: magnitude * 2^-24 exactly */
        float f = (float)(h & 0x3ffu) * 5.9604644775390625e-8f;
        return __uint_as_float(sign | __float_as_uint(f));
    }
    return __uint_as_float(sign | normal);
}
__device__ __forceinline__ uint16_t cbk_f_bf16(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    uint32_t nan = (x >> 16) | 0x0040u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
__device__ __forceinline__ uint16_t cbk_f_f16(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    uint32_t payload = (x >> 13) & 0x3ffu;
    uint32_t nan = 0x7c00u | (payload ? payload : 0x200u);
    const uint32_t magic = (126u << 23);
    uint32_t subnormal = __float_as_uint(__fadd_rn(__uint_as_float(x), __uint_as_float(magic))) - magic;
    uint32_t normal = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    uint32_t out = x > 0x7f800000u ? nan : x >= (143u << 23) ? 0x7c00u : x < (113u << 23) ? subnormal : normal;
    return (uint16_t)(sign | out);
}

__device__ __forceinline__ uint16_t cbk_ld16(const unsigned char *p) { return *(const uint16_t *)p; }
/* 8 bytes at an even address, as four 16-bit loads (blocks of 34 and 18 bytes leave the
 * quants only 2-byte aligned) */
__device__ __forceinline__ uint64_t cbk_ld8_even(const unsigned char *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (uint64_t)h[0] | ((uint64_t)h[1] << 16) | ((uint64_t)h[2] << 32) | ((uint64_t)h[3] << 48);
}

/* Values j .. j+7 of a stored row (j a multiple of 8). Float kinds: vec says the row is
 * 16-byte aligned and holds all 8 (else element loads, values past n read as 0). Block
 * kinds: the 8 lie in one block (padding dequantises to 0). */
__device__ __forceinline__ void cbk_load8(int kind, const unsigned char *row, int j, int n, int vec, float w[8]) {
    switch (kind) {
    case CB_KV_F32: {
        const float *r = (const float *)row + j;
        if (vec) {
            float4 a = *(const float4 *)r, b = *(const float4 *)(r + 4);
            w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
        } else {
            for (int t = 0; t < 8; t++) w[t] = j + t < n ? r[t] : 0.0f;
        }
        return;
    }
    case CB_KV_F16:
    case CB_KV_BF16: {
        const uint16_t *r = (const uint16_t *)row + j;
        uint16_t h[8];
        if (vec) {
            uint4 u = *(const uint4 *)r;
            h[0] = u.x & 0xffff, h[1] = u.x >> 16, h[2] = u.y & 0xffff, h[3] = u.y >> 16;
            h[4] = u.z & 0xffff, h[5] = u.z >> 16, h[6] = u.w & 0xffff, h[7] = u.w >> 16;
        } else {
            for (int t = 0; t < 8; t++) h[t] = j + t < n ? r[t] : 0;
        }
        if (kind == CB_KV_BF16)
            for (int t = 0; t < 8; t++) w[t] = cbk_bf16_f(h[t]);
        else
            for (int t = 0; t < 8; t++) w[t] = cbk_f16_f(h[t]);
        return;
    }
    case CB_KV_Q8_0: {
        const unsigned char *b = row + (size_t)(j / CB_QK8_0) * CBK_Q8_0_BYTES;
        const float d = cbk_f16_f(cbk_ld16(b));
        uint64_t q = cbk_ld8_even(b + 2 + j % CB_QK8_0);
        for (int t = 0; t < 8; t++) w[t] = (float)(int8_t)(q >> (8 * t)) * d;
        return;
    }
    case CB_KV_Q4_0: {
        const unsigned char *b = row + (size_t)(j / CB_QK4_0) * CBK_Q4_0_BYTES;
        const float d = cbk_f16_f(cbk_ld16(b));
        const int jj = j % CB_QK4_0, shift = jj < CB_QK4_0 / 2 ? 0 : 4;
        uint64_t q = cbk_ld8_even(b + 2 + jj % (CB_QK4_0 / 2));
        for (int t = 0; t < 8; t++) w[t] = (float)((int)((q >> (8 * t + shift)) & 0xf) - 8) * d;
        return;
    }
    default: { /* nf4 */
        const unsigned char *b = row + (size_t)(j / CB_QKNF4) * CBK_NF4_BYTES;
        const float d = cbk_f16_f(cbk_ld16(b));
        const int jj = j % CB_QKNF4, shift = jj < CB_QKNF4 / 2 ? 0 : 4;
        uint64_t q = cbk_ld8_even(b + 2 + jj % (CB_QKNF4 / 2));
        for (int t = 0; t < 8; t++) w[t] = cbk_nf4_levels[(q >> (8 * t + shift)) & 0xf] * d;
        return;
    }
    }
}

/* Value j of a stored row. */
__device__ __forceinline__ float cbk_load1(int kind, const unsigned char *row, int j) {
    switch (kind) {
    case CB_KV_F32: return ((const float *)row)[j];
    case CB_KV_F16: return cbk_f16_f(((const uint16_t *)row)[j]);
    case CB_KV_BF16: return cbk_bf16_f(((const uint16_t *)row)[j]);
    case CB_KV_Q8_0: {
        const unsigned char *b = row + (size_t)(j / CB_QK8_0) * CBK_Q8_0_BYTES;
        return (float)(int8_t)b[2 + j % CB_QK8_0] * cbk_f16_f(cbk_ld16(b));
    }
    case CB_KV_Q4_0: {
        const unsigned char *b = row + (size_t)(j / CB_QK4_0) * CBK_Q4_0_BYTES;
        const int jj = j % CB_QK4_0;
        int q = jj < CB_QK4_0 / 2 ? b[2 + jj] & 0xf : b[2 + jj - CB_QK4_0 / 2] >> 4;
        return (float)(q - 8) * cbk_f16_f(cbk_ld16(b));
    }
    default: {
        const unsigned char *b = row + (size_t)(j / CB_QKNF4) * CBK_NF4_BYTES;
        const int jj = j % CB_QKNF4;
        int q = jj < CB_QKNF4 / 2 ? b[2 + jj] & 0xf : b[2 + jj - CB_QKNF4 / 2] >> 4;
        return cbk_nf4_levels[q] * cbk_f16_f(cbk_ld16(b));
    }
    }
}

/* The index of the nf4 level nearest v, as quant.c's nf4_index (midpoints in double). */
__device__ __forceinline__ int cbk_nf4_index(float v) {
    int idx = 0;
    for (int i = 0; i < 15; i++) idx += (double)v > 0.5 * ((double)cbk_nf4_levels[i] + (double)cbk_nf4_levels[i + 1]);
    return idx;
}

/* Unit b of a row x (cols floats) stored into o, a row of kind: value b of a float kind,
 * block b of a block kind (bv values, a partial last block padded with zeros), as
 * lib/tensor/quant.c's cb_kv_quantize_row writes it. */
__device__ __forceinline__ void cbk_quantize_unit(unsigned char *o, const float *x, int kind, int b, int bv, int cols) {
    if (kind == CB_KV_F32) {
        ((float *)o)[b] = x[b];
        return;
    }
    if (kind == CB_KV_F16 || kind == CB_KV_BF16) {
        ((uint16_t *)o)[b] = kind == CB_KV_F16 ? cbk_f_f16(x[b]) : cbk_f_bf16(x[b]);
        return;
    }
    const int j0 = b * bv;
#define XV(j) (j0 + (j) < cols ? x[j0 + (j)] : 0.0f)
    if (kind == CB_KV_Q8_0) {
        float amax = 0.0f;
        for (int j = 0; j < CB_QK8_0; j++) amax = fmaxf(amax, fabsf(XV(j)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        unsigned char *yb = o + (size_t)b * CBK_Q8_0_BYTES;
        uint16_t dh = cbk_f_f16(d);
        yb[0] = dh & 0xff, yb[1] = dh >> 8;
        for (int j = 0; j < CB_QK8_0; j++) yb[2 + j] = (unsigned char)(int8_t)roundf(XV(j) * id);
    } else if (kind == CB_KV_Q4_0) {
        unsigned char *yb = o + (size_t)b * CBK_Q4_0_BYTES;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < CB_QK4_0; j++)
            if (amax < fabsf(XV(j))) {
                amax = fabsf(XV(j));
                max = XV(j);
            }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = cbk_f_f16(d);
        yb[0] = dh & 0xff, yb[1] = dh >> 8;
        for (int j = 0; j < CB_QK4_0 / 2; j++) {
            int q0 = (int)(XV(j) * id + 8.5f), q1 = (int)(XV(j + CB_QK4_0 / 2) * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            yb[2 + j] = (unsigned char)(q0 | (q1 << 4));
        }
    } else { /* nf4 */
        unsigned char *yb = o + (size_t)b * CBK_NF4_BYTES;
        float amax = 0.0f;
        for (int j = 0; j < CB_QKNF4; j++) amax = fmaxf(amax, fabsf(XV(j)));
        amax = fminf(amax, 65504.0f);
        uint16_t dh = cbk_f_f16(amax);
        yb[0] = dh & 0xff, yb[1] = dh >> 8;
        const float d = cbk_f16_f(dh);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < CB_QKNF4 / 2; j++) {
            int q0 = cbk_nf4_index(XV(j) * id), q1 = cbk_nf4_index(XV(j + CB_QKNF4 / 2) * id);
            yb[2 + j] = (unsigned char)(q0 | (q1 << 4));
        }
    }
#undef XV
}

#endif
